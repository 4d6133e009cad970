//! `vramroute-cluster`: the cluster layer — registry records in, a cluster view, model
//! sizes, fit tables, placement plans, optimize decisions and a live router out.
//!
//! **Owns:** the composition registry → view → router / alloc that the coordinator (or
//! any embedding application) needs, each rule once:
//! - [`StatusView`]: the serialisable cluster view, built from a registry
//!   [`ClusterView`](vramroute_registry::ClusterView) plus optional Ollama answers
//!   ([`OllamaNodeInfo`]), and turned into the router's node specs
//!   ([`StatusView::node_specs`]);
//! - [`model_size`] / [`model_estimate`]: the one size resolver (alloc's
//!   [`ModelSizer`](vramroute_alloc::ModelSizer) order, fed from the view);
//! - [`route`] / [`check`]: a routing answer and the fit table, both the router's own
//!   (check's best is route's choice);
//! - [`plan::workers`] / [`plan::make`]: the planner's inputs and a plan with commands;
//! - [`optimize()`]: load priority models on their best GPU nodes through Ollama;
//! - [`LiveCluster`]: a task following a registry [`Feed`] that keeps an arc-swapped
//!   router current, keeping reservations across updates, with the [`LoadSignals`] that
//!   forwarding measures (requests in flight, latency, success rate) fed to the router,
//!   and a [`DecisionLog`] of the recent routing decisions made through it;
//! - [`history()`]: VRAM per node and GPU over time, from the registry's stats stream
//!   plus the live view;
//! - [`sync_router_metadata`]: one upkeep step of SOLLOL's router metadata from the
//!   view's live registrations, written only while holding a lock.
//!
//! **Must not know:** Redis key names (the registry's), CLI flags, HTTP serving,
//! metrics formats, or process concerns. It does I/O only through the registry and the
//! Ollama client it is handed or told to build.
//!
//! Module layers (each imports only from layers above it): `error`, `signals` → `view` →
//! `sizes` → `route`, `plan`, `history`, `metadata` → `decisions` → `optimize`, `live` (`live_config`, `feed`).
//!
//! ```
//! use vramroute_cluster::{check, model_size, route, RouteQuery, StatusView};
//! use vramroute_registry::{ClusterView, GpuStat, GpuStatsRecord};
//! use vramroute_router::{Policy, Snapshot, SnapshotConfig};
//!
//! let mut record = GpuStatsRecord::default();
//! record.vendor = "nvidia".into();
//! record.node_id = "10.0.0.1:11434".into();
//! record.timestamp = 1_800_000_000.0;
//! let mut gpu = GpuStat::default();
//! gpu.name = "RTX 4090".into();
//! gpu.memory_total_mb = Some(24564);
//! gpu.memory_free_mb = Some(20000);
//! record.gpus.push(gpu);
//! let mut cluster = ClusterView::default();
//! cluster.stats.push((record.node_id.clone(), record.into()));
//!
//! let view = StatusView::from_cluster(&cluster, "example".into(), 1_800_000_001.0, 30.0, 0.8);
//! let cfg = SnapshotConfig::default();
//! let snap = Snapshot::build(view.node_specs(&cfg), &cfg)?;
//! let policy = Policy::default();
//! let answer = route(&view, &snap, &policy, &RouteQuery::new("llama3.1:8b", None))?;
//! let table = check(&view, &snap, &policy, "llama3.1:8b", None)?;
//! assert_eq!(answer.placement, table.best);
//! assert_eq!(model_size(&view, "llama3.1:8b", None)?.size_mb, 4700);
//! # Ok::<(), vramroute_cluster::Error>(())
//! ```

mod backends;
mod decisions;
mod error;
mod feed;
mod history;
mod live;
mod live_config;
mod lock;
mod metadata;
pub mod optimize;
pub mod plan;
mod priority;
mod route;
mod rows;
mod signals;
mod sizes;
mod specs;
mod view;
mod view_json;
mod view_rows;

pub use backends::BackendProber;
pub use decisions::{DecisionLog, RecentDecision, DEFAULT_DECISIONS_KEPT};
pub use error::{Error, Result};
pub use history::{
    history, HistoryAnswer, HistoryGpu, HistoryPoint, HistoryQuery, HISTORY_MAX_POINTS,
};
pub use live::{
    unix_now, Feed, FollowThread, Health, LiveCluster, LiveConfig, Observer, RegistryFeed,
    ReservationId,
};
pub use lock::{keep_lock_renewed, lock_owner_id, optimize_lock_ttl, LockRenewal, OPTIMIZE_LOCK};
pub use metadata::{registered_backends, sync_router_metadata, MetadataLock, MetadataSync};
pub use optimize::{optimize, optimize_tracked, OptimizeOptions, Outcome, PendingLoads};
pub use plan::PlanAnswer;
pub use route::{
    check, check_sized, route, route_sized, short_reason, CheckAnswer, GpuRoom, NodeFit, Placement,
    RouteAnswer, RouteQuery,
};
pub use rows::{BuiltView, SpecUpdate, ViewBuilder};
pub use signals::{InFlight, LoadSignals, NodeLoad};
pub use sizes::{
    check_model_sizes, model_catalogue, model_estimate, model_size, EstimateOptions, ModelRow,
    ModelSize, SizeCache, SizeSeen, MAX_MODEL_SIZE_MIB,
};
pub use view::{
    ask_ollama_nodes, derived_ollama_url, GpuView, InstalledView, LoadedView, NodeFacts, NodeView,
    OllamaNodeInfo, RpcBackendFacts, RpcBackendView, SkippedView, StatusView, Totals,
    FUTURE_SKEW_S,
};
