//! `vramroute-coordinator`: cluster status, routing and placement answers, priority-model
//! optimization, and a daemon with an HTTP API. Parses arguments, sets up logging and
//! hands over to a command module; errors become exit codes (1 runtime, 2 usage).

mod cli;
mod config;
mod daemon;
mod http;
#[path = "../../shared/logging.rs"]
mod logging;
mod metrics;
mod models;
mod optimize;
mod plan;
mod route;
mod sizes;
mod source;
mod status;
mod view;

use std::process::ExitCode;

use clap::Parser;

/// An error caused by what the user asked for (bad file, bad value): exit status 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
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
        match &cli.command {
            cli::Command::Status(a) => status::run(&settings, a),
            cli::Command::Route(a) => route::run_route(&settings, a),
            cli::Command::Check(a) => route::run_check(&settings, a),
            cli::Command::Models(a) => models::run(&settings, a),
            cli::Command::Plan(a) => plan::run(&settings, a),
            cli::Command::Optimize(a) => optimize::run(&settings, a),
            cli::Command::Daemon(a) => daemon::run(settings, a),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vramroute-coordinator: {e:#}");
            let usage = e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<sizes::UnknownModel>().is_some()
                || matches!(e.downcast_ref(), Some(plan::PlanError::NeedLayerInfo(_)));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
