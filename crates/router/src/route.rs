//! The decision path: one pass over the snapshot's flat arrays, no allocation.
//!
//! Every node gets at most one placement (its best GPU, else all its GPUs together when
//! allowed, else its CPU), the policy turns that placement into a [`Key`], and the best
//! key wins; equal keys keep the earlier node (nodes are sorted by id) and, within a node,
//! the lower GPU index. The same generic code runs under [`explain`](crate::Snapshot::explain)
//! with a recording [`Trace`]; under `route` the trace is a no-op the compiler removes.

use serde::Serialize;

use crate::explain::{CpuMiss, GpuMiss, RejectReason};
use crate::policy::{Policy, SollolParams};
use crate::request::{Complexity, Request};
use crate::snapshot::{
    NodeIndex, NodeRow, Snapshot, SnapshotId, ELIGIBLE, NO_SLOT, TOP_PRIORITY, UNKNOWN_MIB,
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
    pub(crate) filters: bool,
    pub(crate) prefers: bool,
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
        // Labels no node has contribute no bit.
        let mask = |labels: &[&str]| {
            labels
                .iter()
                .filter_map(|l| s.label_bit(l))
                .fold(0, |m, b| m | b)
        };
        let exclude_mask = mask(req.exclude_labels);
        let prefer_mask = mask(req.prefer_labels);
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
    if row.gpu_len == 0 {
        return None;
    }
    let mut max_usable = 0;
    let mut free_of_big: Option<u64> = None;
    for slot in row.gpus() {
        let usable = u64::from(s.gpus[slot].usable_mib);
        max_usable = max_usable.max(usable);
        if size <= usable {
            let f = s.gpus[slot].free_now();
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

/// Offset that turns "least free" into "largest key" (free VRAM fits in `u32`).
const LEAST_FREE_KEY: u64 = 1 << 32;

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
        let labels = s.labels_of[ni];
        if r.require_impossible || labels & r.require_mask != r.require_mask {
            t.reject(ni, || RejectReason::MissingLabel);
            return Placed::Ineligible;
        }
        if labels & r.exclude_mask != 0 || r.exclude.contains(s, ni) {
            t.reject(ni, || RejectReason::Excluded);
            return Placed::Ineligible;
        }
    }
    let size = r.size;
    let gs = row.gpu_start as usize;
    let gpus = &s.gpus[row.gpus()];
    let mut node_max_free = 0u64;
    let mut best = usize::MAX;
    let mut best_key = 0u64;
    let mut sum_cap = 0u64;
    // Branch-light: the "fits" and "better" tests become selects, not jumps.
    for (k, g) in gpus.iter().enumerate() {
        let free = g.free_now();
        let usable = u64::from(g.usable_mib);
        node_max_free = node_max_free.max(free);
        sum_cap += usable.min(free);
        let fits = (size <= usable) & (size <= free);
        let key = if least_free {
            LEAST_FREE_KEY - free
        } else {
            free + 1
        };
        let key = if fits { key } else { 0 };
        let better = key > best_key;
        best = if better { k } else { best };
        best_key = if better { key } else { best_key };
    }
    if node_max_free > *max_gpu_free {
        *max_gpu_free = node_max_free;
    }
    let preferred = r.prefers && (s.labels_of[ni] & r.prefer_mask != 0 || r.prefer.contains(s, ni));

    if let Some(m) = r.model {
        let loaded = row.loaded();
        let ls = loaded.start;
        if let Some(k) = s.loaded_model[loaded].iter().position(|&x| x == m) {
            let k = ls + k;
            let slot = s.loaded_slot[k];
            if s.loaded_vram_mib[k] > 0 {
                let (gpu, free, slot) = if slot != NO_SLOT {
                    (
                        Some(s.gpu_index[slot as usize]),
                        s.gpus[slot as usize].free_now(),
                        slot,
                    )
                } else if gpus.len() == 1 {
                    (Some(s.gpu_index[gs]), gpus[0].free_now(), gs as u32)
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
        let free = if least_free {
            LEAST_FREE_KEY - best_key
        } else {
            best_key - 1
        };
        return Placed::Cand(Cand {
            target: Target::Gpu,
            gpu: Some(s.gpu_index[gs + best]),
            fit: FitKind::SingleGpu,
            gpu_free_mib: free,
            free_mib: free,
            leftover_mib: free - size,
            preferred,
            slot: (gs + best) as u32,
        });
    }
    let n = gpus.len();
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
    let ram_usable = s.ram[ni].usable_mib;
    let ram_free = s.ram_free_now(ni);
    if size > ram_usable || size > ram_free {
        t.reject(ni, || RejectReason::DoesNotFit {
            gpu: gpu_miss(s, ni, size),
            cpu: if size > ram_usable {
                CpuMiss::RamTooSmall {
                    size_mib: size,
                    usable_mib: ram_usable,
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
    /// An exact shortcut for this request, if the policy has one (see `prune.rs`).
    fn pruned(&self, _s: &Snapshot, _r: &Resolved<'_>) -> Option<Outcome> {
        None
    }
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

/// The `binpack` / `spread` scorer: least free memory first, or most.
pub(crate) struct ByFreeMemory {
    pub(crate) least_free: bool,
}

/// `binpack`.
pub(crate) const BIN_PACK: ByFreeMemory = ByFreeMemory { least_free: true };
/// `spread`.
pub(crate) const SPREAD: ByFreeMemory = ByFreeMemory { least_free: false };

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

    fn pruned(&self, s: &Snapshot, r: &Resolved<'_>) -> Option<Outcome> {
        crate::prune::prunable(r).then(|| crate::prune::run_pruned(s, self, r))
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

/// `binpack` (fill the fullest memory that still fits) and `spread` (most free memory
/// first) differ only in the direction of one key.
impl Scorer for ByFreeMemory {
    fn least_free(&self) -> bool {
        self.least_free
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
        let score = if self.least_free {
            t.term("leftover_mib", c.leftover_mib as f64);
            -(c.leftover_mib as f64)
        } else {
            t.term("free_mib", c.free_mib as f64);
            c.free_mib as f64
        };
        Key { tier, score }
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
    match sc.pruned(s, r) {
        Some(outcome) => outcome,
        None => run_exhaustive(s, sc, r),
    }
}

/// Scores every node (the reference the pruned search must match).
pub(crate) fn run_exhaustive<S: Scorer>(s: &Snapshot, sc: &S, r: &Resolved<'_>) -> Outcome {
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
        Policy::Sollol(p) => run(s, &Sollol::new(p, r), r),
        Policy::BinPack => run(s, &BIN_PACK, r),
        Policy::Spread => run(s, &SPREAD, r),
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
