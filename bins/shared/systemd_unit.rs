//! The systemd units of both binaries (each includes this file with `#[path]`): one
//! hardened template, as a system unit (`/etc/systemd/system`, `DynamicUser` or a named
//! user) or a user unit (`~/.config/systemd/user`, for `systemctl --user`), written with
//! its private environment file, and enabled when asked; and the `install` /
//! `uninstall` flags both binaries share ([`UnitArgs`], flattened into each `install`,
//! and [`UninstallArgs`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

/// Open files allowed to the service: a daemon serving many clients (and a reporter
/// with its rpc-server) must not hit the default soft limit of 1024.
pub(crate) const LIMIT_NOFILE: u32 = 65536;

/// The `install` flags of both binaries (each flattens them into its own `install`,
/// beside the flags of the command the unit runs).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct UnitArgs {
    /// Print the unit instead of writing it.
    #[arg(long)]
    pub(crate) print: bool,
    /// Install a user unit (~/.config/systemd/user) for `systemctl --user` instead of a
    /// system unit.
    #[arg(long)]
    pub(crate) user: bool,
    /// Where to write the unit [default: /etc/systemd/system/NAME; with --user,
    /// $XDG_CONFIG_HOME/systemd/user/NAME] (each binary names NAME: [`unit_path_help`]).
    #[arg(long, value_name = "PATH")]
    pub(crate) unit_path: Option<PathBuf>,
    /// System unit: run as this account instead of a DynamicUser.
    #[arg(long, value_name = "USER", conflicts_with = "user")]
    pub(crate) run_as: Option<String>,
    /// After writing the unit, run `systemctl [--user] daemon-reload` and
    /// `systemctl [--user] enable NAME`.
    #[arg(long, conflicts_with = "print")]
    pub(crate) enable: bool,
    /// With --enable: start it now too (`enable --now`).
    #[arg(long)]
    pub(crate) now: bool,
    /// Path of the binary the unit runs [default: this executable] (each binary names
    /// itself: [`binary_help`]).
    #[arg(long, value_name = "PATH")]
    pub(crate) binary: Option<PathBuf>,
}

impl UnitArgs {
    /// System or user unit.
    pub(crate) fn scope(&self) -> Scope {
        Scope::from_user_flag(self.user)
    }

    /// The binary the unit runs (`--binary`, else this executable), once the flags are
    /// known to fit together.
    pub(crate) fn binary(&self) -> anyhow::Result<PathBuf> {
        if self.now && !self.enable {
            return Err(
                crate::UsageError("--now starts the unit: give it with --enable".into()).into(),
            );
        }
        match &self.binary {
            Some(b) => Ok(b.clone()),
            None => std::env::current_exe().context("cannot find this executable's path"),
        }
    }

    /// Where unit `name` goes: `--unit-path`, else the scope's default.
    pub(crate) fn path(&self, name: &str) -> anyhow::Result<PathBuf> {
        unit_path(self.unit_path.as_ref(), self.scope(), name)
    }

    /// Prints or writes `unit` (named `name`) to `path`, then enables it as asked.
    pub(crate) fn install(&self, unit: &Unit, path: &Path, name: &str) -> anyhow::Result<()> {
        install_unit(
            unit,
            path,
            self.print,
            self.scope(),
            name,
            self.enable,
            self.now,
        )
    }
}

/// `--unit-path`'s help naming this binary's unit (`#[command(mut_arg(...))]` on the
/// binary's `install` arguments).
pub(crate) fn unit_path_help(arg: clap::Arg, unit_name: &str) -> clap::Arg {
    arg.help(format!(
        "Where to write the unit [default: /etc/systemd/system/{unit_name}; with --user, \
         $XDG_CONFIG_HOME/systemd/user/{unit_name}]"
    ))
}

/// `--binary`'s help naming this binary (`reporter`, `coordinator`).
pub(crate) fn binary_help(arg: clap::Arg, what: &str) -> clap::Arg {
    arg.help(format!(
        "Path of the {what} binary the unit runs [default: this executable]"
    ))
}

/// The `uninstall` flags of both binaries.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct UninstallArgs {
    /// Remove the user unit (`install --user`).
    #[arg(long)]
    pub(crate) user: bool,
    /// The unit to remove [default: where `install` puts it].
    #[arg(long, value_name = "PATH")]
    pub(crate) unit_path: Option<PathBuf>,
}

/// `uninstall`: removes unit `name` (where `install` put it, or `--unit-path`).
pub(crate) fn uninstall(args: &UninstallArgs, name: &str) -> anyhow::Result<()> {
    let scope = Scope::from_user_flag(args.user);
    let path = unit_path(args.unit_path.as_ref(), scope, name)?;
    remove_unit(scope, &path, name)
}

/// Which systemd manager runs the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The system manager (`systemctl`), unit under `/etc/systemd/system`.
    System,
    /// The calling user's manager (`systemctl --user`), unit under
    /// `$XDG_CONFIG_HOME/systemd/user` (`~/.config/systemd/user`).
    User,
}

impl Scope {
    pub(crate) fn from_user_flag(user: bool) -> Scope {
        if user {
            Scope::User
        } else {
            Scope::System
        }
    }

    /// `systemctl` or `systemctl --user`.
    pub(crate) fn systemctl(self) -> &'static str {
        match self {
            Scope::System => "systemctl",
            Scope::User => "systemctl --user",
        }
    }
}

/// What a unit runs and how.
#[derive(Debug, Clone)]
pub(crate) struct UnitSpec {
    pub(crate) description: String,
    /// `ExecStart=` words (quoted when rendered).
    pub(crate) exec: Vec<String>,
    /// `EnvironmentFile=` (secrets such as the Redis URL).
    pub(crate) env_file: Option<PathBuf>,
    pub(crate) scope: Scope,
    /// System units: `User=` this account, else `DynamicUser=yes`. Ignored by user units.
    pub(crate) run_as: Option<String>,
    /// Add the GPU device groups (`video`, `render`) to a system unit.
    pub(crate) gpu_groups: bool,
    /// `KillMode=mixed`: SIGTERM to the main process only (it stops its children).
    pub(crate) kill_mode_mixed: bool,
}

/// The unit text. System units get the full sandbox; user units the part a user manager
/// can apply without privileges (no `User=`, capabilities or kernel protections, home
/// read-only rather than hidden: the binary and the unit live there).
pub(crate) fn render(spec: &UnitSpec) -> String {
    let mut u = String::new();
    let _ = writeln!(u, "[Unit]\nDescription={}", spec.description);
    if spec.scope == Scope::System {
        let _ = writeln!(
            u,
            "Wants=network-online.target\nAfter=network-online.target"
        );
    }
    let _ = writeln!(u, "\n[Service]\nType=simple");
    if let Some(path) = &spec.env_file {
        let _ = writeln!(u, "EnvironmentFile={}", path.display());
    }
    let quoted: Vec<String> = spec.exec.iter().map(|a| quote(a)).collect();
    let _ = writeln!(u, "ExecStart={}", quoted.join(" "));
    let _ = writeln!(
        u,
        "Restart=always\nRestartSec=5\nTimeoutStopSec=5\nKillSignal=SIGTERM"
    );
    if spec.kill_mode_mixed {
        let _ = writeln!(u, "KillMode=mixed");
    }
    let _ = writeln!(u, "LimitNOFILE={LIMIT_NOFILE}");
    match spec.scope {
        Scope::System => {
            match &spec.run_as {
                Some(user) => {
                    let _ = writeln!(u, "User={user}");
                }
                None => {
                    let _ = writeln!(u, "DynamicUser=yes");
                }
            }
            if spec.gpu_groups {
                // GPU device nodes (/dev/dri, /dev/kfd, /dev/nvidia*) are group video/render.
                let _ = writeln!(u, "SupplementaryGroups=video render");
            }
            let _ = writeln!(
                u,
                "NoNewPrivileges=yes\nCapabilityBoundingSet=\nAmbientCapabilities=\n\
                 ProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\n\
                 ProtectKernelTunables=yes\nProtectKernelModules=yes\nProtectKernelLogs=yes\n\
                 ProtectControlGroups=yes\nProtectClock=yes\nProtectHostname=yes"
            );
        }
        Scope::User => {
            let _ = writeln!(
                u,
                "NoNewPrivileges=yes\nProtectSystem=strict\nProtectHome=read-only\nPrivateTmp=yes"
            );
        }
    }
    let _ = writeln!(
        u,
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\nRestrictNamespaces=yes\n\
         RestrictRealtime=yes\nRestrictSUIDSGID=yes\nLockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\nSystemCallArchitectures=native\nUMask=0077"
    );
    let wanted_by = match spec.scope {
        Scope::System => "multi-user.target",
        Scope::User => "default.target",
    };
    let _ = writeln!(u, "\n[Install]\nWantedBy={wanted_by}");
    u
}

/// Quote one `ExecStart=` word: systemd expands `%` specifiers and `$` variables, and
/// splits on whitespace unless quoted.
pub(crate) fn quote(word: &str) -> String {
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

/// A unit's text and the environment file it reads (path, contents).
#[derive(Debug, PartialEq)]
pub(crate) struct Unit {
    pub(crate) unit: String,
    pub(crate) env_file: Option<(PathBuf, String)>,
}

/// Where the unit goes: `given` (`--unit-path`), else the scope's default for `name`.
pub(crate) fn unit_path(
    given: Option<&PathBuf>,
    scope: Scope,
    name: &str,
) -> anyhow::Result<PathBuf> {
    match given {
        Some(p) => Ok(p.clone()),
        None => default_unit_path(scope, name),
    }
}

/// What `install` does with a rendered unit: print it (`print`; the environment file is
/// named, never shown), or write both files, then reload and enable as asked.
pub(crate) fn install_unit(
    unit: &Unit,
    path: &Path,
    print: bool,
    scope: Scope,
    name: &str,
    enable: bool,
    now: bool,
) -> anyhow::Result<()> {
    if print {
        print!("{}", unit.unit);
        if let Some((env, _)) = &unit.env_file {
            println!(
                "# {} (mode 0600) would hold SOLLOL_REDIS_URL (not shown: it may contain a password)",
                env.display()
            );
        }
        return Ok(());
    }
    if let Some((env, contents)) = &unit.env_file {
        write_private(env, contents)?;
    }
    write_unit(path, &unit.unit)?;
    println!("wrote {}", path.display());
    finish_install(scope, &unit_name(path, name), enable, now)
}

/// Where a unit named `name` goes by default: `/etc/systemd/system/NAME`, or
/// `$XDG_CONFIG_HOME/systemd/user/NAME` (`$HOME/.config/...`) for a user unit.
pub(crate) fn default_unit_path(scope: Scope, name: &str) -> anyhow::Result<PathBuf> {
    match scope {
        Scope::System => Ok(Path::new("/etc/systemd/system").join(name)),
        Scope::User => {
            let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
                Some(dir) => PathBuf::from(dir),
                None => {
                    let home = std::env::var_os("HOME")
                        .filter(|v| !v.is_empty())
                        .context("neither XDG_CONFIG_HOME nor HOME is set: give --unit-path")?;
                    PathBuf::from(home).join(".config")
                }
            };
            Ok(config.join("systemd/user").join(name))
        }
    }
}

/// `/etc/systemd/system/x.service` → `/etc/systemd/system/x.env`.
pub(crate) fn env_file_path(unit_path: &Path) -> PathBuf {
    unit_path.with_extension("env")
}

/// The unit's file name (`x.service`), as `systemctl` names it.
pub(crate) fn unit_name(path: &Path, default: &str) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| default.to_string())
}

/// Writes `contents` readable by the owner only (mode 0600).
pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    create_parent(path)?;
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

/// Writes the unit file (creating `~/.config/systemd/user` when needed).
pub(crate) fn write_unit(path: &Path, text: &str) -> anyhow::Result<()> {
    create_parent(path)?;
    std::fs::write(path, text)
        .with_context(|| format!("cannot write {} (run as root?)", path.display()))
}

fn create_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {} (run as root?)", dir.display()))?;
    }
    Ok(())
}

/// Runs `systemctl [--user] ARGS` (the one on `PATH`), printing the command first.
pub(crate) fn systemctl(scope: Scope, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = Command::new("systemctl");
    if scope == Scope::User {
        cmd.arg("--user");
    }
    cmd.args(args);
    println!("running: {} {}", scope.systemctl(), args.join(" "));
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}: is systemd installed?", scope.systemctl()))?;
    if !status.success() {
        anyhow::bail!(
            "`{} {}` failed ({status}); the unit is written: fix the cause and run it again",
            scope.systemctl(),
            args.join(" ")
        );
    }
    Ok(())
}

/// After writing a unit: `daemon-reload`, then `enable [--now] NAME` when `enable`;
/// otherwise print those commands.
pub(crate) fn finish_install(
    scope: Scope,
    name: &str,
    enable: bool,
    now: bool,
) -> anyhow::Result<()> {
    let ctl = scope.systemctl();
    let journal = match scope {
        Scope::System => "journalctl -u",
        Scope::User => "journalctl --user -u",
    };
    if enable {
        systemctl(scope, &["daemon-reload"])?;
        let mut args = vec!["enable"];
        if now {
            args.push("--now");
        }
        args.push(name);
        systemctl(scope, &args)?;
        if !now {
            println!("start it with:\n  {ctl} start {name}");
        }
    } else {
        println!("enable and start it with:\n  {ctl} daemon-reload && {ctl} enable --now {name}");
    }
    if scope == Scope::User {
        println!(
            "to keep it running while you are logged out:\n  loginctl enable-linger \"$USER\""
        );
    }
    println!("follow its log with:\n  {journal} {name} -f");
    Ok(())
}

/// Removes the unit and its environment file; prints how to stop it.
pub(crate) fn remove_unit(
    scope: Scope,
    unit_path: &Path,
    default_name: &str,
) -> anyhow::Result<()> {
    let name = unit_name(unit_path, default_name);
    match std::fs::remove_file(unit_path) {
        Ok(()) => println!("removed {}", unit_path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("{} is not installed", unit_path.display());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", unit_path.display())),
    }
    let env = env_file_path(unit_path);
    if env.exists() {
        std::fs::remove_file(&env).with_context(|| format!("cannot remove {}", env.display()))?;
        println!("removed {}", env.display());
    }
    let ctl = scope.systemctl();
    println!("stop it and reload systemd with:\n  {ctl} disable --now {name}; {ctl} daemon-reload");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scope: Scope) -> UnitSpec {
        UnitSpec {
            description: "test".into(),
            exec: vec!["/usr/bin/x".into(), "run".into()],
            env_file: None,
            scope,
            run_as: None,
            gpu_groups: true,
            kill_mode_mixed: false,
        }
    }

    #[test]
    fn system_and_user_units_differ_where_a_user_manager_cannot_follow() {
        let system = render(&spec(Scope::System));
        let user = render(&spec(Scope::User));
        for line in [
            "LimitNOFILE=65536",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
        ] {
            assert!(system.lines().any(|l| l == line), "{line}: {system}");
            assert!(user.lines().any(|l| l == line), "{line}: {user}");
        }
        assert!(system.contains("\nDynamicUser=yes\n") && !user.contains("DynamicUser"));
        assert!(system.contains("\nSupplementaryGroups=video render\n"));
        assert!(!user.contains("SupplementaryGroups") && !user.contains("CapabilityBoundingSet"));
        assert!(
            system.contains("\nProtectHome=yes\n") && user.contains("\nProtectHome=read-only\n")
        );
        assert!(system.ends_with("WantedBy=multi-user.target\n"));
        assert!(user.ends_with("WantedBy=default.target\n"));
        assert!(!user.contains("network-online.target"));
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
