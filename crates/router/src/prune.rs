//! Pruned search for the `sollol` policy: exact answers without scoring every node.
//!
//! For each (snapshot, [`SollolParams`]) pair we precompute, once, an upper bound of every
//! eligible node's score over all requests in the *pruning regime* (no affinity, no
//! label/node filters) of a bound class — models of at least `overwhelmed_below_mib` or
//! smaller ones, complex requests or the others, SOLLOL's GPU mode or not
//! (`sollol::bound_class`) — and sort nodes by it, one order per class. (One bound over
//! all requests was up to 1.56× loose for the usual medium request on many-core or idle
//! nodes and 5× for a GPU request on a node without GPU; on a cluster of similar nodes
//! the search then scored most of them.) A
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
use crate::request::Complexity;
use crate::scorer::{Outcome, Scorer};
use crate::snapshot::{NodeIndex, Prepared, Snapshot, ELIGIBLE, MAX_PREPARED, NO_SLOT};
use crate::sollol::{
    bound_class, node_bounds, node_static, warm_bounds, warm_class, Sollol, BOUND_CLASSES,
    WARM_CLASSES,
};

impl Prepared {
    /// Bounds for every eligible node of `s` under `p`, computed afresh.
    pub(crate) fn build(s: &Snapshot, p: &SollolParams) -> Prepared {
        Prepared::build_reusing(s, p, None)
    }

    /// Bounds for every eligible node of `s` under `p`, reusing those of `prev` (an
    /// earlier snapshot and its bounds for the same `p`) for every node whose inputs to
    /// the bounds are unchanged (`same_inputs`, `same_loaded`).
    ///
    /// Why this equals [`Prepared::build`]: a node's bounds read only its own row, GPU
    /// rows and loaded entries, so equal inputs give equal bounds. Nodes of both
    /// snapshots are sorted by id, so the old-to-new index map of the nodes kept is
    /// increasing: the old orders, filtered to reused nodes and relabelled, stay sorted
    /// by (descending bound, ascending index), and merging in the recomputed nodes
    /// (sorted the same way) gives the order a fresh sort gives. `incremental_equals_fresh`
    /// checks it bit for bit; at 10,000 nodes with every tenth node changed it costs a
    /// merge walk instead of 40,000 bound evaluations and three sorts.
    pub(crate) fn build_reusing(
        s: &Snapshot,
        p: &SollolParams,
        prev: Option<(&Snapshot, &Prepared)>,
    ) -> Prepared {
        let n = s.rows.len();
        let mut bounds = vec![[0.0f32; BOUND_CLASSES]; n];
        let mut warm_of = vec![[0.0f32; WARM_CLASSES]; s.loaded_model.len()];
        // Per new node: its bounds (and warm bounds) were reused from `prev`.
        let mut reused = vec![false; n];
        let mut reused_warm = vec![false; n];
        // Per old node: its new index where its bounds (warm bounds) were reused.
        let mut to_new = Vec::new();
        let mut to_new_warm = Vec::new();
        if let Some((old, op)) = prev {
            let model_map = old_model_ids(old, s);
            to_new = vec![NONE; old.rows.len()];
            to_new_warm = vec![NONE; old.rows.len()];
            let (mut i, mut j) = (0, 0);
            while i < old.specs.len() && j < n {
                // A spec shared by both snapshots (`build_shared`) is the same node.
                let ord = if Arc::ptr_eq(&old.specs[i], &s.specs[j]) {
                    std::cmp::Ordering::Equal
                } else {
                    old.specs[i].id.cmp(&s.specs[j].id)
                };
                match ord {
                    std::cmp::Ordering::Less => i += 1,
                    std::cmp::Ordering::Greater => j += 1,
                    std::cmp::Ordering::Equal => {
                        if s.rows[j].flags & ELIGIBLE != 0 && same_inputs(old, i, s, j) {
                            bounds[j] = op.bounds[i];
                            reused[j] = true;
                            to_new[i] = j as u32;
                            if same_loaded(old, i, s, j, &model_map) {
                                let (ko, kn) = (old.rows[i].loaded(), s.rows[j].loaded());
                                warm_of[kn].copy_from_slice(&op.warm_of[ko]);
                                reused_warm[j] = true;
                                to_new_warm[i] = j as u32;
                            }
                        }
                        i += 1;
                        j += 1;
                    }
                }
            }
        }
        for ni in 0..n {
            if s.rows[ni].flags & ELIGIBLE == 0 {
                continue;
            }
            if reused[ni] && reused_warm[ni] {
                continue;
            }
            let st = node_static(s, p, ni);
            if !reused[ni] {
                bounds[ni] = node_bounds(s, p, ni, &st).map(up);
            }
            if !reused_warm[ni] {
                // From the bounds as kept (rounded up), whether computed here or
                // reused: a fresh build and an incremental one give the same.
                let node = bounds[ni].map(f64::from);
                for k in s.rows[ni].loaded() {
                    warm_of[k] = warm_bounds(s, p, ni, s.loaded_model[k], &st, &node).map(up);
                }
            }
        }
        // The eligible nodes not reused, by (descending bound, ascending index).
        let fresh = |col: usize| {
            let mut list: Vec<(f32, u32)> = (0..n)
                .filter(|&ni| s.rows[ni].flags & ELIGIBLE != 0 && !reused[ni])
                .map(|ni| (bounds[ni][col], ni as u32))
                .collect();
            list.sort_by(by_bound);
            list
        };
        let orders: [Vec<(f32, u32)>; BOUND_CLASSES] = std::array::from_fn(|col| match prev {
            Some((_, op)) => merge(&op.orders[col], &to_new, fresh(col)),
            None => fresh(col),
        });
        let model_map = prev.map(|(old, _)| old_model_ids(old, s));
        let warm = s
            .model_nodes
            .iter()
            .enumerate()
            .map(|(m, nodes)| {
                let old_lists = prev.zip(model_map.as_ref()).and_then(|((_, op), map)| {
                    map.get(m)
                        .copied()
                        .filter(|&om| om != NONE)
                        .and_then(|om| op.warm.get(om as usize))
                });
                std::array::from_fn::<_, WARM_CLASSES, _>(|c| {
                    let mut list: Vec<(f32, u32)> = nodes
                        .iter()
                        .filter(|&&ni| {
                            s.rows[ni as usize].flags & ELIGIBLE != 0 && !reused_warm[ni as usize]
                        })
                        .map(|&ni| {
                            let row = &s.rows[ni as usize];
                            let k = row
                                .loaded()
                                .find(|&k| s.loaded_model[k] == m as u32)
                                .unwrap_or(row.loaded_start as usize);
                            (warm_of[k][c], ni)
                        })
                        .collect();
                    list.sort_by(by_bound);
                    match old_lists {
                        Some(old_lists) => merge(&old_lists[c], &to_new_warm, list),
                        None => list,
                    }
                })
            })
            .collect();
        Prepared {
            params: p.clone(),
            orders,
            warm,
            bounds,
            warm_of,
        }
    }
}

/// No such node or model.
const NONE: u32 = u32::MAX;

/// `b` as the least `f32` not below it. The prepared sets keep their bounds in half the
/// room this way (an order's entry is 8 bytes instead of 16), and a bound rounded up is
/// still a bound: the search may score a node more before it stops, never fewer.
fn up(b: f64) -> f32 {
    let f = b as f32;
    if f64::from(f) < b {
        f.next_up()
    } else {
        f
    }
}

fn by_bound(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// `old` entries whose node has a new index in `to_new`, relabelled, merged with
/// `fresh`; both sorted by [`by_bound`], and so is the result.
fn merge(old: &[(f32, u32)], to_new: &[u32], fresh: Vec<(f32, u32)>) -> Vec<(f32, u32)> {
    // Exactly the rows kept: the order lives as long as its snapshot, and `old.len()`
    // counts the changed nodes twice (once here, dropped, and once in `fresh`).
    let new_index = |oi: u32| to_new.get(oi as usize).copied().unwrap_or(NONE);
    let kept = old.iter().filter(|&&(_, oi)| new_index(oi) != NONE).count();
    let mut out = Vec::with_capacity(kept + fresh.len());
    let mut fresh = fresh.into_iter().peekable();
    for &(b, oi) in old {
        let ni = new_index(oi);
        if ni == NONE {
            continue;
        }
        while let Some(f) = fresh.next_if(|f| by_bound(f, &(b, ni)).is_lt()) {
            out.push(f);
        }
        out.push((b, ni));
    }
    out.extend(fresh);
    out
}

/// For each model id of `new`, the id of the same name in `old` ([`NONE`] if `old`
/// interned no such name).
fn old_model_ids(old: &Snapshot, new: &Snapshot) -> Vec<u32> {
    let mut map = vec![NONE; new.model_nodes.len()];
    for (name, &id) in &new.models {
        if let (Some(slot), Some(&oid)) = (map.get_mut(id as usize), old.models.get(name)) {
            *slot = oid;
        }
    }
    map
}

/// Whether node `i` of `old` and node `j` of `new` have the same inputs to
/// `node_bound`: the row (but where its GPUs and models sit in the arrays) and the
/// usable and free VRAM of each GPU.
fn same_inputs(old: &Snapshot, i: usize, new: &Snapshot, j: usize) -> bool {
    let (a, b) = (&old.rows[i], &new.rows[j]);
    a.flags == b.flags
        && a.tasks == b.tasks
        && a.cpu_count == b.cpu_count
        && a.active_requests == b.active_requests
        && a.cpu_load.to_bits() == b.cpu_load.to_bits()
        && a.latency_ms.to_bits() == b.latency_ms.to_bits()
        && a.success_rate.to_bits() == b.success_rate.to_bits()
        && a.gpu_len == b.gpu_len
        && a.loaded_len == b.loaded_len
        && a.gpus().zip(b.gpus()).all(|(x, y)| {
            let (x, y) = (&old.gpus[x], &new.gpus[y]);
            x.usable_mib == y.usable_mib && x.free_mib == y.free_mib
        })
}

/// Whether, besides [`same_inputs`], the two nodes' loaded entries are the same (model
/// by name, GPU by position in the node, VRAM share): the inputs to `warm_bound`.
fn same_loaded(old: &Snapshot, i: usize, new: &Snapshot, j: usize, model_map: &[u32]) -> bool {
    let (a, b) = (&old.rows[i], &new.rows[j]);
    let slot = |s: u32, start: u32| if s == NO_SLOT { NO_SLOT } else { s - start };
    a.loaded().zip(b.loaded()).all(|(x, y)| {
        let m = model_map
            .get(new.loaded_model[y] as usize)
            .copied()
            .unwrap_or(NONE);
        m != NONE
            && m == old.loaded_model[x]
            && slot(old.loaded_slot[x], a.gpu_start) == slot(new.loaded_slot[y], b.gpu_start)
            && old.loaded_vram_mib[x] == new.loaded_vram_mib[y]
    })
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

    /// The prepared bounds for `p`, built and kept (beside those of up to
    /// [`MAX_PREPARED`]` - 1` other parameter sets) on first use.
    pub(crate) fn prepared_for(&self, p: &SollolParams) -> Arc<Prepared> {
        if let Some(prep) = self.prepared.load().iter().find(|x| x.params == *p) {
            return Arc::clone(prep);
        }
        self.keep_prepared(Arc::new(Prepared::build(self, p)))
    }

    /// Adds `prep` to the kept sets (unless a concurrent caller kept one for the same
    /// parameters first: that one is returned), evicting the oldest beyond
    /// [`MAX_PREPARED`].
    pub(crate) fn keep_prepared(&self, prep: Arc<Prepared>) -> Arc<Prepared> {
        let mut kept = Arc::clone(&prep);
        self.prepared.rcu(|sets| {
            if let Some(x) = sets.iter().find(|x| x.params == prep.params) {
                kept = Arc::clone(x);
                return Arc::clone(sets);
            }
            kept = Arc::clone(&prep);
            let skip = (sets.len() + 1).saturating_sub(MAX_PREPARED);
            let mut next: Vec<Arc<Prepared>> = sets.iter().skip(skip).cloned().collect();
            next.push(Arc::clone(&prep));
            Arc::new(next)
        });
        kept
    }

    /// Prepares what `policy` needs and every parameter set prepared on `previous` (the
    /// snapshot this one replaces), reusing `previous`'s bounds for unchanged nodes
    /// ([`Prepared::build_reusing`]): a republish whose nodes mostly did not change costs
    /// a merge walk, and a second parameter set in use (a request's `?policy=sollol`
    /// beside a configured one) is ready before the first decision needs it.
    pub(crate) fn prepare_from(&self, previous: &Snapshot, policy: &Policy) {
        let wanted = match policy {
            Policy::Sollol(p) => Some(p),
            _ => None,
        };
        let old_sets = previous.prepared.load();
        // The policy's set last: the newest, so the last to be evicted.
        let others = old_sets.iter().filter(|x| Some(&x.params) != wanted);
        for op in others {
            self.keep_prepared(Arc::new(Prepared::build_reusing(
                self,
                &op.params,
                Some((previous, op)),
            )));
        }
        if let Some(p) = wanted {
            let prev = old_sets.iter().find(|x| x.params == *p);
            self.keep_prepared(Arc::new(Prepared::build_reusing(
                self,
                p,
                prev.map(|op| (previous, &**op)),
            )));
        }
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
    let prep: &Prepared = match guard.iter().find(|x| x.params == *p) {
        Some(prep) => prep,
        None => {
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
    let complex = r.complexity == Complexity::Complex;
    // SOLLOL's GPU mode: a GPU is wanted and the cluster is not in CPU fallback.
    let strict = r.needs_gpu && !fallback;
    if let Some(m) = r.model {
        for &(bound, ni) in &prep.warm[m as usize][warm_class(complex, strict)] {
            if best
                .as_ref()
                .is_some_and(|&(bs, _, _)| f64::from(bound) < bs)
            {
                break;
            }
            visit(&mut best, ni as usize);
        }
    }
    let order = &prep.orders[bound_class(r.size < p.overwhelmed_below_mib, complex, strict)];
    for &(bound, ni) in order {
        if best
            .as_ref()
            .is_some_and(|&(bs, _, _)| f64::from(bound) < bs)
        {
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
    use crate::{GpuSpec, NodeSpec, Request, ResidentModel, SnapshotConfig};

    /// A small deterministic generator (no `rand` in the router's dependencies).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    const NAMES: [&str; 4] = ["llama3.1:8b", "mistral:7b", "phi3:latest", "qwen2.5:0.5b"];

    fn random_node(rng: &mut Rng, id: String) -> NodeSpec {
        let mut n = NodeSpec::new(id);
        for g in 0..rng.below(4) as u32 {
            let total = 2_000 + rng.below(30_000);
            n.gpus
                .push(GpuSpec::new(g, total, Some(rng.below(total + 1))));
        }
        for name in NAMES {
            if rng.below(3) == 0 {
                let on_gpu = !n.gpus.is_empty() && rng.below(2) == 0;
                let mut m = ResidentModel::new(name, 1_500, if on_gpu { 1_500 } else { 0 });
                if on_gpu && rng.below(2) == 0 {
                    m.gpu = Some(rng.below(n.gpus.len() as u64) as u32);
                }
                n.loaded_models.push(m);
            }
        }
        n.cpu_load_percent = Some(rng.below(100) as f64);
        n.latency_ms = (rng.below(4) > 0).then(|| rng.below(3_000) as f64);
        n.active_requests = rng.below(3) as u32;
        n.cpu_count = Some(1 + rng.below(64) as u32);
        n.ram_total_mib = Some(32_768);
        n.ram_free_mib = Some(rng.below(32_768));
        n.healthy = rng.below(10) > 0;
        n.report_age_ms = rng.below(40_000);
        n
    }

    /// The next reports: some nodes' VRAM moves, models load and unload, nodes leave
    /// and join, health and staleness flip; every report age changes.
    fn churn(rng: &mut Rng, nodes: &mut Vec<NodeSpec>, next_id: &mut usize) {
        for n in nodes.iter_mut() {
            n.report_age_ms = rng.below(40_000);
            match rng.below(12) {
                0 => {
                    for g in &mut n.gpus {
                        g.memory_free_mib = Some(rng.below(g.memory_total_mib + 1));
                    }
                }
                1 => *n = random_node(rng, n.id.to_string()),
                2 => n.healthy = !n.healthy,
                3 => n.active_requests += 1,
                _ => {}
            }
        }
        nodes.retain(|_| rng.below(15) > 0);
        for _ in 0..rng.below(4) {
            nodes.push(random_node(rng, format!("n{next_id:04}")));
            *next_id += 1;
        }
    }

    fn assert_same(a: &Prepared, b: &Prepared) {
        let bits = |v: &[(f32, u32)]| v.iter().map(|(b, i)| (b.to_bits(), *i)).collect::<Vec<_>>();
        for (x, y) in a.orders.iter().zip(&b.orders) {
            assert_eq!(bits(x), bits(y));
        }
        assert_eq!(a.warm.len(), b.warm.len());
        for (x, y) in a.warm.iter().zip(&b.warm) {
            for (x, y) in x.iter().zip(y) {
                assert_eq!(bits(x), bits(y));
            }
        }
        let flat =
            |v: &[[f32; BOUND_CLASSES]]| v.iter().map(|b| b.map(f32::to_bits)).collect::<Vec<_>>();
        assert_eq!(flat(&a.bounds), flat(&b.bounds));
        let flat_warm =
            |v: &[[f32; WARM_CLASSES]]| v.iter().map(|b| b.map(f32::to_bits)).collect::<Vec<_>>();
        assert_eq!(flat_warm(&a.warm_of), flat_warm(&b.warm_of));
    }

    /// A kept bound is the least `f32` at or above the computed one.
    #[test]
    fn bounds_round_up_to_the_next_f32() {
        let mut rng = Rng(7);
        let mut cases = vec![0.0, 1.0, 0.1, 1e-40, 3.0e38, 4.0e38, f64::from(f32::MAX)];
        cases.extend(
            (0..2_000).map(|_| rng.below(1 << 40) as f64 / (1 + rng.below(1 << 20)) as f64),
        );
        for b in cases {
            let u = up(b);
            assert!(f64::from(u) >= b, "{b} -> {u}");
            assert!(f64::from(u.next_down()) < b, "{b} -> {u} is not the least");
        }
        assert_eq!(up(2.5), 2.5);
    }

    /// The incremental preparation (`build_reusing`) gives exactly what a fresh one
    /// gives, bit for bit, along chains of churned snapshots.
    #[test]
    fn incremental_equals_fresh() {
        let skip = SollolParams {
            skip_penalties_when_overwhelmed: false,
            ..SollolParams::default()
        };
        // Nodes whose bounds were reused (the test would prove nothing if none were).
        let mut reusable = 0;
        for seed in 0..40 {
            let mut rng = Rng(seed);
            let mut next_id = 0;
            let mut nodes: Vec<NodeSpec> = (0..30)
                .map(|_| {
                    next_id += 1;
                    random_node(&mut rng, format!("n{:04}", next_id - 1))
                })
                .collect();
            let cfg = SnapshotConfig::default();
            let mut prev = Snapshot::build(nodes.clone(), &cfg).expect("valid");
            for p in [SollolParams::default(), skip.clone()] {
                let mut prev_prep = Prepared::build(&prev, &p);
                let mut chain = nodes.clone();
                for _ in 0..8 {
                    churn(&mut rng, &mut chain, &mut next_id);
                    let snap = Snapshot::build(chain.clone(), &cfg).expect("valid");
                    let fresh = Prepared::build(&snap, &p);
                    let reused = Prepared::build_reusing(&snap, &p, Some((&prev, &prev_prep)));
                    assert_same(&reused, &fresh);
                    // They live as long as the snapshot: no room to spare.
                    for order in &reused.orders {
                        assert_eq!(order.capacity(), order.len());
                    }
                    let gpu_rows: usize = chain.iter().map(|n| n.gpus.len()).sum();
                    assert_eq!(snap.gpus.capacity(), gpu_rows);
                    let loaded_rows: usize = chain.iter().map(|n| n.loaded_models.len()).sum();
                    assert_eq!(snap.loaded_model.capacity(), loaded_rows);
                    for (j, spec) in snap.specs.iter().enumerate() {
                        if let Some(i) = prev.node_index(&spec.id) {
                            reusable += usize::from(
                                snap.rows[j].flags & ELIGIBLE != 0
                                    && same_inputs(&prev, i.get(), &snap, j),
                            );
                        }
                    }
                    prev = snap;
                    prev_prep = reused;
                }
            }
            churn(&mut rng, &mut nodes, &mut next_id);
        }
        assert!(reusable > 1000, "only {reusable} nodes reused");
    }

    /// Two parameter sets in turn: each is prepared once per snapshot, not per decision.
    #[test]
    fn parameter_sets_are_kept_side_by_side() {
        let mut a = NodeSpec::new("a");
        a.gpus.push(GpuSpec::new(0, 24_576, Some(20_000)));
        let s = Snapshot::build(vec![a], &SnapshotConfig::default()).expect("valid");
        let custom = SollolParams {
            base_score: 120.0,
            ..SollolParams::default()
        };
        let first = s.prepared_for(&custom);
        let default = s.prepared_for(&SollolParams::default());
        assert!(Arc::ptr_eq(&first, &s.prepared_for(&custom)));
        assert!(Arc::ptr_eq(
            &default,
            &s.prepared_for(&SollolParams::default())
        ));
        // A fifth set evicts the oldest only.
        for base in [1.0, 2.0, 3.0] {
            s.prepared_for(&SollolParams {
                base_score: base,
                ..SollolParams::default()
            });
        }
        assert_eq!(s.prepared.load().len(), MAX_PREPARED);
        assert!(!Arc::ptr_eq(&first, &s.prepared_for(&custom)));
    }

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
