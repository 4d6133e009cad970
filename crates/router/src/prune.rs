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
//! for every spelling of the requested model. Requests outside the regime, and the other policies, use the full scan.
//!
//! Why the bound holds: see `node_bound` for when a placement can be "overwhelmed"; nodes
//! where it can get the larger of both cases. Every request-dependent factor is replaced
//! by its largest possible value (priority 0 for the latency weight, the smaller CPU-load
//! weight, the best complexity factor, the best resource/mode factor).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::policy::SollolParams;
use crate::route::{
    place, pow_u32, Cand, Decision, NoRoute, NoTrace, Outcome, Placed, Resolved, Scorer, Sollol,
};
use crate::snapshot::{NodeIndex, Snapshot, ELIGIBLE, TOP_PRIORITY};

/// Relative slack on every bound, far above the rounding differences between the bound's
/// and the score's operation order.
const BOUND_SLACK: f64 = 1e-9;

/// Per-policy score bounds of one snapshot.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) params: SollolParams,
    /// Eligible nodes by descending bound, then ascending index, for models of at least
    /// `overwhelmed_below_mib`...
    pub(crate) order: Vec<(f64, u32)>,
    /// ...and for smaller models.
    pub(crate) order_small: Vec<(f64, u32)>,
    /// Per interned model: eligible nodes where it is loaded, by descending bound of the
    /// warm placement's score.
    pub(crate) warm: Vec<Vec<(f64, u32)>>,
}

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

/// The request-independent part of a node's score bound.
struct NodeStatic {
    /// Everything multiplied in regardless of placement, except the warm/cold factor.
    common: f64,
    /// Largest complexity factor / smallest latency divisor (not applied when overflowing).
    penalties: f64,
    /// Active-request factor per free-VRAM class (overwhelmed, small, mid, large).
    active: [f64; 4],
    /// Largest free VRAM of the node's GPUs (before reservations).
    max_free: u64,
    /// Usable VRAM of the GPU with the most free VRAM (first such GPU), 0 without GPU.
    top_usable: u64,
}

fn node_static(s: &Snapshot, p: &SollolParams, ni: usize) -> NodeStatic {
    let row = &s.rows[ni];
    let flags = row.flags;
    let (load, latency, success) = row.signals(p);
    let success = if p.success_rate_exponent == 1.0 {
        success
    } else {
        success.powf(p.success_rate_exponent)
    };
    // (free, usable) of the GPU with the most free VRAM.
    let mut top: Option<(u64, u64)> = None;
    for g in row.gpus() {
        let free = u64::from(s.gpus[g].free_mib);
        if top.is_none_or(|(f, _)| free > f) {
            top = Some((free, u64::from(s.gpus[g].usable_mib)));
        }
    }
    let (max_free, top_usable) = top.unwrap_or((0, 0));

    let mut common = p.base_score * success;
    if flags & TOP_PRIORITY != 0 {
        common *= p
            .top_node_multiplier
            .max(p.top_node_high_priority_multiplier);
    }
    if row.tasks != 0 {
        common *= p.preferred_task_multiplier.max(1.0);
    }
    let cpus = u32::from(row.cpu_count);
    if cpus > 1 {
        common *= (1.0 + f64::from(cpus) * (1.0 / p.cpu_count_divisor)).min(p.cpu_count_bonus_cap);
        if cpus >= p.complex_many_cores_from {
            common *= p.complex_many_cores_multiplier.max(1.0);
        }
    }
    if row.gpu_len >= 2 {
        common *= p.across_gpus_multiplier.max(1.0);
    }
    common /= 1.0 + load * p.cpu_load_weight.min(p.cpu_load_weight_high_priority);

    let n = row.active_requests;
    let active = [
        p.active_base_overwhelmed,
        p.active_base_small,
        p.active_base_mid,
        p.active_base_large,
    ]
    .map(|base| {
        if n == 0 {
            return 1.0;
        }
        let base = if latency < p.active_fast_latency_below_ms {
            (base * p.active_fast_factor).max(p.active_base_floor)
        } else if latency > p.active_slow_latency_above_ms {
            (base * p.active_slow_factor).min(p.active_base_cap)
        } else {
            base
        };
        1.0 / (pow_u32(base, n) * (1.0 + p.active_linear_penalty * f64::from(n)))
    });
    let complexity = {
        let complex = if load > p.complex_busy_cpu_above {
            p.complex_busy_cpu_multiplier
        } else if load < p.complex_idle_cpu_below {
            p.complex_idle_cpu_multiplier
        } else {
            1.0
        };
        let simple = if load > p.simple_busy_cpu_above {
            p.simple_busy_cpu_multiplier
        } else {
            1.0
        };
        complex.max(simple).max(1.0)
    };
    let g = if latency < p.latency_fast_below_ms {
        latency * (1.0 / p.latency_fast_scale_ms)
    } else if latency > p.latency_slow_above_ms {
        latency * (1.0 / p.latency_scale_ms)
    } else {
        (latency * (1.0 / p.latency_scale_ms)).min(p.latency_medium_cap)
    };
    // The latency weight is 1 + priority × w ≥ 1.
    NodeStatic {
        common,
        penalties: complexity / (1.0 + g),
        active,
        max_free,
        top_usable,
    }
}

fn max_of(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// Bound of a node's score for non-warm placements in the pruning regime, for models of at
/// least the overwhelmed threshold (`small = false`) or below it.
///
/// A placement is "overwhelmed" (SOLLOL's overflow: penalties skipped, overwhelmed factors)
/// only if its free VRAM is below the threshold. A single GPU is chosen by most free VRAM
/// among those that fit, so for a model ≥ the threshold that never happens; for a smaller
/// model it happens only if the node's most-free GPU is below the threshold or cannot take
/// the model (usable below the threshold). A CPU placement uses the node's largest free VRAM.
fn node_bound(s: &Snapshot, p: &SollolParams, ni: usize, small: bool) -> f64 {
    let st = node_static(s, p, ni);
    let cold = if s.rows[ni].loaded_len > 0 {
        p.cold_with_other_models_multiplier
    } else {
        1.0
    };
    let mode_hi = max_of(&[
        1.0,
        p.good_multiplier,
        p.excellent_multiplier,
        p.fallback_gpu_multiplier,
        p.gpu_task_on_cpu_multiplier,
        p.fallback_cpu_multiplier,
    ]);
    let mode_lo = max_of(&[
        1.0,
        p.gpu_task_on_cpu_multiplier,
        p.fallback_cpu_multiplier,
        p.overwhelmed_idle_multiplier * p.overwhelmed_busy_multiplier.max(1.0),
        p.fallback_overwhelmed_gpu_multiplier,
    ]);
    let hi = st.penalties * max_of(&st.active[1..]) * mode_hi;
    let low =
        st.max_free < p.overwhelmed_below_mib || small && st.top_usable < p.overwhelmed_below_mib;
    let lo = if low {
        let pen = if p.skip_penalties_when_overwhelmed {
            1.0
        } else {
            st.penalties
        };
        pen * st.active[0] * mode_lo
    } else {
        0.0
    };
    st.common * cold * hi.max(lo) * (1.0 + BOUND_SLACK)
}

/// Bound of the warm placement's score of `model` on node `ni` (no reservations: the
/// placement and its free VRAM are then fixed).
fn warm_bound(s: &Snapshot, p: &SollolParams, ni: usize, model: u32) -> f64 {
    let st = node_static(s, p, ni);
    let row = &s.rows[ni];
    let Some(k) = row.loaded().find(|&k| s.loaded_model[k] == model) else {
        return 0.0;
    };
    let slot = s.loaded_slot[k];
    let gpu_target = s.loaded_vram_mib[k] > 0;
    let g = if !gpu_target {
        st.max_free
    } else if slot != crate::snapshot::NO_SLOT {
        u64::from(s.gpus[slot as usize].free_mib)
    } else if row.gpu_len == 1 {
        u64::from(s.gpus[row.gpu_start as usize].free_mib)
    } else {
        st.max_free
    };
    let over = g < p.overwhelmed_below_mib;
    let class = usize::from(!over)
        + usize::from(g >= p.good_above_mib)
        + usize::from(g >= p.excellent_above_mib);
    let mode = if gpu_target {
        let normal = if over {
            p.overwhelmed_idle_multiplier * p.overwhelmed_busy_multiplier.max(1.0)
        } else if g > p.excellent_above_mib {
            p.excellent_multiplier
        } else if g > p.good_above_mib {
            p.good_multiplier
        } else {
            1.0
        };
        let fallback = if over {
            p.fallback_overwhelmed_gpu_multiplier
        } else {
            p.fallback_gpu_multiplier
        };
        max_of(&[1.0, normal, fallback])
    } else {
        max_of(&[1.0, p.gpu_task_on_cpu_multiplier, p.fallback_cpu_multiplier])
    };
    let pen = if over && p.skip_penalties_when_overwhelmed {
        1.0
    } else {
        st.penalties
    };
    // A warm row on CPU with `allow_cpu = false` falls through to a cold placement.
    let cold = node_bound(s, p, ni, false).max(node_bound(s, p, ni, true));
    (st.common * p.warm_multiplier * pen * st.active[class] * mode * (1.0 + BOUND_SLACK)).max(cold)
}

impl Snapshot {
    fn is_reserved(&self, ni: usize) -> bool {
        self.reserved_bits[ni / 64].load(Ordering::Relaxed) & (1 << (ni % 64)) != 0
    }

    fn for_each_reserved(&self, mut f: impl FnMut(usize)) {
        for (w, word) in self.reserved_bits.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                f(w * 64 + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
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
    use crate::route::run_exhaustive;
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
