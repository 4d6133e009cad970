//! `vramroute-reporter run`: probe every tick, publish every interval (and at once when
//! free VRAM moves), survive Redis and Ollama outages, supervise the node's rpc-server
//! when asked (`rpc_server.rs`), deregister on SIGTERM/SIGINT.
//!
//! Probing runs on its own thread (`vramroute_probe::ProbeWorker`) under a timeout: a probe that
//! blocks leaves the last good values republished, stamped with the time they were
//! measured and marked `probe_stale` (so readers age them and stop routing to the node),
//! while `/metrics` and SIGTERM keep working. A signal cancels whatever the loop awaits
//! (a probe, Ollama, a frozen Redis): deregistering starts at once and the process exits
//! within [`SHUTDOWN_BUDGET`] plus the rpc-server's stop.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, info, warn};
use vramroute_alloc::RPC_SERVER_BINARY;
use vramroute_node::{
    gpu_log_line, mark_probe_stale, sollol_gpu_order, ChangeDetector, NodeIdentity, NodeReport,
    OllamaState,
};
use vramroute_ollama::{OffloadVerdict, OllamaClient};
use vramroute_probe::{GpuDevice, HostMemory, NodeHardware, ProbeOutcome, ProbeWorker};
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
/// Time allowed for deregistering on shutdown (the whole exit stays under 2 s).
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(1);
/// Longest wait for Redis to be retried once it failed, and cap of the registry's
/// reconnect backoff: a node is back in the registry within about this after Redis
/// returns (well within one default interval).
const RETRY_MAX: Duration = Duration::from_secs(1);
/// First retry delay after a failed publish.
const RETRY_MIN: Duration = Duration::from_millis(250);
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

/// One `GPU N: NAME | VRAM: used/totalMB | Util: N% | Temp: N°C` line per GPU, in the
/// published order, at info when `changed`, else at debug.
fn log_gpu_lines(report: &NodeReport, changed: bool) {
    for (_, g) in sollol_gpu_order(&report.hardware.gpus) {
        if changed {
            info!("{}", gpu_log_line(g));
        } else {
            debug!("{}", gpu_log_line(g));
        }
    }
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

/// The last probe that answered.
struct Measured {
    gpus: Vec<GpuDevice>,
    host: HostMemory,
    /// When, Unix seconds.
    at: f64,
}

/// What the loop carries from one tick to the next.
struct Schedule {
    next_publish: Instant,
    retry_at: Option<Instant>,
    backoff: Duration,
    rpc_server_started: bool,
}

struct Reporter {
    settings: Settings,
    identity: NodeIdentity,
    worker: ProbeWorker,
    last_good: Option<Measured>,
    /// Since when the probe has not answered (while it does not).
    probe_stuck_since: Option<Instant>,
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
        // Redis back: reconnect and republish within about a second, not an interval
        // plus the connection's own backoff.
        config.reconnect_max_delay = RETRY_MAX.min(settings.interval.max(RETRY_MIN));
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
        let hardware = settings.hardware.clone();
        let worker = ProbeWorker::start(move || hardware.prober(), settings.probe_timeout)
            .context("cannot start the probe thread")?;
        Ok(Reporter {
            worker,
            last_good: None,
            probe_stuck_since: None,
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

    /// Probe, publish, print the report; fail if Redis refuses or the probe does not
    /// answer in time.
    async fn once(&mut self) -> anyhow::Result<()> {
        let probed = match self.worker.probe().await {
            ProbeOutcome::Done(p) => p,
            ProbeOutcome::Stuck { .. } => anyhow::bail!(
                "the hardware probe did not answer within {:?} (a sysfs file or the GPU driver blocks; --probe-timeout)",
                self.settings.probe_timeout
            ),
        };
        let measured = Measured {
            gpus: probed.gpus?,
            host: probed.host?,
            at: probed.at,
        };
        let report = self.report(measured).await?;
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
            tokio::spawn(crate::metrics::serve(
                listener,
                self.metrics.clone(),
                self.settings.metrics_limits(),
            ));
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
        // A signal ends the loop whatever it awaits (a stuck probe, a frozen Redis).
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = sigterm.recv() => info!("SIGTERM: shutting down"),
                _ = sigint.recv() => info!("SIGINT: shutting down"),
            }
            let _ = stop_tx.send(true);
        });
        let mut schedule = Schedule {
            next_publish: Instant::now(),
            retry_at: None,
            backoff: RETRY_MIN,
            rpc_server_started: false,
        };
        loop {
            let tick = async {
                ticker.tick().await;
                self.tick(&mut schedule, interval).await;
            };
            tokio::select! {
                () = tick => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        self.shutdown().await;
        Ok(())
    }

    /// One tick: probe; publish when due, when free VRAM moved, or (while the probe is
    /// stuck) the last good values when due.
    async fn tick(&mut self, schedule: &mut Schedule, interval: Duration) {
        let Some(measured) = self.probe().await else {
            return;
        };
        let now = Instant::now();
        let due = now >= schedule.next_publish;
        let fresh = self.probe_stuck_since.is_none();
        let changed = fresh && self.detector.changed(&measured.gpus);
        if !(due || changed) || schedule.retry_at.is_some_and(|t| now < t) {
            return;
        }
        let report = match self.report(measured).await {
            Ok(r) => r,
            Err(e) => {
                warn!("cannot build this node's report: {e:#}");
                return;
            }
        };
        if !schedule.rpc_server_started {
            schedule.rpc_server_started = true;
            self.start_rpc_server(&report);
        }
        if changed && !due && self.redis_ok == Some(true) {
            info!(
                "free VRAM moved by more than {} MiB: publishing now",
                self.settings.change_threshold_mib
            );
        }
        let first = self.redis_ok.is_none();
        match self.publish(&report).await {
            Ok(()) => {
                // SOLLOL's journal line: at info on the first report and when values
                // moved by more than the change threshold, else at debug.
                log_gpu_lines(&report, first || changed);
                schedule.next_publish = now + interval;
                schedule.retry_at = None;
                schedule.backoff = RETRY_MIN;
            }
            Err(_) => {
                schedule.retry_at = Some(now + schedule.backoff);
                schedule.backoff = (schedule.backoff * 2).min(interval.min(RETRY_MAX));
            }
        }
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

    /// Probe the GPUs and host memory on the probe thread (every tick: cheap sysfs
    /// reads and NVML queries), bounded by the probe timeout. While the probe is stuck,
    /// the last good values (none before the first probe answered).
    async fn probe(&mut self) -> Option<Measured> {
        let probed = match self.worker.probe().await {
            ProbeOutcome::Done(p) => p,
            ProbeOutcome::Stuck { since } => {
                if self.probe_stuck_since.is_none() {
                    self.probe_stuck_since = Some(since);
                    self.metrics.probe_timed_out();
                    warn!(
                        "hardware probe did not answer within {:?} (a sysfs file or the GPU driver blocks): republishing the last good values, marked probe_stale, until it answers",
                        self.settings.probe_timeout
                    );
                }
                let last = self.last_good.as_ref()?;
                return Some(Measured {
                    gpus: last.gpus.clone(),
                    host: last.host.clone(),
                    at: last.at,
                });
            }
        };
        self.metrics.observe_probe(probed.took.as_secs_f64());
        if let Some(since) = self.probe_stuck_since.take() {
            self.metrics.probe_answered();
            info!(
                "hardware probe answers again (it was stuck for {:.1} s)",
                since.elapsed().as_secs_f64()
            );
        }
        let (gpus, host) = match (probed.gpus, probed.host) {
            (Ok(g), Ok(h)) => (g, h),
            (Err(e), _) | (_, Err(e)) => {
                if self.probe_ok {
                    warn!("hardware probe failed, not publishing until it works: {e}");
                    self.probe_ok = false;
                }
                return None;
            }
        };
        if !self.probe_ok {
            info!("hardware probe works again");
            self.probe_ok = true;
        }
        self.metrics.observe_gpus(&self.identity.node_id, &gpus);
        self.last_good = Some(Measured {
            gpus: gpus.clone(),
            host: host.clone(),
            at: probed.at,
        });
        Some(Measured {
            gpus,
            host,
            at: probed.at,
        })
    }

    /// The full report, with Ollama's state (only when publishing), stamped with the
    /// time the hardware was measured.
    async fn report(&mut self, measured: Measured) -> anyhow::Result<NodeReport> {
        let hardware = NodeHardware::new(measured.gpus, measured.host);
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
            measured.at,
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
                    None => info!("published to {}", redact_url(&self.settings.redis_url)),
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
        // The probe is stuck: these are the last good values (their timestamp is when
        // they were measured).
        if let Some(since) = self.probe_stuck_since {
            mark_probe_stale(&mut stats, since.elapsed().as_secs());
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
