//! Keeps SOLLOL's first discovery source, `sollol:router:metadata` (`rpc_backends`),
//! current from the live registrations while this coordinator holds the optimize lock:
//! every second, one `vramroute_cluster::sync_router_metadata` step (which renews the
//! lock before writing and keeps entries others wrote), logged here.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};
use vramroute_cluster::{sync_router_metadata, MetadataLock, MetadataSync, OPTIMIZE_LOCK};

use crate::app::{lock_ttl, locked, App};
use crate::source::Source;
use vramroute_cluster::Feed;

/// How often the metadata is compared with the live view.
const EVERY: Duration = Duration::from_secs(1);

/// Runs while the daemon runs (started with the optimize loop, which takes the lock).
pub(crate) async fn metadata_loop(app: Arc<App>, source: Arc<Source>, owner: String) {
    let lock = MetadataLock::new(OPTIMIZE_LOCK, &owner, lock_ttl(&app));
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !locked(&app.optimize).holds_lock {
            continue;
        }
        let Some(reg) = source.registry() else { return };
        let view = app.live.view();
        match sync_router_metadata(reg, &view, lock).await {
            MetadataSync::Unchanged => {}
            MetadataSync::Written { rpc_backends } => info!(
                rpc_backends,
                "router metadata updated from live registrations"
            ),
            MetadataSync::LockLost => {
                locked(&app.optimize).holds_lock = false;
                debug!(
                    "the optimize lock is another coordinator's: not writing the router metadata"
                );
            }
            MetadataSync::ReadFailed(e) => debug!("cannot read the router metadata: {e}"),
            MetadataSync::LockFailed(e) => {
                warn!("cannot renew the optimize lock, not writing the router metadata: {e}");
            }
            MetadataSync::WriteFailed(e) => warn!("cannot write the router metadata: {e}"),
        }
    }
}
