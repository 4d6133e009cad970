//! Pruned search for the `sollol` policy: exact answers without scoring every node.
//!
//! For each (snapshot, [`SollolParams`]) pair we precompute, once, an upper bound of every
//! eligible node's score over all requests in the *pruning regime* (no affinity, no
//! label/node filters; one order for models of at least `overwhelmed_below_mib`, one for
//! smaller models) and sort nodes by it. A
//! route then scores exactly, in this order:
//! 1. every node holding a reservation (reservations lower free VRAM, which can raise a
//!    score above its static bound through SOLLOL's "overflow" rule),
//! 2. the nodes where the requested model is loaded, by descending bound of the warm
//!    placement (its free VRAM is fixed without reservations), with the same early stop,
//! 3. the remaining nodes by descending bound, stopping at the first bound below the best
//!    exact score found.
//!
//! The result is identical to the full scan (`run_exhaustive`), ties included (equal
//! scores go to the lower node index); `pruned_equals_exhaustive` (`tests/it/prune.rs`)
//! checks it on random clusters, after reservations made through every public path and
//! for every spelling of the requested model. Requests outside the regime, and the other
//! policies, use the full scan.
//!
//! The bounds themselves (`node_bound`, `warm_bound`) live beside the score they bound,
//! in `sollol.rs`. Reservations are read through `reservation.rs` (`is_reserved`,
//! `for_each_reserved`).

use std::sync::Arc;

use crate::decision::{Decision, NoRoute};
use crate::fit::{place, Cand, NoTrace, Placed, Resolved};
use crate::policy::{Policy, SollolParams};
use crate::scorer::{Outcome, Scorer};
use crate::snapshot::{NodeIndex, Prepared, Snapshot, ELIGIBLE};
use crate::sollol::{node_bound, warm_bound, Sollol};

impl Prepared {
    pub(crate) fn build(s: &Snapshot, p: &SollolParams) -> Prepared {
        let sorted = |small: bool| {
            let mut order: Vec<(f64, u32)> = (0..s.rows.len())
                .filter(|&ni| s.rows[ni].flags & ELIGIBLE != 0)
                .map(|ni| (node_bound(s, p, ni, small), ni as u32))
                .collect();
            order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            order
        };
        let order = sorted(false);
        let order_small = sorted(true);
        let warm = s
            .model_nodes
            .iter()
            .enumerate()
            .map(|(m, nodes)| {
                let mut list: Vec<(f64, u32)> = nodes
                    .iter()
                    .filter(|&&ni| s.rows[ni as usize].flags & ELIGIBLE != 0)
                    .map(|&ni| (warm_bound(s, p, ni as usize, m as u32), ni))
                    .collect();
                list.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                list
            })
            .collect();
        Prepared {
            params: p.clone(),
            order,
            order_small,
            warm,
        }
    }
}

impl Snapshot {
    /// Precomputes what routing with `policy` needs (for `sollol`: per-node score bounds,
    /// one allocation per snapshot and policy), so that the first [`route`](Self::route)
    /// does not allocate. [`Router`](crate::Router) calls it on every update.
    pub fn prepare(&self, policy: &Policy) {
        if let Policy::Sollol(p) = policy {
            self.prepared_for(p);
        }
    }

    pub(crate) fn prepared_for(&self, p: &SollolParams) -> Arc<Prepared> {
        if let Some(prep) = &*self.prepared.load() {
            if prep.params == *p {
                return Arc::clone(prep);
            }
        }
        let prep = Arc::new(Prepared::build(self, p));
        self.prepared.store(Some(Arc::clone(&prep)));
        prep
    }
}

/// Whether `r` is in the pruning regime of `p`.
pub(crate) fn prunable(r: &Resolved<'_>) -> bool {
    !r.prefers && !r.filters
}

pub(crate) fn run_pruned(s: &Snapshot, sc: &Sollol<'_>, r: &Resolved<'_>) -> Outcome {
    let p = sc.params();
    let guard = s.prepared.load();
    let owned;
    let prep: &Prepared = match &*guard {
        Some(prep) if prep.params == *p => prep,
        _ => {
            owned = s.prepared_for(p);
            &owned
        }
    };

    // SOLLOL's mode: are all GPUs of eligible nodes overwhelmed (reservations included)?
    let mut max_free = 0u64;
    s.for_each_reserved(|ni| {
        if ni < s.rows.len() && s.rows[ni].flags & ELIGIBLE != 0 {
            let m = s.rows[ni]
                .gpus()
                .map(|g| s.gpus[g].free_now())
                .max()
                .unwrap_or(0);
            max_free = max_free.max(m);
        }
    });
    if let Some(&(m, _)) = s
        .by_max_free
        .iter()
        .find(|(_, ni)| !s.is_reserved(*ni as usize))
    {
        max_free = max_free.max(m);
    }
    let fallback = r.needs_gpu && max_free < p.overwhelmed_below_mib;

    let mut best: Option<(f64, usize, Cand)> = None;
    let visit = |best: &mut Option<(f64, usize, Cand)>, ni: usize| {
        let mut unused = 0;
        if let Placed::Cand(c) = place(s, r, ni, false, &mut unused, &mut NoTrace) {
            let base = sc.base(s, r, ni, &c, &mut NoTrace);
            let score = base.score * sc.mode_factor(r, &s.rows[ni], &c, fallback, &mut NoTrace);
            if best
                .as_ref()
                .is_none_or(|&(bs, bi, _)| score > bs || (score == bs && ni < bi))
            {
                *best = Some((score, ni, c));
            }
        }
    };
    s.for_each_reserved(|ni| {
        if ni < s.rows.len() {
            visit(&mut best, ni);
        }
    });
    if let Some(m) = r.model {
        for &(bound, ni) in &prep.warm[m as usize] {
            if best.as_ref().is_some_and(|&(bs, _, _)| bound < bs) {
                break;
            }
            visit(&mut best, ni as usize);
        }
    }
    let order = if r.size >= p.overwhelmed_below_mib {
        &prep.order
    } else {
        &prep.order_small
    };
    for &(bound, ni) in order {
        if best.as_ref().is_some_and(|&(bs, _, _)| bound < bs) {
            break;
        }
        visit(&mut best, ni as usize);
    }
    let result = match best {
        Some((score, ni, c)) => Ok(Decision {
            snapshot: s.id,
            node: NodeIndex(ni as u32),
            target: c.target,
            gpu: c.gpu,
            fit: c.fit,
            score,
            cpu_fallback: fallback,
        }),
        None if !order.is_empty() => Err(NoRoute::NothingFits { size_mib: r.size }),
        None => Err(NoRoute::NoEligibleNode),
    };
    Outcome { result, fallback }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::SollolParams;
    use crate::scorer::run_exhaustive;
    use crate::{GpuSpec, NodeSpec, Request, SnapshotConfig};

    /// A small model whose node's most-free GPU is too small (usable < size) lands on an
    /// overwhelmed GPU, where SOLLOL skips the latency penalty: the bound must allow that.
    #[test]
    fn small_model_on_overwhelmed_second_gpu() {
        let mut a = NodeSpec::new("a");
        a.gpus.push(GpuSpec::new(0, 2_100, Some(2_100))); // usable 1680
        a.gpus.push(GpuSpec::new(1, 8_000, Some(1_900))); // fits 1800, overwhelmed
        a.latency_ms = Some(3_000.0);
        let mut b = NodeSpec::new("b");
        b.gpus.push(GpuSpec::new(0, 24_576, Some(10_000)));
        b.latency_ms = Some(600.0);
        let s = Snapshot::build(vec![a, b], &SnapshotConfig::default()).expect("valid");
        let p = SollolParams::default();
        let req = Request::new("m", 1_800);
        let r = Resolved::new(&s, &req);
        let sc = Sollol::new(&p, &r);
        let full = run_exhaustive(&s, &sc, &r).result.expect("routable");
        assert_eq!((s.node(full.node).id.as_str(), full.gpu), ("a", Some(1)));
        assert_eq!(run_pruned(&s, &sc, &r).result, Ok(full));
    }
}
