//! `run --rpc-server`: the reporter runs this node's llama.cpp rpc-server and keeps it
//! running. The binary is found on `PATH` (`ggml-rpc-server`, else `rpc-server`: alloc's
//! [`pick_rpc_server_binary`] decides) or given; it is started with the offer's command,
//! its output goes to the reporter's log (prefixed `rpc-server:`), it is restarted with
//! capped exponential backoff when it exits, and it is stopped (SIGTERM to its process
//! group, SIGKILL after [`STOP_GRACE`]) when the reporter shuts down. Its state is
//! published as the stats record's extra key `rpc_server` ([`RpcServerStatus`]).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use vramroute_alloc::{
    pick_rpc_server_binary, RpcServerCommand, LEGACY_RPC_SERVER_BINARY, RPC_SERVER_BINARY,
};

use crate::settings::RpcServerMode;

/// First wait before a restart; doubled after each exit up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait before a restart (and between looks for a missing binary).
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A server that stayed up this long starts the next backoff from [`BACKOFF_MIN`].
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Time between SIGTERM and SIGKILL when stopping the server.
pub(crate) const STOP_GRACE: Duration = Duration::from_millis(800);
/// Longest line of the server's output kept in the log (longer ones are cut).
const MAX_LOG_LINE: usize = 4096;

/// What the supervised rpc-server is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RpcState {
    /// Not supervised (`--rpc-server off`).
    Off,
    /// No binary to run: none found on `PATH`, or the given one is not executable.
    Missing,
    /// Started and not exited.
    Running,
    /// Exited (or could not start); waiting to start again.
    Restarting,
}

/// The published state: extra key `rpc_server` of `sollol:gpu:{node_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RpcServerStatus {
    pub(crate) state: RpcState,
    /// The binary run (or last run), as a path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) binary: Option<String>,
    /// Process id while running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pid: Option<u32>,
    /// Starts after the first one.
    pub(crate) restarts: u32,
    /// How the last run ended (`exit status: 1`, `signal: 9 (SIGKILL)`, or why it could
    /// not start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_exit: Option<String>,
}

impl RpcServerStatus {
    fn new(state: RpcState) -> Self {
        RpcServerStatus {
            state,
            binary: None,
            pid: None,
            restarts: 0,
            last_exit: None,
        }
    }
}

/// Executable files named `names` in the directories of `path_var` (a `PATH` value), in
/// `PATH` order.
pub(crate) fn find_on_path(names: &[&str], path_var: Option<&OsStr>) -> Vec<PathBuf> {
    let Some(path_var) = path_var else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for dir in std::env::split_paths(path_var) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        for name in names {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                found.push(candidate);
            }
        }
    }
    found
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The installed rpc-server on this `PATH`: the first `ggml-rpc-server`, else the first
/// `rpc-server` (alloc's rule), with its full path.
pub(crate) fn installed_rpc_server(path_var: Option<&OsStr>) -> Option<PathBuf> {
    let found = find_on_path(&[RPC_SERVER_BINARY, LEGACY_RPC_SERVER_BINARY], path_var);
    let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
    let pick = pick_rpc_server_binary(&names)?;
    found
        .into_iter()
        .find(|p| p.file_name() == Some(OsStr::new(pick)))
}

/// The binary `mode` names, or why there is none (a message that says what to do).
pub(crate) fn resolve(mode: &RpcServerMode, path_var: Option<&OsStr>) -> Result<PathBuf, String> {
    match mode {
        RpcServerMode::Off => Err("--rpc-server is off".into()),
        RpcServerMode::Auto => installed_rpc_server(path_var).ok_or_else(|| {
            format!(
                "--rpc-server auto: neither {RPC_SERVER_BINARY} nor {LEGACY_RPC_SERVER_BINARY} \
                 is on PATH; not running an rpc-server (install llama.cpp's \
                 {RPC_SERVER_BINARY}, or give its path with --rpc-server PATH); will look again"
            )
        }),
        RpcServerMode::Path(p) if p.components().count() == 1 && !p.is_absolute() => {
            // A bare name: look it up on PATH like a shell would.
            let name = p.to_string_lossy();
            find_on_path(&[name.as_ref()], path_var)
                .into_iter()
                .next()
                .ok_or_else(|| {
                    format!("--rpc-server {name}: not found on PATH; give the binary's full path")
                })
        }
        RpcServerMode::Path(p) => {
            if is_executable(p) {
                Ok(p.clone())
            } else {
                Err(format!(
                    "--rpc-server {}: no executable file there; give the path of llama.cpp's \
                     {RPC_SERVER_BINARY} (or {LEGACY_RPC_SERVER_BINARY})",
                    p.display()
                ))
            }
        }
    }
}

/// The supervisor: a task that owns the child process.
pub(crate) struct Supervisor {
    status: Arc<Mutex<RpcServerStatus>>,
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// No rpc-server (`--rpc-server off`).
    pub(crate) fn off() -> Supervisor {
        Supervisor {
            status: Arc::new(Mutex::new(RpcServerStatus::new(RpcState::Off))),
            stop: None,
            task: None,
        }
    }

    /// Start supervising: the first start is tried before this returns (so the first
    /// publish already says `running` or `missing`). `command` is the offer's command;
    /// its program is replaced by the binary `mode` resolves to at each start.
    pub(crate) fn start(mode: RpcServerMode, command: RpcServerCommand) -> Supervisor {
        if mode == RpcServerMode::Off {
            return Supervisor::off();
        }
        let status = Arc::new(Mutex::new(RpcServerStatus::new(RpcState::Restarting)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut run = Run {
            mode,
            command,
            status: status.clone(),
            stop: stop_rx,
            missing_logged: false,
            started: false,
        };
        let first = run.start_once();
        let task = tokio::spawn(run.supervise(first));
        Supervisor {
            status,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// The state to publish now.
    pub(crate) fn status(&self) -> RpcServerStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stop the server (SIGTERM, SIGKILL after [`STOP_GRACE`]) and the supervision;
    /// returns when the process is gone.
    pub(crate) async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                warn!("rpc-server supervisor ended abnormally: {e}");
            }
        }
    }
}

struct Run {
    mode: RpcServerMode,
    command: RpcServerCommand,
    status: Arc<Mutex<RpcServerStatus>>,
    stop: watch::Receiver<bool>,
    missing_logged: bool,
    /// Whether some start succeeded (the next ones count as restarts).
    started: bool,
}

impl Run {
    fn set(&self, f: impl FnOnce(&mut RpcServerStatus)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Resolve the binary and spawn it; `None` when there is nothing running.
    fn start_once(&mut self) -> Option<(Child, Instant)> {
        let binary = match resolve(&self.mode, std::env::var_os("PATH").as_deref()) {
            Ok(b) => b,
            Err(why) => {
                if !self.missing_logged {
                    warn!("{why}");
                    self.missing_logged = true;
                }
                self.set(|s| {
                    s.state = RpcState::Missing;
                    s.pid = None;
                });
                return None;
            }
        };
        self.missing_logged = false;
        let mut cmd = self.command.clone();
        cmd.program = binary.display().to_string();
        let spawned = Command::new(&binary)
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: stopping it reaches any helper it forks, and a
            // terminal's Ctrl-C reaches the reporter, which stops it in order.
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Ok(mut child) => {
                let pid = child.id();
                let restarts = self.status().restarts + u32::from(self.started);
                if self.started {
                    info!(pid, restarts, "restarted rpc-server: {cmd}");
                } else {
                    info!(pid, "started rpc-server: {cmd}");
                }
                self.started = true;
                if let Some(out) = child.stdout.take() {
                    tokio::spawn(log_lines(out, pid));
                }
                if let Some(err) = child.stderr.take() {
                    tokio::spawn(log_lines(err, pid));
                }
                self.set(|s| {
                    s.state = RpcState::Running;
                    s.binary = Some(cmd.program.clone());
                    s.pid = pid;
                    s.restarts = restarts;
                });
                Some((child, Instant::now()))
            }
            Err(e) => {
                warn!("cannot start rpc-server {}: {e}", binary.display());
                self.set(|s| {
                    s.state = RpcState::Restarting;
                    s.binary = Some(cmd.program.clone());
                    s.pid = None;
                    s.last_exit = Some(format!("cannot start: {e}"));
                });
                None
            }
        }
    }

    async fn supervise(mut self, first: Option<(Child, Instant)>) {
        let mut backoff = BACKOFF_MIN;
        let mut current = first;
        loop {
            if let Some((mut child, started)) = current.take() {
                let pid = child.id();
                tokio::select! {
                    status = child.wait() => {
                        let up = started.elapsed();
                        let how = describe(status);
                        if up >= STABLE_AFTER {
                            backoff = BACKOFF_MIN;
                        }
                        warn!(
                            pid,
                            "rpc-server exited ({how}) after {:.1} s; restarting in {} s",
                            up.as_secs_f64(),
                            backoff.as_secs()
                        );
                        self.set(|s| {
                            s.state = RpcState::Restarting;
                            s.pid = None;
                            s.last_exit = Some(how);
                        });
                    }
                    _ = self.stop.changed() => {
                        stop_child(child, pid).await;
                        self.set(|s| {
                            s.state = RpcState::Restarting;
                            s.pid = None;
                        });
                        return;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = self.stop.changed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            current = self.start_once();
        }
    }

    fn status(&self) -> RpcServerStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot wait for it: {e}"),
    }
}

/// SIGTERM to the server's process group, SIGKILL after [`STOP_GRACE`]; waits for it.
async fn stop_child(mut child: Child, pid: Option<u32>) {
    let Some(pid) = pid else {
        // Already reaped: nothing to stop.
        return;
    };
    info!(pid, "stopping rpc-server (SIGTERM)");
    signal_group(pid, "TERM").await;
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => info!(pid, "rpc-server stopped ({})", describe(status)),
        Err(_) => {
            warn!(
                pid,
                "rpc-server still running {:?} after SIGTERM: SIGKILL", STOP_GRACE
            );
            signal_group(pid, "KILL").await;
            let _ = child.start_kill();
            let status = child.wait().await;
            info!(pid, "rpc-server killed ({})", describe(status));
        }
    }
}

/// `kill -SIG -- -PGID` (kill(1): the workspace forbids the `unsafe` a direct kill(2)
/// call would need). The group id is the server's pid (it leads its own group), and the
/// server is not yet reaped, so the id cannot have been reused.
async fn signal_group(pid: u32, sig: &str) {
    let result = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    match result {
        Ok(s) if s.success() => {}
        Ok(s) => warn!(pid, "kill -{sig} of the rpc-server's group failed ({s})"),
        Err(e) => warn!(
            pid,
            "cannot run kill(1) to send SIG{sig} to the rpc-server: {e}"
        ),
    }
}

/// Copy the server's output to the log, one line per record, until the pipe closes.
async fn log_lines(stream: impl AsyncRead + Unpin, pid: Option<u32>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let end = buf.len().min(MAX_LOG_LINE);
                let line = String::from_utf8_lossy(&buf[..end]);
                let line = line.trim_end();
                if !line.is_empty() {
                    info!(pid, "rpc-server: {line}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn path_search_prefers_the_current_name_and_needs_the_exec_bit() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        assert_eq!(installed_rpc_server(Some(&path)), None);
        assert_eq!(installed_rpc_server(None), None);
        // Not executable: not found.
        std::fs::write(a.path().join(RPC_SERVER_BINARY), "x").unwrap();
        assert_eq!(installed_rpc_server(Some(&path)), None);
        let legacy = exe(a.path(), LEGACY_RPC_SERVER_BINARY);
        assert_eq!(installed_rpc_server(Some(&path)), Some(legacy));
        // ggml-rpc-server wins even later on PATH.
        let current = exe(b.path(), RPC_SERVER_BINARY);
        assert_eq!(installed_rpc_server(Some(&path)), Some(current.clone()));
        assert_eq!(
            resolve(&RpcServerMode::Auto, Some(&path)),
            Ok(current.clone())
        );
        // A bare name is looked up on PATH; a path must be executable.
        assert_eq!(
            resolve(
                &RpcServerMode::Path(PathBuf::from(RPC_SERVER_BINARY)),
                Some(&path)
            ),
            Ok(current.clone())
        );
        assert!(resolve(&RpcServerMode::Path(a.path().join("nope")), Some(&path)).is_err());
        let err = resolve(&RpcServerMode::Auto, None).unwrap_err();
        assert!(
            err.contains("ggml-rpc-server") && err.contains("PATH"),
            "{err}"
        );
    }

    #[test]
    fn status_json_shape() {
        let mut s = RpcServerStatus::new(RpcState::Running);
        s.binary = Some("/usr/bin/ggml-rpc-server".into());
        s.pid = Some(42);
        s.restarts = 2;
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"state": "running", "binary": "/usr/bin/ggml-rpc-server", "pid": 42, "restarts": 2})
        );
        assert_eq!(
            serde_json::to_value(RpcServerStatus::new(RpcState::Off)).unwrap(),
            serde_json::json!({"state": "off", "restarts": 0})
        );
    }
}
