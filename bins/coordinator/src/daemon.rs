//! `daemon`: keeps the cluster view live (change push from the registry, periodic
//! rediscovery as a fallback), serves the HTTP API, and runs the optimize loop every
//! `check_interval` when `auto_optimize` is on — only while holding the registry's
//! optimize lock, so several coordinators can share one Redis.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, info, warn};
use vramroute_registry::{ChangeStream, ClusterView, RegistryConfig};
use vramroute_router::{Router, Snapshot};

use crate::cli::DaemonArgs;
use crate::config::DEFAULT_LISTEN;
use crate::metrics::Metrics;
use crate::optimize::{self, Outcome};
use crate::source::{query_ollama_nodes, unix_now, Backend, Settings};
use crate::view::{OllamaNodeInfo, StatusView};

/// How often report ages are recomputed (staleness shows within this).
const TICK: Duration = Duration::from_secs(1);
/// Rediscovery even without change push (covers missed notifications and expiries).
const REDISCOVER_EVERY: Duration = Duration::from_secs(5);
/// How often the config's Ollama nodes are asked again.
const OLLAMA_EVERY: Duration = Duration::from_secs(30);
/// Retry delay for a lost change stream.
const WATCH_RETRY: Duration = Duration::from_secs(2);
/// Name of the optimize lock (`vramroute:lock:optimize` in Redis).
pub(crate) const OPTIMIZE_LOCK: &str = "optimize";

/// Registry health as the API reports it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Health {
    pub(crate) status: &'static str,
    pub(crate) source: String,
    /// Unix seconds of the last successful registry read.
    pub(crate) last_ok: Option<f64>,
    /// The last registry error, while degraded.
    pub(crate) error: Option<String>,
    pub(crate) push: String,
}

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
    pub(crate) router: Router,
    pub(crate) view: ArcSwap<StatusView>,
    pub(crate) metrics: Metrics,
    health: Mutex<Health>,
    optimize: Mutex<OptimizeState>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl App {
    pub(crate) fn health(&self) -> Health {
        locked(&self.health).clone()
    }

    pub(crate) fn optimize_state(&self) -> OptimizeState {
        locked(&self.optimize).clone()
    }

    fn set_ok(&self) {
        let mut h = locked(&self.health);
        if h.status != "ok" {
            info!(source = %h.source, "registry reachable: view is live again");
        }
        h.status = "ok";
        h.last_ok = Some(unix_now());
        h.error = None;
        self.metrics.set_redis_up(true);
    }

    fn set_degraded(&self, e: &anyhow::Error) {
        let mut h = locked(&self.health);
        if h.status == "ok" {
            warn!("registry read failed, serving the last view (nodes go stale after stale_after): {e:#}");
        }
        h.status = "degraded";
        h.error = Some(format!(
            "{e:#}; serving the last view, nodes go stale after their report age exceeds stale_after"
        ));
        self.metrics.set_redis_up(false);
        self.metrics.registry_error();
    }

    /// Swaps in a view built from `cluster` at `now`.
    fn publish(&self, view: StatusView, skipped_total: u64) {
        match Snapshot::build(view.node_specs(), &self.settings.snapshot_config()) {
            Ok(snap) => self.router.update(snap),
            Err(e) => warn!("cannot build a routing snapshot: {e}"),
        }
        self.metrics.observe_view(&view, skipped_total);
        self.view.store(Arc::new(view));
    }
}

fn build_view(
    backend: &Backend,
    settings: &Settings,
    cluster: Option<&ClusterView>,
    ollama: &[OllamaNodeInfo],
) -> StatusView {
    let mut view = backend.view_of(cluster, settings, unix_now());
    if !ollama.is_empty() {
        view.merge_ollama(ollama);
    }
    view
}

pub(crate) fn run(settings: Settings, args: &DaemonArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report_only = args.report_only;
    let listen = args.listen;
    runtime.block_on(async move {
        let config = RegistryConfig {
            poll_interval: Duration::from_secs(2),
            ..RegistryConfig::default()
        };
        let backend = Arc::new(Backend::open(&settings, config).await?);
        let cluster = backend.discover().await?;
        let ollama = query_ollama_nodes(&settings).await;
        let view = build_view(&backend, &settings, cluster.as_ref(), &ollama);
        if report_only {
            print!("{}", crate::status::render(&view));
            return Ok(());
        }
        let addr: SocketAddr = match listen.or(settings.config.listen) {
            Some(a) => a,
            None => DEFAULT_LISTEN.parse().context("default listen address")?,
        };
        let snap = Snapshot::build(view.node_specs(), &settings.snapshot_config())?;
        let router = Router::new(snap, settings.policy(None)?)?;
        let app = Arc::new(App {
            health: Mutex::new(Health {
                status: "ok",
                source: backend.describe(),
                last_ok: Some(unix_now()),
                error: None,
                push: "none".to_owned(),
            }),
            optimize: Mutex::new(OptimizeState {
                auto_optimize: settings.config.auto_optimize,
                ..OptimizeState::default()
            }),
            metrics: Metrics::new(),
            view: ArcSwap::from_pointee(view.clone()),
            router,
            settings,
        });
        app.metrics.set_redis_up(true);
        app.publish(view, skipped_total(&backend));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (--listen / config listen)"))?;
        info!(
            listen = %listener.local_addr().unwrap_or(addr),
            source = %backend.describe(),
            auto_optimize = app.settings.config.auto_optimize,
            "vramroute-coordinator daemon started"
        );
        let owner = format!(
            "{}:{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            std::process::id()
        );
        tokio::spawn(refresh_loop(app.clone(), backend.clone(), cluster, ollama));
        if app.settings.config.auto_optimize {
            tokio::spawn(optimize_loop(app.clone(), backend.clone(), owner.clone()));
        }
        let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let shutdown = async move {
            tokio::select! {
                _ = sigterm.recv() => info!("SIGTERM: shutting down"),
                _ = sigint.recv() => info!("SIGINT: shutting down"),
            }
        };
        axum::serve(listener, crate::http::router(app.clone()))
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP server failed")?;
        if let Some(reg) = backend.registry() {
            let _ = tokio::time::timeout(Duration::from_secs(1), reg.unlock(OPTIMIZE_LOCK, &owner))
                .await;
        }
        Ok(())
    })
}

fn skipped_total(backend: &Backend) -> u64 {
    backend.registry().map_or(0, |r| r.skipped_records_total())
}

async fn next_change(stream: &mut Option<ChangeStream>) -> Option<vramroute_registry::Change> {
    match stream {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn refresh_loop(
    app: Arc<App>,
    backend: Arc<Backend>,
    mut cluster: Option<ClusterView>,
    mut ollama: Vec<OllamaNodeInfo>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stream: Option<ChangeStream> = None;
    // Embedded mode re-probes on every discovery, which itself announces a change:
    // it is refreshed by the timer only. A snapshot never changes.
    let wants_push = matches!(*backend, Backend::Redis(_));
    let mut watch_due = Instant::now();
    let mut last_discover = Instant::now();
    let mut last_ollama = Instant::now();
    let mut dirty = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            change = next_change(&mut stream) => match change {
                Some(c) => { debug!(?c, "registry change"); dirty = true; }
                None => { stream = None; }
            },
        }
        if let Some(s) = stream.as_mut() {
            // Coalesce a burst of changes into one rediscovery.
            while s.try_recv().is_some() {}
        }
        if wants_push && stream.is_none() && Instant::now() >= watch_due {
            if let Some(reg) = backend.registry() {
                match tokio::time::timeout(Duration::from_secs(5), reg.watch()).await {
                    Ok(Ok(s)) => {
                        locked(&app.health).push = format!("{:?}", s.mode());
                        stream = Some(s);
                        dirty = true;
                    }
                    Ok(Err(e)) => debug!("change push unavailable, retrying: {e}"),
                    Err(_) => debug!("change push subscription timed out, retrying"),
                }
            }
            watch_due = Instant::now() + WATCH_RETRY;
        }
        if matches!(*backend, Backend::Snapshot { .. }) {
            continue;
        }
        if dirty || last_discover.elapsed() >= REDISCOVER_EVERY {
            last_discover = Instant::now();
            match backend.discover().await {
                Ok(c) => {
                    cluster = c;
                    dirty = false;
                    app.set_ok();
                }
                Err(e) => app.set_degraded(&e),
            }
        }
        if !app.settings.config.nodes.is_empty() && last_ollama.elapsed() >= OLLAMA_EVERY {
            last_ollama = Instant::now();
            ollama = query_ollama_nodes(&app.settings).await;
        }
        let view = build_view(&backend, &app.settings, cluster.as_ref(), &ollama);
        app.publish(view, skipped_total(&backend));
    }
}

async fn optimize_loop(app: Arc<App>, backend: Arc<Backend>, owner: String) {
    let every = Duration::from_secs_f64(app.settings.config.check_interval_s());
    // The lock outlives one pass; a dead holder's lock expires and another takes over.
    let ttl = every + Duration::from_secs(30);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(reg) = backend.registry() else {
            warn!("auto_optimize needs a registry (not a --snapshot): optimize loop stopped");
            return;
        };
        let held = match reg.try_lock(OPTIMIZE_LOCK, &owner, ttl).await {
            Ok(h) => h,
            Err(e) => {
                warn!("cannot take the optimize lock, skipping this pass: {e}");
                false
            }
        };
        locked(&app.optimize).holds_lock = held;
        if !held {
            debug!("another coordinator holds the optimize lock");
            continue;
        }
        let view = app.view.load_full();
        let snap = app.router.snapshot();
        let policy = app.router.policy();
        let models = app.settings.config.priority_models.clone();
        let outcomes =
            optimize::optimize(&view, &snap, &policy, &app.settings, &models, false).await;
        for o in &outcomes {
            info!(model = %o.model, action = o.action, node = o.node.as_deref().unwrap_or("-"), "optimize: {}", o.reason);
        }
        app.metrics.optimize_ran();
        let mut st = locked(&app.optimize);
        st.last_run = Some(unix_now());
        st.outcomes = outcomes;
    }
}
