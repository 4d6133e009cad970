//! `install` / `uninstall`: a hardened systemd unit running `vramroute-coordinator
//! daemon` (the same template as the reporter's, `bins/shared/systemd_unit.rs`).
//!
//! The config file is named by its absolute path on `ExecStart`; a Redis URL given to
//! `install` (`--redis-url` or `SOLLOL_REDIS_URL`) goes into an `EnvironmentFile`
//! readable only by its owner, never into the world-readable unit.

use std::path::Path;

use crate::cli::{InstallArgs, UninstallArgs};
use crate::source::Settings;
use crate::systemd_unit::{self as unit, Scope, Unit, UnitSpec};
use crate::UsageError;

/// The unit's file name.
pub(crate) const UNIT_NAME: &str = "vramroute-coordinator.service";

pub(crate) fn install(settings: &Settings, args: &InstallArgs) -> anyhow::Result<()> {
    if args.daemon.report_only {
        return Err(UsageError(
            "--report-only prints one report and exits: it is not a service".into(),
        )
        .into());
    }
    let binary = args.unit.binary()?;
    // The daemon runs from another working directory: name the config absolutely.
    let config = settings
        .args
        .config
        .as_ref()
        .map(|c| {
            std::fs::canonicalize(c)
                .map_err(|e| UsageError(format!("cannot read config {}: {e}", c.display())))
        })
        .transpose()?;
    let scope = args.unit.scope();
    if let (Scope::System, Some(c)) = (scope, &config) {
        if ["/home/", "/root/", "/run/user/"]
            .iter()
            .any(|p| c.starts_with(p))
        {
            eprintln!(
                "warning: {} is under a home directory, which the system unit cannot read \
                 (ProtectHome=yes): move it to /etc/vramroute/, or install with --user",
                c.display()
            );
        }
    }
    let path = args.unit.path(UNIT_NAME)?;
    let unit = render(
        args,
        &binary,
        config.as_deref(),
        settings.redis_url(),
        &path,
    );
    args.unit.install(&unit, &path, UNIT_NAME)
}

pub(crate) fn uninstall(args: &UninstallArgs) -> anyhow::Result<()> {
    unit::uninstall(args, UNIT_NAME)
}

/// The unit that runs `BINARY [--config CONFIG] daemon [daemon flags]`.
pub(crate) fn render(
    args: &InstallArgs,
    binary: &Path,
    config: Option<&Path>,
    redis_url: Option<String>,
    unit_path: &Path,
) -> Unit {
    let mut exec = vec![binary.display().to_string()];
    if let Some(c) = config {
        exec.push("--config".into());
        exec.push(c.display().to_string());
    }
    exec.push("daemon".into());
    let d = &args.daemon;
    if let Some(l) = d.listen {
        exec.push("--listen".into());
        exec.push(l.to_string());
    }
    if let Some(g) = &d.gateway_listen {
        exec.push("--gateway-listen".into());
        exec.push(g.clone());
    }
    if let Some(k) = &d.gateway_keys_file {
        exec.push("--gateway-keys-file".into());
        exec.push(k.display().to_string());
    }
    let env_file = redis_url.map(|url| {
        (
            unit::env_file_path(unit_path),
            format!("SOLLOL_REDIS_URL={url}\n"),
        )
    });
    let spec = UnitSpec {
        description: "vramroute coordinator: cluster view, routing API, gateway and optimize loop"
            .into(),
        exec,
        env_file: env_file.as_ref().map(|(p, _)| p.clone()),
        scope: args.unit.scope(),
        run_as: args.unit.run_as.clone(),
        gpu_groups: false,
        kill_mode_mixed: false,
    };
    Unit {
        unit: unit::render(&spec),
        env_file,
    }
}
