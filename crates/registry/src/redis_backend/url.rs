//! Turning a URL (or a list of cluster seeds) into a [`RedisRegistry`]: scheme parsing,
//! `redis-cluster://` seed lists, TLS root CAs, `SOLLOL_REDIS_URL`, and the errors for
//! schemes whose cargo feature (`tls`, `cluster`) this build leaves out. Passwords never
//! leave this module unredacted (the secret is kept only to scrub server messages).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

#[cfg(feature = "cluster")]
use redis::cluster::ClusterClientBuilder;
use redis::{IntoConnectionInfo, RedisError};

use super::scripts::Scripts;
use super::state::{Inner, Junk, Reader, RedisRegistry, ScanState, Slot, Target};
use crate::config::{RegistryConfig, DEFAULT_REDIS_URL, REDIS_URL_ENV};
use crate::error::{redact_url, Error, Result};
use crate::registry::Registry;

impl RedisRegistry {
    /// Parses `url` and connects now; fails with a clear error when the server is
    /// unreachable, refuses the credentials or does not answer in time.
    ///
    /// Accepted: `redis://[user[:password]@]host[:port][/db]`, `rediss://…` (TLS; add
    /// `#insecure` to skip verification, or set [`RegistryConfig::tls_root_ca_pem`]),
    /// `redis+unix:///path?db=N&user=U&pass=P`, `unix:///path`, and
    /// `redis-cluster://[user:password@]host:port,host:port,…` (or `rediss-cluster://`).
    pub async fn connect(url: &str, config: RegistryConfig) -> Result<Self> {
        let reg = Self::new_lazy(url, config)?;
        reg.ping().await?;
        Ok(reg)
    }

    /// Connects to a Redis Cluster given its seed node URLs (`redis://…` each). Needs
    /// the `cluster` feature ([`Error::FeatureDisabled`] without it).
    pub async fn connect_cluster(seeds: &[&str], config: RegistryConfig) -> Result<Self> {
        let reg = Self::build(redact_seeds(seeds), cluster_target(seeds, &config)?, config)?;
        reg.ping().await?;
        Ok(reg)
    }

    /// Parses `url` without connecting: every call connects on demand (with capped
    /// exponential backoff between failed attempts) and fails cleanly while Redis is down.
    pub fn new_lazy(url: &str, config: RegistryConfig) -> Result<Self> {
        let target = if let Some((tls, rest)) = url
            .strip_prefix("redis-cluster://")
            .map(|r| (false, r))
            .or_else(|| url.strip_prefix("rediss-cluster://").map(|r| (true, r)))
        {
            let (userinfo, hosts) = match rest.rfind('@') {
                Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
                None => (None, rest),
            };
            let hosts = hosts.split(['/', '?', '#']).next().unwrap_or_default();
            let scheme = if tls { "rediss" } else { "redis" };
            let seeds: Vec<String> = hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| match userinfo {
                    Some(u) => format!("{scheme}://{u}@{h}"),
                    None => format!("{scheme}://{h}"),
                })
                .collect();
            if seeds.is_empty() {
                return Err(Error::InvalidUrl {
                    url: redact_url(url),
                    reason: "no seed nodes".to_owned(),
                });
            }
            let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
            cluster_target(&seeds, &config)?
        } else {
            Target::Single(client(url, &config)?)
        };
        Self::build(url.to_owned(), target, config)
    }

    /// A lazy registry for `$SOLLOL_REDIS_URL`, or `redis://localhost:6379` when unset.
    pub fn from_env(config: RegistryConfig) -> Result<Self> {
        let url = std::env::var(REDIS_URL_ENV).unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
        Self::new_lazy(&url, config)
    }

    pub(super) fn build(url: String, target: Target, config: RegistryConfig) -> Result<Self> {
        let (secret, db) = match &target {
            Target::Single(c) => {
                let s = c.get_connection_info().redis_settings();
                (s.password().map(str::to_owned), s.db())
            }
            #[cfg(feature = "cluster")]
            Target::Cluster { seeds, .. } => (
                seeds.first().and_then(|c| {
                    c.get_connection_info()
                        .redis_settings()
                        .password()
                        .map(str::to_owned)
                }),
                0,
            ),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                target,
                url: redact_url(&url),
                secret,
                db,
                slot: tokio::sync::Mutex::new(Slot::default()),
                scan: Mutex::new(ScanState::default()),
                skipped: AtomicU64::new(0),
                scripts: Scripts::new(),
                warned: Mutex::new(HashSet::new()),
                wrong_type: Mutex::new(HashSet::new()),
                junk: Mutex::new(Junk::default()),
                no_scripts: AtomicBool::new(false),
            }),
            reader: Arc::new(Reader::default()),
        })
    }
}

/// The seed URLs, each redacted (`redact_url` of the joined list would miss the
/// passwords after the first seed's), joined with commas.
fn redact_seeds(seeds: &[&str]) -> String {
    seeds
        .iter()
        .map(|s| redact_url(s))
        .collect::<Vec<_>>()
        .join(",")
}

/// A client for one server URL (TLS with the configured root CA when given).
fn client(url: &str, config: &RegistryConfig) -> Result<redis::Client> {
    if cfg!(not(feature = "tls")) && url.starts_with("rediss:") {
        return Err(Error::FeatureDisabled {
            url: redact_url(url),
            what: "TLS (rediss://)",
            feature: "tls",
        });
    }
    let invalid = |e: RedisError| Error::InvalidUrl {
        url: redact_url(url),
        reason: e.to_string(),
    };
    let info = url.into_connection_info().map_err(invalid)?;
    #[cfg(feature = "tls")]
    if let (Some(pem), true) = (&config.tls_root_ca_pem, url.starts_with("rediss://")) {
        return redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        )
        .map_err(invalid);
    }
    #[cfg(not(feature = "tls"))]
    let _ = config;
    redis::Client::open(info).map_err(invalid)
}

/// The cluster client for `seeds` (each checked as [`client`] checks a URL).
#[cfg(feature = "cluster")]
fn cluster_target(seeds: &[&str], config: &RegistryConfig) -> Result<Target> {
    let clients = seeds
        .iter()
        .map(|s| client(s, config))
        .collect::<Result<Vec<_>>>()?;
    let infos: Vec<redis::ConnectionInfo> = clients
        .iter()
        .map(|c| c.get_connection_info().clone())
        .collect();
    let builder = ClusterClientBuilder::new(infos)
        .connection_timeout(config.command_timeout)
        .response_timeout(config.command_timeout)
        .retries(3)
        .min_retry_wait(config.reconnect_min_delay.as_millis() as u64)
        .max_retry_wait(config.reconnect_max_delay.as_millis() as u64);
    // Custom root CAs need the redis crate's rustls backend in cluster mode; with
    // native-tls, cluster TLS verifies against the system trust store.
    let client = builder.build().map_err(|e| Error::InvalidUrl {
        url: redact_seeds(seeds),
        reason: e.to_string(),
    })?;
    Ok(Target::Cluster {
        client: Box::new(client),
        seeds: clients,
    })
}

/// Without the `cluster` feature: the error that says to enable it.
#[cfg(not(feature = "cluster"))]
fn cluster_target(seeds: &[&str], _config: &RegistryConfig) -> Result<Target> {
    Err(Error::FeatureDisabled {
        url: redact_seeds(seeds),
        what: "Redis Cluster",
        feature: "cluster",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok` with the feature, the error naming the feature without it.
    fn check(result: Result<RedisRegistry>, enabled: bool, feature: &str) {
        match result {
            Ok(_) => assert!(enabled, "built without `{feature}` but accepted"),
            Err(e) => {
                assert!(!enabled, "built with `{feature}` but refused: {e}");
                assert!(
                    matches!(&e, Error::FeatureDisabled { feature: f, .. } if *f == feature),
                    "{e:?}"
                );
                let msg = e.to_string();
                assert!(msg.contains(&format!("`{feature}` cargo feature")), "{msg}");
                assert!(!msg.contains("s3cret"), "{msg}");
                assert!(!msg.contains("--"), "names a CLI flag: {msg}");
            }
        }
    }

    #[test]
    fn cluster_urls_need_the_cluster_feature() {
        let cfg = RegistryConfig::default;
        let enabled = cfg!(feature = "cluster");
        check(
            RedisRegistry::new_lazy(
                "redis-cluster://:s3cret@127.0.0.1:7000,127.0.0.1:7001",
                cfg(),
            ),
            enabled,
            "cluster",
        );
    }

    #[test]
    fn tls_urls_need_the_tls_feature() {
        let enabled = cfg!(feature = "tls");
        check(
            RedisRegistry::new_lazy(
                "rediss://:s3cret@127.0.0.1:6380/0",
                RegistryConfig::default(),
            ),
            enabled,
            "tls",
        );
    }

    #[test]
    fn every_seed_is_redacted() {
        assert_eq!(
            redact_seeds(&[
                "redis://:s3cret@10.0.0.1:7000",
                "redis://u:s3cret@10.0.0.2:7000"
            ]),
            "redis://:***@10.0.0.1:7000,redis://u:***@10.0.0.2:7000"
        );
    }
}
