//! Resolves `run` settings: flag > environment > config file > default, then checks them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vramroute_alloc::{GgmlBackend, ReserveConfig};
use vramroute_probe::{Prober, ProberConfig};

use crate::advertise;
use crate::cli::{HardwareArgs, RunArgs};
use crate::config_file;
use crate::UsageError;

/// The largest `change_threshold_mb` accepted (1 TiB: more than any GPU holds).
const MAX_CHANGE_THRESHOLD_MIB: u64 = 1 << 20;

/// The config file: the same settings as the flags, in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    redis_url: Option<String>,
    redis_host: Option<String>,
    redis_port: Option<u16>,
    node_id: Option<String>,
    advertise_ip: Option<IpAddr>,
    rpc_port: Option<u16>,
    rpc_server: Option<String>,
    ollama_url: Option<String>,
    no_ollama: Option<bool>,
    interval: Option<f64>,
    stats_ttl: Option<u64>,
    registration_ttl: Option<u64>,
    change_threshold_mb: Option<u64>,
    metrics_addr: Option<SocketAddr>,
    metrics_max_connections: Option<usize>,
    probe_timeout: Option<f64>,
    sysfs_root: Option<PathBuf>,
    proc_root: Option<PathBuf>,
    no_nvml: Option<bool>,
    reserve: Option<f64>,
    ggml_backend: Option<String>,
}

/// Everything `run` needs, checked.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) redis_url: String,
    pub(crate) node_id: String,
    pub(crate) advertise_ip: IpAddr,
    pub(crate) rpc_port: u16,
    pub(crate) rpc_server: RpcServerMode,
    pub(crate) ollama_url: Option<String>,
    pub(crate) interval: Duration,
    pub(crate) stats_ttl: Duration,
    pub(crate) registration_ttl: Duration,
    pub(crate) change_threshold_mib: u64,
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) metrics_max_connections: usize,
    pub(crate) probe_timeout: Duration,
    pub(crate) hardware: Hardware,
}

/// Default `--metrics-max-connections`: a node has few scrapers.
pub(crate) const DEFAULT_METRICS_MAX_CONNECTIONS: usize = 64;
/// Default `--probe-timeout`, seconds.
pub(crate) const DEFAULT_PROBE_TIMEOUT_S: f64 = 3.0;

/// Whether and which llama.cpp rpc-server the reporter runs and supervises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RpcServerMode {
    /// Run none.
    Off,
    /// Run `ggml-rpc-server`, else `rpc-server`, whichever is found on `PATH`.
    Auto,
    /// Run this binary.
    Path(PathBuf),
}

impl RpcServerMode {
    /// `auto`, `off` (case-insensitive), or a path (a bare name is looked up on `PATH`).
    pub(crate) fn parse(value: &str) -> Result<RpcServerMode, UsageError> {
        let v = value.trim();
        if v.is_empty() {
            return Err(UsageError(
                "--rpc-server \"\": give auto, off or the path of the rpc-server binary".into(),
            ));
        }
        Ok(match v.to_ascii_lowercase().as_str() {
            "off" => RpcServerMode::Off,
            "auto" => RpcServerMode::Auto,
            _ => RpcServerMode::Path(PathBuf::from(v)),
        })
    }
}

/// Hardware settings shared by `probe` and `run`.
#[derive(Debug, Clone)]
pub(crate) struct Hardware {
    pub(crate) sysfs_root: PathBuf,
    pub(crate) proc_root: PathBuf,
    pub(crate) nvml: bool,
    pub(crate) reserve: ReserveConfig,
    pub(crate) backend: Option<GgmlBackend>,
}

impl Hardware {
    pub(crate) fn from_args(args: &HardwareArgs) -> anyhow::Result<Hardware> {
        let sysfs_root = args
            .sysfs_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/sys"));
        check_dir(&sysfs_root)?;
        let proc_root = args
            .proc_root
            .clone()
            .unwrap_or_else(|| vramroute_probe::default_proc_root(&sysfs_root));
        let mut reserve = ReserveConfig::default();
        if let Some(f) = args.reserve {
            reserve.gpu_fraction = f;
            reserve.ram_fraction = f;
        }
        reserve
            .validate()
            .map_err(|e| UsageError(format!("--reserve: {e}")))?;
        let backend = args
            .ggml_backend
            .as_deref()
            .map(|b| {
                b.parse::<GgmlBackend>()
                    .map_err(|e| UsageError(format!("--ggml-backend: {e}")))
            })
            .transpose()?;
        Ok(Hardware {
            sysfs_root,
            proc_root,
            nvml: !args.no_nvml,
            reserve,
            backend,
        })
    }

    pub(crate) fn prober(&self) -> Prober {
        let mut config = ProberConfig::with_sysfs_root(self.sysfs_root.clone())
            .with_proc_root(self.proc_root.clone());
        config.nvml = self.nvml;
        Prober::new(config)
    }
}

fn check_dir(path: &Path) -> anyhow::Result<()> {
    vramroute_probe::local_file::check_local_dir(path)
        .map_err(|e| UsageError(format!("--sysfs-root: {e}")).into())
}

impl Settings {
    pub(crate) fn resolve(args: RunArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => config_file::load::<FileConfig>(path).map_err(UsageError)?,
            None => FileConfig::default(),
        };
        let redis_url = match args.redis_url.or(file.redis_url) {
            Some(url) => url,
            None => {
                let host = args
                    .redis_host
                    .or(file.redis_host)
                    .unwrap_or_else(|| "localhost".into());
                let port = args.redis_port.or(file.redis_port).unwrap_or(6379);
                format!("redis://{host}:{port}")
            }
        };
        let redis_url = crate::redis_password::join_redis_password(
            redis_url,
            args.redis_password_file.as_deref(),
        )
        .map_err(UsageError)?;
        let hardware = Hardware::from_args(&HardwareArgs {
            sysfs_root: args.hardware.sysfs_root.or(file.sysfs_root),
            proc_root: args.hardware.proc_root.or(file.proc_root),
            no_nvml: args.hardware.no_nvml || file.no_nvml.unwrap_or(false),
            reserve: args.hardware.reserve.or(file.reserve),
            ggml_backend: args.hardware.ggml_backend.or(file.ggml_backend),
        })?;
        let advertise_ip = match args.advertise_ip.or(file.advertise_ip) {
            Some(ip) => ip,
            None => {
                let interfaces = advertise::interfaces(args.interfaces.as_deref())?;
                let chosen = advertise::advertise_ip(&redis_url, &interfaces);
                advertise::log(&chosen);
                chosen.ip()
            }
        };
        let node_id = args
            .node_id
            .or(file.node_id)
            .unwrap_or_else(|| format!("{}:11434", host_literal(advertise_ip)));
        if node_id.is_empty()
            || node_id.len() > 255
            || node_id.contains(char::is_whitespace)
            || node_id.contains(char::is_control)
        {
            return Err(UsageError(format!(
                "--node-id {node_id:?}: must be 1-255 characters without spaces or control characters"
            ))
            .into());
        }
        let no_ollama = args.no_ollama || file.no_ollama.unwrap_or(false);
        let ollama_url = if no_ollama {
            None
        } else {
            Some(
                args.ollama_url
                    .or(file.ollama_url)
                    .unwrap_or_else(|| "http://127.0.0.1:11434".into()),
            )
        };
        let interval = args.interval.or(file.interval).unwrap_or(5.0);
        if !(interval.is_finite() && (0.05..=3600.0).contains(&interval)) {
            return Err(UsageError(format!(
                "--interval {interval}: give seconds between 0.05 and 3600"
            ))
            .into());
        }
        let rpc_server = match args.rpc_server.or(file.rpc_server) {
            Some(v) => RpcServerMode::parse(&v)?,
            None => RpcServerMode::Off,
        };
        let stats_ttl = args.stats_ttl.or(file.stats_ttl).unwrap_or(120);
        let registration_ttl = args
            .registration_ttl
            .or(file.registration_ttl)
            .unwrap_or(3600);
        for (name, ttl) in [
            ("--stats-ttl", stats_ttl),
            ("--registration-ttl", registration_ttl),
        ] {
            if !(1..=86_400 * 7).contains(&ttl) {
                return Err(
                    UsageError(format!("{name} {ttl}: give seconds between 1 and 604800")).into(),
                );
            }
        }
        if (stats_ttl as f64) < interval * 2.0 {
            tracing::warn!(
                stats_ttl,
                interval,
                "--stats-ttl is under two intervals: the node will flicker out of the registry between reports"
            );
        }
        let metrics_max_connections = args
            .metrics_max_connections
            .or(file.metrics_max_connections)
            .unwrap_or(DEFAULT_METRICS_MAX_CONNECTIONS);
        if !(1..=vramroute_serve::MAX_CONNECTIONS_LIMIT).contains(&metrics_max_connections) {
            return Err(UsageError(format!(
                "--metrics-max-connections {metrics_max_connections}: give 1 to {}",
                vramroute_serve::MAX_CONNECTIONS_LIMIT
            ))
            .into());
        }
        let probe_timeout = args
            .probe_timeout
            .or(file.probe_timeout)
            .unwrap_or(DEFAULT_PROBE_TIMEOUT_S);
        if !(probe_timeout.is_finite() && (0.05..=600.0).contains(&probe_timeout)) {
            return Err(UsageError(format!(
                "--probe-timeout {probe_timeout}: give seconds between 0.05 and 600"
            ))
            .into());
        }
        let change_threshold_mib = args
            .change_threshold_mb
            .or(file.change_threshold_mb)
            .unwrap_or(512);
        if change_threshold_mib > MAX_CHANGE_THRESHOLD_MIB {
            return Err(UsageError(format!(
                "--change-threshold-mb {change_threshold_mib}: give MiB from 0 to {MAX_CHANGE_THRESHOLD_MIB}"
            ))
            .into());
        }
        let rpc_port = args.rpc_port.or(file.rpc_port).unwrap_or(50052);
        if rpc_port == 0 {
            return Err(UsageError(
                "--rpc-port 0: give the port rpc-server listens on (1-65535)".into(),
            )
            .into());
        }
        Ok(Settings {
            redis_url,
            node_id,
            advertise_ip,
            rpc_port,
            rpc_server,
            ollama_url,
            interval: Duration::from_secs_f64(interval),
            stats_ttl: Duration::from_secs(stats_ttl),
            registration_ttl: Duration::from_secs(registration_ttl),
            change_threshold_mib,
            metrics_addr: args.metrics_addr.or(file.metrics_addr),
            metrics_max_connections,
            probe_timeout: Duration::from_secs_f64(probe_timeout),
            hardware,
        })
    }

    /// The metrics server's connection limits.
    pub(crate) fn metrics_limits(&self) -> vramroute_serve::ServeLimits {
        vramroute_serve::ServeLimits::new(self.metrics_max_connections)
    }
}

/// `[::1]` style for IPv6 in `host:port` strings.
pub(crate) fn host_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The local address of the route towards the Redis host: a UDP `connect` picks the
/// route and sends nothing. Unix sockets and unresolvable hosts give 127.0.0.1.
pub(crate) fn route_source_ip(redis_url: &str) -> IpAddr {
    let fallback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let Some(host_port) = redis_host_port(redis_url) else {
        return fallback;
    };
    let Ok(mut addrs) = host_port.to_socket_addrs() else {
        return fallback;
    };
    let Some(target) = addrs.next() else {
        return fallback;
    };
    let bind: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect(target)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(fallback)
}

/// `host:port` of a `redis://` / `rediss://` URL (the first seed of a cluster URL).
fn redis_host_port(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .or_else(|| url.strip_prefix("redis-cluster://"))
        .or_else(|| url.strip_prefix("rediss-cluster://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let first = authority.split(',').next()?;
    if first.is_empty() {
        return None;
    }
    if first.starts_with('[') {
        return Some(if first.contains("]:") {
            first.to_string()
        } else {
            format!("{first}:6379")
        });
    }
    Some(if first.contains(':') {
        first.to_string()
    } else {
        format!("{first}:6379")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_host_port_forms() {
        assert_eq!(
            redis_host_port("redis://localhost").as_deref(),
            Some("localhost:6379")
        );
        assert_eq!(
            redis_host_port("redis://:pw@10.0.0.5:7000/2").as_deref(),
            Some("10.0.0.5:7000")
        );
        assert_eq!(
            redis_host_port("rediss://u:p@h:6380").as_deref(),
            Some("h:6380")
        );
        assert_eq!(
            redis_host_port("redis-cluster://a:1,b:2").as_deref(),
            Some("a:1")
        );
        assert_eq!(
            redis_host_port("redis://[::1]:7000").as_deref(),
            Some("[::1]:7000")
        );
        assert_eq!(redis_host_port("redis+unix:///tmp/r.sock"), None);
    }

    #[test]
    fn rpc_server_modes() {
        assert_eq!(RpcServerMode::parse("off").unwrap(), RpcServerMode::Off);
        assert_eq!(RpcServerMode::parse("AUTO").unwrap(), RpcServerMode::Auto);
        assert_eq!(
            RpcServerMode::parse("/opt/llama/bin/ggml-rpc-server").unwrap(),
            RpcServerMode::Path(PathBuf::from("/opt/llama/bin/ggml-rpc-server"))
        );
        assert!(RpcServerMode::parse(" ").is_err());
    }

    #[test]
    fn loopback_redis_gives_loopback_ip() {
        assert_eq!(
            route_source_ip("redis://127.0.0.1:6399"),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            route_source_ip("redis+unix:///tmp/x.sock"),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
    }
}
