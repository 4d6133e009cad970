//! `vramroute-coordinator`: cluster status, routing and placement answers, priority-model
//! optimization, and a daemon with an HTTP API. Parses arguments, sets up logging and
//! hands over to a command module; errors become exit codes (1 runtime, 2 usage).

/// mimalloc rather than glibc's malloc: the gateway's per-request path allocates in
/// hyper, reqwest and serde, and malloc/free were ~12 % of its CPU under load. The
/// `mimalloc` feature (default) selects it; without it the system allocator serves,
/// for heap profilers.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "mimalloc")]
mod allocator;
mod app;
mod cli;
mod config;
#[path = "../../shared/config_file.rs"]
mod config_file;
mod daemon;
mod dashboard;
mod http;
mod install;
#[path = "../../shared/logging.rs"]
mod logging;
mod metadata;
mod metrics;
mod models;
mod optimize;
mod plan;
#[path = "../../shared/redis_password.rs"]
mod redis_password;
mod route;
mod source;
mod status;
#[path = "../../shared/systemd_unit.rs"]
mod systemd_unit;
#[path = "../../shared/term.rs"]
mod term;
#[path = "../../shared/usage_error.rs"]
mod usage_error;

use std::process::ExitCode;

use clap::Parser;

pub(crate) use usage_error::UsageError;

/// What a CLI user can do about a cluster-layer input error, in this binary's flags.
pub(crate) fn cli_hint(e: &vramroute_cluster::Error) -> Option<&'static str> {
    match e {
        vramroute_cluster::Error::UnknownModel { .. } => Some(
            "give the size with --size-mb N, point `plan` at the model's GGUF file with \
             --gguf FILE, or list an Ollama node that has it pulled under `nodes:` in the \
             config",
        ),
        vramroute_cluster::Error::NeedLayerInfo { .. } => Some(
            "give the model's GGUF file with --gguf FILE, or list an Ollama node that has it \
             pulled under `nodes:` in the config",
        ),
        _ => None,
    }
}

fn main() -> ExitCode {
    #[cfg(feature = "mimalloc")]
    let allocator = allocator::apply();
    let cli = cli::Cli::parse();
    let result = source::Settings::load(&cli.source).and_then(|settings| {
        let default = match cli.command {
            cli::Command::Daemon(_) => "info",
            _ => "warn",
        };
        let level = cli.log_level.clone();
        let level = level.or_else(|| settings.config.log_level.clone());
        logging::init(
            cli.log_format,
            level.as_deref().unwrap_or(default),
            "vramroute-coordinator",
            "warn",
        );
        #[cfg(feature = "mimalloc")]
        match &allocator {
            allocator::Applied::All => {}
            allocator::Applied::LayoutDiffers => tracing::warn!("mimalloc's options are not where this build expects them: its memory settings were left at their defaults (resident memory may be about twice the live data)"),
            allocator::Applied::ThpStillOn(e) => tracing::warn!(error = %e, "could not turn transparent huge pages off for this process (prctl PR_SET_THP_DISABLE): resident memory may be higher than the live data needs"),
        }
        match &cli.command {
            cli::Command::Status(a) => status::run(&settings, a),
            cli::Command::Route(a) => route::run_route(&settings, a),
            cli::Command::Check(a) => route::run_check(&settings, a),
            cli::Command::Models(a) => models::run(&settings, a),
            cli::Command::Plan(a) => plan::run(&settings, a),
            cli::Command::Optimize(a) => optimize::run(&settings, a),
            cli::Command::Daemon(a) => daemon::run(settings, a),
            cli::Command::Install(a) => install::install(&settings, a),
            cli::Command::Uninstall(a) => install::uninstall(a),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vramroute-coordinator: {}", term::text(&format!("{e:#}")));
            if let Some(hint) = e.downcast_ref().and_then(cli_hint) {
                eprintln!("hint: {hint}");
            }
            let usage = e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<vramroute_cluster::Error>()
                    .is_some_and(vramroute_cluster::Error::is_input);
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
