//! The crate's error type and the URL redaction helper.

use std::time::Duration;

/// Everything that can go wrong in the registry.
///
/// Every message names the (redacted) Redis URL and says what to do. No message ever
/// contains a password: URLs go through [`redact_url`], and server messages are scrubbed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be parsed or uses an unsupported scheme.
    #[error("invalid Redis URL {url}: {reason} (expected redis://, rediss://, redis+unix://, unix:// or redis-cluster://)")]
    InvalidUrl {
        /// The redacted URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached (refused, unresolvable, connection dropped).
    #[error("cannot reach Redis at {url} ({reason}): is it running and reachable from this host? Check the URL (SOLLOL_REDIS_URL by default)")]
    Unreachable {
        /// The redacted URL.
        url: String,
        /// The underlying cause, scrubbed of secrets.
        reason: String,
    },
    /// The server rejected the credentials or the user lacks a permission.
    #[error("Redis at {url} refused access ({reason}): check the username and password in the URL and the user's ACL")]
    Auth {
        /// The redacted URL.
        url: String,
        /// The server's answer, scrubbed of secrets.
        reason: String,
    },
    /// An operation did not complete in time.
    #[error("Redis at {url} did not answer {op} within {after:?}: is it overloaded or unreachable? (timeout: RegistryConfig::command_timeout)")]
    Timeout {
        /// The redacted URL.
        url: String,
        /// The operation that timed out.
        op: &'static str,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// Redis answered with an error.
    #[error("Redis at {url} failed {op}: {reason}")]
    Redis {
        /// The redacted URL.
        url: String,
        /// The operation that failed.
        op: &'static str,
        /// The server's or client's message, scrubbed of secrets.
        reason: String,
    },
    /// A record given to a writer would not pass our own reader's validation, so it
    /// was not written.
    #[error("refusing to write an invalid {what}: {reason}")]
    InvalidRecord {
        /// Which record kind.
        what: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The URL or configuration needs a cargo feature of this crate that this build
    /// leaves out (`tls` for `rediss://`, `cluster` for Redis Cluster).
    #[error("{what} at {url} needs the `{feature}` cargo feature of vramroute-registry, which this build leaves out: enable it on the vramroute-registry dependency (it is on by default)")]
    FeatureDisabled {
        /// The redacted URL.
        url: String,
        /// What was asked for (e.g. "Redis Cluster").
        what: &'static str,
        /// The feature to enable.
        feature: &'static str,
    },
    /// A test server (feature `testing`) could not be started or controlled.
    #[error("test Redis server: {0}")]
    TestServer(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns `url` with any password replaced by `***`.
///
/// Handles `scheme://user:password@host`, `scheme://:password@host`, a lone
/// `scheme://secret@host` (redacted whole: clients differ on whether it is a user or a
/// password), a password in the
/// query string (`?password=…` / `?pass=…`, used by `redis+unix://` URLs) and
/// comma-separated cluster seed lists. A URL without a password is returned unchanged.
///
/// ```
/// use vramroute_registry::redact_url;
/// assert_eq!(redact_url("redis://app:s3cret@10.0.0.5:6379/0"), "redis://app:***@10.0.0.5:6379/0");
/// assert_eq!(redact_url("redis://s3cret@10.0.0.5:6379"), "redis://***@10.0.0.5:6379");
/// assert_eq!(redact_url("redis+unix:///run/redis.sock?db=1&pass=x"), "redis+unix:///run/redis.sock?db=1&pass=***");
/// ```
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    // Split off query and fragment first: they may contain '@' or '/'.
    let (before_query, query) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    // A cluster URL may carry several `user:pass@host` seeds separated by commas, but
    // commas may also occur inside a password; redact every userinfo before an '@'
    // that precedes the path.
    let (authority, path) = match before_query.find('/') {
        Some(i) if before_query[..i].contains('@') || !before_query[i..].contains('@') => {
            (&before_query[..i], &before_query[i..])
        }
        // '/' inside a password: the authority ends after the last '@'-prefixed host.
        _ => match before_query.rfind('@') {
            Some(at) => match before_query[at..].find('/') {
                Some(j) => (&before_query[..at + j], &before_query[at + j..]),
                None => (before_query, ""),
            },
            None => (before_query, ""),
        },
    };
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                // `redis://secret@host`: many clients take a lone userinfo for the
                // password; never print it.
                None => out.push_str("***"),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        let mut first = true;
        for pair in query.split('&') {
            if !first {
                out.push('&');
            }
            first = false;
            match pair.split_once('=') {
                Some((k, _)) if matches!(k, "pass" | "password") => {
                    out.push_str(k);
                    out.push_str("=***");
                }
                _ => out.push_str(pair),
            }
        }
    }
    out
}

/// Removes every occurrence of `secret` from `text` (used on server and client messages).
pub(crate) fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, "***"),
        _ => text.to_owned(),
    }
}

/// `url` with `password` as its Redis password, for a password kept out of the URL (an
/// environment variable or a file, so it never shows in `ps` or a unit file). TCP URLs
/// (`redis://`, `rediss://`, `redis-cluster://`) get it in the userinfo (`:PASS@`, after
/// a user name when there is one); Unix-socket URLs (`redis+unix://`, `unix://`) as the
/// `pass` query parameter. The password is percent-encoded. A URL that already carries a
/// password is refused rather than silently overridden; errors never echo the password.
///
/// ```
/// use vramroute_registry::url_with_password;
/// assert_eq!(url_with_password("redis://10.0.0.5:6379/0", "p@ss word").unwrap(),
///            "redis://:p%40ss%20word@10.0.0.5:6379/0");
/// assert_eq!(url_with_password("redis://app@10.0.0.5", "s").unwrap(), "redis://app:s@10.0.0.5");
/// assert_eq!(url_with_password("redis+unix:///run/redis.sock?db=1", "s").unwrap(),
///            "redis+unix:///run/redis.sock?db=1&pass=s");
/// assert!(url_with_password("redis://:old@h", "s").is_err());
/// ```
pub fn url_with_password(url: &str, password: &str) -> std::result::Result<String, String> {
    if password.is_empty() {
        return Err("the Redis password is empty".to_owned());
    }
    if password.chars().any(char::is_control) {
        return Err("the Redis password contains a control character (a stray newline?)".into());
    }
    let encoded = percent_encode(password);
    let Some(i) = url.find("://") else {
        return Err(format!(
            "cannot add a password to {}: not a URL (redis://HOST:PORT)",
            redact_url(url)
        ));
    };
    let (scheme, rest) = (&url[..i], &url[i + 3..]);
    match scheme {
        "redis" | "rediss" | "redis-cluster" | "rediss-cluster" => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            let (user, host) = match authority.rfind('@') {
                Some(at) => {
                    let userinfo = &authority[..at];
                    match userinfo.split_once(':') {
                        Some((_, pass)) if !pass.is_empty() => {
                            return Err(format!(
                                "{} already carries a password: give it one way only",
                                redact_url(url)
                            ))
                        }
                        Some((user, _)) => (user, &authority[at + 1..]),
                        None => (userinfo, &authority[at + 1..]),
                    }
                }
                None => ("", authority),
            };
            Ok(format!("{scheme}://{user}:{encoded}@{host}{tail}"))
        }
        "redis+unix" | "unix" => {
            let (before_frag, frag) = match rest.find('#') {
                Some(h) => rest.split_at(h),
                None => (rest, ""),
            };
            let query = before_frag.split_once('?').map_or("", |(_, q)| q);
            if query
                .split('&')
                .any(|kv| kv.starts_with("pass=") || kv.starts_with("password="))
            {
                return Err(format!(
                    "{} already carries a password: give it one way only",
                    redact_url(url)
                ));
            }
            let sep = if before_frag.contains('?') { '&' } else { '?' };
            Ok(format!("{scheme}://{before_frag}{sep}pass={encoded}{frag}"))
        }
        other => Err(format!(
            "cannot add a password to a {other}:// URL (use redis://, rediss:// or redis+unix://)"
        )),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_joins_every_url_form_encoded_and_never_twice() {
        let ok = |u: &str| super::url_with_password(u, "s3:cr/t@x").unwrap();
        assert_eq!(ok("redis://h:6379"), "redis://:s3%3Acr%2Ft%40x@h:6379");
        assert_eq!(
            ok("rediss://u@h/2?x=1"),
            "rediss://u:s3%3Acr%2Ft%40x@h/2?x=1"
        );
        assert_eq!(ok("redis://u:@h"), "redis://u:s3%3Acr%2Ft%40x@h");
        assert_eq!(
            ok("redis-cluster://h1:7000"),
            "redis-cluster://:s3%3Acr%2Ft%40x@h1:7000"
        );
        assert_eq!(
            ok("redis+unix:///s.sock"),
            "redis+unix:///s.sock?pass=s3%3Acr%2Ft%40x"
        );
        assert_eq!(
            ok("unix:///s.sock?db=2"),
            "unix:///s.sock?db=2&pass=s3%3Acr%2Ft%40x"
        );
        for bad in [
            "redis://:old@h",
            "redis://u:old@h",
            "redis+unix:///s?pass=old",
            "h:6379",
            "http://h",
        ] {
            let e = super::url_with_password(bad, "s3:cr/t@x").unwrap_err();
            assert!(
                !e.contains("s3:cr") && !e.contains("old@") && !e.contains("pass=old"),
                "{e}"
            );
        }
        assert!(super::url_with_password("redis://h", "").is_err());
        assert!(super::url_with_password("redis://h", "pw\n").is_err());
    }

    use super::*;

    #[test]
    fn redacts_passwords_in_every_form() {
        let cases = [
            ("redis://localhost:6379", "redis://localhost:6379"),
            ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
            ("redis://user:pw@h:1/2", "redis://user:***@h:1/2"),
            // A lone userinfo may be a password (`redis://secret@host`): redacted whole.
            ("redis://user@h:1", "redis://***@h:1"),
            ("redis://s3cret-pass@host:6379", "redis://***@host:6379"),
            (
                "rediss://u:p%40ss@h:6380/0#insecure",
                "rediss://u:***@h:6380/0#insecure",
            ),
            ("redis://u:pa/ss@h:1/0", "redis://u:***@h:1/0"),
            ("redis://u:pa@ss@h:1/0", "redis://u:***@h:1/0"),
            (
                "unix:///tmp/r.sock?pass=x&db=2",
                "unix:///tmp/r.sock?pass=***&db=2",
            ),
            (
                "redis+unix:///tmp/r.sock?password=x",
                "redis+unix:///tmp/r.sock?password=***",
            ),
            (
                "redis-cluster://u:pw@10.0.0.1:7000,10.0.0.2:7000",
                "redis-cluster://u:***@10.0.0.1:7000,10.0.0.2:7000",
            ),
        ];
        for (input, want) in cases {
            let got = redact_url(input);
            assert_eq!(got, want, "redact_url({input})");
        }
    }

    #[test]
    fn scrub_removes_secret() {
        assert_eq!(scrub("WRONGPASS hunter2", Some("hunter2")), "WRONGPASS ***");
        assert_eq!(scrub("x", None), "x");
    }
}
