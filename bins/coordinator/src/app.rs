//! What the daemon's tasks and HTTP handlers share.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use vramroute_cluster::{optimize_lock_ttl, LiveCluster, Outcome};

use crate::metrics::Metrics;
use crate::source::{Settings, Source};

/// The last optimize pass of this coordinator.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct OptimizeState {
    pub(crate) auto_optimize: bool,
    /// Whether this coordinator held the lock at its last attempt.
    pub(crate) holds_lock: bool,
    pub(crate) last_run: Option<f64>,
    pub(crate) outcomes: Vec<Outcome>,
}

/// Everything the HTTP handlers share.
pub(crate) struct App {
    pub(crate) settings: Settings,
    pub(crate) live: Arc<LiveCluster>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) optimize: Mutex<OptimizeState>,
    /// Probes of the rpc backends (cached), for `/v1/nodes` and `/v1/plan`.
    pub(crate) prober: vramroute_cluster::BackendProber,
    /// Keys the API's `/v1/*` requires (config `admin_requires_key`), if any.
    pub(crate) admin_keys: Option<vramroute_gateway::ApiKeys>,
    /// Where the cluster comes from (the dashboard's history reads its registry).
    pub(crate) source: Arc<Source>,
}

pub(crate) fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl App {
    pub(crate) fn optimize_state(&self) -> OptimizeState {
        locked(&self.optimize).clone()
    }
}

/// The optimize lock's time to live for this daemon's `check_interval`.
pub(crate) fn lock_ttl(app: &App) -> Duration {
    optimize_lock_ttl(Duration::from_secs_f64(
        app.settings.config.check_interval_s(),
    ))
}
