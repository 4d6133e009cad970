//! The gateway's settings and its API keys.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use axum::http::HeaderMap;
use vramroute_serve::ServeLimits;

use crate::error::{Error, Result};

/// The environment variable that may hold API keys (comma- or newline-separated).
pub const KEYS_ENV: &str = "VRAMROUTE_GATEWAY_KEYS";

/// How the gateway forwards requests.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Largest request body accepted, bytes (a larger one is refused with 413).
    pub max_body_bytes: usize,
    /// Timeout to connect to a node.
    pub connect_timeout: Duration,
    /// Timeout from sending a request to the node's first response byte (includes a
    /// cold model load).
    pub first_byte_timeout: Duration,
    /// Longest silence between two chunks of a streamed answer.
    pub idle_timeout: Duration,
    /// Most nodes tried for one request (failover before the first byte).
    pub max_attempts: usize,
    /// How long a node that failed is kept out of routing (circuit breaker).
    pub breaker_backoff: Duration,
    /// Timeout of each node's answer when the gateway fans out (`/api/tags`, `/api/ps`,
    /// `/v1/models`, `/api/version`).
    pub fanout_timeout: Duration,
    /// API keys; empty: no key is required.
    pub keys: ApiKeys,
    /// Client connections: header-read and idle timeouts, connection cap
    /// ([`serve`](crate::Gateway::serve) applies them). Default cap: 512.
    pub http: ServeLimits,
}

/// Default cap on the gateway's client connections (a stream holds one for its whole
/// answer, and a connection to a node beside it).
pub const DEFAULT_GATEWAY_MAX_CONNECTIONS: usize = 512;

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_body_bytes: 32 << 20,
            connect_timeout: Duration::from_secs(2),
            first_byte_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(300),
            max_attempts: 3,
            breaker_backoff: Duration::from_secs(10),
            fanout_timeout: Duration::from_secs(5),
            keys: ApiKeys::default(),
            http: ServeLimits::new(DEFAULT_GATEWAY_MAX_CONNECTIONS),
        }
    }
}

impl GatewayConfig {
    /// Checks that every value is usable.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(what.to_owned()));
        if self.max_body_bytes == 0 || self.max_body_bytes > 1 << 30 {
            return bad("max body size must be 1 byte to 1 GiB");
        }
        if self.max_attempts == 0 || self.max_attempts > 16 {
            return bad("max attempts must be 1 to 16");
        }
        for (name, d) in [
            ("connect timeout", self.connect_timeout),
            ("first-byte timeout", self.first_byte_timeout),
            ("idle timeout", self.idle_timeout),
            ("fan-out timeout", self.fanout_timeout),
        ] {
            if d.is_zero() || d > Duration::from_secs(24 * 3600) {
                return bad(&format!("{name} must be above 0 and at most a day"));
            }
        }
        if self.breaker_backoff > Duration::from_secs(3600) {
            return bad("breaker backoff must be at most an hour");
        }
        self.http
            .validate()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(())
    }
}

/// The accepted API keys (`Authorization: Bearer KEY`). Never printed: `Debug` shows
/// only how many there are.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: BTreeSet<String>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} key(s))", self.keys.len())
    }
}

impl ApiKeys {
    /// Keys from text: one per line (or comma-separated); blank lines and `#` comments
    /// are ignored.
    pub fn parse(text: &str) -> ApiKeys {
        let keys = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        ApiKeys { keys }
    }

    /// Keys from the text of the key file at `path` (see [`parse`](Self::parse)),
    /// read by the caller (the coordinator reads it with its bounded local-file
    /// reader: a regular file of limited size). The file must hold at least one key.
    pub fn from_file_text(path: &Path, text: &str) -> Result<ApiKeys> {
        let keys = ApiKeys::parse(text);
        if keys.is_empty() {
            return Err(Error::Config(format!(
                "the API key file {} holds no key (one per line)",
                path.display()
            )));
        }
        Ok(keys)
    }

    /// Keys from [`KEYS_ENV`], if set and non-empty.
    pub fn from_env() -> Option<ApiKeys> {
        let keys = ApiKeys::parse(&std::env::var(KEYS_ENV).ok()?);
        (!keys.is_empty()).then_some(keys)
    }

    /// Both sets together.
    pub fn union(mut self, other: ApiKeys) -> ApiKeys {
        self.keys.extend(other.keys);
        self
    }

    /// No key configured: every request is allowed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether `headers` carry an accepted `Authorization: Bearer KEY` (always true
    /// when no key is configured). Compares in time independent of where a key differs.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if self.keys.is_empty() {
            return true;
        }
        let Some(given) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return false;
        };
        self.keys.iter().fold(false, |ok, k| {
            ok | constant_time_eq(k.as_bytes(), given.as_bytes())
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_check_without_leaking() {
        let keys = ApiKeys::parse("# team keys\nalpha\n\n beta , gamma # old\n");
        assert_eq!(keys.len(), 3);
        assert_eq!(format!("{keys:?}"), "ApiKeys(3 key(s))");
        let mut h = HeaderMap::new();
        assert!(!keys.allows(&h));
        h.insert("authorization", "Bearer beta".parse().expect("header"));
        assert!(keys.allows(&h));
        h.insert("authorization", "Bearer betb".parse().expect("header"));
        assert!(!keys.allows(&h));
        h.insert("authorization", "beta".parse().expect("header"));
        assert!(!keys.allows(&h));
        assert!(ApiKeys::default().allows(&HeaderMap::new()));
    }
}
