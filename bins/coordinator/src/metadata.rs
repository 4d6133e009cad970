//! Keeps SOLLOL's first discovery source, `sollol:router:metadata` (`rpc_backends`),
//! current from the live registrations, so SOLLOL's tools see the backends we see.
//! Only the optimize-lock holder writes (the lock is renewed, never taken from another
//! coordinator, before each write); the registry names the key and owns the merge rule
//! (`RouterMetadata::with_registered`: entries others wrote stay).

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};
use vramroute_registry::{RouterMetadata, RpcBackend};

use crate::app::{locked, App};
use crate::lock::{lock_ttl, OPTIMIZE_LOCK};
use crate::source::Source;
use vramroute_cluster::Feed;

/// How often the metadata is compared with the live view.
const EVERY: Duration = Duration::from_secs(1);

/// Runs while the daemon runs (started with the optimize loop, which takes the lock).
pub(crate) async fn metadata_loop(app: Arc<App>, source: Arc<Source>, owner: String) {
    let ttl = lock_ttl(&app);
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !locked(&app.optimize).holds_lock {
            continue;
        }
        let Some(reg) = source.registry() else { return };
        let registered: Vec<RpcBackend> = app
            .live
            .view()
            .rpc_backends
            .iter()
            .filter(|b| b.registered)
            .map(|b| RpcBackend {
                host: b.host.clone(),
                port: b.port,
            })
            .collect();
        let current = match reg.router_metadata().await {
            Ok(m) => m,
            Err(e) => {
                debug!("cannot read the router metadata: {e}");
                continue;
            }
        };
        let next = RouterMetadata::with_registered(current.as_ref(), &registered);
        if current.as_ref() == Some(&next) {
            continue;
        }
        // Renew (or find lost) the lock right before writing.
        match reg.try_lock(OPTIMIZE_LOCK, &owner, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                locked(&app.optimize).holds_lock = false;
                debug!(
                    "the optimize lock is another coordinator's: not writing the router metadata"
                );
                continue;
            }
            Err(e) => {
                warn!("cannot renew the optimize lock, not writing the router metadata: {e}");
                continue;
            }
        }
        match reg.set_router_metadata(&next).await {
            Ok(()) => info!(
                rpc_backends = next.rpc_backends.len(),
                "router metadata updated from live registrations"
            ),
            Err(e) => warn!("cannot write the router metadata: {e}"),
        }
    }
}
