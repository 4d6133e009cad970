//! Command-line interface. Every `run` setting can come from a flag, an environment
//! variable or the YAML config file (in that order of precedence), then a default.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::LogFormat;
pub(crate) use crate::systemd_unit::UninstallArgs;
use crate::systemd_unit::{binary_help, unit_path_help, UnitArgs};

/// Publishes this node's GPUs and RAM to a SOLLOL-compatible Redis registry.
#[derive(Debug, Parser)]
#[command(name = "vramroute-reporter", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VRAMROUTE_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `vramroute=debug`.
    #[arg(long, global = true, default_value = "info", env = "VRAMROUTE_LOG")]
    pub(crate) log_level: String,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print what this node has (GPUs, RAM), the SOLLOL record it would publish and the
    /// rpc-server command for it. Touches no network.
    Probe(ProbeArgs),
    /// Probe every interval and publish live stats and the capability registration.
    Run(Box<RunArgs>),
    /// Write a hardened systemd unit that runs `vramroute-reporter run` with these flags.
    Install(Box<InstallArgs>),
    /// Remove the systemd unit written by `install`.
    Uninstall(UninstallArgs),
}

/// Where hardware is read from, and how much of it to hold back.
#[derive(Debug, Clone, Args)]
pub(crate) struct HardwareArgs {
    /// Root of the sysfs tree to read (for tests and containers) [default: /sys].
    #[arg(long, env = "VRAMROUTE_SYSFS_ROOT", value_name = "DIR")]
    pub(crate) sysfs_root: Option<PathBuf>,
    /// Root of the procfs tree (`loadavg`, `self/cgroup`) [default: /proc, or
    /// `{sysfs-root}/proc` when --sysfs-root is given].
    #[arg(long, env = "VRAMROUTE_PROC_ROOT", value_name = "DIR")]
    pub(crate) proc_root: Option<PathBuf>,
    /// Do not load NVML (no NVIDIA probing).
    #[arg(long, env = "VRAMROUTE_NO_NVML")]
    pub(crate) no_nvml: bool,
    /// Fraction of each GPU's VRAM and of RAM held back from the offer [default: 0.2].
    #[arg(long, env = "VRAMROUTE_RESERVE", value_name = "FRACTION", value_parser = parse_fraction)]
    pub(crate) reserve: Option<f64>,
    /// ggml backend the node's rpc-server is built with (device names depend on it)
    /// [default: by GPU vendor: cuda, hip, sycl].
    #[arg(long, env = "VRAMROUTE_GGML_BACKEND", value_name = "BACKEND")]
    pub(crate) ggml_backend: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// Print one JSON object instead of the human report.
    #[arg(long)]
    pub(crate) json: bool,
    /// Host the printed rpc-server command binds to.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub(crate) rpc_host: String,
    /// Port the printed rpc-server command listens on.
    #[arg(long, default_value_t = 50052)]
    pub(crate) rpc_port: u16,
    #[command(flatten)]
    pub(crate) hardware: HardwareArgs,
}

/// Settings of `run`. Unset values fall back to the config file, then defaults.
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// YAML config file with any of the settings below (snake_case keys).
    #[arg(long, env = "VRAMROUTE_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Probe and publish once, print the report, and exit (for cron / systemd timers).
    #[arg(long)]
    pub(crate) once: bool,
    /// Redis URL (redis://, rediss://, redis+unix://, redis-cluster://)
    /// [default: redis://localhost:6379].
    #[arg(
        long,
        env = "SOLLOL_REDIS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub(crate) redis_url: Option<String>,
    /// A file holding the Redis password (one line), joined to the URL so that the
    /// password stays out of the URL, the command line and `ps`. `REDIS_PASSWORD` in the
    /// environment does the same when no file is given.
    #[arg(long, value_name = "FILE")]
    pub(crate) redis_password_file: Option<PathBuf>,
    /// Redis host (SOLLOL compatibility; ignored when --redis-url is given).
    #[arg(long, value_name = "HOST")]
    pub(crate) redis_host: Option<String>,
    /// Redis port (SOLLOL compatibility; ignored when --redis-url is given).
    #[arg(long, value_name = "PORT")]
    pub(crate) redis_port: Option<u16>,
    /// Node id in the stats key `sollol:gpu:{node_id}` [default: {advertise-ip}:11434].
    #[arg(long, env = "VRAMROUTE_NODE_ID")]
    pub(crate) node_id: Option<String>,
    /// IP other nodes reach this one at [default: the local address of the route to Redis].
    #[arg(long, env = "VRAMROUTE_ADVERTISE_IP", value_name = "IP")]
    pub(crate) advertise_ip: Option<IpAddr>,
    /// This machine's interface addresses as `NAME=IP,NAME=IP` instead of the system's
    /// (for tests: makes the advertised address deterministic).
    #[arg(long, env = "VRAMROUTE_INTERFACES", hide = true, value_name = "LIST")]
    pub(crate) interfaces: Option<String>,
    /// Port of this node's llama.cpp rpc-server [default: 50052].
    #[arg(long, env = "VRAMROUTE_RPC_PORT")]
    pub(crate) rpc_port: Option<u16>,
    /// Run and supervise this node's llama.cpp rpc-server: `auto` (find ggml-rpc-server,
    /// else rpc-server, on PATH), the path of a binary, or `off` [default: off].
    #[arg(long, env = "VRAMROUTE_RPC_SERVER", value_name = "auto|PATH|off")]
    pub(crate) rpc_server: Option<String>,
    /// This node's Ollama [default: http://127.0.0.1:11434].
    #[arg(long, env = "OLLAMA_URL", value_name = "URL")]
    pub(crate) ollama_url: Option<String>,
    /// Do not ask Ollama anything (llama.cpp-only nodes).
    #[arg(long, env = "VRAMROUTE_NO_OLLAMA")]
    pub(crate) no_ollama: bool,
    /// Seconds between probes [default: 5].
    #[arg(long, env = "VRAMROUTE_INTERVAL", value_name = "SECONDS")]
    pub(crate) interval: Option<f64>,
    /// Expiry of the live stats key, seconds [default: 120].
    #[arg(long, env = "VRAMROUTE_STATS_TTL", value_name = "SECONDS")]
    pub(crate) stats_ttl: Option<u64>,
    /// Expiry of the capability registration, seconds [default: 3600].
    #[arg(long, env = "VRAMROUTE_REGISTRATION_TTL", value_name = "SECONDS")]
    pub(crate) registration_ttl: Option<u64>,
    /// Publish at once when free VRAM of a GPU moves by more than this, MiB [default: 512].
    #[arg(long, env = "VRAMROUTE_CHANGE_THRESHOLD_MB", value_name = "MIB")]
    pub(crate) change_threshold_mb: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "VRAMROUTE_METRICS_ADDR", value_name = "ADDR")]
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// Most connections the metrics server holds at once; when full, the one idle
    /// longest is closed (idle connections also close after 60 s, slow request heads
    /// after 10 s) [default: 64].
    #[arg(long, env = "VRAMROUTE_METRICS_MAX_CONNECTIONS", value_name = "N")]
    pub(crate) metrics_max_connections: Option<usize>,
    /// Seconds a hardware probe may take before the last good values are republished,
    /// marked stale [default: 3].
    #[arg(long, env = "VRAMROUTE_PROBE_TIMEOUT", value_name = "SECONDS")]
    pub(crate) probe_timeout: Option<f64>,
    #[command(flatten)]
    pub(crate) hardware: HardwareArgs,
}

/// `install`: the unit flags both binaries share, then the `run` settings the unit
/// runs with.
#[derive(Debug, Args)]
#[command(
    mut_arg("unit_path", |a| unit_path_help(a, crate::systemd::UNIT_NAME)),
    mut_arg("binary", |a| binary_help(a, "reporter"))
)]
pub(crate) struct InstallArgs {
    #[command(flatten)]
    pub(crate) unit: UnitArgs,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number; give a fraction such as 0.2"))?;
    if !(0.0..1.0).contains(&v) {
        return Err(format!(
            "{v} is outside [0, 1): give a fraction such as 0.2"
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn fractions() {
        assert_eq!(parse_fraction("0.2"), Ok(0.2));
        assert!(parse_fraction("1").is_err());
        assert!(parse_fraction("-0.1").is_err());
        assert!(parse_fraction("NaN").is_err());
        assert!(parse_fraction("lots").is_err());
    }
}
