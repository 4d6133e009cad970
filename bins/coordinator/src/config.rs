//! The coordinator's YAML config: FlockParser's `gpu_router_config.yaml` keys plus ours.
//!
//! ```yaml
//! nodes: ["http://10.0.0.1:11434"]     # Ollama URLs merged into the view
//! priority_models: [llama3.1:8b]        # loaded by optimize
//! check_interval: 300                   # seconds between optimize passes (daemon)
//! vram_safety_margin: 0.8               # usable = total x margin
//! auto_optimize: false                  # run optimize in the daemon
//! log_level: info
//! redis_url: redis://localhost:6379     # ours
//! policy: sollol                        # ours: sollol | binpack | spread, or a map
//!                                       #   {kind: sollol, good_above_mib: 4096, ...}
//! listen: 127.0.0.1:8787                # ours: HTTP API address
//! stale_after: 30                       # ours: seconds before a report is stale
//! ollama_timeout: 3                     # ours: seconds per Ollama request (ps/tags/show)
//! load_timeout: 120                     # ours: seconds allowed for one model load
//! gateway_listen: 127.0.0.1:11435       # ours: the gateway's address, or `off`
//! gateway_keys_file: /etc/vramroute/keys  # ours: API keys, one per line (never inline)
//! gateway_first_byte_timeout: 300       # ours: seconds to a node's first byte (loads!)
//! gateway_idle_timeout: 300             # ours: longest silence mid-stream, seconds
//! gateway_max_body_mb: 32               # ours: largest request body, MiB
//! gateway_max_attempts: 3               # ours: nodes tried per request (failover)
//! gateway_connect_timeout: 2            # ours: seconds to connect to a node
//! gateway_breaker_backoff: 10           # ours: seconds a failed node is kept out
//! reservation_hold: 30                  # ours: seconds a cold load's VRAM stays reserved
//! admin_requires_key: false             # ours: the API's /v1/* needs a gateway key too
//! http_header_timeout: 10               # ours: seconds to send a request head (API, gateway)
//! http_idle_timeout: 60                 # ours: seconds a kept-alive connection may idle
//! max_connections: 256                  # ours: the API's connection cap
//! gateway_max_connections: 512          # ours: the gateway's connection cap
//! model_sizes: {my-finetune:7b: 5200}   # ours: custom model sizes, MiB (beat SOLLOL's table)
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Deserialize;
use vramroute_router::Policy;

use crate::config_file;

/// Parsed config; every key optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) nodes: Vec<String>,
    pub(crate) priority_models: Vec<String>,
    pub(crate) check_interval: Option<f64>,
    pub(crate) vram_safety_margin: Option<f64>,
    pub(crate) auto_optimize: bool,
    pub(crate) log_level: Option<String>,
    pub(crate) redis_url: Option<String>,
    pub(crate) policy: Option<Policy>,
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) stale_after: Option<f64>,
    pub(crate) ollama_timeout: Option<f64>,
    pub(crate) load_timeout: Option<f64>,
    pub(crate) gateway_listen: Option<String>,
    pub(crate) gateway_keys_file: Option<PathBuf>,
    pub(crate) gateway_first_byte_timeout: Option<f64>,
    pub(crate) gateway_idle_timeout: Option<f64>,
    pub(crate) gateway_max_body_mb: Option<u64>,
    pub(crate) gateway_max_attempts: Option<usize>,
    pub(crate) gateway_connect_timeout: Option<f64>,
    pub(crate) gateway_breaker_backoff: Option<f64>,
    /// Custom model sizes, MiB (FlockParser's "Advanced" custom sizes), set once.
    pub(crate) model_sizes: BTreeMap<String, u64>,
    pub(crate) reservation_hold: Option<f64>,
    pub(crate) admin_requires_key: bool,
    pub(crate) http_header_timeout: Option<f64>,
    pub(crate) http_idle_timeout: Option<f64>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) gateway_max_connections: Option<usize>,
}

/// Defaults of the values a config may leave out.
pub(crate) const DEFAULT_CHECK_INTERVAL_S: f64 = 300.0;
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
pub(crate) const DEFAULT_STALE_AFTER_S: f64 = 30.0;
pub(crate) const DEFAULT_OLLAMA_TIMEOUT_S: f64 = 3.0;
pub(crate) const DEFAULT_LOAD_TIMEOUT_S: f64 = 120.0;
pub(crate) const DEFAULT_GATEWAY_LISTEN: &str = "127.0.0.1:11435";
/// The longest duration any key accepts: a week.
const MAX_DURATION_S: f64 = 604_800.0;
/// The shortest timeout, hold or backoff accepted (intervals and staleness: 1 s).
const MIN_TIMEOUT_S: f64 = 0.01;

impl Config {
    /// Read and check a config file (through the one bounded reader: a regular file of
    /// at most [`config_file::MAX_CONFIG_BYTES`]).
    pub(crate) fn load(path: &Path) -> anyhow::Result<Config> {
        let config: Config = config_file::load(path).map_err(anyhow::Error::msg)?;
        config
            .validate()
            .with_context(|| format!("bad config {}", path.display()))?;
        Ok(config)
    }

    #[cfg(test)]
    pub(crate) fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = config_file::parse(text).map_err(anyhow::Error::msg)?;
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        vramroute_cluster::check_model_sizes(&self.model_sizes)
            .map_err(|e| anyhow::anyhow!("model_sizes: {e}"))?;
        if let Some(m) = self.vram_safety_margin {
            if !(m > 0.0 && m <= 1.0) {
                bail!("vram_safety_margin must be in (0, 1], got {m}");
            }
        }
        // Every duration is bounded below as well as above: a positive but tiny value
        // (1e-300) becomes a zero `Duration`, which panics a timer or spins a loop.
        for (name, v, min_s) in [
            ("check_interval", self.check_interval, 1.0),
            ("stale_after", self.stale_after, 1.0),
            ("ollama_timeout", self.ollama_timeout, MIN_TIMEOUT_S),
            ("load_timeout", self.load_timeout, MIN_TIMEOUT_S),
            (
                "gateway_first_byte_timeout",
                self.gateway_first_byte_timeout,
                MIN_TIMEOUT_S,
            ),
            (
                "gateway_idle_timeout",
                self.gateway_idle_timeout,
                MIN_TIMEOUT_S,
            ),
            (
                "gateway_connect_timeout",
                self.gateway_connect_timeout,
                MIN_TIMEOUT_S,
            ),
            (
                "gateway_breaker_backoff",
                self.gateway_breaker_backoff,
                MIN_TIMEOUT_S,
            ),
            ("reservation_hold", self.reservation_hold, MIN_TIMEOUT_S),
            (
                "http_header_timeout",
                self.http_header_timeout,
                MIN_TIMEOUT_S,
            ),
            ("http_idle_timeout", self.http_idle_timeout, MIN_TIMEOUT_S),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && (min_s..=MAX_DURATION_S).contains(&v)) {
                    bail!(
                        "{name} must be a number of seconds from {min_s} to {MAX_DURATION_S}, got {v:?}"
                    );
                }
            }
        }
        if let Some(policy) = &self.policy {
            policy
                .validate()
                .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
        }
        if let Some(mb) = self.gateway_max_body_mb {
            if !(1..=1024).contains(&mb) {
                bail!("gateway_max_body_mb must be 1 to 1024, got {mb}");
            }
        }
        if let Some(n) = self.gateway_max_attempts {
            if !(1..=16).contains(&n) {
                bail!("gateway_max_attempts must be 1 to 16, got {n}");
            }
        }
        for (name, v) in [
            ("max_connections", self.max_connections),
            ("gateway_max_connections", self.gateway_max_connections),
        ] {
            if let Some(n) = v {
                if !(1..=vramroute_serve::MAX_CONNECTIONS_LIMIT).contains(&n) {
                    bail!(
                        "{name} must be 1 to {}, got {n}",
                        vramroute_serve::MAX_CONNECTIONS_LIMIT
                    );
                }
            }
        }
        if let Some(l) = &self.gateway_listen {
            gateway_addr(l).map_err(|e| anyhow::anyhow!("gateway_listen: {e}"))?;
        }
        for node in &self.nodes {
            if !node.starts_with("http://") {
                bail!("nodes: {node:?} is not an http:// Ollama URL");
            }
        }
        Ok(())
    }

    pub(crate) fn check_interval_s(&self) -> f64 {
        self.check_interval.unwrap_or(DEFAULT_CHECK_INTERVAL_S)
    }

    pub(crate) fn stale_after_s(&self) -> f64 {
        self.stale_after.unwrap_or(DEFAULT_STALE_AFTER_S)
    }

    pub(crate) fn vram_safety_margin(&self) -> f64 {
        self.vram_safety_margin.unwrap_or(0.8)
    }

    pub(crate) fn ollama_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.ollama_timeout.unwrap_or(DEFAULT_OLLAMA_TIMEOUT_S))
    }

    pub(crate) fn load_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.load_timeout.unwrap_or(DEFAULT_LOAD_TIMEOUT_S))
    }

    /// Limits of the HTTP API's connections (`cap`: the API's or the gateway's).
    fn http_limits(&self, cap: usize) -> vramroute_serve::ServeLimits {
        let mut l = vramroute_serve::ServeLimits::new(cap);
        if let Some(s) = self.http_header_timeout {
            l = l.with_header_read_timeout(Duration::from_secs_f64(s));
        }
        if let Some(s) = self.http_idle_timeout {
            l = l.with_idle_timeout(Duration::from_secs_f64(s));
        }
        l
    }

    /// Limits of the HTTP API's connections.
    pub(crate) fn api_limits(&self) -> vramroute_serve::ServeLimits {
        self.http_limits(
            self.max_connections
                .unwrap_or(vramroute_serve::DEFAULT_MAX_CONNECTIONS),
        )
    }

    /// The gateway's settings (keys are read by the daemon from the file and env).
    pub(crate) fn gateway(&self) -> vramroute_gateway::GatewayConfig {
        let mut g = vramroute_gateway::GatewayConfig::default();
        if let Some(s) = self.gateway_first_byte_timeout {
            g.first_byte_timeout = Duration::from_secs_f64(s);
        }
        if let Some(s) = self.gateway_idle_timeout {
            g.idle_timeout = Duration::from_secs_f64(s);
        }
        if let Some(mb) = self.gateway_max_body_mb {
            g.max_body_bytes = usize::try_from(mb << 20).unwrap_or(usize::MAX);
        }
        if let Some(n) = self.gateway_max_attempts {
            g.max_attempts = n;
        }
        if let Some(s) = self.gateway_connect_timeout {
            g.connect_timeout = Duration::from_secs_f64(s);
        }
        if let Some(s) = self.gateway_breaker_backoff {
            g.breaker_backoff = Duration::from_secs_f64(s);
        }
        g.http = self.http_limits(
            self.gateway_max_connections
                .unwrap_or(vramroute_gateway::DEFAULT_GATEWAY_MAX_CONNECTIONS),
        );
        g
    }
}

/// A gateway address: `off` (no gateway) is `None`.
pub(crate) fn gateway_addr(text: &str) -> anyhow::Result<Option<SocketAddr>> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    t.parse()
        .map(Some)
        .map_err(|_| anyhow::anyhow!("{t:?} is not an address like 127.0.0.1:11435, or `off`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flockparser_config_is_accepted() {
        let c = Config::parse(
            "nodes:\n  - http://10.0.0.1:11434\n  - http://10.0.0.2:11434\n\
             priority_models: [llama3.1:8b, nomic-embed-text]\ncheck_interval: 300\n\
             vram_safety_margin: 0.8\nauto_optimize: true\nlog_level: INFO\n",
        )
        .unwrap();
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.priority_models, ["llama3.1:8b", "nomic-embed-text"]);
        assert_eq!(c.check_interval_s(), 300.0);
        assert_eq!(c.vram_safety_margin, Some(0.8));
        assert!(c.auto_optimize);
    }

    #[test]
    fn bad_values_are_refused_with_the_key_named() {
        for (text, key) in [
            ("vram_safety_margin: 1.5", "vram_safety_margin"),
            ("check_interval: -1", "check_interval"),
            ("nodes: [ftp://x]", "nodes"),
            ("nodez: []", "nodez"),
            ("check_interval: [1]", "check_interval"),
            ("max_connections: 0", "max_connections"),
            ("http_idle_timeout: 0", "http_idle_timeout"),
            ("check_interval: 1e-300", "check_interval"),
            ("check_interval: .nan", "check_interval"),
            ("check_interval: .inf", "check_interval"),
            ("check_interval: 0.5", "check_interval"),
            ("stale_after: 1e-300", "stale_after"),
            ("ollama_timeout: 0.000001", "ollama_timeout"),
            ("load_timeout: 1e9", "load_timeout"),
            (
                "gateway_first_byte_timeout: 1e-300",
                "gateway_first_byte_timeout",
            ),
            ("gateway_idle_timeout: -0.0", "gateway_idle_timeout"),
            ("gateway_connect_timeout: 1e-300", "gateway_connect_timeout"),
            ("gateway_breaker_backoff: .nan", "gateway_breaker_backoff"),
            ("reservation_hold: 1e-300", "reservation_hold"),
            ("gateway_max_body_mb: 0", "gateway_max_body_mb"),
            ("gateway_max_attempts: 100", "gateway_max_attempts"),
            ("vram_safety_margin: .nan", "vram_safety_margin"),
            ("policy: {kind: sollol, warm_multiplier: .nan}", "policy"),
            (
                "nodes: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]",
                "nested deeper than 64",
            ),
        ] {
            let err = format!("{:#}", Config::parse(text).unwrap_err());
            assert!(err.contains(key), "{text}: {err}");
        }
        assert!(Config::parse("").unwrap().nodes.is_empty());
    }
}

/// Property tests: config text from anywhere (arbitrary, and YAML made of the real keys
/// with hostile values and nesting) never panics, and whatever is accepted yields
/// durations and settings that can be used without panicking.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    const KEYS: &[&str] = &[
        "check_interval",
        "stale_after",
        "ollama_timeout",
        "load_timeout",
        "gateway_first_byte_timeout",
        "gateway_idle_timeout",
        "gateway_connect_timeout",
        "gateway_breaker_backoff",
        "reservation_hold",
        "vram_safety_margin",
        "gateway_max_body_mb",
        "gateway_max_attempts",
        "nodes",
        "priority_models",
        "policy",
        "gateway_listen",
        "listen",
    ];

    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            any::<f64>().prop_map(|v| format!("{v:e}")),
            any::<i64>().prop_map(|v| v.to_string()),
            Just(".nan".to_owned()),
            Just("-.inf".to_owned()),
            Just("1e-300".to_owned()),
            Just("off".to_owned()),
            "[a-z0-9:./ ]{0,16}",
            any::<String>().prop_map(|s| format!("{s:?}")),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(", "))),
                proptest::collection::vec(("[a-z_]{1,12}", inner), 0..4).prop_map(|kv| format!(
                    "{{{}}}",
                    kv.into_iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ]
        })
    }

    fn document() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            proptest::collection::vec((proptest::sample::select(KEYS), value()), 0..8)
                .prop_map(|kv| { kv.into_iter().map(|(k, v)| format!("{k}: {v}\n")).collect() }),
            (
                1usize..5000,
                proptest::sample::select(&["[", "{a: ", "- "][..])
            )
                .prop_map(|(n, open)| format!("nodes: {}", open.repeat(n))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_config_text_is_refused_or_usable(text in document()) {
            if let Ok(c) = Config::parse(&text) {
                // Every duration the daemon derives must be constructible and non-zero.
                prop_assert!(c.check_interval_s() >= 1.0);
                prop_assert!(std::time::Duration::from_secs_f64(c.check_interval_s()) > std::time::Duration::ZERO);
                prop_assert!(c.stale_after_s() >= 1.0);
                prop_assert!(c.ollama_timeout() > std::time::Duration::ZERO);
                prop_assert!(c.load_timeout() > std::time::Duration::ZERO);
                let g = c.gateway();
                for d in [g.first_byte_timeout, g.idle_timeout, g.connect_timeout, g.breaker_backoff] {
                    prop_assert!(d > std::time::Duration::ZERO);
                }
                let m = c.vram_safety_margin();
                prop_assert!(m > 0.0 && m <= 1.0);
            }
        }
    }
}
