//! `gateway-load`: the gateway's added latency, throughput and memory under concurrent
//! load, on loopback. A fake Ollama node (the test server, answering as Ollama does, no
//! artificial delays) is called directly and through a real `vramroute-coordinator
//! daemon` gateway (a child process, routing on a saved view of that node), in
//! alternating rounds; per round: latency percentiles of whole requests (headers to the
//! last byte), requests/s, and the gateway process's RSS.
//!
//! ```text
//! cargo build --release -p vramroute-coordinator -p vramroute-benches
//! target/release/gateway-load [--clients 64] [--requests 20000] [--rounds 2]
//!                             [--stream] [--chunks 8] [--json]
//!                             [--rate REQ_PER_S] [--gateway-cpus LIST] [--load-cpus LIST]
//! ```
//!
//! By default every client sends its next request as soon as the last one ended (closed
//! loop: on a small machine this saturates the CPU, and latency is then mostly
//! queueing). `--rate R` paces the clients instead: together they start R requests per
//! second on a fixed schedule; a request sent late because the previous one overran its
//! slot is measured from its scheduled start (no coordinated omission), one woken a
//! little late by the timer's millisecond granularity from when it was sent.
//! `--gateway-cpus` / `--load-cpus` pin the gateway process and this process (load
//! generator and fake node) to CPU lists with `taskset`, so that the gateway does not
//! share cores with the load it is measured under, as on a real deployment.
//!
//! Non-streamed: `POST /api/generate {"stream": false}` (one JSON object). Streamed
//! (`--stream`): `POST /api/chat`, NDJSON in `--chunks` chunks. The coordinator binary is
//! looked up beside this one (`--coordinator PATH` overrides). Bounded: it stops after
//! `--rounds` rounds of `--requests` requests each way, or after 10 minutes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vramroute_ollama::testing::{FakeModel, FakeOllama};

struct Args {
    clients: usize,
    requests: usize,
    rounds: usize,
    stream: bool,
    chunks: usize,
    json: bool,
    coordinator: Option<PathBuf>,
    rate: Option<f64>,
    gateway_cpus: Option<String>,
    load_cpus: Option<String>,
}

const USAGE: &str = "usage: gateway-load [--clients N] [--requests N] [--rounds N] [--stream] [--chunks N] [--json] [--coordinator PATH] [--rate REQ_PER_S] [--gateway-cpus LIST] [--load-cpus LIST]

Starts a fake Ollama node and a vramroute-coordinator daemon (its gateway in front of the
node), then measures the latency the gateway adds: each round sends --requests requests
from --clients concurrent clients directly to the node, then the same through the
gateway. Options: --clients [64], --requests per round [20000], --rounds [2], --stream
(NDJSON answers of --chunks [8] chunks), --rate (paced requests/s over all clients;
default closed loop), --coordinator (the binary or a wrapper script; default: the one
next to this executable), --gateway-cpus/--load-cpus (taskset CPU lists), --json.";

fn parse_args() -> Result<Args> {
    let mut a = Args {
        clients: 64,
        requests: 20_000,
        rounds: 2,
        stream: false,
        chunks: 8,
        json: false,
        coordinator: None,
        rate: None,
        gateway_cpus: None,
        load_cpus: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--clients" => a.clients = value()?.parse()?,
            "--requests" => a.requests = value()?.parse()?,
            "--rounds" => a.rounds = value()?.parse()?,
            "--chunks" => a.chunks = value()?.parse()?,
            "--stream" => a.stream = true,
            "--json" => a.json = true,
            "--coordinator" => a.coordinator = Some(PathBuf::from(value()?)),
            "--rate" => a.rate = Some(value()?.parse()?),
            "--gateway-cpus" => a.gateway_cpus = Some(value()?),
            "--load-cpus" => a.load_cpus = Some(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown argument {arg}\n{USAGE}"),
        }
    }
    if !(1..=1024).contains(&a.clients) || a.requests < a.clients || a.rounds == 0 || a.rounds > 10
    {
        bail!("--clients 1..=1024, --requests at least --clients, --rounds 1..=10");
    }
    if let Some(r) = a.rate {
        if !(r.is_finite() && (1.0..=1_000_000.0).contains(&r)) {
            bail!("--rate is requests per second, 1..=1000000");
        }
    }
    Ok(a)
}

/// The daemon under load, ended on drop: SIGTERM, then SIGKILL after 10 s, so a
/// wrapper (`strace`, `valgrind`) given as `--coordinator` writes its counts.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        vramroute_benches::process::terminate(&mut self.0, Duration::from_secs(10));
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The saved view: one node (the fake) with llama3.1:8b loaded, so requests route warm.
fn snapshot(node: &str) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    serde_json::json!({
        "source": "gateway-load",
        "generated_at": now,
        "stale_after_s": 86400.0,
        "vram_safety_margin": 0.8,
        "nodes": [{
            "id": node,
            "vendor": "nvidia",
            "writer": "gateway-load",
            "timestamp": now,
            "age_s": 0.0,
            "stale": false,
            "ollama_url": format!("http://{node}"),
            "gpus": [{"index": 0, "name": "GPU 0", "memory_total_mb": 24576, "memory_free_mb": 18000}],
            "loaded_models": [{"name": "llama3.1:8b", "size_mb": 4700, "size_vram_mb": 4700}]
        }],
        "rpc_backends": []
    })
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Round {
    target: &'static str,
    latencies_us: Vec<u64>,
    elapsed: Duration,
    errors: usize,
}

impl Round {
    fn pct(&self, p: f64) -> u64 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i]
    }

    fn rps(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }
}

async fn round(
    target: &'static str,
    url: Arc<String>,
    body: Arc<String>,
    clients: usize,
    requests: usize,
    rate: Option<f64>,
) -> Round {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(clients)
        .build()
        .expect("an HTTP client");
    let per = requests / clients;
    // Paced: client c starts its i-th request at start + (i * clients + c) / rate.
    let spacing = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            let mut errors = 0;
            let mut prev_end = start;
            for i in 0..per {
                let t = match spacing {
                    Some(s) => {
                        let due = start + s * u32::try_from(i * clients + c).unwrap_or(u32::MAX);
                        tokio::time::sleep_until(due.into()).await;
                        // Late because the last request overran its slot: the wait
                        // counts (no coordinated omission). Late only by the timer's
                        // millisecond granularity: it does not.
                        if prev_end > due {
                            due
                        } else {
                            Instant::now()
                        }
                    }
                    None => Instant::now(),
                };
                let ok = match client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body.as_str().to_owned())
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                prev_end = Instant::now();
                if ok {
                    lat.push(u64::try_from((prev_end - t).as_micros()).unwrap_or(u64::MAX));
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut latencies_us = Vec::with_capacity(requests);
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            latencies_us.extend(l);
            errors += e;
        }
    }
    let elapsed = start.elapsed();
    latencies_us.sort_unstable();
    Round {
        target,
        latencies_us,
        elapsed,
        errors,
    }
}

/// Pins this process (every thread it starts later) to `cpus` with `taskset`.
fn pin_self(cpus: &str) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .context("cannot run taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset -p -c {cpus} failed: {status}");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    // Before any thread starts, so that all of them inherit the mask.
    if let Some(cpus) = &args.load_cpus {
        pin_self(cpus)?;
    }
    let coordinator = match &args.coordinator {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("vramroute-coordinator"),
    };
    if !coordinator.exists() {
        bail!(
            "{} is missing: cargo build --release -p vramroute-coordinator",
            coordinator.display()
        );
    }
    let fake = FakeOllama::builder()
        .model(FakeModel::new("llama3.1:8b", 4_920_000_000))
        .chunks(args.chunks)
        .start()?;
    let node = fake.addr().to_string();
    let dir = std::env::temp_dir().join(format!("gateway-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let snap = dir.join("view.json");
    std::fs::write(&snap, serde_json::to_vec(&snapshot(&node))?)?;
    let (api, gw) = (free_port()?, free_port()?);
    let mut cmd = match &args.gateway_cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(&coordinator);
            c
        }
        None => Command::new(&coordinator),
    };
    let child = cmd
        .args(["--snapshot"])
        .arg(&snap)
        .args(["--log-level", "warn", "daemon", "--listen"])
        .arg(format!("127.0.0.1:{api}"))
        .arg("--gateway-listen")
        .arg(format!("127.0.0.1:{gw}"))
        .env_remove("SOLLOL_REDIS_URL")
        .env_remove("VRAMROUTE_GATEWAY_KEYS")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the coordinator")?;
    let daemon = Daemon(child);
    let pid = daemon.0.id();
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", gw)).is_err() {
        if Instant::now() > deadline {
            bail!("the gateway did not come up on port {gw}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (path, body) = if args.stream {
        (
            "/api/chat",
            r#"{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}"#,
        )
    } else {
        (
            "/api/generate",
            r#"{"model":"llama3.1:8b","prompt":"hi","stream":false}"#,
        )
    };
    let direct = Arc::new(format!("{}{path}", fake.url()));
    let via = Arc::new(format!("http://127.0.0.1:{gw}{path}"));
    let body = Arc::new(body.to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (rss_idle, _) = rss_kib(pid);
    let overall = Instant::now() + Duration::from_secs(600);
    let mut rounds = Vec::new();
    for _ in 0..args.rounds {
        if Instant::now() > overall {
            break;
        }
        for (name, url) in [("direct", direct.clone()), ("gateway", via.clone())] {
            let r = rt.block_on(round(
                name,
                url,
                body.clone(),
                args.clients,
                args.requests,
                args.rate,
            ));
            rounds.push(r);
        }
    }
    let (rss, hwm) = rss_kib(pid);
    // The last pair is the warm one.
    let n = rounds.len();
    let (d, g) = (&rounds[n - 2], &rounds[n - 1]);
    let added = |p: f64| g.pct(p) as i64 - d.pct(p) as i64;
    if args.json {
        let row = |r: &Round| {
            serde_json::json!({
                "target": r.target, "requests": r.latencies_us.len(), "errors": r.errors,
                "p50_us": r.pct(0.5), "p90_us": r.pct(0.9), "p99_us": r.pct(0.99),
                "max_us": r.pct(1.0), "rps": r.rps(),
            })
        };
        println!(
            "{}",
            serde_json::json!({
                "mode": if args.stream { "stream" } else { "non-stream" },
                "clients": args.clients,
                "rate": args.rate,
                "rounds": rounds.iter().map(row).collect::<Vec<_>>(),
                "added_p50_us": added(0.5), "added_p99_us": added(0.99),
                "gateway_rss_kib": rss, "gateway_rss_peak_kib": hwm, "gateway_rss_idle_kib": rss_idle,
            })
        );
    } else {
        println!(
            "mode: {} | clients: {} | requests per round: {} | pacing: {}",
            if args.stream {
                format!("streamed /api/chat ({} chunks)", args.chunks)
            } else {
                "non-streamed /api/generate".to_owned()
            },
            args.clients,
            args.requests,
            args.rate
                .map_or("closed loop".to_owned(), |r| format!("{r} req/s"))
        );
        println!(
            "{:<8} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "target", "requests", "errors", "p50 µs", "p90 µs", "p99 µs", "max µs", "req/s"
        );
        for r in &rounds {
            println!(
                "{:<8} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9.0}",
                r.target,
                r.latencies_us.len(),
                r.errors,
                r.pct(0.5),
                r.pct(0.9),
                r.pct(0.99),
                r.pct(1.0),
                r.rps()
            );
        }
        println!(
            "added by the gateway (last pair): p50 {} µs, p99 {} µs",
            added(0.5),
            added(0.99)
        );
        println!(
            "gateway process RSS: {} KiB idle, {} KiB after load, peak {} KiB",
            rss_idle, rss, hwm
        );
    }
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
