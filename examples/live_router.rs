//! `live-router`: embed the cluster layer in a program. Connects to a Redis registry,
//! keeps a live router current as reporters come and go, and routes the given models
//! every `--every-ms`, printing a line whenever a decision changes. Stops by itself after
//! `--duration-s`.
//!
//! ```text
//! live-router --redis-url redis://127.0.0.1:6390 --model llama3.1:8b [--model M ...]
//!             [--every-ms 200] [--duration-s 30]
//! ```
//!
//! Output lines (stdout): `nodes: N [id, ...]` when the set of fresh nodes changes, and
//! `route MODEL -> NODE GPU g (reason)` / `route MODEL -> none (reason)` when a decision
//! changes.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vramroute_cluster::{LiveCluster, LiveConfig, RegistryFeed};
use vramroute_registry::{redact_url, RedisRegistry, Registry, RegistryConfig};
use vramroute_router::{Policy, Request, Target};

struct Args {
    redis_url: String,
    models: Vec<String>,
    every: Duration,
    duration: Duration,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        redis_url: String::new(),
        models: Vec::new(),
        every: Duration::from_millis(200),
        duration: Duration::from_secs(30),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--redis-url" => args.redis_url = value()?,
            "--model" => args.models.push(value()?),
            "--every-ms" => args.every = Duration::from_millis(value()?.parse()?),
            "--duration-s" => args.duration = Duration::from_secs(value()?.parse()?),
            "-h" | "--help" => bail!(
                "usage: live-router --redis-url URL --model NAME [--model NAME ...] [--every-ms N] [--duration-s N]"
            ),
            _ => bail!("unknown argument {a}; see --help"),
        }
    }
    if args.redis_url.is_empty() || args.models.is_empty() {
        bail!("--redis-url and at least one --model are required; see --help");
    }
    if args.every.is_zero() || args.every > Duration::from_secs(60) {
        bail!("--every-ms must be 1 to 60000");
    }
    Ok(args)
}

async fn run(args: Args) -> Result<()> {
    let registry = RedisRegistry::new_lazy(&args.redis_url, RegistryConfig::default())?;
    registry.ping().await?;
    let feed = Arc::new(RegistryFeed::new(
        registry,
        format!("redis {}", redact_url(&args.redis_url)),
    ));
    let mut config = LiveConfig::default();
    config.rediscover_every = Duration::from_secs(2);
    let live = Arc::new(LiveCluster::start(feed.as_ref(), Policy::default(), config).await?);
    let follower = tokio::spawn(live.clone().follow(feed));

    let mut last_nodes = String::new();
    let mut last: Vec<String> = vec![String::new(); args.models.len()];
    let deadline = Instant::now() + args.duration;
    let mut tick = tokio::time::interval(args.every);
    while Instant::now() < deadline {
        tick.tick().await;
        let view = live.view();
        let fresh: Vec<&str> = view
            .nodes
            .iter()
            .filter(|n| n.in_registry && !n.stale)
            .map(|n| n.id.as_str())
            .collect();
        let nodes = format!("nodes: {} [{}]", fresh.len(), fresh.join(", "));
        if nodes != last_nodes {
            println!("{nodes}");
            last_nodes = nodes;
        }
        for (model, last) in args.models.iter().zip(last.iter_mut()) {
            let size = live.model_size(model, None)?;
            let req = Request::new(model, size.size_mb);
            let snap = live.router().snapshot();
            let line = match live.router().route(&req) {
                Ok(d) => {
                    let place = match (d.target, d.gpu) {
                        (Target::Gpu, Some(g)) => format!("GPU {g}"),
                        (Target::Gpu, None) => "GPUs".to_owned(),
                        (Target::Cpu, _) => "CPU".to_owned(),
                    };
                    format!(
                        "route {model} -> {} {place} ({:?})",
                        snap.node(d.node).id,
                        d.fit
                    )
                }
                Err(e) => format!("route {model} -> none ({e})"),
            };
            if &line != last {
                println!("{line}");
                *last = line;
            }
        }
    }
    follower.abort();
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(run(args))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("live-router: {e:#}");
            ExitCode::FAILURE
        }
    }
}
