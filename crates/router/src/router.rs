//! A shareable router: many threads route while updates swap in new snapshots.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::decision::{Decision, NoRoute};
use crate::error::{Error, Result};
use crate::explain::Explanation;
use crate::policy::Policy;
use crate::request::Request;
use crate::reservation::Reservation;
use crate::snapshot::Snapshot;

/// The current snapshot and policy behind [`ArcSwap`]s: `route` loads both without a lock
/// (a few atomic operations), `update` swaps a new snapshot in without waiting for readers.
///
/// ```
/// use vramroute_router::{GpuSpec, NodeSpec, Policy, Request, Router, Snapshot, SnapshotConfig};
/// let cfg = SnapshotConfig::default();
/// let mut n = NodeSpec::new("a");
/// n.gpus.push(GpuSpec::new(0, 24576, Some(20000)));
/// let router = Router::new(Snapshot::build(vec![n.clone()], &cfg)?, Policy::default())?;
/// let req = Request::new("llama3.1:8b", 4700);
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| assert!(router.route(&req).is_ok()));
///     }
///     n.gpus[0].memory_free_mib = Some(1000);
///     router.update(Snapshot::build(vec![n], &cfg).expect("valid"));
/// });
/// # Ok::<(), vramroute_router::Error>(())
/// ```
#[derive(Debug)]
pub struct Router {
    snapshot: ArcSwap<Snapshot>,
    policy: ArcSwap<Policy>,
    /// The snapshot replaced by the last update while a routing thread still held it,
    /// kept until the next update so that it is freed on the updating thread: that
    /// routing thread would otherwise drop the last reference and pay for freeing every
    /// node spec in the middle of a decision.
    retired: Mutex<Option<Arc<Snapshot>>>,
}

impl Router {
    /// A router over `snapshot` with `policy` (validated).
    pub fn new(snapshot: Snapshot, policy: Policy) -> Result<Router> {
        policy.validate()?;
        snapshot.prepare(&policy);
        Ok(Router {
            snapshot: ArcSwap::from_pointee(snapshot),
            policy: ArcSwap::from_pointee(policy),
            retired: Mutex::new(None),
        })
    }

    /// Routes on the current snapshot. Allocates nothing.
    pub fn route(&self, req: &Request<'_>) -> Result<Decision, NoRoute> {
        let snap = self.snapshot.load();
        let policy = self.policy.load();
        snap.route(&policy, req)
    }

    /// Routes and reserves `req.size_mib` where the model goes, on the same snapshot. For a
    /// single GPU or a CPU with known free RAM the reservation is a compare-and-swap that
    /// fails only if concurrent reservations took the memory first; then it routes again,
    /// seeing them. Each retry follows another caller's successful reservation, so this is
    /// lock-free and ends (at worst with [`NoRoute::NothingFits`]). No reservation is made
    /// for a model that is already loaded.
    pub fn route_and_reserve(
        &self,
        req: &Request<'_>,
    ) -> Result<(Decision, Option<Reservation>), NoRoute> {
        let snap = self.snapshot.load_full();
        let policy = self.policy.load();
        loop {
            let d = snap.route(&policy, req)?;
            if !d.needs_load() {
                return Ok((d, None));
            }
            match snap.try_reserve_decision(&d, req.size_mib) {
                Ok(Some(r)) => return Ok((d, Some(r))),
                // Contention: someone reserved this memory first; route again.
                Ok(None) => {}
                // Unreachable for a decision made on `snap`; never loop on it.
                Err(_) => return Ok((d, None)),
            }
        }
    }

    /// Explains a routing on the current snapshot (allocates).
    pub fn explain(&self, req: &Request<'_>) -> Explanation {
        let snap = self.snapshot.load();
        let policy = self.policy.load();
        snap.explain(&policy, req)
    }

    /// Reserves `mib` for a decision made on the current snapshot (see
    /// [`Snapshot::reserve_decision`]). A decision from an older snapshot is refused
    /// ([`Error::SnapshotMismatch`]): use [`reserve_node`](Self::reserve_node) or
    /// [`route_and_reserve`](Self::route_and_reserve).
    pub fn reserve(&self, decision: &Decision, mib: u64) -> Result<Reservation> {
        self.snapshot.load().reserve_decision(decision, mib)
    }

    /// Reserves `mib` on a node's GPU (`Some(index)`) or RAM (`None`), by node id, on the
    /// current snapshot.
    pub fn reserve_node(&self, node_id: &str, gpu: Option<u32>, mib: u64) -> Result<()> {
        let snap = self.snapshot.load();
        let node = snap.node_index(node_id).ok_or_else(|| Error::UnknownNode {
            node: node_id.to_owned(),
        })?;
        snap.reserve(node, gpu, mib)
    }

    /// Releases a reservation. If the snapshot changed since, it is released on the
    /// current one by node id (saturating at zero); a node that left is ignored.
    pub fn release(&self, reservation: &Reservation) -> Result<()> {
        let snap = self.snapshot.load();
        if reservation.snapshot == snap.id() {
            return snap.release_reservation(reservation);
        }
        let Some(node) = snap.node_index(&reservation.node_id) else {
            return Ok(());
        };
        for (gpu, mib) in &reservation.parts {
            match snap.release(node, *gpu, *mib) {
                Ok(()) | Err(Error::NoSuchGpu { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Swaps in a new snapshot; reservations on the old one are dropped (the new reports
    /// are assumed to show the memory). Routing threads keep the old snapshot until their
    /// call returns.
    ///
    /// Preparation is incremental: the pruned search's bounds of every node unchanged
    /// since the current snapshot are reused, and every `sollol` parameter set prepared
    /// on it is prepared on the new one too.
    ///
    /// The replaced snapshot is freed on the updating thread (now, or at the next
    /// update when a routing call still holds it), never in a routing call.
    pub fn update(&self, snapshot: Snapshot) {
        snapshot.prepare_from(&self.snapshot.load(), &self.policy.load());
        let old = self.snapshot.swap(Arc::new(snapshot));
        self.retire(old);
    }

    /// Frees `old` here when no routing thread holds it any more (the swap has settled
    /// every reader's claim into the count), else keeps it until the next update (so
    /// that the reader does not free it); frees the one kept before.
    fn retire(&self, old: Arc<Snapshot>) {
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        let previous = retired.take();
        match Arc::try_unwrap(old) {
            Ok(unshared) => drop(unshared),
            Err(held) => *retired = Some(held),
        }
        drop(retired);
        drop(previous);
    }

    /// Swaps in a new snapshot and carries the old one's reservations over (matched by node
    /// id and GPU index), for reports that may predate loads still in progress. A
    /// reservation made concurrently with the swap may be lost.
    pub fn update_keep_reservations(&self, snapshot: Snapshot) {
        snapshot.prepare_from(&self.snapshot.load(), &self.policy.load());
        let new = Arc::new(snapshot);
        let old = self.snapshot.swap(Arc::clone(&new));
        new.carry_reservations_from(&old);
        self.retire(old);
    }

    /// Replaces the policy (validated first).
    pub fn set_policy(&self, policy: Policy) -> Result<()> {
        policy.validate()?;
        self.snapshot.load().prepare(&policy);
        self.policy.store(Arc::new(policy));
        Ok(())
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The current policy.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }
}
