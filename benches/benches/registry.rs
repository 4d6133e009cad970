//! Registry hot paths: a full cluster-view read from a real redis-server this bench
//! starts, and record decoding.
//!
//! Stable ids: `discover/1000`, `discover/10000` (stats + registration of every node,
//! read with `RedisRegistry::discover`; records unchanged between reads, so the steady
//! state of a coordinator: the change log and expired index entries are read, decoded
//! records are shared), `discover_cold/1000`, `discover_cold/10000` (the same with the
//! kept records forgotten before each read, not timed: a full read, every record read
//! and decoded, as on a coordinator's first discovery), `discover_churn/1000`,
//! `discover_churn/10000` (10 % of the nodes republish their stats between reads, not
//! timed),
//! `decode/1000` (parse + validate 1000 stats records and 1000 registrations), and the
//! same-run baseline `sollol_poll/1000` (SOLLOL's reader: `KEYS sollol:gpu:*` + one GET
//! per node).
//! Run: `cargo bench -p vramroute-benches --bench registry`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vramroute_benches::registry_fixtures::{populate, rpc_record, stats_record};
use vramroute_registry::testing::{sollol_style_poll, RedisServer};
use vramroute_registry::{
    decode_rpc, decode_stats, Limits, RedisRegistry, Registry, RegistryConfig,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Republishes the stats of the next `nodes / 10` nodes (round robin from `next`), 50 in
/// flight at a time.
async fn republish(reg: &RedisRegistry, next: &mut usize, nodes: usize) {
    let mut left = nodes / 10;
    while left > 0 {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..left.min(50) {
            let reg = reg.clone();
            let i = *next % nodes;
            *next += 1;
            set.spawn(async move {
                reg.publish_stats(&stats_record(i))
                    .await
                    .expect("republish")
            });
        }
        left -= left.min(50);
        while let Some(done) = set.join_next().await {
            done.expect("writer task");
        }
    }
}

fn config() -> RegistryConfig {
    let mut config = RegistryConfig::default();
    config.command_timeout = Duration::from_secs(10);
    config
}

/// A fresh dataset of `nodes` nodes on `server`, and a registry that has read it once.
fn prepare(rt: &tokio::runtime::Runtime, server: &RedisServer, nodes: usize) -> RedisRegistry {
    server.cli(&["FLUSHALL"]).expect("flush");
    let reg = rt
        .block_on(RedisRegistry::connect(&server.url(), config()))
        .expect("connect");
    rt.block_on(populate(&reg, nodes)).expect("populate");
    let view = rt.block_on(reg.discover()).expect("discover");
    assert_eq!(view.stats.len(), nodes);
    assert_eq!(view.rpc_nodes.len(), nodes);
    assert!(view.skipped.is_empty());
    reg
}

/// A benchmark group reading `nodes` nodes per iteration (fewer samples at 10,000).
fn discover_group<'a>(
    c: &'a mut Criterion,
    name: &str,
    nodes: usize,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(nodes as u64));
    if nodes >= 10_000 {
        group.sample_size(20);
    }
    group
}

fn discover(c: &mut Criterion) {
    let rt = runtime();
    let server = RedisServer::start().expect("start redis-server (is it installed?)");
    for nodes in [1000usize, 10_000] {
        let reg = prepare(&rt, &server, nodes);
        let mut group = discover_group(c, "discover", nodes);
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
            b.iter(|| black_box(rt.block_on(reg.discover()).expect("discover")))
        });
        group.finish();

        // The same read with the decode cache emptied before each one (every record
        // decoded, as on a coordinator's first discovery or when every record changed).
        let mut group = discover_group(c, "discover_cold", nodes);
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
            // Timed like `discover` (the view is dropped inside the timed part); only the
            // emptying of the cache is left out.
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    reg.clear_decode_cache();
                    let start = Instant::now();
                    drop(black_box(rt.block_on(reg.discover()).expect("discover")));
                    total += start.elapsed();
                }
                total
            })
        });
        group.finish();
    }

    // Churn: between reads (not timed), 10 % of the nodes republish their stats (new
    // change-log entries), as reporters do every few seconds; the rest is unchanged.
    for nodes in [1000usize, 10_000] {
        let reg = prepare(&rt, &server, nodes);
        let mut group = discover_group(c, "discover_churn", nodes);
        let mut next = 0usize;
        group.bench_function(BenchmarkId::from_parameter(nodes), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    rt.block_on(republish(&reg, &mut next, nodes));
                    let start = Instant::now();
                    drop(black_box(rt.block_on(reg.discover()).expect("discover")));
                    total += start.elapsed();
                }
                total
            })
        });
        group.finish();
    }

    // Same-run baseline: SOLLOL's reader on the same 1000 nodes.
    let nodes = 1000;
    let _reg = prepare(&rt, &server, nodes);
    let url = server.url();
    assert_eq!(rt.block_on(sollol_style_poll(&url)).expect("poll"), nodes);
    let mut group = c.benchmark_group("sollol_poll");
    group.sample_size(10);
    group.throughput(Throughput::Elements(nodes as u64));
    group.bench_function(BenchmarkId::from_parameter(nodes), |b| {
        b.iter(|| black_box(rt.block_on(sollol_style_poll(&url)).expect("poll")))
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let stats: Vec<(String, String)> = (0..1000)
        .map(|i| {
            let r = stats_record(i);
            (r.node_id.to_string(), r.to_json())
        })
        .collect();
    let rpcs: Vec<String> = (0..1000).map(|i| rpc_record(i).to_json()).collect();
    let limits = Limits::default();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1000));
    group.bench_function(BenchmarkId::from_parameter(1000), |b| {
        b.iter(|| {
            for (id, json) in &stats {
                black_box(decode_stats(id, json.as_bytes(), &limits).expect("valid"));
            }
            for json in &rpcs {
                black_box(decode_rpc(json.as_bytes(), &limits).expect("valid"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, decode, discover);
criterion_main!(benches);
