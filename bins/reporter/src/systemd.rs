//! `install` / `uninstall`: a hardened systemd unit running `vramroute-reporter run`.
//!
//! The Redis URL goes into an `EnvironmentFile` readable only by root (unit files are
//! world-readable, and the URL may carry a password); everything else is a flag on
//! `ExecStart`.

use std::path::Path;

use crate::cli::{InstallArgs, RunArgs, UninstallArgs};
use crate::systemd_unit::{self as unit, Unit, UnitSpec};

/// The unit's file name.
pub(crate) const UNIT_NAME: &str = "vramroute-reporter.service";

pub(crate) fn install(args: &InstallArgs) -> anyhow::Result<()> {
    let binary = args.unit.binary()?;
    let path = args.unit.path(UNIT_NAME)?;
    let unit = render(args, &binary, &path);
    args.unit.install(&unit, &path, UNIT_NAME)
}

pub(crate) fn uninstall(args: &UninstallArgs) -> anyhow::Result<()> {
    unit::uninstall(args, UNIT_NAME)
}

/// Build the unit text for these arguments, the unit going to `unit_path`.
pub(crate) fn render(args: &InstallArgs, binary: &Path, unit_path: &Path) -> Unit {
    let mut exec = vec![binary.display().to_string(), "run".to_string()];
    exec.extend(run_flags(&args.run));
    let env_file = args.run.redis_url.as_ref().map(|url| {
        (
            unit::env_file_path(unit_path),
            format!("SOLLOL_REDIS_URL={url}\n"),
        )
    });
    let spec = UnitSpec {
        description: "vramroute reporter: publishes this node's GPUs and RAM to Redis".into(),
        exec,
        env_file: env_file.as_ref().map(|(p, _)| p.clone()),
        scope: args.unit.scope(),
        run_as: args.unit.run_as.clone(),
        gpu_groups: true,
        // SIGTERM to the reporter only: it stops a supervised rpc-server itself, then
        // deregisters; whatever is left when it exits gets SIGKILL.
        kill_mode_mixed: true,
    };
    Unit {
        unit: unit::render(&spec),
        env_file,
    }
}

/// The `run` flags that reproduce these settings (the Redis URL excepted: it goes to
/// the environment file).
fn run_flags(run: &RunArgs) -> Vec<String> {
    let mut f = Vec::new();
    let mut opt = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            f.push(format!("--{name}"));
            f.push(v);
        }
    };
    opt(
        "config",
        run.config.as_ref().map(|p| p.display().to_string()),
    );
    opt(
        "redis-password-file",
        run.redis_password_file
            .as_ref()
            .map(|p| p.display().to_string()),
    );
    opt("redis-host", run.redis_host.clone());
    opt("redis-port", run.redis_port.map(|p| p.to_string()));
    opt("node-id", run.node_id.clone());
    opt("advertise-ip", run.advertise_ip.map(|p| p.to_string()));
    opt("rpc-port", run.rpc_port.map(|p| p.to_string()));
    opt("rpc-server", run.rpc_server.clone());
    opt("ollama-url", run.ollama_url.clone());
    opt("interval", run.interval.map(|p| p.to_string()));
    opt("stats-ttl", run.stats_ttl.map(|p| p.to_string()));
    opt(
        "registration-ttl",
        run.registration_ttl.map(|p| p.to_string()),
    );
    opt(
        "change-threshold-mb",
        run.change_threshold_mb.map(|p| p.to_string()),
    );
    opt("metrics-addr", run.metrics_addr.map(|p| p.to_string()));
    opt(
        "metrics-max-connections",
        run.metrics_max_connections.map(|p| p.to_string()),
    );
    opt("probe-timeout", run.probe_timeout.map(|p| p.to_string()));
    let hw = &run.hardware;
    opt(
        "sysfs-root",
        hw.sysfs_root.as_ref().map(|p| p.display().to_string()),
    );
    opt(
        "proc-root",
        hw.proc_root.as_ref().map(|p| p.display().to_string()),
    );
    opt("reserve", hw.reserve.map(|p| p.to_string()));
    opt("ggml-backend", hw.ggml_backend.clone());
    if run.no_ollama {
        f.push("--no-ollama".into());
    }
    if hw.no_nvml {
        f.push("--no-nvml".into());
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn install_args(extra: &[&str]) -> InstallArgs {
        let mut argv = vec!["vramroute-reporter", "install"];
        argv.extend_from_slice(extra);
        match Cli::parse_from(argv).command {
            crate::cli::Command::Install(a) => *a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn password_stays_out_of_the_unit() {
        let args = install_args(&[
            "--redis-url",
            "redis://:s3cret@10.0.0.5:6379/0",
            "--interval",
            "5",
            "--no-ollama",
        ]);
        let unit = render(
            &args,
            Path::new("/usr/local/bin/vramroute-reporter"),
            Path::new("/etc/systemd/system/vramroute-reporter.service"),
        );
        assert!(!unit.unit.contains("s3cret"), "{}", unit.unit);
        assert!(unit.unit.contains(
            "ExecStart=/usr/local/bin/vramroute-reporter run --interval 5 --no-ollama\n"
        ));
        assert!(unit
            .unit
            .contains("EnvironmentFile=/etc/systemd/system/vramroute-reporter.env\n"));
        let (path, env) = unit.env_file.expect("env file");
        assert_eq!(
            path,
            Path::new("/etc/systemd/system/vramroute-reporter.env")
        );
        assert_eq!(env, "SOLLOL_REDIS_URL=redis://:s3cret@10.0.0.5:6379/0\n");
        for line in [
            "Restart=always",
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
        ] {
            assert!(unit.unit.lines().any(|l| l == line), "missing {line}");
        }
    }

    #[test]
    fn limits_and_fault_settings_reach_the_unit() {
        let args = install_args(&[
            "--metrics-addr",
            "127.0.0.1:9187",
            "--metrics-max-connections",
            "32",
            "--probe-timeout",
            "2",
        ]);
        let unit = render(&args, Path::new("/opt/vr"), Path::new("/x/vr.service"));
        assert!(
            unit.unit.contains(
                "ExecStart=/opt/vr run --metrics-addr 127.0.0.1:9187 --metrics-max-connections 32 --probe-timeout 2\n"
            ),
            "{}",
            unit.unit
        );
        assert!(unit.unit.contains("\nLimitNOFILE=65536\n"), "{}", unit.unit);
    }

    #[test]
    fn run_as_replaces_dynamic_user() {
        let args = install_args(&["--run-as", "vramroute"]);
        let unit = render(&args, Path::new("/opt/vr"), Path::new("/x/vr.service"));
        assert!(unit.unit.contains("\nUser=vramroute\n"));
        assert!(!unit.unit.contains("DynamicUser"));
        assert!(unit.env_file.is_none());
    }
}
