//! Child-process helpers of both binaries' end-to-end tests (each includes this file
//! with `#[path]`).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Polls `f` every 25 ms until it returns `Some`, for at most `timeout`.
pub(crate) fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Sends `sig` (a kill(1) signal name) to `child` and waits at most `within` for its
/// exit status (`None` when it is still running, or was killed by a signal).
pub(crate) fn signal_and_wait(child: &mut Child, sig: &str, within: Duration) -> Option<i32> {
    let sent = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill(1)");
    assert!(sent.success(), "kill -{sig} failed");
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return status.code();
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `vramroute-reporter run` arguments for a test node: the fixture sysfs tree `sysfs`, no
/// NVML, node id `{ip}:11434` advertised at `ip`, publishing every second with a 10 s
/// stats TTL.
#[allow(
    dead_code,
    reason = "the reporter's own tests build their arguments one by one"
)]
pub(crate) fn test_reporter_args(redis: &str, sysfs: &str, ip: &str) -> Vec<String> {
    [
        "run",
        "--redis-url",
        redis,
        "--sysfs-root",
        sysfs,
        "--no-nvml",
        "--node-id",
        &format!("{ip}:11434"),
        "--advertise-ip",
        ip,
        "--interval",
        "1",
        "--stats-ttl",
        "10",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// A stand-in `systemctl` (systemd cannot run in tests) in a new directory `dir/bin`
/// that appends its arguments, one call per line, to `dir/systemctl.log` and succeeds.
/// Returns (the directory to put first on `PATH`, the log).
#[allow(
    dead_code,
    reason = "the binaries' install tests use it; the live-router example's do not"
)]
pub(crate) fn fake_systemctl(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("create the fake systemctl's directory");
    let log = dir.join("systemctl.log");
    let script = bin.join("systemctl");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
    )
    .expect("write the fake systemctl");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("make the fake systemctl executable");
    (bin, log)
}

/// `PATH` with `first` in front of the current one.
#[allow(
    dead_code,
    reason = "the binaries' install tests use it; the live-router example's do not"
)]
pub(crate) fn path_with(first: &std::path::Path) -> String {
    format!(
        "{}:{}",
        first.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `systemd-analyze [--user] verify UNIT`: `None` when systemd-analyze is not
/// installed, else `Err` with its output when it fails or prints anything (it exits 0
/// on unknown keys, with a warning).
#[allow(
    dead_code,
    reason = "the binaries' install tests use it; the live-router example's do not"
)]
pub(crate) fn systemd_verify(unit: &std::path::Path, user: bool) -> Option<Result<(), String>> {
    let runtime = tempfile_dir();
    let mut cmd = Command::new("systemd-analyze");
    if user {
        cmd.arg("--user");
    }
    cmd.arg("verify").arg(unit).env("XDG_RUNTIME_DIR", &runtime);
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("cannot run systemd-analyze: {e}"))),
    };
    let _ = std::fs::remove_dir_all(&runtime);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() && text.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {text}", out.status))
    })
}

/// Asserts that each of `lines` is a whole line of the unit text.
#[allow(
    dead_code,
    reason = "the binaries' install tests use it; the live-router example's do not"
)]
pub(crate) fn unit_has(unit: &str, lines: &[&str]) {
    for line in lines {
        assert!(unit.lines().any(|l| l == *line), "missing {line}: {unit}");
    }
}

/// `systemd-analyze verify` on a written unit when the tool exists (panics when it
/// complains); the contents are asserted by the caller either way.
#[allow(
    dead_code,
    reason = "the binaries' install tests use it; the live-router example's do not"
)]
pub(crate) fn verify_unit(unit: &std::path::Path, user: bool) {
    match systemd_verify(unit, user) {
        Some(result) => result.unwrap_or_else(|e| panic!("systemd-analyze verify: {e}")),
        None => println!("note: systemd-analyze not installed; unit contents checked only"),
    }
}

/// A fresh private directory under the system's temporary directory.
#[allow(
    dead_code,
    reason = "the binaries' install tests use it; the live-router example's do not"
)]
fn tempfile_dir() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!(
        "vramroute-verify-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("create a runtime directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .expect("make the runtime directory private");
    dir
}
