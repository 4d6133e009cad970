//! The fit rules: a request resolved against a snapshot ([`Resolved`]) and one node's
//! placement for it ([`place`]): warm copy, else the best single GPU (size ≤ usable and
//! ≤ free), else a split where allowed, else the CPU where allowed. Shared by every policy,
//! by the pruned search and by explanations; the [`Trace`] side channel records rejections
//! for explanations and is a no-op on the hot path.

use crate::decision::{CpuMiss, FitKind, GpuMiss, RejectReason, Target};
use crate::request::{Complexity, Request};
use crate::snapshot::{Snapshot, ELIGIBLE, NO_SLOT, UNKNOWN_MIB};

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

/// The fit rule of one GPU: the model fits its usable VRAM (total × margin) and its free
/// VRAM now (reservations counted). Written once: placement and fit tables use it.
#[inline(always)]
pub(crate) fn gpu_fits(size: u64, usable: u64, free: u64) -> bool {
    (size <= usable) & (size <= free)
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
        let fits = gpu_fits(size, usable, free);
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
