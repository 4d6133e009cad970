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
