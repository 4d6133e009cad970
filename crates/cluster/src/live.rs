//! A live cluster: a task that follows a registry (change push, with periodic
//! rediscovery as the fallback) and keeps a [`Router`] and the [`StatusView`] current,
//! keeping the reservations made through it across updates until they expire.
//!
//! Reservations: a routed cold load takes memory that the node's next report may not
//! show yet. [`LiveCluster::route_and_reserve`] and [`LiveCluster::reserve`] record each
//! reservation with its time; every update re-applies the live ones (by node id and GPU
//! index) to the new snapshot and drops those older than
//! [`LiveConfig::reservation_hold`] or released with [`LiveCluster::release`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;
use tracing::{debug, info, warn};
use vramroute_registry::{ChangeStream, ClusterView};
use vramroute_router::{
    Decision, NoRoute, NodeSpec, Policy, Request, ResidentModel, Router, Snapshot,
};

use crate::decisions::DecisionLog;
use crate::error::{Error, Result};
use crate::feed::settle;
pub use crate::feed::{Feed, RegistryFeed};
pub use crate::live_config::LiveConfig;
use crate::rows::{BuiltView, ViewBuilder};
use crate::signals::LoadSignals;
use crate::sizes::SizeCache;
use crate::specs::apply_node_load;
use crate::view::{OllamaNodeInfo, StatusView};

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Registry health as a live cluster sees it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// `ok` or `degraded` (serving the last view).
    pub status: &'static str,
    /// The feed's description.
    pub source: String,
    /// Unix seconds of the last successful read.
    pub last_ok: Option<f64>,
    /// The last error, while degraded.
    pub error: Option<String>,
    /// How changes arrive (`KeyspaceEvents`, ..., or `none`).
    pub push: String,
}

/// What a live cluster reports as it goes (metrics, logs). Every method has a no-op
/// default.
pub trait Observer: Send + Sync {
    /// A new view was published; `skipped_total` counts records the registry skipped.
    fn view(&self, _view: &StatusView, _skipped_total: u64) {}
    /// A registry read succeeded.
    fn registry_ok(&self) {}
    /// A registry read failed.
    fn registry_error(&self, _error: &Error) {}
}

struct NoObserver;
impl Observer for NoObserver {}

/// A reservation made through a [`LiveCluster`], kept across updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ReservationId(u64);

#[derive(Debug, Clone)]
struct Held {
    id: u64,
    node_id: String,
    /// The model being loaded: the reservation ends when the node's report lists it.
    model: Option<String>,
    /// (GPU index or `None` for RAM, MiB).
    parts: Vec<(Option<u32>, u64)>,
    at: Instant,
}

/// A router and view kept current from a [`Feed`]. Share it in an `Arc`; run
/// [`follow`](Self::follow) on a task.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use vramroute_cluster::{LiveCluster, LiveConfig, RegistryFeed};
/// use vramroute_registry::{RedisRegistry, RegistryConfig};
/// use vramroute_router::{Policy, Request};
///
/// let redis = RedisRegistry::new_lazy("redis://127.0.0.1:6390", RegistryConfig::default())?;
/// let feed = Arc::new(RegistryFeed::new(redis, "redis 127.0.0.1:6390"));
/// let live = Arc::new(LiveCluster::start(feed.as_ref(), Policy::default(), LiveConfig::default()).await?);
/// tokio::spawn(live.clone().follow(feed));
/// let decision = live.router().route(&Request::new("llama3.1:8b", 4700));
/// # Ok(()) }
/// ```
pub struct LiveCluster {
    router: Router,
    view: ArcSwap<StatusView>,
    config: LiveConfig,
    health: Mutex<Health>,
    held: Mutex<Vec<Held>>,
    next_id: AtomicU64,
    observer: Box<dyn Observer>,
    signals: LoadSignals,
    decisions: DecisionLog,
    /// The records and Ollama answers read by [`start`](Self::start), for `follow`.
    first: Mutex<Option<(ClusterView, Vec<OllamaNodeInfo>)>>,
    /// Per-node rows of the last view built from records ([`publish_records`](Self::publish_records)).
    builder: Mutex<ViewBuilder>,
    /// When `publish_records` last stored a view, and whether a later call skipped one.
    view_state: Mutex<ViewState>,
    /// Bumped when a follow cycle's refresh starts and when it ends (see
    /// [`LiveCluster::refreshes`]).
    refreshes: AtomicU64,
    /// Model sizes resolved on the current view ([`LiveCluster::model_size`]).
    sizes: SizeCache,
}

#[derive(Debug, Default)]
struct ViewState {
    last: Option<Instant>,
    pending: bool,
    /// The skipped view differs from the stored one by nodes that joined or left.
    members_pending: bool,
}

impl ViewState {
    /// How long after the last view the next is due: `interval`, or a quarter of it
    /// when nodes joined or left (a status reader sees them sooner, and a churning
    /// cluster still builds at most four views per interval).
    fn spacing(&self, interval: Duration, members_changed: bool) -> Duration {
        if members_changed || self.members_pending {
            interval / 4
        } else {
            interval
        }
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for LiveCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCluster")
            .field("nodes", &self.view.load().nodes.len())
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl LiveCluster {
    /// A live cluster serving `view` until the first update.
    pub fn new(view: StatusView, policy: Policy, config: LiveConfig) -> Result<LiveCluster> {
        let snap = Snapshot::build(view.node_specs(&config.snapshot), &config.snapshot)?;
        let router = Router::new(snap, policy)?;
        Ok(LiveCluster {
            router,
            health: Mutex::new(Health {
                status: "ok",
                source: view.source.clone(),
                last_ok: Some(unix_now()),
                error: None,
                push: "none".to_owned(),
            }),
            view: ArcSwap::from_pointee(view),
            config,
            held: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            observer: Box::new(NoObserver),
            signals: LoadSignals::default(),
            decisions: DecisionLog::default(),
            first: Mutex::new(None),
            builder: Mutex::new(ViewBuilder::new()),
            view_state: Mutex::new(ViewState::default()),
            refreshes: AtomicU64::new(0),
            sizes: SizeCache::default(),
        })
    }

    /// Reads `feed` once and serves what it read. A feed that cannot be read is an error.
    pub async fn start(feed: &dyn Feed, policy: Policy, config: LiveConfig) -> Result<LiveCluster> {
        if let Some(view) = feed.saved_view() {
            return LiveCluster::new(view, policy, config);
        }
        // The first read hands back every record, also from a changes-only registry
        // that was read before.
        feed.resync();
        let mut cluster = feed.discover().await?.unwrap_or_default();
        let ollama = feed.ollama_nodes().await;
        // The view `view_of` would give, through the builder that follows: its rows are
        // those of this read (a changes-only registry's next read refers to them).
        let mut builder = ViewBuilder::new();
        let built = builder.build(&config, &cluster, &ollama, feed.describe(), unix_now());
        let live = LiveCluster::new(built.view, policy, config)?;
        *locked(&live.builder) = builder;
        settle(&mut cluster);
        *locked(&live.first) = Some((cluster, ollama));
        Ok(live)
    }

    /// Follow cycles' refreshes (a registry read and its decoding, a router update) as
    /// a counter bumped when one starts and when it ends: odd while one runs. A caller
    /// reading it before and after an operation knows whether a refresh ran meanwhile
    /// (measurements: does routing slow down while the router is updated?).
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// Runs [`follow`](Self::follow) on a thread of its own ("vramroute-follow", with a
    /// single-threaded runtime), its scheduling priority lowered by
    /// [`LiveConfig::refresh_nice`] (logged at start, with the reason when it could not
    /// be): the refresh work then yields to the threads that route. Stops when the
    /// returned handle is dropped (or [`FollowThread::stop`]). What the follow loop's
    /// connections had already started on the caller's runtime (a registry connection
    /// opened by [`start`](Self::start)) keeps running there.
    pub fn spawn_follow<F: Feed + ?Sized + 'static>(
        self: Arc<Self>,
        feed: Arc<F>,
    ) -> std::io::Result<FollowThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let nice = self.config.refresh_nice;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vramroute-follow".to_owned())
            .spawn(move || {
                crate::priority::lower_this_thread(nice);
                runtime.block_on(async move {
                    tokio::select! {
                        () = self.follow(feed) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(FollowThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Reports views and registry health to `observer` from now on.
    pub fn with_observer(mut self, observer: Box<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// The router (lock-free; route from any thread).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The current view. Followed from records ([`publish_records`](Self::publish_records)),
    /// it is rebuilt at most every [`LiveConfig::view_interval`] (every quarter of it
    /// when nodes joined or left), so it can lag the router: a node the router routes
    /// to may be missing from the view for up to a quarter of that interval after it
    /// joined, and a node's figures can be up to that interval old.
    pub fn view(&self) -> Arc<StatusView> {
        self.view.load_full()
    }

    /// [`model_size`](crate::model_size) of `model` on the current view, resolved once
    /// per view and model ([`SizeCache`]): what a request's routing size costs on the
    /// hot path (a lookup, where resolving walks every node's models).
    pub fn model_size(&self, model: &str, explicit_mb: Option<u64>) -> Result<crate::ModelSize> {
        self.sizes.model_size(&self.view(), model, explicit_mb)
    }

    /// The settings in force.
    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    /// The load signals fed into every published view (record into them what
    /// forwarding measures).
    pub fn signals(&self) -> &LoadSignals {
        &self.signals
    }

    /// The recent routing decisions made through this cluster (record into it what
    /// routes on its router: the HTTP API, the gateway).
    pub fn decisions(&self) -> &DecisionLog {
        &self.decisions
    }

    /// Registry health.
    pub fn health(&self) -> Health {
        locked(&self.health).clone()
    }

    /// Publishes `view`: a new snapshot for the router with the held reservations
    /// re-applied. A view the router cannot take (it never happens for views this crate
    /// builds) is logged and the old one kept. Every node spec is made from the view;
    /// [`publish_records`](Self::publish_records) reuses those of unchanged nodes.
    pub fn publish(&self, view: StatusView, skipped_total: u64) {
        let mut specs: Vec<(Arc<NodeSpec>, u64)> = view
            .node_specs(&self.config.snapshot)
            .into_iter()
            .map(|s| {
                let age = s.report_age_ms;
                (Arc::new(s), age)
            })
            .collect();
        self.load_specs(&mut specs);
        self.publish_built(
            BuiltView {
                view,
                specs: Vec::new(),
            },
            Some(specs),
            skipped_total,
        );
    }

    /// Updates the router from `cluster` (plus Ollama answers) at `now`, Unix
    /// seconds, as [`publish`](Self::publish) of [`LiveConfig::view_of`] would,
    /// reusing each node's spec while its record is the same `Arc` as at the previous
    /// call (see [`ViewBuilder`]): the router's cost follows the changed records. The
    /// view is built, stored and reported to the observer only when due (see
    /// [`LiveConfig::view_interval`]); with Ollama answers (small clusters) on every
    /// call, since the specs are made from the merged view.
    ///
    /// Returns `false`, publishing nothing, when `cluster` is a changes-only read
    /// ([`ClusterView::changes_only`]) that names records unchanged which this cluster
    /// has no rows for (it was not given the read before): the feed should then forget
    /// what it kept ([`Feed::resync`]) and be read again.
    pub fn publish_records(
        &self,
        cluster: &ClusterView,
        ollama: &[OllamaNodeInfo],
        source: String,
        now: f64,
        skipped_total: u64,
    ) -> bool {
        let mut builder = locked(&self.builder);
        if !ollama.is_empty() {
            let built = builder.build(&self.config, cluster, ollama, source, now);
            if refused(&mut builder) {
                return false;
            }
            drop(builder);
            self.publish_built(built, None, skipped_total);
            return true;
        }
        let update = builder.update(&self.config, cluster, now);
        if refused(&mut builder) {
            return false;
        }
        let due = self.view_due(update.members_changed);
        let view = due.then(|| builder.view(&self.config, cluster, source, now));
        drop(builder);
        let mut specs = update.specs;
        self.load_specs(&mut specs);
        self.update_router(specs);
        match view {
            Some(view) => self.store_view(view, skipped_total),
            None => {
                let mut state = locked(&self.view_state);
                state.pending = true;
                state.members_pending |= update.members_changed;
            }
        }
        true
    }

    /// Whether `publish_records` should build a view now.
    fn view_due(&self, members_changed: bool) -> bool {
        let interval = self.config.view_interval;
        let state = locked(&self.view_state);
        let spacing = state.spacing(interval, members_changed);
        interval.is_zero() || state.last.is_none_or(|t| t.elapsed() >= spacing)
    }

    /// How long until a view skipped by `publish_records` is due (`None`: none skipped).
    fn view_wait(&self) -> Option<Duration> {
        let state = locked(&self.view_state);
        if !state.pending {
            return None;
        }
        let since = state.last.map_or(Duration::MAX, |t| t.elapsed());
        Some(
            state
                .spacing(self.config.view_interval, false)
                .saturating_sub(since),
        )
    }

    /// Applies the measured load to `specs` (copying only the specs of nodes with load).
    fn load_specs(&self, specs: &mut [(Arc<NodeSpec>, u64)]) {
        let all = self.signals.all();
        if all.is_empty() {
            return;
        }
        for (spec, _) in specs {
            if let Some(load) = all.get(spec.id.as_str()) {
                apply_node_load(Arc::make_mut(spec), Some(load));
            }
        }
    }

    /// Publishes a view with its specs (`specs` given: made from the view, already
    /// with its load; else `built.specs`, without load).
    fn publish_built(
        &self,
        built: BuiltView,
        specs: Option<Vec<(Arc<NodeSpec>, u64)>>,
        skipped_total: u64,
    ) {
        let BuiltView {
            view,
            specs: unloaded,
        } = built;
        let specs = specs.unwrap_or_else(|| {
            let mut specs = unloaded;
            self.load_specs(&mut specs);
            specs
        });
        self.update_router(specs);
        self.store_view(view, skipped_total);
    }

    /// A new snapshot of `specs` (with load) for the router, the held reservations
    /// re-applied. Specs the router cannot take (it never happens for specs this crate
    /// builds) are logged and the old snapshot kept.
    fn update_router(&self, mut specs: Vec<(Arc<NodeSpec>, u64)>) {
        let held = self.prune_held(&specs);
        mark_loading(&mut specs, &held);
        match Snapshot::build_shared(specs, &self.config.snapshot) {
            Ok(snap) => {
                for h in &held {
                    if let Some(node) = snap.node_index(&h.node_id) {
                        for (gpu, mib) in &h.parts {
                            // A GPU that left the node's report takes its reservation
                            // with it.
                            let _ = snap.reserve(node, *gpu, *mib);
                        }
                    }
                }
                self.router.update(snap);
            }
            Err(e) => warn!("cannot build a routing snapshot: {e}"),
        }
    }

    /// Stores `view` (with the measured load) and reports it to the observer.
    fn store_view(&self, mut view: StatusView, skipped_total: u64) {
        view.apply_load(&self.signals);
        self.observer.view(&view, skipped_total);
        self.view.store(Arc::new(view));
        let mut state = locked(&self.view_state);
        state.last = Some(Instant::now());
        state.pending = false;
        state.members_pending = false;
    }

    /// Drops the held reservations that expired and those whose model the node's
    /// report (its spec, before reservations mark anything loading) now lists loaded;
    /// returns the rest.
    fn prune_held(&self, specs: &[(Arc<NodeSpec>, u64)]) -> Vec<Held> {
        let hold = self.config.reservation_hold;
        let mut held = locked(&self.held);
        held.retain(|h| {
            let loaded = h.model.as_deref().is_some_and(|m| {
                specs.iter().any(|(s, _)| {
                    s.id == h.node_id
                        && s.loaded_models
                            .iter()
                            .any(|l| vramroute_router::same_model(&l.name, m))
                })
            });
            h.at.elapsed() < hold && !loaded
        });
        held.clone()
    }

    fn hold(
        &self,
        node_id: String,
        model: Option<String>,
        parts: Vec<(Option<u32>, u64)>,
    ) -> ReservationId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        locked(&self.held).push(Held {
            id,
            node_id,
            model,
            parts,
            at: Instant::now(),
        });
        ReservationId(id)
    }

    /// Routes `req` and, for a cold load, reserves its size where it goes (see
    /// [`Router::route_and_reserve`]); the reservation is kept across updates until the
    /// node's report lists the model loaded, it is [released](Self::release), or
    /// [`LiveConfig::reservation_hold`] passes.
    pub fn route_and_reserve(
        &self,
        req: &Request<'_>,
    ) -> std::result::Result<(Decision, Option<ReservationId>), NoRoute> {
        let (d, r) = self.router.route_and_reserve(req)?;
        let Some(r) = r else {
            return Ok((d, None));
        };
        // The model is already loading there (a reservation made since the last
        // publish): one load, one reservation.
        let loading = locked(&self.held).iter().any(|h| {
            h.node_id == r.node_id
                && h.model
                    .as_deref()
                    .is_some_and(|m| vramroute_router::same_model(m, req.model))
        });
        if loading {
            let _ = self.router.release(&r);
            return Ok((d, None));
        }
        Ok((
            d,
            Some(self.hold(r.node_id, Some(req.model.to_owned()), r.parts)),
        ))
    }

    /// Reserves `mib` on a node's GPU (`Some(index)`) or RAM (`None`), kept across
    /// updates.
    pub fn reserve(&self, node_id: &str, gpu: Option<u32>, mib: u64) -> Result<ReservationId> {
        self.router.reserve_node(node_id, gpu, mib)?;
        Ok(self.hold(node_id.to_owned(), None, vec![(gpu, mib)]))
    }

    /// Ends a reservation now (the load finished or failed).
    pub fn release(&self, id: ReservationId) {
        let mut held = locked(&self.held);
        let snap = self.router.snapshot();
        held.retain(|h| {
            if h.id != id.0 {
                return true;
            }
            if let Some(node) = snap.node_index(&h.node_id) {
                for (gpu, mib) in &h.parts {
                    let _ = snap.release(node, *gpu, *mib);
                }
            }
            false
        });
    }

    /// Reservations held now.
    pub fn reservations_held(&self) -> usize {
        locked(&self.held).len()
    }

    fn set_ok(&self) {
        let mut h = locked(&self.health);
        if h.status != "ok" {
            info!(source = %h.source, "registry reachable: view is live again");
        }
        h.status = "ok";
        h.last_ok = Some(unix_now());
        h.error = None;
        drop(h);
        self.observer.registry_ok();
    }

    fn set_degraded(&self, e: &Error) {
        let mut h = locked(&self.health);
        if h.status == "ok" {
            warn!("registry read failed, serving the last view (nodes go stale after stale_after): {e}");
        }
        h.status = "degraded";
        h.error = Some(format!(
            "{e}; serving the last view, nodes go stale after their report age exceeds stale_after"
        ));
        drop(h);
        self.observer.registry_error(e);
    }

    /// Follows `feed` until the task is dropped: rediscovers on every change push (a
    /// burst coalesced into one read), every `rediscover_every` without one, and
    /// republishes every `tick` so report ages and staleness stay current. A failed read
    /// keeps the last records (health `degraded`); a lost subscription is retried.
    pub async fn follow<F: Feed + ?Sized>(self: Arc<Self>, feed: Arc<F>) {
        let cfg = self.config.clone();
        let mut tick = tokio::time::interval(cfg.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let saved = feed.saved_view();
        let first = locked(&self.first).take();
        let have_first = first.is_some();
        let (mut cluster, mut ollama) = first.unwrap_or_default();
        let mut have_cluster = have_first;
        let mut stream: Option<ChangeStream> = None;
        let mut watch_due = Instant::now();
        let now = Instant::now();
        let mut last_discover = have_first.then_some(now);
        let mut last_ollama = have_first.then_some(now);
        let mut dirty = !have_first;
        loop {
            // A view skipped by the last cycle (see `LiveConfig::view_interval`) is
            // built by a cycle when it is due, even without a change or a tick.
            let view_wait = self.view_wait();
            tokio::select! {
                _ = tick.tick() => {}
                () = tokio::time::sleep(view_wait.unwrap_or_default()), if view_wait.is_some() => {}
                change = next_change(&mut stream) => match change {
                    Some(c) => { debug!(?c, "registry change"); dirty = true; }
                    None => { stream = None; }
                },
            }
            if let Some(s) = stream.as_mut() {
                while s.try_recv().is_some() {}
            }
            if let Some(view) = &saved {
                self.publish(view.clone(), 0);
                continue;
            }
            if feed.wants_push() && stream.is_none() && Instant::now() >= watch_due {
                if let Some(reg) = feed.registry() {
                    match tokio::time::timeout(Duration::from_secs(5), reg.watch()).await {
                        Ok(Ok(s)) => {
                            locked(&self.health).push = format!("{:?}", s.mode());
                            stream = Some(s);
                            dirty = true;
                        }
                        Ok(Err(e)) => debug!("change push unavailable, retrying: {e}"),
                        Err(_) => debug!("change push subscription timed out, retrying"),
                    }
                }
                watch_due = Instant::now() + cfg.watch_retry;
            }
            let _refresh = Refreshing::new(&self.refreshes);
            let due = last_discover.is_none_or(|t| t.elapsed() >= cfg.rediscover_every);
            if dirty || due {
                last_discover = Some(Instant::now());
                match feed.discover().await {
                    Ok(c) => {
                        cluster = c.unwrap_or_default();
                        have_cluster = true;
                        dirty = false;
                        self.set_ok();
                    }
                    Err(e) => self.set_degraded(&e),
                }
            }
            if last_ollama.is_none_or(|t| t.elapsed() >= cfg.ollama_every) {
                last_ollama = Some(Instant::now());
                ollama = feed.ollama_nodes().await;
            }
            if !have_cluster {
                continue;
            }
            let skipped = feed.registry().map_or(0, |r| r.skipped_records_total());
            if self.publish_records(&cluster, &ollama, feed.describe(), unix_now(), skipped) {
                settle(&mut cluster);
            } else {
                // Not published (`publish_records` said why): read every record
                // again, now.
                debug!("reading every record again");
                feed.resync();
                match feed.discover().await {
                    Ok(c) => {
                        cluster = c.unwrap_or_default();
                        if self.publish_records(
                            &cluster,
                            &ollama,
                            feed.describe(),
                            unix_now(),
                            skipped,
                        ) {
                            settle(&mut cluster);
                        }
                    }
                    Err(e) => {
                        self.set_degraded(&e);
                        dirty = true;
                    }
                }
            }
        }
    }
}

/// Whether the builder's last update lost track of a changes-only read (said in the
/// log, with what happened): nothing is published from it.
fn refused(builder: &mut ViewBuilder) -> bool {
    let Some(why) = builder.take_lost_track_reason() else {
        return false;
    };
    warn!(
        "a changes-only registry read cannot be applied ({why}): nothing published \
         from it; the registry should hand back every record again"
    );
    true
}

/// The follow loop on its own thread ([`LiveCluster::spawn_follow`]). Dropping it stops
/// the loop (at its next await point) without waiting for the thread.
#[derive(Debug)]
pub struct FollowThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FollowThread {
    /// Stops the loop and waits for its thread to end.
    pub fn stop(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FollowThread {
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

/// Bumps the refresh counter now and when dropped (see [`LiveCluster::refreshes`]).
struct Refreshing<'a>(&'a AtomicU64);

impl<'a> Refreshing<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Refreshing(counter)
    }
}

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Marks each held reservation's model as resident on its node (where the load goes):
/// requests for it route there warm instead of loading it a second time elsewhere.
fn mark_loading(specs: &mut [(Arc<NodeSpec>, u64)], held: &[Held]) {
    for h in held {
        let Some(model) = &h.model else { continue };
        let Some((spec, _)) = specs.iter_mut().find(|s| s.0.id == h.node_id) else {
            continue;
        };
        if spec
            .loaded_models
            .iter()
            .any(|m| vramroute_router::same_model(&m.name, model))
        {
            continue;
        }
        let total: u64 = h.parts.iter().map(|p| p.1).sum();
        let vram: u64 = h.parts.iter().filter(|p| p.0.is_some()).map(|p| p.1).sum();
        let spec = Arc::make_mut(spec);
        let mut m = ResidentModel::with_sizes(model.clone(), Some(total), Some(vram));
        m.gpu = match h.parts.as_slice() {
            [(Some(g), _)] if spec.gpus.iter().any(|x| x.index == *g) => Some(*g),
            _ => None,
        };
        spec.loaded_models.push(m);
    }
}

async fn next_change(stream: &mut Option<ChangeStream>) -> Option<vramroute_registry::Change> {
    match stream {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod view_state_tests {
    use super::ViewState;
    use std::time::Duration;

    #[test]
    fn joins_and_leaves_space_views_by_a_quarter_interval() {
        let interval = Duration::from_secs(1);
        let mut state = ViewState::default();
        assert_eq!(state.spacing(interval, false), interval);
        assert_eq!(state.spacing(interval, true), interval / 4);
        state.members_pending = true;
        assert_eq!(state.spacing(interval, false), interval / 4);
    }
}
