//! Command-line interface of the coordinator.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::LogFormat;
pub(crate) use crate::systemd_unit::UninstallArgs;
use crate::systemd_unit::{binary_help, unit_path_help, UnitArgs};

/// Answers where LLM models fit and where requests should go, from the cluster's
/// registry (Redis), a saved snapshot, or this machine alone.
#[derive(Debug, Parser)]
#[command(name = "vramroute-coordinator", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) source: SourceArgs,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VRAMROUTE_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax) [default: the config's log_level, else warn
    /// for commands and info for the daemon].
    #[arg(long, global = true, env = "VRAMROUTE_LOG")]
    pub(crate) log_level: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Where the cluster view comes from. Nothing given: this machine alone (embedded).
#[derive(Debug, Clone, Args)]
pub(crate) struct SourceArgs {
    /// Redis registry URL (redis://, rediss://, redis+unix://, redis-cluster://).
    #[arg(
        long,
        global = true,
        env = "SOLLOL_REDIS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub(crate) redis_url: Option<String>,
    /// A file holding the Redis password (one line), joined to the URL so that the
    /// password stays out of the URL, the command line and `ps`. `REDIS_PASSWORD` in the
    /// environment does the same when no file is given.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) redis_password_file: Option<PathBuf>,
    /// YAML config (FlockParser's gpu_router_config.yaml keys plus ours).
    #[arg(long, global = true, env = "VRAMROUTE_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Answer from a saved cluster view (the JSON `status --json` prints).
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "redis_url")]
    pub(crate) snapshot: Option<PathBuf>,
    /// Embedded mode: sysfs root to probe [default: /sys].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) sysfs_root: Option<PathBuf>,
    /// Embedded mode: do not load NVML.
    #[arg(long, global = true)]
    pub(crate) no_nvml: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Every node and GPU, rpc backends, cluster totals; stale nodes flagged.
    Status(OutputArgs),
    /// Where a model should run, with the router's explanation.
    Route(RouteArgs),
    /// Which nodes and GPUs can fit a model, and why the others cannot.
    Check(ModelArgs),
    /// Known models and their sizes, with where each size came from.
    Models(OutputArgs),
    /// How to split a model across the cluster's llama.cpp workers.
    Plan(PlanArgs),
    /// Load each priority model on its best GPU node through Ollama.
    Optimize(OptimizeArgs),
    /// Serve the HTTP API, keep the view live, run the optimize loop.
    Daemon(DaemonArgs),
    /// Write a hardened systemd unit that runs `daemon` with this config (and these
    /// daemon flags); optionally enable and start it.
    Install(Box<InstallArgs>),
    /// Remove the systemd unit written by `install`.
    Uninstall(UninstallArgs),
}

/// `install`: the unit flags both binaries share, then the daemon flags the unit runs
/// with.
#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("unit_path", |a| unit_path_help(a, crate::install::UNIT_NAME)),
    mut_arg("binary", |a| binary_help(a, "coordinator"))
)]
pub(crate) struct InstallArgs {
    #[command(flatten)]
    pub(crate) unit: UnitArgs,
    #[command(flatten)]
    pub(crate) daemon: DaemonArgs,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct OutputArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ModelArgs {
    /// Model name, e.g. `llama3.1:8b`.
    pub(crate) model: String,
    /// Model size in MiB, when no other source knows it.
    #[arg(long, value_name = "MIB")]
    pub(crate) size_mb: Option<u64>,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct RouteArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Routing policy: sollol, binpack or spread [default: the config's, else sollol].
    #[arg(long)]
    pub(crate) policy: Option<String>,
    /// Never place the model on a CPU (by default a CPU may take it when no GPU fits,
    /// as in SOLLOL).
    #[arg(long)]
    pub(crate) no_cpu: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Context length to size the KV cache for.
    #[arg(long, default_value_t = 4096)]
    pub(crate) ctx: u32,
    /// A GGUF file of the model (most precise size source).
    #[arg(long, value_name = "FILE")]
    pub(crate) gguf: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct OptimizeArgs {
    /// Say what would move without loading anything.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DaemonArgs {
    /// Address of the HTTP API [default: the config's listen, else 127.0.0.1:8787].
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Print the cluster report once and exit.
    #[arg(long)]
    pub(crate) report_only: bool,
    /// Address of the Ollama/OpenAI-compatible gateway, or `off` [default: the config's
    /// gateway_listen, else 127.0.0.1:11435]. A non-loopback address without API keys
    /// is served with a warning.
    #[arg(long, value_name = "ADDR|off")]
    pub(crate) gateway_listen: Option<String>,
    /// File of gateway API keys, one per line (also read: VRAMROUTE_GATEWAY_KEYS).
    /// Requests then need `Authorization: Bearer KEY`. Keys are never logged.
    #[arg(long, value_name = "PATH")]
    pub(crate) gateway_keys_file: Option<std::path::PathBuf>,
    /// Most connections the HTTP API serves at once; when full, the connection idle
    /// longest is closed, or a new one gets 503 when all are busy [default: the config's
    /// max_connections, else 256].
    #[arg(long, value_name = "N")]
    pub(crate) max_connections: Option<usize>,
    /// The gateway's connection cap [default: the config's gateway_max_connections,
    /// else 512].
    #[arg(long, value_name = "N")]
    pub(crate) gateway_max_connections: Option<usize>,
    /// Seconds a client has to send a request head, from connecting or from its first
    /// byte (API and gateway) [default: the config's http_header_timeout, else 10].
    #[arg(long, value_name = "SECONDS")]
    pub(crate) http_header_timeout: Option<f64>,
    /// Seconds a kept-alive connection may wait for its next request (API and gateway)
    /// [default: the config's http_idle_timeout, else 60].
    #[arg(long, value_name = "SECONDS")]
    pub(crate) http_idle_timeout: Option<f64>,
    /// How far below the API's and the gateway's threads the refresh work runs: the
    /// follow loop (registry reads and their decoding, router updates) runs on a thread
    /// of its own at the daemon's nice value plus N (Linux; 0: the same priority), so
    /// that routing is not preempted by it; on a machine busy with other processes a
    /// high N delays the view's updates (docs/scale.md). Logged at start [default: 0].
    #[arg(long, value_name = "0-19", value_parser = clap::value_parser!(u8).range(0..=19))]
    pub(crate) refresh_nice: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
