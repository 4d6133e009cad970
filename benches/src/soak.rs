//! The soak harness (`vramroute-soak`): a coordinator following a simulated cluster for
//! a while, measured.
//!
//! The coordinator is either (**daemon mode**, the default of the binary) a real
//! `vramroute-coordinator daemon` process this harness starts, asked through its HTTP
//! route API (`GET /v1/route`, the fast form: no explanation is built), its RSS and CPU
//! read from `/proc/PID`; or (**in-process mode**) a [`LiveCluster`] in this process
//! following the registry exactly as the daemon does (a `RegistryFeed` over a
//! `RedisRegistry`, change push plus rediscovery, a new router per view; no HTTP
//! server), which isolates the router's own decision latency, its RSS and CPU being
//! this process's (the coordinator's work plus the measuring loops'). The load is
//! `vramroute-sim`, a child process, against the same Redis (by default a private
//! `redis-server` this harness starts; or `--redis-url`, or a 3-master Redis Cluster it
//! starts with `--cluster`).
//!
//! Measured:
//! - **decisions**: a thread routes `llama3.1:8b` (4700 MiB) at a paced rate while views
//!   refresh; every call is timed (ns histogram): decisions/s, p50/p99/max. In daemon
//!   mode a call is one HTTP round trip on a kept-alive loopback connection; the
//!   daemon's own timing of the route call (its `/metrics` histogram) is reported too.
//! - **staleness**: the harness owns two extra "probe" nodes and, about once a second,
//!   writes one of them (through the same registry writer) with a 192 GiB GPU that is
//!   the only place a probe model (120,000 MiB, GPU only) fits, after writing the other
//!   one back to a small GPU; then it routes the probe request every millisecond until
//!   the coordinator picks the stamped node. Staleness = that moment minus the moment the
//!   write started: registry write → change push → discovery → node specs → snapshot → router
//!   (→ HTTP answer, in daemon mode).
//! - **RSS and CPU** of the coordinator (`/proc/PID` or `/proc/self`), sampled every
//!   `sample_every`.

mod daemon;
mod hist;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use vramroute_cluster::{LiveCluster, LiveConfig, RegistryFeed};
use vramroute_registry::testing::{RedisCluster, RedisServer};
use vramroute_registry::{GpuStat, GpuStatsRecord, RedisRegistry, Registry, RegistryConfig};
use vramroute_router::{Policy, Request};

use daemon::{usage, Daemon, Http};
use hist::Histogram;

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Simulated nodes.
    pub nodes: usize,
    /// How long the measured run lasts (after the first discovery).
    pub duration: Duration,
    /// The simulator's report interval.
    pub interval: Duration,
    /// `vramroute-sim`'s executable.
    pub sim: std::path::PathBuf,
    /// A Redis to use instead of starting one (`redis://…`, `redis-cluster://…`).
    pub redis_url: Option<String>,
    /// Start a 3-master Redis Cluster instead of one server.
    pub cluster: bool,
    /// Paced decisions per second on the decision thread.
    pub decision_rate: u64,
    /// How often RSS and CPU are sampled (and a progress line printed).
    pub sample_every: Duration,
    /// Fraction of nodes leaving per minute (passed to the simulator).
    pub leave_per_min: f64,
    /// The simulator starts settled (`vramroute-sim --settled`): its model count is at the
    /// churn's steady state from the start, so RSS growth is the coordinator's own.
    pub settled: bool,
    /// Print progress lines to stderr.
    pub verbose: bool,
    /// `Some(vramroute-coordinator's executable)`: daemon mode (a real daemon process,
    /// measured through its HTTP API); `None`: in-process mode.
    pub coordinator: Option<std::path::PathBuf>,
    /// In-process mode: [`LiveConfig::refresh_nice`] of the coordinator (its follow loop
    /// on its own thread, that much below the deciding thread's priority).
    pub refresh_nice: u8,
}

impl Default for SoakConfig {
    fn default() -> Self {
        SoakConfig {
            nodes: 1000,
            duration: Duration::from_secs(600),
            interval: Duration::from_secs(5),
            sim: std::path::PathBuf::from("vramroute-sim"),
            redis_url: None,
            cluster: false,
            decision_rate: 10_000,
            sample_every: Duration::from_secs(10),
            leave_per_min: 0.01,
            settled: false,
            verbose: true,
            coordinator: None,
            refresh_nice: LiveConfig::default().refresh_nice,
        }
    }
}

/// One RSS/CPU sample.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    /// Seconds since the measured run began.
    pub t_s: f64,
    /// Resident set size, MiB.
    pub rss_mib: f64,
    /// CPU used since the previous sample, % of one core.
    pub cpu_percent: f64,
    /// Nodes in the current view.
    pub nodes: usize,
}

/// What a soak measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoakReport {
    /// Simulated nodes.
    pub nodes: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Redis used (`private redis-server`, `private 3-master cluster`, or the URL's host).
    pub redis: String,
    /// `daemon` (a `vramroute-coordinator daemon` process, over HTTP) or `in-process`.
    pub mode: String,
    /// Decisions made on the decision thread.
    pub decisions: u64,
    /// Their rate.
    pub decisions_per_s: f64,
    /// Decision latency percentiles, ns: p50, p99, p99.9, max (daemon mode: the HTTP
    /// round trip as this harness sees it).
    pub decision_ns: [u64; 4],
    /// Daemon mode: the daemon's own timing of the route call (its `/metrics`
    /// histogram, power-of-two buckets from 1 µs: upper bounds), ns: p50, p99.
    pub server_decision_ns: Option<[u64; 2]>,
    /// Decisions that failed (HTTP errors, no answer), not counted in `decisions`.
    pub decision_errors: u64,
    /// Staleness samples taken.
    pub staleness_samples: usize,
    /// Staleness percentiles, ms: p50, p99, max (0 when no sample).
    pub staleness_ms: [f64; 3],
    /// Stamps the router never reflected within 30 s.
    pub staleness_timeouts: usize,
    /// The five slowest stamps: (seconds since the coordinator started, staleness ms).
    /// Periodic work shows up here (e.g. a full read every `full_read_interval`, 30 s).
    pub staleness_slowest: Vec<(f64, f64)>,
    /// RSS/CPU samples.
    pub samples: Vec<Sample>,
    /// RSS at the end, MiB.
    pub rss_end_mib: f64,
    /// RSS growth over the last half of the run (or its last 5 minutes, if shorter), %:
    /// the last sample against the first of that part (two samples, so a follow cycle's
    /// short-lived memory in either moves it).
    pub rss_growth_percent: f64,
    /// The same part's trend: the least-squares slope of its RSS samples over its length,
    /// as a % of their mean (every sample counts, so one high or low sample moves it little).
    pub rss_trend_percent: f64,
    /// Mean CPU over the run, % of one core.
    pub cpu_mean_percent: f64,
    /// The simulator's final counters line.
    pub sim_summary: String,
    /// The simulator started settled (`--settled`).
    pub settled: bool,
    /// The deciding thread's scheduling over the measured run (Linux).
    pub decider: DeciderSched,
}

/// Decisions slower than this are "slow" in [`DeciderSched`] (the p99 target).
pub const SLOW_NS: u64 = 10_000;

/// How the deciding thread was scheduled over the measured run, from
/// `/proc/thread-self/status` (context switches) and `/proc/thread-self/schedstat` (time
/// waiting on a run queue): read when the run starts and ends, at the start of every
/// batch of decisions and after every slow decision (outside the timed calls), so each
/// slow decision is matched with what happened to the thread since the previous read.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeciderSched {
    /// Whether the counters could be read (Linux with schedstats).
    pub available: bool,
    /// Involuntary context switches (preempted while runnable) over the run.
    pub involuntary_switches: u64,
    /// Voluntary ones (its sleeps between batches).
    pub voluntary_switches: u64,
    /// Time runnable but waiting for a CPU over the run, ms.
    pub run_queue_wait_ms: f64,
    /// Decisions slower than [`SLOW_NS`].
    pub slow: u64,
    /// Slow decisions during which the thread was preempted (an involuntary switch
    /// since the previous read).
    pub slow_preempted: u64,
    /// Time the slow decisions waited on a run queue, summed, ms.
    pub slow_run_queue_wait_ms: f64,
    /// The slow decisions' time, summed, ms.
    pub slow_time_ms: f64,
    /// In-process: slow decisions that overlapped a follow cycle's refresh
    /// ([`LiveCluster::refreshes`]).
    pub slow_during_refresh: u64,
    /// In-process: all decisions that overlapped a refresh.
    pub during_refresh: u64,
    /// Of the slow preempted decisions, those that overlapped a refresh.
    pub slow_preempted_during_refresh: u64,
}

/// This thread's (involuntary, voluntary) context switches and run-queue wait (ns), or
/// `None` where `/proc/thread-self` does not say.
fn thread_sched() -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let involuntary = field("nonvoluntary_ctxt_switches:")?;
    let voluntary = field("voluntary_ctxt_switches:")?;
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let wait = schedstat.split_whitespace().nth(1)?.parse().ok()?;
    Some((involuntary, voluntary, wait))
}

fn quantile_ms(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// The probe nodes' ids (outside the simulator's address range).
const PROBES: [&str; 2] = ["127.254.0.1:11434", "127.254.0.2:11434"];
/// The probe model's size: no simulated GPU (at most 80 GiB × 0.8 usable) can hold it.
const PROBE_MIB: u64 = 120_000;

fn probe_record(id: &str, big: bool) -> GpuStatsRecord {
    let mut r = GpuStatsRecord::new(id, "amd", crate::sim::unix_now());
    let (total, free) = if big {
        (196_608, 190_000)
    } else {
        (16_384, 15_000)
    };
    let mut g = GpuStat::new(
        0,
        if big {
            "AMD Instinct MI300X"
        } else {
            "AMD Radeon RX 7800 XT"
        },
    );
    g.memory_total_mb = Some(total);
    g.memory_free_mb = Some(free);
    g.memory_used_mb = Some(total - free);
    r.gpus = vec![g];
    r.cpu_ram_total_mb = Some(65_536);
    r.cpu_ram_free_mb = Some(32_768);
    r.cpu_count = Some(32);
    r
}

/// Where the soak's Redis comes from; servers it started stop when this drops.
enum Redis {
    Server(RedisServer),
    Cluster(RedisCluster),
    External(String),
}

impl Redis {
    fn url(&self) -> String {
        match self {
            Redis::Server(s) => s.url(),
            Redis::Cluster(c) => c.url(),
            Redis::External(u) => u.clone(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Redis::Server(_) => "private redis-server (loopback)".to_owned(),
            Redis::Cluster(_) => "private 3-master Redis Cluster (loopback)".to_owned(),
            Redis::External(u) => vramroute_registry::redact_url(u),
        }
    }
}

struct SimChild(Child);

impl Drop for SimChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The coordinator under measurement.
enum Coordinator {
    InProcess(Arc<LiveCluster>, vramroute_cluster::FollowThread),
    Daemon(Daemon),
}

impl Coordinator {
    /// A client for one measuring thread.
    fn client(&self) -> Result<Client> {
        Ok(match self {
            Coordinator::InProcess(live, _) => Client::InProcess(live.clone()),
            Coordinator::Daemon(d) => Client::Http(d.connect()?),
        })
    }

    /// `/proc` name of the coordinator's process.
    fn proc_name(&self) -> String {
        match self {
            Coordinator::InProcess(..) => "self".to_owned(),
            Coordinator::Daemon(d) => d.pid().to_string(),
        }
    }
}

/// The request every decision makes, and the staleness probe's.
fn main_request() -> Request<'static> {
    Request::new("llama3.1:8b", 4700)
}
const MAIN_PATH: &str = "/v1/route?model=llama3.1:8b&size_mb=4700";
fn probe_request() -> Request<'static> {
    Request::new("staleness-probe", PROBE_MIB)
        .allow_cpu(false)
        .needs_gpu(true)
}
const PROBE_PATH: &str =
    "/v1/route?model=staleness-probe&size_mb=120000&allow_cpu=false&needs_gpu=true";

/// One measuring thread's way to the coordinator.
enum Client {
    InProcess(Arc<LiveCluster>),
    Http(Http),
}

#[derive(serde::Deserialize)]
struct Answer {
    placement: Option<AnswerPlacement>,
}

#[derive(serde::Deserialize)]
struct AnswerPlacement {
    node: String,
}

impl Client {
    /// One decision for the main request; whether it was answered.
    fn decide(&mut self, req: &Request<'_>) -> bool {
        match self {
            Client::InProcess(live) => {
                let d = live.router().route(req);
                std::hint::black_box(&d);
                true
            }
            Client::Http(h) => h.get(MAIN_PATH).is_ok(),
        }
    }

    /// In-process: [`LiveCluster::refreshes`] (odd while the follow loop refreshes).
    fn refreshes(&self) -> Option<u64> {
        match self {
            Client::InProcess(live) => Some(live.refreshes()),
            Client::Http(_) => None,
        }
    }

    /// The node the probe request goes to now, if any.
    fn probe_node(&mut self, probe: &Request<'_>) -> Option<String> {
        match self {
            Client::InProcess(live) => {
                let router = live.router();
                let d = router.route(probe).ok()?;
                let snap = router.snapshot();
                (d.snapshot == snap.id()).then(|| snap.node(d.node).id.to_string())
            }
            Client::Http(h) => {
                let body = h.get(PROBE_PATH).ok()?;
                let a: Answer = serde_json::from_slice(&body).ok()?;
                a.placement.map(|p| p.node)
            }
        }
    }

    /// Nodes in the coordinator's current view (`None`: cannot tell).
    fn nodes(&mut self) -> Option<usize> {
        match self {
            Client::InProcess(live) => Some(live.view().nodes.len()),
            Client::Http(h) => {
                let body = h.get("/healthz").ok()?;
                let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
                v.get("nodes")?.as_u64().map(|n| n as usize)
            }
        }
    }
}

/// Runs a soak and returns what it measured. Bounded: the simulator gets the duration
/// plus a margin and stops by itself; every wait here is bounded.
pub fn run(config: &SoakConfig) -> Result<SoakReport> {
    let redis = match (&config.redis_url, config.cluster) {
        (Some(url), _) => Redis::External(url.clone()),
        (None, false) => Redis::Server(RedisServer::start().context("cannot start redis-server")?),
        (None, true) => Redis::Cluster(
            RedisCluster::with_masters(3).context("cannot start a 3-master Redis Cluster")?,
        ),
    };
    let url = redis.url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let log = |line: String| {
        if config.verbose {
            eprintln!("{line}");
        }
    };

    // The simulator, for the run plus time to reach the first full view.
    let warmup = Duration::from_secs(10).max(config.interval * 2);
    let sim_duration = warmup + config.duration + Duration::from_secs(5);
    let mut sim = SimChild(
        Command::new(&config.sim)
            .arg("--redis-url")
            .arg(&url)
            .arg("--nodes")
            .arg(config.nodes.to_string())
            .arg("--interval")
            .arg(format!("{}ms", config.interval.as_millis()))
            .arg("--duration")
            .arg(format!("{}s", sim_duration.as_secs()))
            .arg("--leave-per-min")
            .arg(config.leave_per_min.to_string())
            .args(config.settled.then_some("--settled"))
            .stdout(Stdio::piped())
            .stderr(if config.verbose {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .with_context(|| format!("cannot start {}", config.sim.display()))?,
    );

    let mut reg_config = RegistryConfig::default();
    reg_config.poll_interval = Duration::from_secs(2);
    reg_config.command_timeout = Duration::from_secs(10);
    let writer = runtime.block_on(async {
        let writer = RedisRegistry::connect(&url, reg_config.clone()).await?;
        for id in PROBES {
            writer.publish_stats(&probe_record(id, false)).await?;
        }
        anyhow::Ok(writer)
    })?;
    let coordinator = match &config.coordinator {
        Some(bin) => Coordinator::Daemon(Daemon::start(bin, &url, config.verbose)?),
        None => runtime
            .block_on(async {
                let reader = RedisRegistry::connect(&url, reg_config).await?;
                let feed = Arc::new(RegistryFeed::new(reader, redis.describe()));
                let mut live_config = LiveConfig::default();
                live_config.refresh_nice = config.refresh_nice;
                let live = Arc::new(
                    LiveCluster::start(feed.as_ref(), Policy::default(), live_config).await?,
                );
                let follow = live.clone().spawn_follow(feed)?;
                anyhow::Ok((live, follow))
            })
            .map(|(live, follow)| Coordinator::InProcess(live, follow))?,
    };
    let mode = match coordinator {
        Coordinator::InProcess(..) => "in-process",
        Coordinator::Daemon(_) => "daemon",
    };
    let proc_name = coordinator.proc_name();
    let coordinator_start = Instant::now();
    let mut watcher = coordinator.client()?;

    // Warm-up: until the view holds (nearly) every simulated node.
    let warm_deadline = Instant::now() + warmup + Duration::from_secs(60);
    loop {
        let n = watcher.nodes().unwrap_or(0);
        if n >= config.nodes * 9 / 10 {
            break;
        }
        if Instant::now() > warm_deadline {
            bail!(
                "the view holds {n} of {} nodes after the warm-up: is the simulator writing?",
                config.nodes
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    log(format!(
        "warm ({mode}): {} nodes in the view; measuring for {:?}",
        watcher.nodes().unwrap_or(0),
        config.duration
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let end = start + config.duration;

    // Decision thread: paced batches, every call timed.
    let decisions = Arc::new(AtomicU64::new(0));
    let decider = {
        let mut client = coordinator.client()?;
        let stop = stop.clone();
        let decisions = decisions.clone();
        let rate = config.decision_rate.max(100);
        std::thread::spawn(move || {
            let mut hist = Histogram::new();
            let mut errors = 0u64;
            let req = main_request();
            let batch = rate / 100;
            let mut sched = DeciderSched::default();
            let first = thread_sched();
            sched.available = first.is_some();
            let mut last = first;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if sched.available {
                    last = thread_sched();
                }
                for _ in 0..batch {
                    let r0 = client.refreshes();
                    let t = Instant::now();
                    let ok = client.decide(&req);
                    let ns = t.elapsed().as_nanos() as u64;
                    let r1 = client.refreshes();
                    let refreshing = r0.zip(r1).is_some_and(|(a, b)| a % 2 == 1 || a != b);
                    sched.during_refresh += u64::from(refreshing);
                    if ok {
                        hist.record(ns);
                    } else {
                        errors += 1;
                    }
                    if ns > SLOW_NS {
                        sched.slow += 1;
                        sched.slow_time_ms += ns as f64 / 1e6;
                        sched.slow_during_refresh += u64::from(refreshing);
                        let now = if sched.available {
                            thread_sched()
                        } else {
                            None
                        };
                        if let (Some(a), Some(b)) = (last, now) {
                            let preempted = b.0 > a.0;
                            sched.slow_preempted += u64::from(preempted);
                            sched.slow_preempted_during_refresh +=
                                u64::from(preempted && refreshing);
                            sched.slow_run_queue_wait_ms += b.2.saturating_sub(a.2) as f64 / 1e6;
                        }
                        last = now;
                    }
                }
                decisions.fetch_add(batch, Ordering::Relaxed);
                next += Duration::from_millis(10);
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            if let (Some(a), Some(b)) = (first, thread_sched()) {
                sched.involuntary_switches = b.0.saturating_sub(a.0);
                sched.voluntary_switches = b.1.saturating_sub(a.1);
                sched.run_queue_wait_ms = b.2.saturating_sub(a.2) as f64 / 1e6;
            }
            (hist, errors, sched)
        })
    };

    // Staleness: stamp, then ask the coordinator every millisecond until it follows.
    // (seconds since the coordinator started, staleness ms) per stamp; timeouts.
    let staleness = Arc::new(Mutex::new((Vec::<(f64, f64)>::new(), 0usize)));
    let stamper = {
        let mut client = coordinator.client()?;
        let stop = stop.clone();
        let staleness = staleness.clone();
        let handle = runtime.handle().clone();
        std::thread::spawn(move || {
            let probe = probe_request();
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (target, other) = (PROBES[k % 2], PROBES[(k + 1) % 2]);
                k += 1;
                let wrote = handle.block_on(async {
                    writer.publish_stats(&probe_record(other, false)).await?;
                    let t0 = Instant::now();
                    writer.publish_stats(&probe_record(target, true)).await?;
                    anyhow::Ok(t0)
                });
                let Ok(t0) = wrote else {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                };
                let give_up = t0 + Duration::from_secs(30);
                let mut seen = None;
                while Instant::now() < give_up && !stop.load(Ordering::Relaxed) {
                    if client.probe_node(&probe).as_deref() == Some(target) {
                        seen = Some(t0.elapsed());
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                let mut s = staleness.lock().unwrap_or_else(|p| p.into_inner());
                match seen {
                    Some(d) => s.0.push((
                        t0.duration_since(coordinator_start).as_secs_f64(),
                        d.as_secs_f64() * 1000.0,
                    )),
                    None if !stop.load(Ordering::Relaxed) => s.1 += 1,
                    None => {}
                }
                drop(s);
                // About one stamp a second, at a varying phase against the view refresh.
                std::thread::sleep(Duration::from_millis(700 + (k as u64 * 137) % 600));
            }
        })
    };

    // Sampling on this thread.
    let mut samples = Vec::new();
    let (_, mut cpu_prev) = usage(&proc_name);
    let mut t_prev = Instant::now();
    let cpu_start = cpu_prev;
    while Instant::now() < end {
        let wait = config
            .sample_every
            .min(end.saturating_duration_since(Instant::now()));
        std::thread::sleep(wait);
        let (rss, cpu) = usage(&proc_name);
        let dt = t_prev.elapsed().as_secs_f64();
        let sample = Sample {
            t_s: start.elapsed().as_secs_f64(),
            rss_mib: rss,
            cpu_percent: if dt > 0.0 {
                100.0 * (cpu - cpu_prev) / dt
            } else {
                0.0
            },
            nodes: watcher.nodes().unwrap_or(0),
        };
        cpu_prev = cpu;
        t_prev = Instant::now();
        let st = staleness.lock().unwrap_or_else(|p| p.into_inner());
        log(format!(
            "t={:>6.0}s rss={:>7.1} MiB cpu={:>5.1}% nodes={} decisions={} staleness_samples={}",
            sample.t_s,
            sample.rss_mib,
            sample.cpu_percent,
            sample.nodes,
            decisions.load(Ordering::Relaxed),
            st.0.len()
        ));
        drop(st);
        samples.push(sample);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (_, cpu_end) = usage(&proc_name);
    stop.store(true, Ordering::Relaxed);
    let (hist, decision_errors, decider_sched) = decider
        .join()
        .map_err(|_| anyhow::anyhow!("decision thread panicked"))?;
    stamper
        .join()
        .map_err(|_| anyhow::anyhow!("staleness thread panicked"))?;
    let server_decision_ns = match &coordinator {
        Coordinator::Daemon(d) => d
            .connect()
            .and_then(|mut h| h.get("/metrics"))
            .ok()
            .and_then(|m| daemon::server_decision_quantiles(&String::from_utf8_lossy(&m)))
            .map(|(q, _)| q),
        Coordinator::InProcess(..) => None,
    };
    let daemon_alive = match coordinator {
        Coordinator::Daemon(mut d) => d.is_running(),
        Coordinator::InProcess(_, follow) => {
            follow.stop();
            true
        }
    };
    if !daemon_alive {
        bail!("the coordinator daemon died during the soak");
    }

    let sim_summary = stop_sim(&mut sim.0);
    drop(sim);
    runtime.shutdown_timeout(Duration::from_secs(2));
    let redis_name = redis.describe();
    drop(redis);

    let (mut stamps, timeouts) = staleness
        .lock()
        .map(|s| s.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    stamps.sort_by(|a, b| b.1.total_cmp(&a.1));
    let staleness_slowest = stamps.iter().take(5).copied().collect();
    let mut stale: Vec<f64> = stamps.iter().map(|s| s.1).collect();
    stale.sort_by(f64::total_cmp);
    let rss_end = samples.last().map_or(0.0, |s| s.rss_mib);
    let tail_from = (elapsed / 2.0).max(elapsed - 300.0);
    let rss_tail_start = samples
        .iter()
        .find(|s| s.t_s >= tail_from)
        .map_or(rss_end, |s| s.rss_mib);
    let tail: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t_s >= tail_from)
        .map(|s| (s.t_s, s.rss_mib))
        .collect();
    let total = hist.total();
    Ok(SoakReport {
        nodes: config.nodes,
        duration_s: elapsed,
        redis: redis_name,
        mode: mode.to_owned(),
        decisions: total,
        decisions_per_s: total as f64 / elapsed,
        decision_ns: [
            hist.quantile(0.5),
            hist.quantile(0.99),
            hist.quantile(0.999),
            hist.quantile(1.0),
        ],
        server_decision_ns,
        decision_errors,
        staleness_samples: stale.len(),
        staleness_ms: [
            quantile_ms(&stale, 0.5),
            quantile_ms(&stale, 0.99),
            stale.last().copied().unwrap_or(0.0),
        ],
        staleness_timeouts: timeouts,
        staleness_slowest,
        rss_end_mib: rss_end,
        rss_growth_percent: if rss_tail_start > 0.0 {
            100.0 * (rss_end - rss_tail_start) / rss_tail_start
        } else {
            0.0
        },
        rss_trend_percent: trend_percent(&tail),
        cpu_mean_percent: 100.0 * (cpu_end - cpu_start) / elapsed,
        samples,
        sim_summary,
        settled: config.settled,
        decider: decider_sched,
    })
}

/// The least-squares line through `(t, y)` points: its rise over their time span, as a
/// % of the mean of `y`. Fewer than two points, no time span or a mean of 0: 0.
fn trend_percent(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let var_t: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    if var_t <= 0.0 || mean_y == 0.0 {
        return 0.0;
    }
    let cov: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_y)).sum();
    let span = points[points.len() - 1].0 - points[0].0;
    100.0 * (cov / var_t) * span / mean_y
}

/// Asks the simulator to stop (SIGTERM, as a service manager would), waits up to 10 s
/// for it, and returns its last stdout line (its counters).
fn stop_sim(child: &mut Child) -> String {
    use std::io::Read;
    crate::process::terminate(child, Duration::from_secs(10));
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    out.lines().last().map_or_else(
        || "no counters (the simulator did not stop cleanly)".to_owned(),
        str::to_owned,
    )
}

impl SoakReport {
    /// The report as a JSON value.
    pub fn to_json(&self) -> serde_json::Value {
        json!(self)
    }

    /// The report in words, one figure a line.
    pub fn render(&self) -> String {
        let server = match self.server_decision_ns {
            Some([p50, p99]) => format!(
                "; the daemon's own timing of the route call: p50 ≤ {p50} ns, p99 ≤ {p99} ns"
            ),
            None => String::new(),
        };
        format!(
            "nodes {}, {:.0} s measured, {}, coordinator {}\n\
             decisions: {} ({:.0}/s, {} failed), latency p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns{}\n\
             staleness: {} samples, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} not seen within 30 s; slowest (ms @ s since the coordinator started): {}\n\
             RSS: {:.1} MiB at the end, {:+.1} % over the last part of the run (its trend: {:+.1} %); CPU {:.1} % of one core on average\n\
             simulator{}: {}\n{}",
            self.nodes,
            self.duration_s,
            self.redis,
            self.mode,
            self.decisions,
            self.decisions_per_s,
            self.decision_errors,
            self.decision_ns[0],
            self.decision_ns[1],
            self.decision_ns[2],
            self.decision_ns[3],
            server,
            self.staleness_samples,
            self.staleness_ms[0],
            self.staleness_ms[1],
            self.staleness_ms[2],
            self.staleness_timeouts,
            self.staleness_slowest
                .iter()
                .map(|(t, ms)| format!("{ms:.0} @ {t:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.rss_end_mib,
            self.rss_growth_percent,
            self.rss_trend_percent,
            self.cpu_mean_percent,
            if self.settled { " (settled start)" } else { "" },
            self.sim_summary,
            self.decider.render(self.decisions),
        )
    }
}

impl DeciderSched {
    /// The figures in words (one line), `decisions` being the run's total.
    fn render(&self, decisions: u64) -> String {
        if !self.available {
            return "deciding thread: no /proc/thread-self counters\n".to_owned();
        }
        format!(
            "deciding thread: {} involuntary and {} voluntary context switches, {:.1} ms \
             waiting on a run queue; {} decisions over {} µs ({:.1} ms in all): {} preempted \
             ({:.1} ms on a run queue), {} during a refresh ({} preempted); decisions during \
             a refresh: {} of {} ({:.1} %)\n",
            self.involuntary_switches,
            self.voluntary_switches,
            self.run_queue_wait_ms,
            self.slow,
            SLOW_NS / 1000,
            self.slow_time_ms,
            self.slow_preempted,
            self.slow_run_queue_wait_ms,
            self.slow_during_refresh,
            self.slow_preempted_during_refresh,
            self.during_refresh,
            decisions,
            if decisions > 0 {
                100.0 * self.during_refresh as f64 / decisions as f64
            } else {
                0.0
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::trend_percent;

    #[test]
    fn trend_of_a_straight_rise_is_the_rise() {
        let pts: Vec<(f64, f64)> = (0..=10)
            .map(|i| (i as f64 * 30.0, 100.0 + i as f64))
            .collect();
        // 100 → 110 over the span, mean 105.
        assert!((trend_percent(&pts) - 1000.0 / 105.0).abs() < 1e-9);
    }

    #[test]
    fn one_high_sample_at_the_end_moves_the_trend_less_than_two_samples_would() {
        let mut pts: Vec<(f64, f64)> = (0..=10).map(|i| (i as f64 * 30.0, 100.0)).collect();
        pts[10].1 = 110.0;
        let t = trend_percent(&pts);
        assert!(t > 0.0 && t < 5.0, "{t}");
    }

    #[test]
    fn flat_short_or_degenerate_series_have_no_trend() {
        assert_eq!(trend_percent(&[]), 0.0);
        assert_eq!(trend_percent(&[(0.0, 5.0)]), 0.0);
        assert_eq!(trend_percent(&[(3.0, 5.0), (3.0, 9.0)]), 0.0);
        assert_eq!(trend_percent(&[(0.0, 7.0), (30.0, 7.0), (60.0, 7.0)]), 0.0);
    }
}
