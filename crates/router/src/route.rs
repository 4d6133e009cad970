//! The decision path: one pass over the snapshot's flat arrays, no allocation.
//!
//! Every node gets at most one placement (its best GPU, else all its GPUs together when
//! allowed, else its CPU), the policy turns that placement into a [`Key`], and the best
//! key wins; equal keys keep the earlier node (nodes are sorted by id) and, within a node,
//! the lower GPU index. The same generic code runs under [`explain`](crate::Snapshot::explain)
//! with a recording [`Trace`]; under `route` the trace is a no-op the compiler removes.

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::explain::{CpuMiss, GpuMiss, RejectReason};
use crate::policy::{Policy, SollolParams};
use crate::request::{Complexity, Request};
use crate::snapshot::{
    NodeIndex, NodeRow, Snapshot, SnapshotId, ELIGIBLE, HAS_CPU_LOAD, HAS_LATENCY,
    HAS_SUCCESS_RATE, NO_SLOT, UNKNOWN_MIB,
};

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// On the node's GPU(s).
    Gpu,
    /// On the node's CPU and RAM.
    Cpu,
}

/// Why the placement is possible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FitKind {
    /// Fits one GPU: size ≤ usable and size ≤ free.
    SingleGpu,
    /// Fits the node's GPUs together (request allowed a split).
    AcrossGpus {
        /// How many GPUs share it.
        gpu_count: u16,
    },
    /// Already resident on the node (warm start): no new memory needed.
    AlreadyLoaded,
    /// CPU: the node has no GPU.
    CpuNoGpu,
    /// CPU: the node has GPUs but none fits.
    CpuGpuTooSmall,
}

/// The answer to a [`Request`]: small, `Copy`, made without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// The snapshot decided on (node indices are only meaningful there).
    pub snapshot: SnapshotId,
    /// The chosen node.
    pub node: NodeIndex,
    /// GPU or CPU.
    pub target: Target,
    /// The chosen GPU's index, when one GPU was chosen (or the model is loaded on it).
    pub gpu: Option<u32>,
    /// Why it fits.
    pub fit: FitKind,
    /// The policy's score (SOLLOL: the multiplied score; binpack: −leftover MiB; spread:
    /// free MiB). Comparable only within one policy.
    pub score: f64,
    /// SOLLOL's "all GPUs overwhelmed" CPU-fallback mode was in force.
    pub cpu_fallback: bool,
}

impl Decision {
    /// Whether the model still has to be loaded (not [`FitKind::AlreadyLoaded`]), i.e.
    /// whether the caller should reserve its size.
    pub fn needs_load(&self) -> bool {
        self.fit != FitKind::AlreadyLoaded
    }
}

/// Why no node was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NoRoute {
    /// The snapshot has no nodes at all.
    #[error("no nodes in the snapshot: are the reporters publishing?")]
    EmptySnapshot,
    /// Every node is stale, unhealthy, invalid, excluded or lacks a required label.
    #[error("no eligible node: every node is stale, unhealthy, invalid, excluded or lacks a required label")]
    NoEligibleNode,
    /// Eligible nodes exist but none can hold the model (on GPU, or on CPU where allowed).
    #[error("no eligible node can hold {size_mib}MB (on GPU, or on CPU where allowed)")]
    NothingFits {
        /// The requested size, MiB.
        size_mib: u64,
    },
}

/// Side channel for [`explain`](crate::Snapshot::explain); a no-op on the hot path.
pub(crate) trait Trace {
    fn reject(&mut self, node: usize, why: impl FnOnce() -> RejectReason);
    fn term(&mut self, name: &'static str, value: f64);
}

pub(crate) struct NoTrace;

impl Trace for NoTrace {
    #[inline(always)]
    fn reject(&mut self, _node: usize, _why: impl FnOnce() -> RejectReason) {}
    #[inline(always)]
    fn term(&mut self, _name: &'static str, _value: f64) {}
}

const SMALL_SET: usize = 16;

/// A request's node-id list resolved to indices without allocating: up to 16 ids on the
/// stack; longer lists are compared by id per node (correct, slower).
pub(crate) struct NodeSet<'a> {
    small: [u32; SMALL_SET],
    len: usize,
    slow: &'a [&'a str],
}

impl<'a> NodeSet<'a> {
    fn resolve(s: &Snapshot, ids: &'a [&'a str]) -> Self {
        let mut set = NodeSet {
            small: [0; SMALL_SET],
            len: 0,
            slow: &[],
        };
        if ids.len() > SMALL_SET {
            set.slow = ids;
        } else {
            for id in ids {
                if let Some(i) = s.node_index(id) {
                    set.small[set.len] = i.0;
                    set.len += 1;
                }
            }
        }
        set
    }

    fn is_empty(&self) -> bool {
        self.len == 0 && self.slow.is_empty()
    }

    #[inline]
    fn contains(&self, s: &Snapshot, node: usize) -> bool {
        self.small[..self.len].contains(&(node as u32))
            || self.slow.iter().any(|id| *id == s.specs[node].id)
    }
}

/// A request resolved against one snapshot (interned model, label bits, node sets).
pub(crate) struct Resolved<'a> {
    pub(crate) size: u64,
    pub(crate) model: Option<u32>,
    pub(crate) needs_gpu: bool,
    pub(crate) allow_cpu: bool,
    pub(crate) allow_multi_gpu: bool,
    pub(crate) priority: u8,
    pub(crate) task_bit: u8,
    pub(crate) complexity: Complexity,
    require_mask: u64,
    require_impossible: bool,
    exclude_mask: u64,
    prefer_mask: u64,
    exclude: NodeSet<'a>,
    prefer: NodeSet<'a>,
    filters: bool,
    prefers: bool,
}

impl<'a> Resolved<'a> {
    pub(crate) fn new(s: &Snapshot, req: &Request<'a>) -> Self {
        let mut require_mask = 0;
        let mut require_impossible = false;
        for l in req.require_labels {
            match s.label_bit(l) {
                Some(b) => require_mask |= b,
                None => require_impossible = true,
            }
        }
        let exclude_mask = req
            .exclude_labels
            .iter()
            .filter_map(|l| s.label_bit(l))
            .fold(0, |m, b| m | b);
        let prefer_mask = req
            .prefer_labels
            .iter()
            .filter_map(|l| s.label_bit(l))
            .fold(0, |m, b| m | b);
        let exclude = NodeSet::resolve(s, req.exclude_nodes);
        let prefer = NodeSet::resolve(s, req.prefer_nodes);
        let filters =
            require_mask != 0 || require_impossible || exclude_mask != 0 || !exclude.is_empty();
        let prefers = prefer_mask != 0 || !prefer.is_empty();
        Resolved {
            size: req.size_mib,
            model: s.model_id(req.model),
            needs_gpu: req.needs_gpu,
            allow_cpu: req.allow_cpu,
            allow_multi_gpu: req.allow_multi_gpu,
            priority: req.effective_priority(),
            task_bit: req.task.bit(),
            complexity: req.complexity,
            require_mask,
            require_impossible,
            exclude_mask,
            prefer_mask,
            exclude,
            prefer,
            filters,
            prefers,
        }
    }
}

/// One node's placement for the request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cand {
    pub(crate) target: Target,
    pub(crate) gpu: Option<u32>,
    pub(crate) fit: FitKind,
    /// Free VRAM SOLLOL's thresholds look at: the chosen GPU's (sum for a split); for a CPU
    /// placement the node's largest (0 without GPU).
    pub(crate) gpu_free_mib: u64,
    /// Spread's key: free memory where it goes, before placing (unknown RAM = 0).
    pub(crate) free_mib: u64,
    /// Binpack's key: free memory left after placing (unknown RAM = `u64::MAX`).
    pub(crate) leftover_mib: u64,
    /// The request's affinity prefers this node.
    pub(crate) preferred: bool,
    /// Absolute GPU slot of a single-GPU placement (for explanations).
    pub(crate) slot: u32,
}

pub(crate) enum Placed {
    Ineligible,
    NoFit,
    Cand(Cand),
}

pub(crate) fn gpu_miss(s: &Snapshot, node: usize, size: u64) -> Option<GpuMiss> {
    let row = s.rows[node];
    if row.gpu_start == row.gpu_end {
        return None;
    }
    let mut max_usable = 0;
    let mut free_of_big: Option<u64> = None;
    for slot in row.gpu_start as usize..row.gpu_end as usize {
        let usable = u64::from(s.gpus[slot].usable_mib);
        max_usable = max_usable.max(usable);
        if size <= usable {
            let f = s.gpu_free_now(slot);
            free_of_big = Some(free_of_big.map_or(f, |x: u64| x.max(f)));
        }
    }
    Some(match free_of_big {
        Some(free_mib) => GpuMiss::NotEnoughFree {
            size_mib: size,
            free_mib,
        },
        None => GpuMiss::TooLarge {
            size_mib: size,
            usable_mib: max_usable,
        },
    })
}

/// Finds the node's placement. `least_free` picks the fullest fitting GPU (binpack)
/// instead of the emptiest. Raises `max_gpu_free` to the node's largest free VRAM.
#[inline(always)]
pub(crate) fn place<T: Trace>(
    s: &Snapshot,
    r: &Resolved<'_>,
    ni: usize,
    least_free: bool,
    max_gpu_free: &mut u64,
    t: &mut T,
) -> Placed {
    let row = &s.rows[ni];
    if row.flags & ELIGIBLE == 0 {
        t.reject(ni, || RejectReason::from_status(&s.status[ni]));
        return Placed::Ineligible;
    }
    if r.filters {
        if r.require_impossible || row.labels & r.require_mask != r.require_mask {
            t.reject(ni, || RejectReason::MissingLabel);
            return Placed::Ineligible;
        }
        if row.labels & r.exclude_mask != 0 || r.exclude.contains(s, ni) {
            t.reject(ni, || RejectReason::Excluded);
            return Placed::Ineligible;
        }
    }
    let size = r.size;
    let gs = row.gpu_start as usize;
    let ge = row.gpu_end as usize;
    let gpus = &s.gpus[gs..ge];
    let reserved = &s.gpu_reserved[gs..ge];
    let mut node_max_free = 0u64;
    let mut best = usize::MAX;
    let mut best_free = 0u64;
    let mut sum_cap = 0u64;
    for (k, (g, res)) in gpus.iter().zip(reserved).enumerate() {
        let free = u64::from(g.free_mib).saturating_sub(res.load(Ordering::Relaxed));
        let usable = u64::from(g.usable_mib);
        node_max_free = node_max_free.max(free);
        sum_cap += usable.min(free);
        if size <= usable && size <= free {
            let better = best == usize::MAX
                || if least_free {
                    free < best_free
                } else {
                    free > best_free
                };
            if better {
                best = k;
                best_free = free;
            }
        }
    }
    if node_max_free > *max_gpu_free {
        *max_gpu_free = node_max_free;
    }
    let preferred = r.prefers && (row.labels & r.prefer_mask != 0 || r.prefer.contains(s, ni));

    if let Some(m) = r.model {
        let ls = row.loaded_start as usize;
        let le = row.loaded_end as usize;
        if let Some(k) = s.loaded_model[ls..le].iter().position(|&x| x == m) {
            let k = ls + k;
            let slot = s.loaded_slot[k];
            if s.loaded_vram_mib[k] > 0 {
                let (gpu, free, slot) = if slot != NO_SLOT {
                    (
                        Some(s.gpus[slot as usize].index),
                        s.gpu_free_now(slot as usize),
                        slot,
                    )
                } else if ge - gs == 1 {
                    (Some(gpus[0].index), s.gpu_free_now(gs), gs as u32)
                } else {
                    (None, node_max_free, NO_SLOT)
                };
                return Placed::Cand(Cand {
                    target: Target::Gpu,
                    gpu,
                    fit: FitKind::AlreadyLoaded,
                    gpu_free_mib: free,
                    free_mib: free,
                    leftover_mib: free,
                    preferred,
                    slot,
                });
            } else if r.allow_cpu {
                let ram = s.ram_free_now(ni);
                return Placed::Cand(Cand {
                    target: Target::Cpu,
                    gpu: None,
                    fit: FitKind::AlreadyLoaded,
                    gpu_free_mib: node_max_free,
                    free_mib: if ram == UNKNOWN_MIB { 0 } else { ram },
                    leftover_mib: ram,
                    preferred,
                    slot: NO_SLOT,
                });
            }
        }
    }

    if best != usize::MAX {
        return Placed::Cand(Cand {
            target: Target::Gpu,
            gpu: Some(gpus[best].index),
            fit: FitKind::SingleGpu,
            gpu_free_mib: best_free,
            free_mib: best_free,
            leftover_mib: best_free - size,
            preferred,
            slot: (gs + best) as u32,
        });
    }
    let n = ge - gs;
    if r.allow_multi_gpu && n >= 2 && size <= sum_cap {
        return Placed::Cand(Cand {
            target: Target::Gpu,
            gpu: None,
            fit: FitKind::AcrossGpus {
                gpu_count: u16::try_from(n).unwrap_or(u16::MAX),
            },
            gpu_free_mib: sum_cap,
            free_mib: sum_cap,
            leftover_mib: sum_cap - size,
            preferred,
            slot: NO_SLOT,
        });
    }
    if !r.allow_cpu {
        t.reject(ni, || RejectReason::DoesNotFit {
            gpu: gpu_miss(s, ni, size),
            cpu: CpuMiss::NotAllowed,
        });
        return Placed::NoFit;
    }
    let ram_free = s.ram_free_now(ni);
    if size > row.ram_usable_mib || size > ram_free {
        t.reject(ni, || RejectReason::DoesNotFit {
            gpu: gpu_miss(s, ni, size),
            cpu: if size > row.ram_usable_mib {
                CpuMiss::RamTooSmall {
                    size_mib: size,
                    usable_mib: row.ram_usable_mib,
                }
            } else {
                CpuMiss::NotEnoughRam {
                    size_mib: size,
                    free_mib: ram_free,
                }
            },
        });
        return Placed::NoFit;
    }
    Placed::Cand(Cand {
        target: Target::Cpu,
        gpu: None,
        fit: if n == 0 {
            FitKind::CpuNoGpu
        } else {
            FitKind::CpuGpuTooSmall
        },
        gpu_free_mib: node_max_free,
        free_mib: if ram_free == UNKNOWN_MIB { 0 } else { ram_free },
        leftover_mib: if ram_free == UNKNOWN_MIB {
            UNKNOWN_MIB
        } else {
            ram_free - size
        },
        preferred,
        slot: NO_SLOT,
    })
}

/// A candidate's rank: higher tier wins, then higher score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Key {
    pub(crate) tier: u8,
    pub(crate) score: f64,
}

impl Key {
    #[inline(always)]
    pub(crate) fn beats(self, other: Key) -> bool {
        self.tier > other.tier || (self.tier == other.tier && self.score > other.score)
    }
}

pub(crate) trait Scorer {
    /// Pick the fullest fitting GPU of a node rather than the emptiest.
    fn least_free(&self) -> bool;
    /// SOLLOL's CPU-fallback threshold, for policies that have that mode.
    fn fallback_below_mib(&self) -> Option<u64>;
    /// The mode-independent part of the key.
    fn base<T: Trace>(&self, s: &Snapshot, r: &Resolved<'_>, ni: usize, c: &Cand, t: &mut T)
        -> Key;
    /// The resource factor, which depends on whether CPU-fallback mode is in force.
    fn mode_factor<T: Trace>(
        &self,
        r: &Resolved<'_>,
        row: &NodeRow,
        c: &Cand,
        fallback: bool,
        t: &mut T,
    ) -> f64;
}

pub(crate) struct Sollol<'p>(pub(crate) &'p SollolParams);
pub(crate) struct BinPack;
pub(crate) struct Spread;

#[inline(always)]
fn mul<T: Trace>(score: &mut f64, t: &mut T, name: &'static str, f: f64) {
    *score *= f;
    t.term(name, f);
}

#[inline(always)]
fn div<T: Trace>(score: &mut f64, t: &mut T, name: &'static str, d: f64) {
    *score /= d;
    t.term(name, 1.0 / d);
}

impl Scorer for Sollol<'_> {
    fn least_free(&self) -> bool {
        false
    }

    fn fallback_below_mib(&self) -> Option<u64> {
        Some(self.0.overwhelmed_below_mib)
    }

    #[inline(always)]
    fn base<T: Trace>(
        &self,
        s: &Snapshot,
        r: &Resolved<'_>,
        ni: usize,
        c: &Cand,
        t: &mut T,
    ) -> Key {
        let p = self.0;
        let row = &s.rows[ni];
        let mut score = p.base_score;
        t.term("base_score", score);
        let gpu_free = c.gpu_free_mib;
        let overflow = p.skip_penalties_when_overwhelmed && gpu_free < p.overwhelmed_below_mib;
        let cpu_load = if row.flags & HAS_CPU_LOAD != 0 {
            f64::from(row.cpu_load)
        } else {
            p.default_cpu_load
        };
        let high_priority = r.priority >= p.high_priority_from;

        if !overflow {
            match r.complexity {
                Complexity::Complex => {
                    if cpu_load > p.complex_busy_cpu_above {
                        mul(
                            &mut score,
                            t,
                            "complex_busy_cpu",
                            p.complex_busy_cpu_multiplier,
                        );
                    } else if cpu_load < p.complex_idle_cpu_below {
                        mul(
                            &mut score,
                            t,
                            "complex_idle_cpu",
                            p.complex_idle_cpu_multiplier,
                        );
                    }
                }
                Complexity::Simple => {
                    if cpu_load > p.simple_busy_cpu_above {
                        mul(
                            &mut score,
                            t,
                            "simple_busy_cpu",
                            p.simple_busy_cpu_multiplier,
                        );
                    }
                }
                Complexity::Medium => {}
            }
        }

        let success = if row.flags & HAS_SUCCESS_RATE != 0 {
            f64::from(row.success_rate)
        } else {
            p.default_success_rate
        };
        let success = if p.success_rate_exponent == 1.0 {
            success
        } else {
            success.powf(p.success_rate_exponent)
        };
        mul(&mut score, t, "success_rate", success);

        let latency = if row.flags & HAS_LATENCY != 0 {
            f64::from(row.latency_ms)
        } else {
            p.default_latency_ms
        };
        if !overflow {
            let weight = 1.0 + f64::from(r.priority) * p.latency_priority_weight;
            let penalty = if latency < p.latency_fast_below_ms {
                latency / p.latency_fast_scale_ms * weight
            } else if latency > p.latency_slow_above_ms {
                latency / p.latency_scale_ms * weight
            } else {
                (latency / p.latency_scale_ms).min(p.latency_medium_cap) * weight
            };
            div(&mut score, t, "latency", 1.0 + penalty);
        }

        let active = row.active_requests;
        if active > 0 {
            let mut base = if gpu_free < p.overwhelmed_below_mib {
                p.active_base_overwhelmed
            } else if gpu_free < p.good_above_mib {
                p.active_base_small
            } else if gpu_free < p.excellent_above_mib {
                p.active_base_mid
            } else {
                p.active_base_large
            };
            if latency < p.active_fast_latency_below_ms {
                base = (base * p.active_fast_factor).max(p.active_base_floor);
            } else if latency > p.active_slow_latency_above_ms {
                base = (base * p.active_slow_factor).min(p.active_base_cap);
            }
            let n = i32::try_from(active).unwrap_or(i32::MAX);
            div(&mut score, t, "active_requests_exponential", base.powi(n));
            div(
                &mut score,
                t,
                "active_requests_linear",
                1.0 + p.active_linear_penalty * f64::from(active),
            );
        }

        let load_weight = if high_priority {
            p.cpu_load_weight_high_priority
        } else {
            p.cpu_load_weight
        };
        div(&mut score, t, "cpu_load", 1.0 + cpu_load * load_weight);

        if c.fit == FitKind::AlreadyLoaded {
            mul(&mut score, t, "warm_model", p.warm_multiplier);
        } else if row.loaded_end > row.loaded_start {
            mul(
                &mut score,
                t,
                "cold_other_models_loaded",
                p.cold_with_other_models_multiplier,
            );
        }
        if row.priority == 0 {
            let f = if high_priority {
                p.top_node_high_priority_multiplier
            } else {
                p.top_node_multiplier
            };
            mul(&mut score, t, "top_priority_node", f);
        }
        if row.tasks & r.task_bit != 0 {
            mul(&mut score, t, "preferred_task", p.preferred_task_multiplier);
        }
        if row.cpu_count > 1 {
            let bonus =
                (1.0 + f64::from(row.cpu_count) / p.cpu_count_divisor).min(p.cpu_count_bonus_cap);
            mul(&mut score, t, "cpu_count", bonus);
            if r.complexity == Complexity::Complex && row.cpu_count >= p.complex_many_cores_from {
                mul(
                    &mut score,
                    t,
                    "complex_many_cores",
                    p.complex_many_cores_multiplier,
                );
            }
        }
        if c.preferred {
            mul(&mut score, t, "affinity", p.affinity_multiplier);
        }
        if matches!(c.fit, FitKind::AcrossGpus { .. }) {
            mul(&mut score, t, "across_gpus", p.across_gpus_multiplier);
        }
        Key { tier: 0, score }
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
        let p = self.0;
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

/// Placement rank shared by binpack and spread: one GPU (or resident on GPU) > split > CPU.
#[inline(always)]
fn memory_tier<T: Trace>(c: &Cand, t: &mut T) -> u8 {
    let rank = match (c.target, c.fit) {
        (Target::Gpu, FitKind::AcrossGpus { .. }) => 1,
        (Target::Gpu, _) => 2,
        (Target::Cpu, _) => 0,
    };
    let warm = c.fit == FitKind::AlreadyLoaded;
    t.term("placement_rank", f64::from(rank));
    t.term("preferred", f64::from(u8::from(c.preferred)));
    t.term("warm", f64::from(u8::from(warm)));
    (rank << 2) | (u8::from(c.preferred) << 1) | u8::from(warm)
}

impl Scorer for BinPack {
    fn least_free(&self) -> bool {
        true
    }
    fn fallback_below_mib(&self) -> Option<u64> {
        None
    }
    #[inline(always)]
    fn base<T: Trace>(
        &self,
        _s: &Snapshot,
        _r: &Resolved<'_>,
        _ni: usize,
        c: &Cand,
        t: &mut T,
    ) -> Key {
        let tier = memory_tier(c, t);
        t.term("leftover_mib", c.leftover_mib as f64);
        Key {
            tier,
            score: -(c.leftover_mib as f64),
        }
    }
    #[inline(always)]
    fn mode_factor<T: Trace>(
        &self,
        _r: &Resolved<'_>,
        _row: &NodeRow,
        _c: &Cand,
        _fb: bool,
        _t: &mut T,
    ) -> f64 {
        1.0
    }
}

impl Scorer for Spread {
    fn least_free(&self) -> bool {
        false
    }
    fn fallback_below_mib(&self) -> Option<u64> {
        None
    }
    #[inline(always)]
    fn base<T: Trace>(
        &self,
        _s: &Snapshot,
        _r: &Resolved<'_>,
        _ni: usize,
        c: &Cand,
        t: &mut T,
    ) -> Key {
        let tier = memory_tier(c, t);
        t.term("free_mib", c.free_mib as f64);
        Key {
            tier,
            score: c.free_mib as f64,
        }
    }
    #[inline(always)]
    fn mode_factor<T: Trace>(
        &self,
        _r: &Resolved<'_>,
        _row: &NodeRow,
        _c: &Cand,
        _fb: bool,
        _t: &mut T,
    ) -> f64 {
        1.0
    }
}

pub(crate) struct Outcome {
    pub(crate) result: Result<Decision, NoRoute>,
    pub(crate) fallback: bool,
}

pub(crate) fn run<S: Scorer>(s: &Snapshot, sc: &S, r: &Resolved<'_>) -> Outcome {
    if s.is_empty() {
        return Outcome {
            result: Err(NoRoute::EmptySnapshot),
            fallback: false,
        };
    }
    let dual = r.needs_gpu && sc.fallback_below_mib().is_some();
    let least_free = sc.least_free();
    let mut best_normal: Option<(Key, usize, Cand)> = None;
    let mut best_fallback: Option<(Key, usize, Cand)> = None;
    let mut max_gpu_free = 0u64;
    let mut any_eligible = false;
    for ni in 0..s.rows.len() {
        let c = match place(s, r, ni, least_free, &mut max_gpu_free, &mut NoTrace) {
            Placed::Ineligible => continue,
            Placed::NoFit => {
                any_eligible = true;
                continue;
            }
            Placed::Cand(c) => c,
        };
        any_eligible = true;
        let row = &s.rows[ni];
        let base = sc.base(s, r, ni, &c, &mut NoTrace);
        let kn = Key {
            tier: base.tier,
            score: base.score * sc.mode_factor(r, row, &c, false, &mut NoTrace),
        };
        if best_normal.as_ref().is_none_or(|b| kn.beats(b.0)) {
            best_normal = Some((kn, ni, c));
        }
        if dual {
            let kf = Key {
                tier: base.tier,
                score: base.score * sc.mode_factor(r, row, &c, true, &mut NoTrace),
            };
            if best_fallback.as_ref().is_none_or(|b| kf.beats(b.0)) {
                best_fallback = Some((kf, ni, c));
            }
        }
    }
    let fallback = dual && sc.fallback_below_mib().is_some_and(|t| max_gpu_free < t);
    let best = if fallback { best_fallback } else { best_normal };
    let result = match best {
        Some((k, ni, c)) => Ok(Decision {
            snapshot: s.id,
            node: NodeIndex(ni as u32),
            target: c.target,
            gpu: c.gpu,
            fit: c.fit,
            score: k.score,
            cpu_fallback: fallback,
        }),
        None if any_eligible => Err(NoRoute::NothingFits { size_mib: r.size }),
        None => Err(NoRoute::NoEligibleNode),
    };
    Outcome { result, fallback }
}

pub(crate) fn run_policy(s: &Snapshot, policy: &Policy, r: &Resolved<'_>) -> Outcome {
    match policy {
        Policy::Sollol(p) => run(s, &Sollol(p), r),
        Policy::BinPack => run(s, &BinPack, r),
        Policy::Spread => run(s, &Spread, r),
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
}
