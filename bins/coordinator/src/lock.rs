//! The optimize lock (`try_lock("optimize", …)` in the registry): who we are, and keeping
//! the lock ours while a long pass runs.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::source::Source;
use vramroute_cluster::Feed;

/// Name of the optimize lock (the registry names its key).
pub(crate) const OPTIMIZE_LOCK: &str = "optimize";

/// The optimize lock's time to live: it outlives one `check_interval`, and a dead
/// holder's lock expires 30 s after that so another coordinator takes over.
pub(crate) fn lock_ttl(app: &crate::app::App) -> Duration {
    Duration::from_secs_f64(app.settings.config.check_interval_s()) + Duration::from_secs(30)
}

/// This process's lock owner: `hostname:pid:random`. The random part keeps two
/// coordinators with the same host name and pid (containers, PID 1) apart.
pub(crate) fn owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let nonce = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|u| {
            u.trim()
                .chars()
                .filter(|c| *c != '-')
                .take(12)
                .collect::<String>()
        })
        .unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
                .to_string()
        });
    format!("{host}:{}:{nonce}", std::process::id())
}

/// Renews the lock every third of its `ttl` until dropped, so a pass longer than the
/// `ttl` keeps it (a holder that dies stops renewing and the lock expires).
pub(crate) struct Renewal(tokio::task::JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) fn keep_renewed(source: Arc<Source>, owner: String, ttl: Duration) -> Renewal {
    Renewal(tokio::spawn(async move {
        let every = (ttl / 3).max(Duration::from_millis(200));
        loop {
            tokio::time::sleep(every).await;
            let Some(reg) = source.registry() else { return };
            match reg.try_lock(OPTIMIZE_LOCK, &owner, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!("the optimize lock was lost mid-pass (another coordinator holds it now)");
                    return;
                }
                Err(e) => warn!("cannot renew the optimize lock: {e}"),
            }
        }
    }))
}
