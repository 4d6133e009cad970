//! What routing answers: a [`Decision`] (where, on which GPU, why it fits) or a
//! [`NoRoute`], and why a node was not a candidate ([`RejectReason`], [`GpuMiss`],
//! [`CpuMiss`]). Plain data shared by the fit check, the scorers, explanations and
//! reservations.

use std::fmt;

use serde::Serialize;

use crate::snapshot::{NodeIndex, NodeStatus, SnapshotId};

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
#[non_exhaustive]
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

/// The answer to a [`Request`](crate::Request): small, `Copy`, made without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[non_exhaustive]
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

/// Why the GPUs of a node cannot take the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum GpuMiss {
    /// Larger than the usable VRAM (total × margin) of every GPU.
    TooLarge {
        /// Model size, MiB.
        size_mib: u64,
        /// The largest usable VRAM, MiB.
        usable_mib: u64,
    },
    /// Some GPU is big enough but has too little free VRAM now.
    NotEnoughFree {
        /// Model size, MiB.
        size_mib: u64,
        /// The most free VRAM on a big-enough GPU, MiB.
        free_mib: u64,
    },
}

impl fmt::Display for GpuMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuMiss::TooLarge {
                size_mib,
                usable_mib,
            } => {
                write!(
                    f,
                    "Model too large ({size_mib}MB > {usable_mib}MB usable VRAM)"
                )
            }
            GpuMiss::NotEnoughFree { size_mib, free_mib } => {
                write!(
                    f,
                    "Not enough free VRAM ({size_mib}MB needed, {free_mib}MB free)"
                )
            }
        }
    }
}

/// Why the CPU of a node cannot take the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CpuMiss {
    /// The request does not allow a CPU placement.
    NotAllowed,
    /// Larger than the usable RAM (total × margin).
    RamTooSmall {
        /// Model size, MiB.
        size_mib: u64,
        /// Usable RAM, MiB.
        usable_mib: u64,
    },
    /// Not enough free RAM now.
    NotEnoughRam {
        /// Model size, MiB.
        size_mib: u64,
        /// Free RAM, MiB.
        free_mib: u64,
    },
}

impl fmt::Display for CpuMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuMiss::NotAllowed => f.write_str("CPU placement not allowed"),
            CpuMiss::RamTooSmall {
                size_mib,
                usable_mib,
            } => {
                write!(
                    f,
                    "Model too large for RAM ({size_mib}MB > {usable_mib}MB usable RAM)"
                )
            }
            CpuMiss::NotEnoughRam { size_mib, free_mib } => {
                write!(
                    f,
                    "Not enough free RAM ({size_mib}MB needed, {free_mib}MB free)"
                )
            }
        }
    }
}

/// Why a node was not a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectReason {
    /// Its last health check failed.
    Unhealthy,
    /// Its last report is too old.
    Stale {
        /// Report age, ms.
        age_ms: u64,
        /// Configured limit, ms.
        limit_ms: u64,
    },
    /// Its report holds impossible values (see the rejection's text).
    Invalid,
    /// It lacks a label the request requires.
    MissingLabel,
    /// The request excludes it (by id or label).
    Excluded,
    /// Neither its GPUs nor (where allowed) its CPU can hold the model.
    DoesNotFit {
        /// Why not on GPU (`None`: the node has no GPU).
        gpu: Option<GpuMiss>,
        /// Why not on CPU.
        cpu: CpuMiss,
    },
}

impl RejectReason {
    pub(crate) fn from_status(st: &NodeStatus) -> RejectReason {
        match st {
            NodeStatus::Eligible | NodeStatus::Invalid(_) => RejectReason::Invalid,
            NodeStatus::Unhealthy => RejectReason::Unhealthy,
            NodeStatus::Stale { age_ms, limit_ms } => RejectReason::Stale {
                age_ms: *age_ms,
                limit_ms: *limit_ms,
            },
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Unhealthy => f.write_str("Node unhealthy"),
            RejectReason::Stale { age_ms, limit_ms } => {
                write!(f, "Report stale ({age_ms}ms old > {limit_ms}ms)")
            }
            RejectReason::Invalid => f.write_str("Report invalid"),
            RejectReason::MissingLabel => f.write_str("Missing a required label"),
            RejectReason::Excluded => f.write_str("Excluded by the request"),
            RejectReason::DoesNotFit { gpu, cpu } => {
                match gpu {
                    Some(g) => write!(f, "{g}")?,
                    None => f.write_str("Node has no GPU")?,
                }
                write!(f, "; {cpu}")
            }
        }
    }
}
