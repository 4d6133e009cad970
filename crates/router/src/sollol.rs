//! SOLLOL's scorer, and beside it the upper bounds of its score that the pruned search
//! (`prune.rs`) relies on. A change to the score must keep the bounds above it: the
//! `pruned_equals_exhaustive` property test (`tests/it/prune.rs`) checks that they do.
//!
//! Why the bound holds: see `node_bounds` for when a placement can be "overwhelmed"; nodes
//! where it can get the larger of both cases. Every request-dependent factor is replaced
//! by its largest possible value (priority 0 for the latency weight, the smaller CPU-load
//! weight, the best resource/mode factor), except the request's complexity: complex
//! requests and the others get bounds (and search orders) of their own (`bound_class`).

use crate::decision::{FitKind, Target};
use crate::fit::{Cand, Resolved, Trace};
use crate::policy::SollolParams;
use crate::request::Complexity;
use crate::scorer::{Key, Scorer};
use crate::snapshot::{NodeRow, Snapshot, NO_SLOT, TOP_PRIORITY};

/// Relative slack on every bound, far above the rounding differences between the bound's
/// and the score's operation order.
const BOUND_SLACK: f64 = 1e-9;

/// SOLLOL's scorer with the request's constants hoisted out of the node loop.
pub(crate) struct Sollol<'p> {
    p: &'p SollolParams,
    latency_weight: f64,
    load_weight: f64,
    top_node: f64,
    many_cores: f64,
    inv_latency_fast: f64,
    inv_latency_scale: f64,
    inv_cpu_divisor: f64,
    success_linear: bool,
}

impl<'p> Sollol<'p> {
    pub(crate) fn params(&self) -> &'p SollolParams {
        self.p
    }

    pub(crate) fn new(p: &'p SollolParams, r: &Resolved<'_>) -> Self {
        let high = r.priority >= p.high_priority_from;
        Sollol {
            p,
            latency_weight: 1.0 + f64::from(r.priority) * p.latency_priority_weight,
            load_weight: if high {
                p.cpu_load_weight_high_priority
            } else {
                p.cpu_load_weight
            },
            top_node: if high {
                p.top_node_high_priority_multiplier
            } else {
                p.top_node_multiplier
            },
            many_cores: if r.complexity == Complexity::Complex {
                p.complex_many_cores_multiplier
            } else {
                1.0
            },
            inv_latency_fast: 1.0 / p.latency_fast_scale_ms,
            inv_latency_scale: 1.0 / p.latency_scale_ms,
            inv_cpu_divisor: 1.0 / p.cpu_count_divisor,
            success_linear: p.success_rate_exponent == 1.0,
        }
    }
}

/// `b^n` by squaring; branch-free for the usual small counts.
#[inline(always)]
pub(crate) fn pow_u32(b: f64, n: u32) -> f64 {
    if n < 8 {
        let b2 = b * b;
        let b4 = b2 * b2;
        let x = if n & 1 != 0 { b } else { 1.0 };
        let x = x * if n & 2 != 0 { b2 } else { 1.0 };
        x * if n & 4 != 0 { b4 } else { 1.0 }
    } else {
        let (mut x, mut b, mut n) = (1.0, b, n);
        while n > 0 {
            if n & 1 != 0 {
                x *= b;
            }
            b *= b;
            n >>= 1;
        }
        x
    }
}

impl Scorer for Sollol<'_> {
    fn least_free(&self) -> bool {
        false
    }

    fn fallback_below_mib(&self) -> Option<u64> {
        Some(self.p.overwhelmed_below_mib)
    }

    /// Multiplied factors go to `num`, divided penalties to `den`; one division at the end.
    #[inline(always)]
    fn base<T: Trace>(
        &self,
        s: &Snapshot,
        r: &Resolved<'_>,
        ni: usize,
        c: &Cand,
        t: &mut T,
    ) -> Key {
        let p = self.p;
        let row = &s.rows[ni];
        let flags = row.flags;
        let gpu_free = c.gpu_free_mib;
        let overflow = p.skip_penalties_when_overwhelmed & (gpu_free < p.overwhelmed_below_mib);
        let (load, latency, success) = row.signals(p);
        let mut num = p.base_score;
        let mut den = 1.0;
        t.term("base_score", num);

        // SOLLOL: CPU load vs complexity, skipped on an overwhelmed ("overflow") GPU.
        let (cf, name) = match r.complexity {
            Complexity::Complex if load > p.complex_busy_cpu_above => {
                (p.complex_busy_cpu_multiplier, "complex_busy_cpu")
            }
            Complexity::Complex if load < p.complex_idle_cpu_below => {
                (p.complex_idle_cpu_multiplier, "complex_idle_cpu")
            }
            Complexity::Simple if load > p.simple_busy_cpu_above => {
                (p.simple_busy_cpu_multiplier, "simple_busy_cpu")
            }
            _ => (1.0, ""),
        };
        num *= if overflow { 1.0 } else { cf };
        if !overflow && !name.is_empty() {
            t.term(name, cf);
        }

        let sf = if self.success_linear {
            success
        } else {
            success.powf(p.success_rate_exponent)
        };
        num *= sf;
        t.term("success_rate", sf);

        let g = if latency < p.latency_fast_below_ms {
            latency * self.inv_latency_fast
        } else if latency > p.latency_slow_above_ms {
            latency * self.inv_latency_scale
        } else {
            (latency * self.inv_latency_scale).min(p.latency_medium_cap)
        };
        let ld = if overflow {
            1.0
        } else {
            1.0 + g * self.latency_weight
        };
        den *= ld;
        if !overflow {
            t.term("latency", 1.0 / ld);
        }

        let active = row.active_requests;
        if active > 0 {
            let base = if gpu_free < p.overwhelmed_below_mib {
                p.active_base_overwhelmed
            } else if gpu_free < p.good_above_mib {
                p.active_base_small
            } else if gpu_free < p.excellent_above_mib {
                p.active_base_mid
            } else {
                p.active_base_large
            };
            let base = if latency < p.active_fast_latency_below_ms {
                (base * p.active_fast_factor).max(p.active_base_floor)
            } else if latency > p.active_slow_latency_above_ms {
                (base * p.active_slow_factor).min(p.active_base_cap)
            } else {
                base
            };
            let e = pow_u32(base, active);
            let lin = 1.0 + p.active_linear_penalty * f64::from(active);
            den *= e * lin;
            t.term("active_requests_exponential", 1.0 / e);
            t.term("active_requests_linear", 1.0 / lin);
        }

        let cl = 1.0 + load * self.load_weight;
        den *= cl;
        t.term("cpu_load", 1.0 / cl);

        let warm = c.fit == FitKind::AlreadyLoaded;
        let wf = if warm {
            p.warm_multiplier
        } else if row.loaded_len > 0 {
            p.cold_with_other_models_multiplier
        } else {
            1.0
        };
        num *= wf;
        if warm {
            t.term("warm_model", wf);
        } else if row.loaded_len > 0 {
            t.term("cold_other_models_loaded", wf);
        }

        let top = flags & TOP_PRIORITY != 0;
        num *= if top { self.top_node } else { 1.0 };
        if top {
            t.term("top_priority_node", self.top_node);
        }
        let task = row.tasks & r.task_bit != 0;
        num *= if task {
            p.preferred_task_multiplier
        } else {
            1.0
        };
        if task {
            t.term("preferred_task", p.preferred_task_multiplier);
        }
        let cpus = u32::from(row.cpu_count);
        if cpus > 1 {
            let bonus = (1.0 + f64::from(cpus) * self.inv_cpu_divisor).min(p.cpu_count_bonus_cap);
            let many = if cpus >= p.complex_many_cores_from {
                self.many_cores
            } else {
                1.0
            };
            num *= bonus * many;
            t.term("cpu_count", bonus);
            if many != 1.0 {
                t.term("complex_many_cores", many);
            }
        }
        num *= if c.preferred {
            p.affinity_multiplier
        } else {
            1.0
        };
        if c.preferred {
            t.term("affinity", p.affinity_multiplier);
        }
        let across = matches!(c.fit, FitKind::AcrossGpus { .. });
        num *= if across {
            p.across_gpus_multiplier
        } else {
            1.0
        };
        if across {
            t.term("across_gpus", p.across_gpus_multiplier);
        }
        Key {
            tier: 0,
            score: num / den,
        }
    }

    #[inline(always)]
    fn mode_factor<T: Trace>(
        &self,
        r: &Resolved<'_>,
        row: &NodeRow,
        c: &Cand,
        fallback: bool,
        t: &mut T,
    ) -> f64 {
        if !r.needs_gpu {
            return 1.0;
        }
        let p = self.p;
        let g = c.gpu_free_mib;
        let (name, f) = match (fallback, c.target) {
            (false, Target::Cpu) => ("gpu_task_on_cpu", p.gpu_task_on_cpu_multiplier),
            (false, Target::Gpu) => {
                if g < p.overwhelmed_below_mib {
                    if row.active_requests == 0 {
                        ("overwhelmed_gpu", p.overwhelmed_idle_multiplier)
                    } else {
                        (
                            "overwhelmed_busy_gpu",
                            p.overwhelmed_idle_multiplier * p.overwhelmed_busy_multiplier,
                        )
                    }
                } else if g > p.excellent_above_mib {
                    ("excellent_gpu", p.excellent_multiplier)
                } else if g > p.good_above_mib {
                    ("good_gpu", p.good_multiplier)
                } else {
                    ("mid_gpu", 1.0)
                }
            }
            (true, Target::Cpu) => ("fallback_cpu", p.fallback_cpu_multiplier),
            (true, Target::Gpu) => {
                if g < p.overwhelmed_below_mib {
                    (
                        "fallback_overwhelmed_gpu",
                        p.fallback_overwhelmed_gpu_multiplier,
                    )
                } else {
                    ("fallback_gpu", p.fallback_gpu_multiplier)
                }
            }
        };
        t.term(name, f);
        f
    }
}

/// Index of a bound class: large (`small = false`) or small models; requests that are
/// [`Complexity::Complex`] or not; requests in SOLLOL's GPU mode (`strict`: the request
/// needs a GPU and the cluster is not in CPU fallback) or not. The complexity factor and
/// the many-cores bonus apply only to complex requests, so a bound taken over both is up
/// to `complex_idle_cpu_multiplier × complex_many_cores_multiplier` (1.56 by default)
/// above every other request's score; in GPU mode a CPU placement gets
/// `gpu_task_on_cpu_multiplier` (0.2), where a bound over both modes allows
/// `fallback_cpu_multiplier` (1) — and a node without GPU, "overwhelmed", skips the
/// latency penalty, so its bound tops the GPU nodes' scores. On a cluster of similar
/// nodes the pruned search then scored most of them. One bound (and one order) per
/// class keeps each tight.
#[inline(always)]
pub(crate) fn bound_class(small: bool, complex: bool, strict: bool) -> usize {
    usize::from(small) + 2 * usize::from(complex) + 4 * usize::from(strict)
}

/// Bound classes: `bound_class(small, complex, strict)` for every combination.
pub(crate) const BOUND_CLASSES: usize = 8;

/// Index of a warm bound class (the model's size does not matter once it is loaded).
#[inline(always)]
pub(crate) fn warm_class(complex: bool, strict: bool) -> usize {
    usize::from(complex) + 2 * usize::from(strict)
}

/// Warm bound classes: `warm_class(complex, strict)` for every combination.
pub(crate) const WARM_CLASSES: usize = 4;

/// The request-independent part of a node's score bound, per complexity class (index
/// `usize::from(complex)`).
pub(crate) struct NodeStatic {
    /// Everything multiplied in regardless of placement, except the warm/cold factor.
    common: [f64; 2],
    /// Largest complexity factor / smallest latency divisor (not applied when overflowing).
    penalties: [f64; 2],
    /// Active-request factor per free-VRAM class (overwhelmed, small, mid, large).
    active: [f64; 4],
    /// Largest free VRAM of the node's GPUs (before reservations).
    max_free: u64,
    /// Usable VRAM of the GPU with the most free VRAM (first such GPU), 0 without GPU.
    top_usable: u64,
    /// Largest free VRAM a GPU placement can report: `max_free`, or for two GPUs or more
    /// the capacity across them (Σ min(usable, free)) when larger; 0 without GPU.
    gpu_free_hi: u64,
}

pub(crate) fn node_static(s: &Snapshot, p: &SollolParams, ni: usize) -> NodeStatic {
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
    let mut across = 0u64;
    for g in row.gpus() {
        let free = u64::from(s.gpus[g].free_mib);
        let usable = u64::from(s.gpus[g].usable_mib);
        across += usable.min(free);
        if top.is_none_or(|(f, _)| free > f) {
            top = Some((free, usable));
        }
    }
    let (max_free, top_usable) = top.unwrap_or((0, 0));
    let gpu_free_hi = if row.gpu_len >= 2 {
        max_free.max(across)
    } else {
        max_free
    };

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
    // The many-cores bonus: complex requests only.
    let mut many = 1.0;
    if cpus > 1 {
        common *= (1.0 + f64::from(cpus) * (1.0 / p.cpu_count_divisor)).min(p.cpu_count_bonus_cap);
        if cpus >= p.complex_many_cores_from {
            many = p.complex_many_cores_multiplier;
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
    // The complexity factor: simple (only a very busy CPU counts) or medium (none) for
    // the first class, exactly the complex one for the second.
    let simple_or_medium = if load > p.simple_busy_cpu_above {
        p.simple_busy_cpu_multiplier.max(1.0)
    } else {
        1.0
    };
    let complex = if load > p.complex_busy_cpu_above {
        p.complex_busy_cpu_multiplier
    } else if load < p.complex_idle_cpu_below {
        p.complex_idle_cpu_multiplier
    } else {
        1.0
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
        common: [common, common * many],
        penalties: [simple_or_medium / (1.0 + g), complex / (1.0 + g)],
        active,
        max_free,
        top_usable,
        gpu_free_hi,
    }
}

fn max_of(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// Bounds of a node's score for non-warm placements in the pruning regime, per
/// [`bound_class`]: for models of at least the overwhelmed threshold (`small = false`)
/// or below it, for complex requests or not.
///
/// A placement is "overwhelmed" (SOLLOL's overflow: penalties skipped, overwhelmed factors)
/// only if its free VRAM is below the threshold. A single GPU is chosen by most free VRAM
/// among those that fit, so for a model ≥ the threshold that never happens; for a smaller
/// model it happens only if the node's most-free GPU is below the threshold or cannot take
/// the model (usable below the threshold). A CPU placement uses the node's largest free VRAM.
pub(crate) fn node_bounds(
    s: &Snapshot,
    p: &SollolParams,
    ni: usize,
    st: &NodeStatic,
) -> [f64; BOUND_CLASSES] {
    let cold = if s.rows[ni].loaded_len > 0 {
        p.cold_with_other_models_multiplier
    } else {
        1.0
    };
    // The mode factor of a placement that is not overwhelmed: 1 (no GPU wanted, or a
    // mid GPU), a CPU's, or — only where a GPU can be chosen — a GPU's by its free VRAM
    // (reservations only lower it, so `gpu_free_hi` bounds it). A node without GPU would
    // otherwise get the excellent GPU's factor (2 by default) it can never have. In GPU
    // mode (`strict`) there is no fallback factor and no "no GPU wanted" 1.
    let has_gpu = s.rows[ni].gpu_len > 0;
    let gpu_mode = |on: bool, f: f64| if has_gpu && on { f } else { 0.0 };
    let gpu_hi = max_of(&[
        gpu_mode(true, 1.0),
        gpu_mode(st.gpu_free_hi > p.good_above_mib, p.good_multiplier),
        gpu_mode(
            st.gpu_free_hi > p.excellent_above_mib,
            p.excellent_multiplier,
        ),
    ]);
    let mode_hi = [
        max_of(&[
            1.0,
            gpu_hi,
            gpu_mode(true, p.fallback_gpu_multiplier),
            p.gpu_task_on_cpu_multiplier,
            p.fallback_cpu_multiplier,
        ]),
        max_of(&[gpu_hi, p.gpu_task_on_cpu_multiplier]),
    ];
    let overwhelmed = p.overwhelmed_idle_multiplier * p.overwhelmed_busy_multiplier.max(1.0);
    let mode_lo = [
        max_of(&[
            1.0,
            p.gpu_task_on_cpu_multiplier,
            p.fallback_cpu_multiplier,
            overwhelmed,
            p.fallback_overwhelmed_gpu_multiplier,
        ]),
        max_of(&[gpu_mode(true, overwhelmed), p.gpu_task_on_cpu_multiplier]),
    ];
    let mut out = [0.0; BOUND_CLASSES];
    for strict in [false, true] {
        let m = usize::from(strict);
        for complex in [false, true] {
            let c = usize::from(complex);
            let hi = st.penalties[c] * max_of(&st.active[1..]) * mode_hi[m];
            for small in [false, true] {
                let low = st.max_free < p.overwhelmed_below_mib
                    || small && st.top_usable < p.overwhelmed_below_mib;
                let lo = if low {
                    let pen = if p.skip_penalties_when_overwhelmed {
                        1.0
                    } else {
                        st.penalties[c]
                    };
                    pen * st.active[0] * mode_lo[m]
                } else {
                    0.0
                };
                out[bound_class(small, complex, strict)] =
                    st.common[c] * cold * hi.max(lo) * (1.0 + BOUND_SLACK);
            }
        }
    }
    out
}

/// Bounds of the warm placement's score of `model` on node `ni` (no reservations: the
/// placement and its free VRAM are then fixed), per [`warm_class`]; `bounds` are the
/// node's [`node_bounds`].
pub(crate) fn warm_bounds(
    s: &Snapshot,
    p: &SollolParams,
    ni: usize,
    model: u32,
    st: &NodeStatic,
    bounds: &[f64; BOUND_CLASSES],
) -> [f64; WARM_CLASSES] {
    let row = &s.rows[ni];
    let Some(k) = row.loaded().find(|&k| s.loaded_model[k] == model) else {
        return [0.0; WARM_CLASSES];
    };
    let slot = s.loaded_slot[k];
    let gpu_target = s.loaded_vram_mib[k] > 0;
    let g = if !gpu_target {
        st.max_free
    } else if slot != NO_SLOT {
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
    // [any mode, GPU mode]
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
        [max_of(&[1.0, normal, fallback]), normal]
    } else {
        [
            max_of(&[1.0, p.gpu_task_on_cpu_multiplier, p.fallback_cpu_multiplier]),
            p.gpu_task_on_cpu_multiplier,
        ]
    };
    let mut out = [0.0; WARM_CLASSES];
    for strict in [false, true] {
        for complex in [false, true] {
            let c = usize::from(complex);
            let pen = if over && p.skip_penalties_when_overwhelmed {
                1.0
            } else {
                st.penalties[c]
            };
            // A warm row on CPU with `allow_cpu = false` falls through to a cold placement.
            let cold = bounds[bound_class(false, complex, strict)]
                .max(bounds[bound_class(true, complex, strict)]);
            out[warm_class(complex, strict)] = (st.common[c]
                * p.warm_multiplier
                * pen
                * st.active[class]
                * mode[usize::from(strict)]
                * (1.0 + BOUND_SLACK))
                .max(cold);
        }
    }
    out
}
