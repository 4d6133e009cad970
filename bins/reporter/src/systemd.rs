//! `install` / `uninstall`: a hardened systemd unit running `vramroute-reporter run`.
//!
//! The Redis URL goes into an `EnvironmentFile` readable only by root (unit files are
//! world-readable, and the URL may carry a password); everything else is a flag on
//! `ExecStart`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::{InstallArgs, RunArgs, UninstallArgs};

/// The unit and the environment file it reads.
#[derive(Debug, PartialEq)]
pub(crate) struct Unit {
    pub(crate) unit: String,
    pub(crate) env_file: Option<(PathBuf, String)>,
}

pub(crate) fn install(args: &InstallArgs) -> anyhow::Result<()> {
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("cannot find this executable's path")?,
    };
    let unit = render(args, &binary);
    if args.print {
        print!("{}", unit.unit);
        if let Some((path, _)) = &unit.env_file {
            println!(
                "# {} (mode 0600) would hold SOLLOL_REDIS_URL (not shown: it may contain a password)",
                path.display()
            );
        }
        return Ok(());
    }
    if let Some((path, contents)) = &unit.env_file {
        write_private(path, contents)?;
    }
    std::fs::write(&args.unit_path, &unit.unit)
        .with_context(|| format!("cannot write {} (run as root?)", args.unit_path.display()))?;
    let name = unit_name(&args.unit_path);
    println!("wrote {}", args.unit_path.display());
    println!(
        "enable and start it with:\n  systemctl daemon-reload && systemctl enable --now {name}"
    );
    println!("follow its log with:\n  journalctl -u {name} -f");
    Ok(())
}

pub(crate) fn uninstall(args: &UninstallArgs) -> anyhow::Result<()> {
    let name = unit_name(&args.unit_path);
    match std::fs::remove_file(&args.unit_path) {
        Ok(()) => println!("removed {}", args.unit_path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("{} is not installed", args.unit_path.display());
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot remove {}", args.unit_path.display()))
        }
    }
    let env = env_file_path(&args.unit_path);
    if env.exists() {
        std::fs::remove_file(&env).with_context(|| format!("cannot remove {}", env.display()))?;
        println!("removed {}", env.display());
    }
    println!("stop it and reload systemd with:\n  systemctl disable --now {name}; systemctl daemon-reload");
    Ok(())
}

fn unit_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vramroute-reporter.service".to_string())
}

/// `/etc/systemd/system/x.service` → `/etc/systemd/system/x.env`.
fn env_file_path(unit_path: &Path) -> PathBuf {
    unit_path.with_extension("env")
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {} (run as root?)", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Build the unit text for these arguments.
pub(crate) fn render(args: &InstallArgs, binary: &Path) -> Unit {
    let mut exec = vec![binary.display().to_string(), "run".to_string()];
    exec.extend(run_flags(&args.run));
    let env_file = args.run.redis_url.as_ref().map(|url| {
        (
            env_file_path(&args.unit_path),
            format!("SOLLOL_REDIS_URL={url}\n"),
        )
    });
    let mut u = String::new();
    let _ = writeln!(
        u,
        "[Unit]\nDescription=vramroute reporter: publishes this node's GPUs and RAM to Redis\n\
         Wants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=simple"
    );
    if let Some((path, _)) = &env_file {
        let _ = writeln!(u, "EnvironmentFile={}", path.display());
    }
    let quoted: Vec<String> = exec.iter().map(|a| quote(a)).collect();
    let _ = writeln!(u, "ExecStart={}", quoted.join(" "));
    let _ = writeln!(
        u,
        "Restart=always\nRestartSec=5\nTimeoutStopSec=5\nKillSignal=SIGTERM"
    );
    // SIGTERM to the reporter only: it stops a supervised rpc-server itself, then
    // deregisters; whatever is left when it exits gets SIGKILL.
    let _ = writeln!(u, "KillMode=mixed");
    match &args.user {
        Some(user) => {
            let _ = writeln!(u, "User={user}");
        }
        None => {
            let _ = writeln!(u, "DynamicUser=yes");
        }
    }
    // GPU device nodes (/dev/dri, /dev/kfd, /dev/nvidia*) are group video/render.
    let _ = writeln!(
        u,
        "SupplementaryGroups=video render\n\
         NoNewPrivileges=yes\nCapabilityBoundingSet=\nAmbientCapabilities=\n\
         ProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\n\
         ProtectKernelTunables=yes\nProtectKernelModules=yes\nProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\nProtectClock=yes\nProtectHostname=yes\n\
         RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\nRestrictNamespaces=yes\n\
         RestrictRealtime=yes\nRestrictSUIDSGID=yes\nLockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\nSystemCallArchitectures=native\n\
         UMask=0077\n\n[Install]\nWantedBy=multi-user.target"
    );
    Unit { unit: u, env_file }
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

/// Quote one `ExecStart=` word: systemd expands `%` specifiers and `$` variables, and
/// splits on whitespace unless quoted.
fn quote(word: &str) -> String {
    let escaped = word
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    if escaped.is_empty() || escaped.contains(char::is_whitespace) || escaped != word {
        format!("\"{escaped}\"")
    } else {
        escaped
    }
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
        let unit = render(&args, Path::new("/usr/local/bin/vramroute-reporter"));
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
    fn user_replaces_dynamic_user() {
        let args = install_args(&["--user", "vramroute"]);
        let unit = render(&args, Path::new("/opt/vr"));
        assert!(unit.unit.contains("\nUser=vramroute\n"));
        assert!(!unit.unit.contains("DynamicUser"));
        assert!(unit.env_file.is_none());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("50%"), "\"50%%\"");
        assert_eq!(quote("$HOME"), "\"$$HOME\"");
        assert_eq!(quote(""), "\"\"");
    }
}
