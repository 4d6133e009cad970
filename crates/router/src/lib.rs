//! `vramroute-router`: VRAM-aware fit checks, scoring policies and explanations.
//!
//! **Owns:** deciding where a model or request goes, given a cluster snapshot.
//! **Must not know:** Redis, GPU vendors, HTTP, clocks. It takes data in and returns
//! decisions; the coordinator builds the snapshot from registry records (its only
//! dependencies are serde, thiserror and arc-swap).
//!
//! Entry types:
//! - [`NodeSpec`] / [`GpuSpec`] / [`ResidentModel`]: what is known about each node (MiB).
//! - [`Snapshot::build`]: a compact, read-only, id-sorted view built once per update.
//! - [`Request`]: model, size, GPU need, priority, task, affinity, exclusions.
//! - [`Policy`]: `sollol` (default, [`SollolParams`]), `binpack`, `spread`.
//! - [`Snapshot::route`] → [`Decision`] (allocation-free) or [`NoRoute`];
//!   [`Snapshot::explain`] → [`Explanation`] (on demand).
//! - [`Router`]: snapshot + policy behind `ArcSwap`, for many routing threads and a
//!   concurrent updater; reservations keep routed loads counted until the next report.
//!
//! ```
//! use vramroute_router::{GpuSpec, ResidentModel, NodeSpec, Policy, Request, Router, Snapshot, SnapshotConfig};
//! let mut warm = NodeSpec::new("10.0.0.1:11434");
//! warm.gpus.push(GpuSpec::new(0, 12288, Some(5000)));
//! warm.loaded_models.push(ResidentModel::new("llama3.1:8b", 4700, 4700));
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
//!
//! ## Module layers
//!
//! The modules form a DAG; each may import (`use crate::…`) only modules listed before
//! it, and adds methods to [`Snapshot`] only from its own layer:
//! 1. `error`, `request`, `model_name` — leaves (errors, the request, the model-name rule).
//! 2. `policy` (error), `input` (error, request) — configuration and node descriptions.
//! 3. `snapshot` (error, input, model_name, policy) — the compact data, its build and
//!    accessors; holds the bound cache slot but not its contents.
//! 4. `decision` (snapshot) — `Decision`, `FitKind`, `Target`, `NoRoute`, miss reasons.
//! 5. `reservation` (decision, error, snapshot) — every reservation path and the
//!    "reserved" marks; `fit` (decision, request, snapshot) — the fit rules;
//!    `gpu_fit` (decision, error, fit, snapshot) — one GPU's fit with its reason.
//! 6. `scorer` (decision, fit, snapshot) — the `Scorer` trait, binpack/spread, the
//!    exhaustive scan.
//! 7. `sollol` (decision, fit, policy, request, scorer, snapshot) — SOLLOL's score and
//!    its bounds.
//! 8. `prune` (decision, fit, policy, scorer, snapshot, sollol) — the pruned search
//!    (reads the marks through `reservation`'s `Snapshot` methods).
//! 9. `route` (decision, fit, policy, prune, request, scorer, snapshot, sollol).
//! 10. `explain` (… route, scorer, sollol …); then `router` (decision, error, explain,
//!     policy, request, reservation, snapshot).

mod decision;
mod error;
mod explain;
mod fit;
mod gpu_fit;
mod input;
mod model_name;
mod policy;
mod prune;
mod request;
mod reservation;
mod route;
mod router;
mod scorer;
mod snapshot;
mod sollol;

pub use decision::{CpuMiss, Decision, FitKind, GpuMiss, NoRoute, RejectReason, Target};
pub use error::{Error, Result};
pub use explain::{Candidate, Explanation, Rejected, ScoreTerm};
pub use gpu_fit::GpuFit;
pub use input::{
    GpuSpec, NodeSpec, ResidentModel, RpcEndpoint, SmolStr, MAX_GPU_MEMORY_MIB, MAX_LATENCY_MS,
    MAX_RAM_MIB,
};
pub use model_name::{normalize_model_name, same_model};
pub use policy::{Policy, SollolParams};
pub use request::{Complexity, Request, TaskKind};
pub use reservation::Reservation;
pub use router::Router;
pub use snapshot::{
    FreeSource, NodeIndex, NodeStatus, Snapshot, SnapshotConfig, SnapshotId, MAX_LABELS,
};
