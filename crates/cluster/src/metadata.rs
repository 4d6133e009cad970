//! Upkeep of SOLLOL's first discovery source, the router metadata (`rpc_backends`):
//! one step that brings it in line with the view's live registrations, so SOLLOL's
//! tools see the backends the cluster layer sees.
//!
//! Only a lock holder writes: the caller names the lock (and its owner and time to
//! live), and the lock is renewed, never taken from another owner, right before each
//! write. The registry names the key and owns the merge rule
//! ([`RouterMetadata::with_registered`]: entries others wrote stay). The caller decides
//! how often to run a step and what to log.

use std::time::Duration;

use vramroute_registry::{Registry, RouterMetadata, RpcBackend};

use crate::error::Error;
use crate::view::StatusView;

/// The lock a metadata writer must hold: its name, this writer's owner id, and the time
/// to live each renewal sets.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MetadataLock<'a> {
    /// The lock's name (the registry names its key).
    pub name: &'a str,
    /// This writer's owner id.
    pub owner: &'a str,
    /// Time to live set by each renewal.
    pub ttl: Duration,
}

impl<'a> MetadataLock<'a> {
    /// Lock `name`, held by `owner`, renewed for `ttl`.
    pub fn new(name: &'a str, owner: &'a str, ttl: Duration) -> Self {
        MetadataLock { name, owner, ttl }
    }
}

/// What one [`sync_router_metadata`] step did. Nothing is written unless it says
/// [`MetadataSync::Written`]. (Not `non_exhaustive`: callers match every case to say
/// what happened, and a new case should make them decide how.)
#[derive(Debug)]
pub enum MetadataSync {
    /// The metadata already lists what it should.
    Unchanged,
    /// The lock is another owner's: the caller no longer holds it.
    LockLost,
    /// The metadata was written; it now lists this many rpc backends.
    Written {
        /// How many entries `rpc_backends` has now.
        rpc_backends: usize,
    },
    /// The metadata could not be read.
    ReadFailed(Error),
    /// The lock could not be renewed.
    LockFailed(Error),
    /// The write failed.
    WriteFailed(Error),
}

/// The backends of `view` whose registration is live, as metadata entries.
pub fn registered_backends(view: &StatusView) -> Vec<RpcBackend> {
    view.rpc_backends
        .iter()
        .filter(|b| b.registered)
        .map(|b| RpcBackend {
            host: b.host.to_string(),
            port: b.port,
        })
        .collect()
}

/// One upkeep step: reads the metadata, merges `view`'s registered backends into it
/// ([`RouterMetadata::with_registered`]), and when that changes it, renews `lock` and
/// writes. Never fails: each failure is an outcome, with nothing written after it.
pub async fn sync_router_metadata(
    registry: &dyn Registry,
    view: &StatusView,
    lock: MetadataLock<'_>,
) -> MetadataSync {
    let registered = registered_backends(view);
    let current = match registry.router_metadata().await {
        Ok(m) => m,
        Err(e) => return MetadataSync::ReadFailed(e.into()),
    };
    let next = RouterMetadata::with_registered(current.as_ref(), &registered);
    if current.as_ref() == Some(&next) {
        return MetadataSync::Unchanged;
    }
    // Renew (or find lost) the lock right before writing.
    match registry.try_lock(lock.name, lock.owner, lock.ttl).await {
        Ok(true) => {}
        Ok(false) => return MetadataSync::LockLost,
        Err(e) => return MetadataSync::LockFailed(e.into()),
    }
    match registry.set_router_metadata(&next).await {
        Ok(()) => MetadataSync::Written {
            rpc_backends: next.rpc_backends.len(),
        },
        Err(e) => MetadataSync::WriteFailed(e.into()),
    }
}
