//! The decision path: which search runs for a policy, and [`Snapshot::route`].
//!
//! `sollol` requests in the pruning regime take the pruned search (`prune.rs`); every other
//! request scans all nodes (`scorer.rs`). Explanations re-score with a recording trace
//! (`fit.rs`); under `route` nothing is recorded and nothing is allocated.

use crate::decision::{Decision, NoRoute};
use crate::fit::Resolved;
use crate::policy::Policy;
use crate::prune::{prunable, run_pruned};
use crate::request::Request;
use crate::scorer::{run_exhaustive, Outcome, BIN_PACK, SPREAD};
use crate::snapshot::Snapshot;
use crate::sollol::Sollol;

pub(crate) fn run_policy(s: &Snapshot, policy: &Policy, r: &Resolved<'_>) -> Outcome {
    if s.is_empty() {
        return Outcome {
            result: Err(NoRoute::EmptySnapshot),
            fallback: false,
        };
    }
    match policy {
        Policy::Sollol(p) => {
            let sc = Sollol::new(p, r);
            if prunable(r) {
                run_pruned(s, &sc, r)
            } else {
                run_exhaustive(s, &sc, r)
            }
        }
        Policy::BinPack => run_exhaustive(s, &BIN_PACK, r),
        Policy::Spread => run_exhaustive(s, &SPREAD, r),
    }
}

impl Snapshot {
    /// Routes one request: the best node (and GPU) under `policy`, or why there is none.
    /// Allocates nothing; safe to call from many threads at once.
    ///
    /// ```
    /// use vramroute_router::{FitKind, GpuSpec, NodeSpec, NoRoute, Policy, Request, Snapshot, SnapshotConfig, Target};
    /// let mut gpu_node = NodeSpec::new("gpu");
    /// gpu_node.gpus.push(GpuSpec::new(0, 4096, Some(4096)));
    /// let snap = Snapshot::build(vec![gpu_node, NodeSpec::new("cpu")], &SnapshotConfig::default())?;
    /// // 4700 MiB does not fit 4096 × 0.8 = 3276 MiB usable: CPU fallback, SOLLOL-style.
    /// let d = snap.route(&Policy::default(), &Request::new("llama3.1:8b", 4700)).expect("cpu allowed");
    /// assert_eq!(d.target, Target::Cpu);
    /// let strict = Request::new("llama3.1:8b", 4700).allow_cpu(false);
    /// assert_eq!(snap.route(&Policy::default(), &strict), Err(NoRoute::NothingFits { size_mib: 4700 }));
    /// # Ok::<(), vramroute_router::Error>(())
    /// ```
    pub fn route(&self, policy: &Policy, req: &Request<'_>) -> Result<Decision, NoRoute> {
        let r = Resolved::new(self, req);
        run_policy(self, policy, &r).result
    }

    /// For tests only: like [`route`](Self::route), but scores every node (no pruning),
    /// the reference the fast path must agree with. Not part of the stable API.
    #[doc(hidden)]
    pub fn route_exhaustive(
        &self,
        policy: &Policy,
        req: &Request<'_>,
    ) -> Result<Decision, NoRoute> {
        let r = Resolved::new(self, req);
        match policy {
            Policy::Sollol(p) => run_exhaustive(self, &Sollol::new(p, &r), &r),
            Policy::BinPack => run_exhaustive(self, &BIN_PACK, &r),
            Policy::Spread => run_exhaustive(self, &SPREAD, &r),
        }
        .result
    }
}
