//! How a live cluster builds its view and follows its feed ([`LiveConfig`]).

use std::time::Duration;

use vramroute_registry::ClusterView;
use vramroute_router::SnapshotConfig;

use crate::view::{OllamaNodeInfo, StatusView};

/// How a live cluster builds its view and follows its feed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LiveConfig {
    /// Reports older than this are stale, seconds.
    pub stale_after_s: f64,
    /// The router's snapshot settings (its `vram_safety_margin` is the view's too).
    pub snapshot: SnapshotConfig,
    /// How often report ages are recomputed.
    pub tick: Duration,
    /// Rediscovery even without change push.
    pub rediscover_every: Duration,
    /// How often [`Feed::ollama_nodes`] is asked again.
    pub ollama_every: Duration,
    /// Delay before retrying a lost or refused change subscription.
    pub watch_retry: Duration,
    /// How long a reservation is kept across updates.
    pub reservation_hold: Duration,
    /// Configured model sizes, MiB, copied into every view ([`StatusView::model_sizes`]);
    /// check them first with [`check_model_sizes`](crate::check_model_sizes).
    pub model_sizes: std::collections::BTreeMap<String, u64>,
    /// How often [`LiveCluster::publish_records`] (what `follow` runs) builds and
    /// stores the [`StatusView`] and tells the [`Observer`]: the router is updated
    /// from the records on every call, the view (per node a reference count to its shared row, O(nodes))
    /// at most this often, plus on the first call and, at most every quarter of this,
    /// when nodes joined or left.
    /// Between views, [`LiveCluster::view`] lags the router by up to this much (report
    /// ages, loaded models, free memory): routing never reads the view. Zero: a view
    /// on every call.
    pub view_interval: Duration,
    /// How much lower than the caller's the scheduling priority of the refresh work is
    /// when it runs on its own thread ([`LiveCluster::spawn_follow`]): the follow loop's
    /// registry reads, their decoding (and its helper threads) and the router updates
    /// run at the caller's nice value plus this (Linux; at most 19), so that they yield
    /// the CPU to the threads that route. 0 (the default): the same priority. Measured
    /// in docs/scale.md ("Decision tail: what preempts the decider"): on a machine
    /// loaded by other processes, 10 made staleness several times worse and did not
    /// shorten the decision tail, which other processes caused.
    pub refresh_nice: u8,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            stale_after_s: 30.0,
            snapshot: SnapshotConfig::default(),
            tick: Duration::from_secs(1),
            rediscover_every: Duration::from_secs(5),
            ollama_every: Duration::from_secs(30),
            watch_retry: Duration::from_secs(2),
            reservation_hold: Duration::from_secs(30),
            model_sizes: std::collections::BTreeMap::new(),
            view_interval: Duration::from_secs(1),
            refresh_nice: 0,
        }
    }
}

impl LiveConfig {
    /// Defaults with these staleness and snapshot settings.
    pub fn new(stale_after_s: f64, snapshot: SnapshotConfig) -> Self {
        LiveConfig {
            stale_after_s,
            snapshot,
            ..LiveConfig::default()
        }
    }

    /// Builds the view of `cluster` (plus Ollama answers) at `now`, Unix seconds.
    pub fn view_of(
        &self,
        cluster: &ClusterView,
        ollama: &[OllamaNodeInfo],
        source: String,
        now: f64,
    ) -> StatusView {
        let mut view = StatusView::from_cluster(
            cluster,
            source,
            now,
            self.stale_after_s,
            self.snapshot.vram_safety_margin,
        );
        if !ollama.is_empty() {
            view.merge_ollama(ollama);
        }
        view.model_sizes.clone_from(&self.model_sizes);
        view
    }
}
