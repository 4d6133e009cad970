//! `vramroute-reporter`: runs on every inference node and publishes its GPUs and RAM.
//! Parses arguments, sets up logging and hands over to a command module.

mod advertise;
mod cli;
#[path = "../../shared/config_file.rs"]
mod config_file;
#[path = "../../shared/logging.rs"]
mod logging;
mod metrics;
mod probe_cmd;
#[path = "../../shared/redis_password.rs"]
mod redis_password;
mod rpc_server;
mod run;
mod settings;
mod systemd;
#[path = "../../shared/systemd_unit.rs"]
mod systemd_unit;
#[path = "../../shared/term.rs"]
mod term;
#[path = "../../shared/usage_error.rs"]
mod usage_error;

use std::process::ExitCode;

use clap::Parser;

pub(crate) use usage_error::UsageError;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.log_format, &cli.log_level, "vramroute-reporter", "info");
    let result = match cli.command {
        cli::Command::Probe(args) => probe_cmd::run(&args),
        cli::Command::Run(args) => run::run(*args),
        cli::Command::Install(args) => systemd::install(&args),
        cli::Command::Uninstall(args) => systemd::uninstall(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vramroute-reporter: {}", term::text(&format!("{e:#}")));
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
