//! `cold-read`: a profiling harness for cold discovery (a full read of every record, as
//! `discover_cold/*` in the `registry` bench), counting what wall-clock figures on a
//! shared machine cannot: heap allocations per read, bytes allocated per read, the
//! heap the registry keeps per node after a read, and the Redis server's CPU time per
//! read (`INFO cpu`). Under `valgrind --tool=callgrind` it gives repeatable instruction
//! counts (run it with 0 and with N rounds and take the difference; or profile
//! `cold_round` alone with `--collect-atstart=no --toggle-collect='*cold_round*'`).
//!
//! ```sh
//! cargo build --release -p vramroute-benches --bin cold-read
//! target/release/cold-read 1000 20           # nodes, rounds
//! valgrind --tool=dhat target/release/cold-read 10000 0 keep
//! ```
//!
//! It starts its own `redis-server` (loopback, a private port) and stops it at the end.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vramroute_benches::registry_fixtures::populate;
use vramroute_registry::testing::RedisServer;
use vramroute_registry::{RedisRegistry, Registry, RegistryConfig};

/// One cold read (what `discover_cold` times): the view is dropped inside.
#[inline(never)]
fn cold_round(rt: &tokio::runtime::Runtime, reg: &RedisRegistry) -> Result<usize> {
    let view = rt.block_on(reg.discover())?;
    let n = view.stats.len() + view.rpc_nodes.len();
    drop(black_box(view));
    Ok(n)
}

/// The Redis server's CPU time so far (`used_cpu_sys` + `used_cpu_user`), seconds.
fn server_cpu(server: &RedisServer) -> Result<f64> {
    let info = server.cli(&["INFO", "cpu"])?;
    let mut total = 0.0;
    for line in info.lines() {
        if let Some((k, v)) = line.trim().split_once(':') {
            if k == "used_cpu_sys" || k == "used_cpu_user" {
                total += v.parse::<f64>().context("INFO cpu")?;
            }
        }
    }
    Ok(total)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(10), |a| a.parse())?;
    let end = args.next().unwrap_or_else(|| "drop".to_owned());
    if nodes == 0
        || nodes > 100_000
        || rounds > 10_000
        || !["drop", "keep", "clear"].contains(&end.as_str())
    {
        bail!("usage: cold-read [NODES 1..100000] [ROUNDS 0..10000] [drop|keep|clear]");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut server = RedisServer::start().context("start redis-server (is it installed?)")?;
    let mut config = RegistryConfig::default();
    config.command_timeout = Duration::from_secs(10);
    let reg = rt.block_on(RedisRegistry::connect(&server.url(), config))?;
    rt.block_on(populate(&reg, nodes))?;
    // The first discovery also sweeps with SCAN (and connects): done in every run, so
    // the difference between runs of 0 and N rounds is N cold reads alone (as in the
    // bench, whose setup discovers once).
    cold_round(&rt, &reg)?;

    let mut elapsed = Duration::ZERO;
    let cpu_before = server_cpu(&server)?;
    for _ in 0..rounds {
        reg.clear_decode_cache();
        let start = Instant::now();
        let n = cold_round(&rt, &reg)?;
        elapsed += start.elapsed();
        if n != 2 * nodes {
            bail!("read {n} records, expected {}", 2 * nodes);
        }
    }
    let cpu = server_cpu(&server)? - cpu_before;
    println!("nodes {nodes}, rounds {rounds}");
    if rounds > 0 {
        let r = rounds as f64;
        println!(
            "per cold read: {:.3} ms wall, redis-server CPU {:.3} ms",
            elapsed.as_secs_f64() * 1e3 / r,
            cpu * 1e3 / r
        );
    }
    if end == "drop" {
        return Ok(());
    }
    // `keep` and `clear` end with what the registry keeps for delta reads (every
    // decoded record, or nothing) still allocated: the difference of the heap left at
    // exit (`valgrind --tool=dhat`, "At t-end") between the two is what a
    // coordinator holds per node.
    reg.clear_decode_cache();
    if end == "keep" {
        let n = cold_round(&rt, &reg)?;
        if n != 2 * nodes {
            bail!("read {n} records, expected {}", 2 * nodes);
        }
    }
    server.stop();
    drop(server);
    std::mem::forget(reg);
    std::mem::forget(rt);
    std::process::exit(0)
}
