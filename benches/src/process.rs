//! Ending the child processes the harnesses start.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Asks `child` to stop with SIGTERM (as a service manager would), waits up to `grace`
/// for it to exit, then kills it. A process run under a wrapper (`strace`, `valgrind`)
/// thus writes its counts before it goes.
pub fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(None) = child.try_wait() {
        // `kill(1)` rather than libc: the benches crate has no `unsafe`.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
