//! The optimize lock: one optimizer at a time across every coordinator (and every
//! embedding app) that loads models into the cluster. Its name, who holds it, how long
//! a holder's claim lasts, and keeping it while a pass runs longer than that. The
//! registry owns the lock itself ([`Registry::try_lock`](vramroute_registry::Registry::try_lock)).

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::feed::Feed;

/// The optimize lock's name (the registry names its key). Whoever loads models takes it
/// first; [`MetadataLock`](crate::MetadataLock) writers hold it too.
pub const OPTIMIZE_LOCK: &str = "optimize";

/// A dead holder's lock expires this long after its last pass was due.
const TAKEOVER_AFTER: Duration = Duration::from_secs(30);

/// The optimize lock's time to live for a holder that runs a pass every
/// `check_interval`: it outlives one interval, and a dead holder's lock expires 30 s
/// after that, so another coordinator takes over.
pub fn optimize_lock_ttl(check_interval: Duration) -> Duration {
    check_interval + TAKEOVER_AFTER
}

/// This process's lock owner: `hostname:pid:random`. The random part keeps two
/// processes with the same host name and pid (containers, PID 1) apart.
pub fn lock_owner_id() -> String {
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

/// Renews a held lock until dropped ([`keep_lock_renewed`]).
#[derive(Debug)]
pub struct LockRenewal(tokio::task::JoinHandle<()>);

impl Drop for LockRenewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews `feed`'s lock `name`, held by `owner`, every third of its `ttl` until the
/// returned guard is dropped, so a pass longer than the `ttl` keeps it; a holder that
/// dies stops renewing and the lock expires. Stops (with a warning) when the lock turns
/// out to be another owner's. Runs on the current tokio runtime.
pub fn keep_lock_renewed<F: Feed + ?Sized + 'static>(
    feed: Arc<F>,
    name: &'static str,
    owner: String,
    ttl: Duration,
) -> LockRenewal {
    LockRenewal(tokio::spawn(async move {
        let every = (ttl / 3).max(Duration::from_millis(200));
        loop {
            tokio::time::sleep(every).await;
            let Some(registry) = feed.registry() else {
                return;
            };
            match registry.try_lock(name, &owner, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!("the {name} lock was lost mid-pass (another coordinator holds it now)");
                    return;
                }
                Err(e) => warn!("cannot renew the {name} lock: {e}"),
            }
        }
    }))
}
