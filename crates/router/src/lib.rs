//! `vramroute-router`: VRAM-aware fit checks, scoring policies and explanations.
//!
//! **Owns:** deciding where a model or request goes, given a cluster snapshot.
//! **Must not know:** Redis, GPU vendors, HTTP, clocks. It takes data in and returns
//! decisions; the coordinator builds the snapshot from registry records (its only
//! dependencies are serde, thiserror and arc-swap).
//!
//! Entry types:
//! - [`NodeSpec`] / [`GpuSpec`] / [`LoadedModel`]: what is known about each node (MiB).
//! - [`Snapshot::build`]: a compact, read-only, id-sorted view built once per update.
//! - [`Request`]: model, size, GPU need, priority, task, affinity, exclusions.
//! - [`Policy`]: `sollol` (default, [`SollolParams`]), `binpack`, `spread`.
//! - [`Snapshot::route`] → [`Decision`] (allocation-free) or [`NoRoute`];
//!   [`Snapshot::explain`] → [`Explanation`] (on demand).
//! - [`Router`]: snapshot + policy behind `ArcSwap`, for many routing threads and a
//!   concurrent updater; reservations keep routed loads counted until the next report.
//!
//! ```
//! use vramroute_router::{GpuSpec, LoadedModel, NodeSpec, Policy, Request, Router, Snapshot, SnapshotConfig};
//! let mut warm = NodeSpec::new("10.0.0.1:11434");
//! warm.gpus.push(GpuSpec::new(0, 12288, Some(5000)));
//! warm.loaded_models.push(LoadedModel::new("llama3.1:8b", 4700, 4700));
//! let mut idle = NodeSpec::new("10.0.0.2:11434");
//! idle.gpus.push(GpuSpec::new(0, 12288, Some(12000)));
//! let router = Router::new(Snapshot::build(vec![warm, idle], &SnapshotConfig::default())?, Policy::default())?;
//!
//! let req = Request::new("llama3.1:8b", 4700);
//! let d = router.route(&req).expect("a node fits");
//! println!("{}", router.explain(&req));
//! // Warm start (×1.5) on a good GPU (×1.5) beats a cold excellent GPU (×2.0).
//! assert_eq!(router.snapshot().node(d.node).id, "10.0.0.1:11434");
//! assert!(!d.needs_load());
//! # Ok::<(), vramroute_router::Error>(())
//! ```
//!
//! See `docs/router.md` for the rules, every constant and how each maps to SOLLOL.

mod error;
mod explain;
mod gpu_fit;
mod input;
mod model_name;
mod policy;
mod prune;
mod request;
mod route;
mod router;
mod snapshot;

pub use error::{Error, Result};
pub use explain::{Candidate, CpuMiss, Explanation, GpuMiss, RejectReason, Rejected, ScoreTerm};
pub use gpu_fit::GpuFit;
pub use input::{
    GpuSpec, LoadedModel, NodeSpec, RpcEndpoint, MAX_GPU_MEMORY_MIB, MAX_LATENCY_MS, MAX_RAM_MIB,
};
pub use model_name::{normalize_model_name, same_model};
pub use policy::{Policy, SollolParams};
pub use request::{Complexity, Request, TaskKind};
pub use route::{Decision, FitKind, NoRoute, Target};
pub use router::Router;
pub use snapshot::{
    FreeSource, NodeIndex, NodeStatus, Reservation, Snapshot, SnapshotConfig, SnapshotId,
    MAX_LABELS,
};
