//! `daemon`: keeps the cluster view live (the cluster layer's [`LiveCluster`] following
//! the source), serves the HTTP API, and runs the optimize loop every `check_interval`
//! when `auto_optimize` is on — only while holding the registry's optimize lock, so
//! several coordinators can share one Redis. The lock holder also keeps SOLLOL's
//! `sollol:router:metadata` current (`metadata.rs`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, info, warn};
use vramroute_cluster::{
    keep_lock_renewed, lock_owner_id, optimize_tracked, unix_now, Feed, LiveCluster, PendingLoads,
    OPTIMIZE_LOCK,
};
use vramroute_gateway::{ApiKeys, Gateway, GatewayMetrics};
use vramroute_registry::RegistryConfig;

use crate::app::{locked, App, OptimizeState};
use crate::cli::DaemonArgs;
use crate::config::{gateway_addr, DEFAULT_GATEWAY_LISTEN, DEFAULT_LISTEN};
use crate::metrics::{Metrics, MetricsObserver};
use crate::source::{Backend, Settings, Source};
use crate::UsageError;

pub(crate) fn run(mut settings: Settings, args: &DaemonArgs) -> anyhow::Result<()> {
    // The HTTP limits' flags override the config's keys, then are checked alike.
    let c = &mut settings.config;
    c.max_connections = args.max_connections.or(c.max_connections);
    c.gateway_max_connections = args.gateway_max_connections.or(c.gateway_max_connections);
    c.http_header_timeout = args.http_header_timeout.or(c.http_header_timeout);
    c.http_idle_timeout = args.http_idle_timeout.or(c.http_idle_timeout);
    c.validate().map_err(|e| {
        UsageError(format!(
            "{e} (--max-connections, --gateway-max-connections, --http-header-timeout, --http-idle-timeout or the config)"
        ))
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report_only = args.report_only;
    let refresh_nice = args.refresh_nice;
    let listen = args.listen;
    let gateway_listen = match args
        .gateway_listen
        .as_deref()
        .or(settings.config.gateway_listen.as_deref())
    {
        Some(text) => {
            gateway_addr(text).map_err(|e| UsageError(format!("--gateway-listen: {e}")))?
        }
        None => Some(
            DEFAULT_GATEWAY_LISTEN
                .parse()
                .context("default gateway address")?,
        ),
    };
    let keys = load_keys(
        args.gateway_keys_file
            .as_deref()
            .or(settings.config.gateway_keys_file.as_deref()),
    )?;
    let admin_keys = if settings.config.admin_requires_key {
        if keys.is_empty() {
            return Err(UsageError(
                "admin_requires_key is set but no gateway API key is configured (gateway_keys_file or VRAMROUTE_GATEWAY_KEYS)".to_owned(),
            )
            .into());
        }
        Some(keys.clone())
    } else {
        None
    };
    runtime.block_on(async move {
        let mut config = RegistryConfig::default();
        config.poll_interval = Duration::from_secs(2);
        // The follow loop is this registry's one reader and keeps what it needs of each
        // record: the registry keeps fingerprints, not a second copy of every record.
        config.changes_only = true;
        let backend = Backend::open(&settings, config).await?;
        let source = Arc::new(Source::new(backend, &settings));
        let mut metrics = Metrics::new();
        let gateway_metrics = Arc::new(GatewayMetrics::new(metrics.registry_mut()));
        let metrics = Arc::new(metrics);
        let mut live_config = settings.live_config();
        if let Some(n) = refresh_nice {
            live_config.refresh_nice = n;
        }
        let live = LiveCluster::start(source.as_ref(), settings.policy(None)?, live_config).await?;
        let signals = live.signals().clone();
        let live = live.with_observer(Box::new(MetricsObserver::new(metrics.clone(), signals)));
        if report_only {
            print!("{}", crate::status::render_safe(&live.view())?);
            return Ok(());
        }
        let addr: SocketAddr = match listen.or(settings.config.listen) {
            Some(a) => a,
            None => DEFAULT_LISTEN.parse().context("default listen address")?,
        };
        let live = Arc::new(live);
        metrics.set_redis_up(true);
        metrics.observe_view(
            &live.view(),
            source.registry().map_or(0, |r| r.skipped_records_total()),
        );
        let gateway = match gateway_listen {
            Some(addr) => {
                let mut cfg = settings.config.gateway();
                cfg.keys = keys.clone();
                let gw = Gateway::new(live.clone(), cfg, gateway_metrics)
                    .map_err(|e| UsageError(e.to_string()))?;
                let l = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                    format!("cannot listen on {addr} for the gateway (--gateway-listen / config gateway_listen; `off` disables it)")
                })?;
                let bound = l.local_addr().unwrap_or(addr);
                if !bound.ip().is_loopback() && keys.is_empty() {
                    warn!(gateway = %bound, "the gateway listens beyond this machine without API keys: anyone who can reach it can use every node (set gateway_keys_file or VRAMROUTE_GATEWAY_KEYS)");
                }
                info!(gateway = %bound, api_keys = keys.len(), "gateway listening (Ollama and OpenAI-compatible)");
                Some((gw, l))
            }
            None => {
                info!("gateway off");
                None
            }
        };
        let app = Arc::new(App {
            optimize: Mutex::new(OptimizeState {
                auto_optimize: settings.config.auto_optimize,
                ..OptimizeState::default()
            }),
            metrics,
            live: live.clone(),
            admin_keys,
            prober: vramroute_cluster::BackendProber::default(),
            source: source.clone(),
            settings,
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (--listen / config listen)"))?;
        info!(
            listen = %listener.local_addr().unwrap_or(addr),
            source = %source.describe(),
            auto_optimize = app.settings.config.auto_optimize,
            "vramroute-coordinator daemon started"
        );
        let owner = lock_owner_id();
        // Stops when dropped, once the API has stopped serving.
        let _follow = live
            .spawn_follow(source.clone())
            .context("cannot start the follow thread")?;
        if app.settings.config.auto_optimize {
            tokio::spawn(optimize_loop(app.clone(), source.clone(), owner.clone()));
            tokio::spawn(crate::metadata::metadata_loop(
                app.clone(),
                source.clone(),
                owner.clone(),
            ));
        }
        let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = sigterm.recv() => info!("SIGTERM: shutting down"),
                _ = sigint.recv() => info!("SIGINT: shutting down"),
            }
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let gateway_task = gateway.map(|(gw, l)| {
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move { gw.serve(l, stop).await })
        });
        let limits = app.settings.config.api_limits();
        vramroute_serve::serve(listener, crate::http::router(app.clone()), limits, stopped(stop_rx))
            .await
            .context("HTTP server failed")?;
        if let Some(t) = gateway_task {
            // Streams in flight get a moment to finish; then the process ends anyway.
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        if let Some(reg) = source.registry() {
            let _ = tokio::time::timeout(Duration::from_secs(1), reg.unlock(OPTIMIZE_LOCK, &owner))
                .await;
        }
        Ok(())
    })
}

/// The largest gateway key file read, bytes.
const MAX_KEYS_FILE_BYTES: u64 = 1 << 20;

/// The gateway's API keys: the file's (when given) and the environment's.
fn load_keys(file: Option<&std::path::Path>) -> anyhow::Result<ApiKeys> {
    let from_file = match file {
        Some(p) => {
            let text = vramroute_probe::local_file::read_local_text(
                p,
                MAX_KEYS_FILE_BYTES,
                "an API key file",
            )
            .map_err(|e| UsageError(format!("gateway key file: {e}")))?;
            ApiKeys::from_file_text(p, &text).map_err(|e| UsageError(e.to_string()))?
        }
        None => ApiKeys::default(),
    };
    Ok(from_file.union(ApiKeys::from_env().unwrap_or_default()))
}

async fn optimize_loop(app: Arc<App>, source: Arc<Source>, owner: String) {
    let every = Duration::from_secs_f64(app.settings.config.check_interval_s());
    // The lock outlives one pass; a dead holder's lock expires and another takes over.
    let ttl = crate::app::lock_ttl(&app);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Loads in flight, remembered across passes: one load per model until confirmed.
    let pending = PendingLoads::new();
    loop {
        tick.tick().await;
        let Some(reg) = source.registry() else {
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
        // Loads can take longer than the lock's time to live: keep it while the pass runs.
        let _renewal = keep_lock_renewed(source.clone(), OPTIMIZE_LOCK, owner.clone(), ttl);
        let view = app.live.view();
        let snap = app.live.router().snapshot();
        let policy = app.live.router().policy();
        let models = app.settings.config.priority_models.clone();
        let opts = crate::optimize::options(&app.settings, false);
        let outcomes = optimize_tracked(&view, &snap, &policy, &models, &opts, &pending).await;
        for o in &outcomes {
            info!(model = %o.model, action = o.action, node = o.node.as_deref().unwrap_or("-"), "optimize: {}", o.reason);
        }
        app.metrics.optimize_ran();
        let mut st = locked(&app.optimize);
        st.last_run = Some(unix_now());
        st.outcomes = outcomes;
    }
}
