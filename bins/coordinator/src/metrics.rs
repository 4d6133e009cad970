//! Prometheus metrics of the daemon (`GET /metrics`).

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use vramroute_cluster::{LoadSignals, StatusView};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The daemon's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    nodes: Family<StateLabels, Gauge>,
    gpus: Gauge,
    vram_free: Gauge<u64, AtomicU64>,
    vram_total: Gauge<u64, AtomicU64>,
    decisions: Family<OutcomeLabels, Counter>,
    decision_seconds: Histogram,
    registry_errors: Counter,
    skipped_records: Gauge<u64, AtomicU64>,
    redis_up: Gauge,
    optimize_runs: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("vramroute_coordinator");
        let m = Metrics {
            nodes: Family::default(),
            gpus: Gauge::default(),
            vram_free: Gauge::default(),
            vram_total: Gauge::default(),
            decisions: Family::default(),
            // 1 µs .. ~16 ms
            decision_seconds: Histogram::new(exponential_buckets(0.000_001, 2.0, 15)),
            registry_errors: Counter::default(),
            skipped_records: Gauge::default(),
            redis_up: Gauge::default(),
            optimize_runs: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "nodes",
            "Nodes in the view, by state (fresh, stale)",
            m.nodes.clone(),
        );
        registry.register("gpus", "GPUs of fresh nodes", m.gpus.clone());
        registry.register(
            "vram_free_mib",
            "Free VRAM over the GPUs of fresh nodes, MiB",
            m.vram_free.clone(),
        );
        registry.register(
            "vram_total_mib",
            "Total VRAM over the GPUs of fresh nodes, MiB",
            m.vram_total.clone(),
        );
        registry.register(
            "decisions",
            "Routing decisions by outcome (gpu, cpu, already_loaded, no_route)",
            m.decisions.clone(),
        );
        registry.register(
            "decision_duration_seconds",
            "Time one routing decision took (without the explanation)",
            m.decision_seconds.clone(),
        );
        registry.register(
            "registry_errors",
            "Failed registry reads (discovery, watch)",
            m.registry_errors.clone(),
        );
        registry.register(
            "skipped_records",
            "Registry records skipped as unusable (bad JSON, implausible values)",
            m.skipped_records.clone(),
        );
        registry.register(
            "redis_up",
            "1 when the last registry read succeeded",
            m.redis_up.clone(),
        );
        registry.register(
            "optimize_runs",
            "Optimize passes run by this coordinator (while holding the lock)",
            m.optimize_runs.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The registry, for other components' metrics (the gateway's).
    pub(crate) fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub(crate) fn observe_view(&self, view: &StatusView, skipped_total: u64) {
        let t = &view.totals;
        self.nodes
            .get_or_create(&StateLabels { state: "fresh" })
            .set(i64::try_from(t.nodes - t.stale_nodes).unwrap_or(i64::MAX));
        self.nodes
            .get_or_create(&StateLabels { state: "stale" })
            .set(i64::try_from(t.stale_nodes).unwrap_or(i64::MAX));
        self.gpus.set(i64::try_from(t.gpus).unwrap_or(i64::MAX));
        self.vram_free.set(t.vram_free_mb);
        self.vram_total.set(t.vram_total_mb);
        self.skipped_records.set(skipped_total);
    }

    pub(crate) fn observe_decision(&self, outcome: &'static str, seconds: f64) {
        self.decisions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.decision_seconds.observe(seconds);
    }

    pub(crate) fn registry_error(&self) {
        self.registry_errors.inc();
    }

    pub(crate) fn set_redis_up(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }

    pub(crate) fn optimize_ran(&self) {
        self.optimize_runs.inc();
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Feeds the cluster layer's events into the metrics, and forgets the gateway's load
/// signals of nodes that left (at most once per [`SIGNALS_PRUNE_EVERY`]).
pub(crate) struct MetricsObserver {
    metrics: Arc<Metrics>,
    signals: LoadSignals,
    pruned: Mutex<Instant>,
}

/// How often the load signals are pruned to the view's nodes.
const SIGNALS_PRUNE_EVERY: Duration = Duration::from_secs(30);

impl MetricsObserver {
    pub(crate) fn new(metrics: Arc<Metrics>, signals: LoadSignals) -> Self {
        MetricsObserver {
            metrics,
            signals,
            pruned: Mutex::new(Instant::now()),
        }
    }
}

/// Forgets the signals of nodes not in `view` (see [`LoadSignals::retain_nodes`]).
pub(crate) fn prune_signals(signals: &LoadSignals, view: &StatusView) {
    if signals.is_empty() {
        return;
    }
    let ids: HashSet<&str> = view.nodes.iter().map(|n| n.id.as_str()).collect();
    signals.retain_nodes(|id| ids.contains(id));
}

impl vramroute_cluster::Observer for MetricsObserver {
    fn view(&self, view: &StatusView, skipped_total: u64) {
        self.metrics.observe_view(view, skipped_total);
        let due = {
            let mut at = self.pruned.lock().unwrap_or_else(|p| p.into_inner());
            let due = at.elapsed() >= SIGNALS_PRUNE_EVERY;
            if due {
                *at = Instant::now();
            }
            due
        };
        if due {
            prune_signals(&self.signals, view);
        }
    }

    fn registry_ok(&self) {
        self.metrics.set_redis_up(true);
    }

    fn registry_error(&self, _error: &vramroute_cluster::Error) {
        self.metrics.set_redis_up(false);
        self.metrics.registry_error();
    }
}
