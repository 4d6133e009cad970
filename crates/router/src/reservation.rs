//! Reservations: memory a routed load is about to take, counted until the next report.
//!
//! Plain atomic counters on the snapshot (per GPU and per node's RAM) plus one bit per
//! node that ever held a reservation. **Every path that raises a counter marks the node
//! first** (`mark_reserved`): the pruned search (`prune.rs`) scores marked nodes exactly,
//! because a reservation can raise a node's score above its static bound (SOLLOL's
//! "overwhelmed" rule). Releasing never needs a mark (a counter at zero is the static case).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::Serialize;

use crate::decision::{Decision, FitKind};
use crate::error::{Error, Result};
use crate::snapshot::{to_u32_mib, NodeIndex, Snapshot, SnapshotId, UNKNOWN_MIB};

impl Snapshot {
    /// MiB currently reserved on a GPU (`Some(index)`) or in the node's RAM (`None`).
    pub fn reserved_mib(&self, node: NodeIndex, gpu: Option<u32>) -> Result<u64> {
        Ok(match self.counter(node, gpu)? {
            Counter::Gpu(c) => u64::from(c.load(Ordering::Relaxed)),
            Counter::Ram(c) => c.load(Ordering::Relaxed),
            Counter::None => 0,
        })
    }

    /// Counts `mib` as used on a GPU (`Some(index)`) or in the node's RAM (`None`) until
    /// the next snapshot (or [`release`](Self::release)), so that the next decisions do not
    /// double-book memory a routed load is about to take. Lock-free: one atomic update
    /// (GPU counters saturate at 4 PiB).
    ///
    /// ```
    /// use vramroute_router::{GpuSpec, NodeSpec, Snapshot, SnapshotConfig};
    /// let mut n = NodeSpec::new("a");
    /// n.gpus.push(GpuSpec::new(0, 8192, Some(8000)));
    /// let snap = Snapshot::build(vec![n], &SnapshotConfig::default())?;
    /// let a = snap.node_index("a").expect("present");
    /// snap.reserve(a, Some(0), 4700)?;
    /// assert_eq!(snap.gpu_capacity_mib(a, 0)?, Some((6553, 3300)));
    /// # Ok::<(), vramroute_router::Error>(())
    /// ```
    pub fn reserve(&self, node: NodeIndex, gpu: Option<u32>, mib: u64) -> Result<()> {
        let counter = self.counter(node, gpu)?;
        self.mark_reserved(node.get());
        match counter {
            Counter::Gpu(c) => {
                let add = to_u32_mib(mib);
                // The closure always returns `Some`, so this cannot fail.
                let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_add(add))
                });
            }
            Counter::Ram(c) => {
                let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_add(mib))
                });
            }
            Counter::None => {}
        }
        Ok(())
    }

    /// Undoes a [`reserve`](Self::reserve) (saturating at zero).
    pub fn release(&self, node: NodeIndex, gpu: Option<u32>, mib: u64) -> Result<()> {
        match self.counter(node, gpu)? {
            Counter::Gpu(c) => {
                let sub = to_u32_mib(mib);
                let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(sub))
                });
            }
            Counter::Ram(c) => {
                let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(mib))
                });
            }
            Counter::None => {}
        }
        Ok(())
    }

    /// Reserves what a decision will use: `mib` on its GPU, spread over the node's GPUs in
    /// proportion to their usable free VRAM for [`FitKind::AcrossGpus`], in RAM for a CPU
    /// placement, nothing for [`FitKind::AlreadyLoaded`]. Returns what was reserved, for
    /// [`release_reservation`](Self::release_reservation).
    pub fn reserve_decision(&self, decision: &Decision, mib: u64) -> Result<Reservation> {
        self.check_decision(decision)?;
        let node = decision.node;
        let mut parts = Vec::new();
        match decision.fit {
            FitKind::AlreadyLoaded => {}
            FitKind::SingleGpu => parts.push((decision.gpu, mib)),
            FitKind::CpuNoGpu | FitKind::CpuGpuTooSmall => parts.push((None, mib)),
            FitKind::AcrossGpus { .. } => {
                let caps: Vec<(u32, u64)> = self.rows[node.get()]
                    .gpus()
                    .map(|s| {
                        (
                            self.gpu_index[s],
                            u64::from(self.gpus[s].usable_mib).min(self.gpus[s].free_now()),
                        )
                    })
                    .collect();
                let total: u64 = caps.iter().map(|c| c.1).sum();
                let mut left = mib;
                for (i, (gpu, cap)) in caps.iter().enumerate() {
                    let share = if i + 1 == caps.len() || total == 0 {
                        left
                    } else {
                        ((u128::from(mib) * u128::from(*cap)) / u128::from(total)) as u64
                    }
                    .min(left);
                    left -= share;
                    if share > 0 {
                        parts.push((Some(*gpu), share));
                    }
                    if total == 0 {
                        break;
                    }
                }
            }
        }
        for (gpu, m) in &parts {
            self.reserve(node, *gpu, *m)?;
        }
        Ok(Reservation {
            snapshot: self.id,
            node,
            node_id: self.specs[node.get()].id.to_string(),
            parts,
        })
    }

    /// Like [`reserve_decision`](Self::reserve_decision), but for a single GPU or a CPU
    /// with known free RAM only if the memory is still free (compare-and-swap): `Ok(None)`
    /// when a concurrent reservation took it first. Splits reserve unconditionally.
    pub(crate) fn try_reserve_decision(
        &self,
        decision: &Decision,
        mib: u64,
    ) -> Result<Option<Reservation>> {
        self.check_decision(decision)?;
        let ni = decision.node.get();
        // Mark before the compare-and-swap: a counter above zero must never be seen on an
        // unmarked node, or the pruned search would trust that node's static bound. A mark
        // left by a failed CAS only makes the search score the node exactly.
        self.mark_reserved(ni);
        let ok = match (decision.fit, decision.gpu) {
            (FitKind::SingleGpu, Some(g)) => match self.gpu_slot(decision.node, g)? {
                Some(slot) => {
                    let row = &self.gpus[slot];
                    let base = u64::from(row.free_mib);
                    row.reserved_mib
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                            let n = u64::from(cur) + mib;
                            (n <= base).then_some(n as u32)
                        })
                        .is_ok()
                }
                None => return Ok(None),
            },
            (FitKind::CpuNoGpu | FitKind::CpuGpuTooSmall, _)
                if self.ram[ni].free_mib != UNKNOWN_MIB =>
            {
                let base = self.ram[ni].free_mib;
                self.ram_reserved[ni]
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                        cur.checked_add(mib).filter(|&n| n <= base)
                    })
                    .is_ok()
            }
            _ => return self.reserve_decision(decision, mib).map(Some),
        };
        Ok(ok.then(|| Reservation {
            snapshot: self.id,
            node: decision.node,
            node_id: self.specs[ni].id.to_string(),
            parts: vec![(
                decision.gpu.filter(|_| decision.fit == FitKind::SingleGpu),
                mib,
            )],
        }))
    }

    /// Undoes a [`reserve_decision`](Self::reserve_decision).
    pub fn release_reservation(&self, reservation: &Reservation) -> Result<()> {
        if reservation.snapshot != self.id {
            return Err(Error::SnapshotMismatch {
                decision: reservation.snapshot.0,
                snapshot: self.id.0,
            });
        }
        for (gpu, m) in &reservation.parts {
            self.release(reservation.node, *gpu, *m)?;
        }
        Ok(())
    }

    /// Copies the reservations of `old` onto this snapshot, matching nodes by id and GPUs
    /// by index (nodes or GPUs that disappeared are dropped). Use it when a fresh report
    /// may not yet show memory a routed load is taking.
    pub fn carry_reservations_from(&self, old: &Snapshot) {
        for (i, spec) in old.specs.iter().enumerate() {
            let Some(new) = self.node_index(&spec.id) else {
                continue;
            };
            let ram = old.ram_reserved[i].load(Ordering::Relaxed);
            let any_gpu = old.rows[i]
                .gpus()
                .any(|s| old.gpus[s].reserved_mib.load(Ordering::Relaxed) > 0);
            // Mark before adding (as every reservation path does): a counter above zero
            // is never visible on an unmarked node.
            if ram > 0
                || any_gpu
                || old.reserved_bits[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0
            {
                self.mark_reserved(new.get());
            }
            if ram > 0 {
                self.ram_reserved[new.get()].fetch_add(ram, Ordering::Relaxed);
            }
            let nrow = self.rows[new.get()];
            for s in old.rows[i].gpus() {
                let v = old.gpus[s].reserved_mib.load(Ordering::Relaxed);
                if v == 0 {
                    continue;
                }
                let index = old.gpu_index[s];
                if let Some(t) = nrow.gpus().find(|&t| self.gpu_index[t] == index) {
                    let _ = self.gpus[t].reserved_mib.fetch_update(
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                        |x| Some(x.saturating_add(v)),
                    );
                }
            }
        }
    }

    /// Marks a node as holding reservations: the pruned search then scores it exactly
    /// (its static bound no longer holds).
    fn mark_reserved(&self, node: usize) {
        self.reserved_bits[node / 64].fetch_or(1 << (node % 64), Ordering::Relaxed);
    }

    fn check_decision(&self, decision: &Decision) -> Result<()> {
        if decision.snapshot != self.id {
            return Err(Error::SnapshotMismatch {
                decision: decision.snapshot.0,
                snapshot: self.id.0,
            });
        }
        self.check(decision.node)
    }

    fn counter(&self, node: NodeIndex, gpu: Option<u32>) -> Result<Counter<'_>> {
        match gpu {
            None => {
                self.check(node)?;
                Ok(Counter::Ram(&self.ram_reserved[node.get()]))
            }
            Some(g) => Ok(self
                .gpu_slot(node, g)?
                .map_or(Counter::None, |s| Counter::Gpu(&self.gpus[s].reserved_mib))),
        }
    }

    pub(crate) fn is_reserved(&self, ni: usize) -> bool {
        self.reserved_bits[ni / 64].load(Ordering::Relaxed) & (1 << (ni % 64)) != 0
    }

    pub(crate) fn for_each_reserved(&self, mut f: impl FnMut(usize)) {
        for (w, word) in self.reserved_bits.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                f(w * 64 + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
    }
}

enum Counter<'a> {
    Gpu(&'a AtomicU32),
    Ram(&'a AtomicU64),
    None,
}

/// What [`Snapshot::reserve_decision`] reserved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Reservation {
    /// The snapshot it was made on.
    pub snapshot: SnapshotId,
    /// The node.
    pub node: NodeIndex,
    /// The node's id (to find it again in a later snapshot).
    pub node_id: String,
    /// (GPU index or `None` for RAM, MiB) pairs.
    pub parts: Vec<(Option<u32>, u64)>,
}
