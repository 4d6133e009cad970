//! `vramroute-sim`: N simulated reporters publishing through the real registry writer,
//! with churn, for a bounded time. Point it at a staging Redis to size a coordinator.
//!
//! ```text
//! cargo build --release -p vramroute-benches --bin vramroute-sim
//! target/release/vramroute-sim --redis-url redis://127.0.0.1:6390 --nodes 10000 --duration 10m
//!     [--interval 5s] [--leave-per-min 0.01] [--downtime 30s] [--model-change 0.02]
//!     [--seed 1] [--writers 32] [--settled]
//! ```
//!
//! `--settled` starts the cluster as if it had already run this churn for a while (each
//! node has lived an age drawn from the leaving rate, loading and unloading models), so
//! its model count is flat from the first publish instead of climbing from zero.
//!
//! Stops by itself after `--duration`, or on SIGTERM / Ctrl-C; prints its counters (one
//! line) on stdout when it stops, progress every 10 s on stderr. See `docs/scale.md`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vramroute_benches::sim::{self, parse_duration, SimConfig, SimStats};
use vramroute_registry::{redact_url, RedisRegistry, RegistryConfig};

const USAGE: &str = "usage: vramroute-sim --redis-url URL [--nodes N] [--duration D] [--interval D] [--leave-per-min F] [--downtime D] [--model-change P] [--seed N] [--writers N] [--settled]   (D: 90, 90s, 500ms, 10m)";

fn parse_args() -> Result<(String, SimConfig)> {
    let mut url = None;
    let mut c = SimConfig::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--redis-url" => url = Some(value()?),
            "--nodes" => c.nodes = value()?.parse().context("--nodes: a number")?,
            "--duration" => c.duration = parse_duration(&value()?)?,
            "--interval" => c.interval = parse_duration(&value()?)?,
            "--leave-per-min" => {
                c.leave_per_min = value()?.parse().context("--leave-per-min: a fraction")?
            }
            "--downtime" => c.downtime = parse_duration(&value()?)?,
            "--model-change" => {
                c.model_change = value()?.parse().context("--model-change: a probability")?
            }
            "--seed" => c.seed = value()?.parse().context("--seed: a number")?,
            "--writers" => c.writers = value()?.parse().context("--writers: a number")?,
            "--settled" => c.settled = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let url = url.with_context(|| format!("--redis-url is required\n{USAGE}"))?;
    if c.nodes == 0 || c.nodes > 1_000_000 {
        bail!("--nodes must be 1 to 1000000");
    }
    if !(0.0..=1.0).contains(&c.leave_per_min) || !(0.0..=1.0).contains(&c.model_change) {
        bail!("--leave-per-min and --model-change must be in [0, 1]");
    }
    Ok((url, c))
}

fn main() -> Result<()> {
    let (url, config) = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async move {
        let mut reg_config = RegistryConfig::default();
        reg_config.command_timeout = Duration::from_secs(10);
        let registry = RedisRegistry::connect(&url, reg_config)
            .await
            .with_context(|| format!("cannot connect to {}", redact_url(&url)))?;
        eprintln!(
            "vramroute-sim: {} nodes every {:?} for {:?} against {}",
            config.nodes,
            config.interval,
            config.duration,
            redact_url(&url)
        );
        let stats = Arc::new(SimStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut sim = tokio::spawn(sim::run(registry, config, stats.clone(), stop.clone()));
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch SIGTERM")?;
        let mut progress = tokio::time::interval(Duration::from_secs(10));
        progress.tick().await;
        loop {
            tokio::select! {
                _ = &mut sim => break,
                _ = sigterm.recv() => stop.store(true, Ordering::Relaxed),
                _ = tokio::signal::ctrl_c() => stop.store(true, Ordering::Relaxed),
                _ = progress.tick() => eprintln!("vramroute-sim: {}", stats.summary()),
            }
        }
        println!("{}", stats.summary());
        anyhow::Ok(())
    })
}
