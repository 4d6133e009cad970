//! The scheduling priority of the refresh work ([`LiveCluster::spawn_follow`]): the
//! follow thread lowers its own nice value, so that on a machine with fewer free cores
//! than runnable threads the scheduler prefers the threads that route. Linux only (a
//! thread's nice value is its own there; threads it starts inherit it).
//!
//! [`LiveCluster::spawn_follow`]: crate::LiveCluster::spawn_follow

use tracing::{info, warn};

/// The highest (least favoured) nice value.
const MAX_NICE: i32 = 19;

/// Raises this thread's nice value by `by` (capped at 19) and logs what was set, or why
/// it could not be.
pub(crate) fn lower_this_thread(by: u8) {
    if by == 0 {
        info!("refresh work (registry reads, decoding, router updates) runs at the routing threads' priority (refresh_nice 0)");
        return;
    }
    match renice(i32::from(by)) {
        Ok((from, to)) => info!(
            nice = to,
            routing_nice = from,
            "refresh work (registry reads, decoding, router updates) runs at nice {to}, routing at nice {from}"
        ),
        Err(reason) => warn!(
            "could not lower the refresh work's priority (refresh_nice {by}): {reason}; it runs at the routing threads' priority"
        ),
    }
}

/// This thread's nice value before and after raising it by `by`.
#[cfg(target_os = "linux")]
fn renice(by: i32) -> Result<(i32, i32), String> {
    use rustix::process::{getpriority_process, setpriority_process};
    let tid = Some(rustix::thread::gettid());
    let from = getpriority_process(tid).map_err(|e| format!("getpriority: {e}"))?;
    let to = from.saturating_add(by).min(MAX_NICE);
    setpriority_process(tid, to).map_err(|e| format!("setpriority: {e}"))?;
    Ok((from, to))
}

#[cfg(not(target_os = "linux"))]
fn renice(_by: i32) -> Result<(i32, i32), String> {
    Err("a thread's own nice value is supported on Linux only".to_owned())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_only_its_own_priority() {
        let tid = Some(rustix::thread::gettid());
        let before = rustix::process::getpriority_process(tid).expect("getpriority");
        let (from, to) = std::thread::spawn(|| {
            let (from, to) = renice(5).expect("renice");
            let now = rustix::process::getpriority_process(Some(rustix::thread::gettid()))
                .expect("getpriority");
            assert_eq!(now, to);
            (from, to)
        })
        .join()
        .expect("thread");
        assert_eq!(
            from, before,
            "a new thread starts at its parent's nice value"
        );
        assert_eq!(to, (before + 5).min(MAX_NICE));
        assert_eq!(
            rustix::process::getpriority_process(tid).expect("getpriority"),
            before,
            "the caller's own nice value is unchanged"
        );
    }
}
