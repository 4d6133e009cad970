//! `vramroute-reporter run`: probe every tick, publish every interval (and at once when
//! free VRAM moves), survive Redis and Ollama outages, supervise the node's rpc-server
//! when asked (`rpc_server.rs`), deregister on SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, info, warn};
use vramroute_alloc::RPC_SERVER_BINARY;
use vramroute_node::{gpu_log_line, ChangeDetector, NodeIdentity, NodeReport, OllamaState};
use vramroute_ollama::{OffloadVerdict, OllamaClient};
use vramroute_probe::{GpuDevice, NodeHardware, Prober};
use vramroute_registry::{keys, redact_url, RedisRegistry, Registry, RegistryConfig};

use crate::cli::RunArgs;
use crate::metrics::Metrics;
use crate::rpc_server::Supervisor;
use crate::settings::{RpcServerMode, Settings};

/// How often hardware is probed to catch VRAM moves between publishes.
const CHANGE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Re-register at least this often, so a Redis that restarted (and lost the key)
/// learns about the node again quickly.
const REGISTRATION_REFRESH_MAX: Duration = Duration::from_secs(60);
/// Time allowed for deregistering on shutdown.
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(1500);
/// Timeout of each request to the local Ollama.
const OLLAMA_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn run(args: RunArgs) -> anyhow::Result<()> {
    let once = args.once;
    let settings = Settings::resolve(args)?;
    if once && settings.rpc_server != RpcServerMode::Off {
        warn!("--rpc-server is ignored with --once: nothing stays up to supervise it");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut reporter = Reporter::new(settings)?;
        if once {
            reporter.once().await
        } else {
            reporter.daemon().await
        }
    })
}

/// Seconds since the Unix epoch, as SOLLOL's `time.time()`.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(crate) fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

struct Reporter {
    settings: Settings,
    identity: NodeIdentity,
    prober: Prober,
    registry: RedisRegistry,
    ollama: Option<OllamaClient>,
    metrics: Arc<Metrics>,
    detector: ChangeDetector,
    last_offload: Option<OffloadVerdict>,
    redis_ok: Option<bool>,
    probe_ok: bool,
    registered: Option<(Instant, String)>,
    /// The supervised rpc-server (off until the first report gives its command).
    rpc_server: Supervisor,
}

impl Reporter {
    fn new(settings: Settings) -> anyhow::Result<Self> {
        let mut config = RegistryConfig::default();
        config.stats_ttl = settings.stats_ttl;
        config.registration_ttl = settings.registration_ttl;
        config.reconnect_max_delay = settings.interval.max(Duration::from_millis(500));
        let registry = RedisRegistry::new_lazy(&settings.redis_url, config)?;
        let ollama = settings
            .ollama_url
            .as_deref()
            .map(|u| OllamaClient::new(u, OLLAMA_TIMEOUT))
            .transpose()?;
        let mut identity = NodeIdentity::new(
            settings.node_id.clone(),
            settings.advertise_ip.to_string(),
            settings.rpc_port,
        );
        identity.ollama_url = settings.ollama_url.clone();
        identity.hostname = hostname();
        Ok(Reporter {
            prober: settings.hardware.prober(),
            detector: ChangeDetector::new(settings.change_threshold_mib),
            settings,
            identity,
            registry,
            ollama,
            metrics: Arc::new(Metrics::new()),
            last_offload: None,
            redis_ok: None,
            probe_ok: true,
            registered: None,
            rpc_server: Supervisor::off(),
        })
    }

    /// Probe, publish, print the report; fail if Redis refuses.
    async fn once(&mut self) -> anyhow::Result<()> {
        let gpus = self.probe()?;
        let report = self.report(gpus).await?;
        self.publish(&report).await?;
        print!(
            "{}",
            crate::term::text(&report.render_text(&self.identity, &self.identity.advertise_ip))
        );
        println!(
            "published {} and the registration to {}",
            keys::gpu_stats_key(&self.identity.node_id),
            redact_url(&self.settings.redis_url)
        );
        Ok(())
    }

    async fn daemon(&mut self) -> anyhow::Result<()> {
        let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        if let Some(addr) = self.settings.metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?;
            tokio::spawn(crate::metrics::serve(listener, self.metrics.clone()));
        }
        let s = &self.settings;
        info!(
            node_id = %self.identity.node_id,
            advertise_ip = %s.advertise_ip,
            rpc_port = s.rpc_port,
            redis = %redact_url(&s.redis_url),
            ollama = s.ollama_url.as_deref().unwrap_or("off"),
            interval_s = s.interval.as_secs_f64(),
            stats_ttl_s = s.stats_ttl.as_secs(),
            "vramroute-reporter started"
        );
        let interval = s.interval;
        let mut ticker = tokio::time::interval(CHANGE_CHECK_EVERY.min(interval));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_publish = Instant::now();
        let mut retry_at: Option<Instant> = None;
        let mut backoff = Duration::from_millis(250);
        let mut rpc_server_started = false;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            }
            let Ok(gpus) = self.probe() else { continue };
            let now = Instant::now();
            let due = now >= next_publish;
            let changed = self.detector.changed(&gpus);
            if !(due || changed) || retry_at.is_some_and(|t| now < t) {
                continue;
            }
            let report = match self.report(gpus).await {
                Ok(r) => r,
                Err(e) => {
                    warn!("cannot build this node's report: {e:#}");
                    continue;
                }
            };
            if !rpc_server_started {
                rpc_server_started = true;
                self.start_rpc_server(&report);
            }
            if changed && !due && self.redis_ok == Some(true) {
                info!(
                    "free VRAM moved by more than {} MiB: publishing now",
                    self.settings.change_threshold_mib
                );
                for g in &report.hardware.gpus {
                    info!("{}", gpu_log_line(g));
                }
            }
            match self.publish(&report).await {
                Ok(()) => {
                    next_publish = now + interval;
                    retry_at = None;
                    backoff = Duration::from_millis(250);
                }
                Err(_) => {
                    retry_at = Some(now + backoff);
                    backoff = (backoff * 2).min(interval);
                }
            }
        }
        self.shutdown().await;
        Ok(())
    }

    /// Start supervising the rpc-server (when asked) with the offer's command: host the
    /// advertise IP, port the rpc port, devices the offer's ggml devices.
    fn start_rpc_server(&mut self, report: &NodeReport) {
        let mode = self.settings.rpc_server.clone();
        if mode == RpcServerMode::Off {
            return;
        }
        let command = report.offer.rpc_server_command(
            &self.settings.advertise_ip.to_string(),
            self.settings.rpc_port,
            report.backend,
            RPC_SERVER_BINARY,
        );
        self.rpc_server = Supervisor::start(mode, command);
    }

    /// Probe the GPUs (every tick: cheap sysfs reads and NVML queries).
    fn probe(&mut self) -> anyhow::Result<Vec<GpuDevice>> {
        let start = Instant::now();
        let result = self.prober.probe_gpus();
        self.metrics.observe_probe(start.elapsed().as_secs_f64());
        match result {
            Ok(gpus) => {
                if !self.probe_ok {
                    info!("hardware probe works again");
                    self.probe_ok = true;
                }
                self.metrics.observe_gpus(&self.identity.node_id, &gpus);
                Ok(gpus)
            }
            Err(e) => {
                if self.probe_ok {
                    warn!("hardware probe failed, not publishing until it works: {e}");
                    self.probe_ok = false;
                }
                Err(e.into())
            }
        }
    }

    /// The full report, with host memory and Ollama's state (only when publishing).
    async fn report(&mut self, gpus: Vec<GpuDevice>) -> anyhow::Result<NodeReport> {
        let hardware = NodeHardware::new(gpus, self.prober.probe_host()?);
        let ollama = match &self.ollama {
            Some(client) => OllamaState::from_ps(&client.ps().await),
            None => OllamaState::not_asked(),
        };
        self.log_offload_change(&ollama);
        let hw = &self.settings.hardware;
        Ok(NodeReport::new(
            hardware,
            &hw.reserve,
            hw.backend,
            ollama,
            unix_now(),
        )?)
    }

    fn log_offload_change(&mut self, ollama: &OllamaState) {
        if self.last_offload == Some(ollama.offload) {
            return;
        }
        self.last_offload = Some(ollama.offload);
        match ollama.offload {
            OffloadVerdict::Off => warn!(
                models = ollama.models.len(),
                "Ollama runs every loaded model on the CPU (size_vram == 0): publishing GPU offload off; SOLLOL readers will see a CPU-only node, the GPUs stay in detected_gpus"
            ),
            OffloadVerdict::On => info!("Ollama offloads to the GPU"),
            OffloadVerdict::Idle => info!("Ollama is idle (no model loaded): GPUs reported as probed"),
            OffloadVerdict::Unknown => match &ollama.error {
                Some(e) => warn!("Ollama not readable, GPUs reported as probed: {e}"),
                None => debug!("Ollama not asked"),
            },
        }
    }

    async fn publish(&mut self, report: &NodeReport) -> anyhow::Result<()> {
        let result = self.publish_inner(report).await;
        self.metrics.observe_publish(result.is_ok());
        match &result {
            Ok(()) => {
                self.detector.published(&report.hardware.gpus);
                match self.redis_ok {
                    Some(false) => info!("Redis reachable again: published"),
                    None => {
                        info!("published to {}", redact_url(&self.settings.redis_url));
                        for g in &report.hardware.gpus {
                            info!("{}", gpu_log_line(g));
                        }
                    }
                    Some(true) => debug!("published"),
                }
                self.redis_ok = Some(true);
            }
            Err(e) => {
                if self.redis_ok != Some(false) {
                    warn!(
                        "cannot publish: {e}; will keep probing and retry (logged once per outage)"
                    );
                } else {
                    debug!("publish failed again: {e}");
                }
                self.redis_ok = Some(false);
                // Redis may come back empty: register again after the outage.
                self.registered = None;
            }
        }
        result.map_err(Into::into)
    }

    async fn publish_inner(&mut self, report: &NodeReport) -> vramroute_registry::Result<()> {
        let mut stats = report.stats_record(&self.identity);
        // Extra key (SOLLOL ignores unknown keys): the supervised rpc-server's state.
        if let Ok(v) = serde_json::to_value(self.rpc_server.status()) {
            stats.extra.insert("rpc_server".to_string(), v);
        }
        self.registry.publish_stats(&stats).await?;
        let record = report.rpc_record();
        let json = record.to_json();
        let refresh = (self.settings.registration_ttl / 3).min(REGISTRATION_REFRESH_MAX);
        let stale = match &self.registered {
            Some((at, last)) => at.elapsed() >= refresh || *last != json,
            None => true,
        };
        if stale {
            self.registry
                .register(&self.identity.advertise_ip, self.settings.rpc_port, &record)
                .await?;
            self.registered = Some((Instant::now(), json));
        }
        Ok(())
    }

    async fn shutdown(&mut self) {
        // The rpc-server goes first (bounded by its SIGKILL grace), then the records.
        self.rpc_server.stop().await;
        let rpc = (self.identity.advertise_ip.as_str(), self.settings.rpc_port);
        let deregister = self.registry.deregister(&self.identity.node_id, Some(rpc));
        match tokio::time::timeout(SHUTDOWN_BUDGET, deregister).await {
            Ok(Ok(())) => info!(node_id = %self.identity.node_id, "deregistered; bye"),
            Ok(Err(e)) => warn!("could not deregister (records will expire on their own): {e}"),
            Err(_) => warn!("deregistering timed out (records will expire on their own)"),
        }
    }
}
