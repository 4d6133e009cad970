//! Routing hot path: one decision among N synthetic nodes (0–8 GPUs each), `sollol` policy.
//!
//! Stable ids: `route/1000`, `route/10000` (llama3.1:8b, 4700 MiB, loaded on some nodes),
//! `route_concurrent/1000` (4 threads; one iteration = one decision on each thread),
//! `explain/1000`. Same-run baselines: `route_variant/{cold_model,small_model,full_scan}/N`
//! (a model loaded nowhere; a 45 MiB model; an affinity request, which disables pruning
//! and scores every node) and `route_policy/{binpack,spread}/1000` (always full scans).
//! Run: `cargo bench -p vramroute-benches --bench route`.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vramroute_benches::route_fixtures::synthetic_cluster;
use vramroute_router::{Policy, Request, Router, Snapshot, SnapshotConfig};

const SEED: u64 = 42;

fn snapshot(nodes: usize) -> Snapshot {
    Snapshot::build(synthetic_cluster(nodes, SEED), &SnapshotConfig::default())
        .expect("synthetic cluster is valid")
}

fn request() -> Request<'static> {
    Request::new("llama3.1:8b", 4700)
}

fn route(c: &mut Criterion) {
    let policy = Policy::default();
    let mut group = c.benchmark_group("route");
    for nodes in [1000usize, 10_000] {
        let snap = snapshot(nodes);
        let req = request();
        assert!(snap.route(&policy, &req).is_ok());
        group.throughput(Throughput::Elements(nodes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
            b.iter(|| snap.route(black_box(&policy), black_box(&req)))
        });
    }
    group.finish();
}

fn route_variants(c: &mut Criterion) {
    let policy = Policy::default();
    let mut group = c.benchmark_group("route_variant");
    const PREFER: &[&str] = &["10.0.0.1:11434"];
    let variants: [(&str, Request<'static>); 3] = [
        ("cold_model", Request::new("qwen2.5-coder:7b", 4400)),
        ("small_model", Request::new("all-minilm", 45)),
        ("full_scan", request().prefer_nodes(PREFER)),
    ];
    for nodes in [1000usize, 10_000] {
        let snap = snapshot(nodes);
        for (name, req) in &variants {
            assert!(snap.route(&policy, req).is_ok());
            group.bench_with_input(BenchmarkId::new(*name, nodes), req, |b, req| {
                b.iter(|| snap.route(black_box(&policy), black_box(req)))
            });
        }
    }
    group.finish();
}

fn route_policies(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_policy");
    let snap = snapshot(1000);
    let req = request();
    for policy in [Policy::BinPack, Policy::Spread] {
        group.bench_with_input(
            BenchmarkId::new(policy.name(), 1000),
            &policy,
            |b, policy| b.iter(|| snap.route(black_box(policy), black_box(&req))),
        );
    }
    group.finish();
}

fn route_concurrent(c: &mut Criterion) {
    const THREADS: usize = 4;
    let router = Router::new(snapshot(1000), Policy::default()).expect("default policy is valid");
    let mut group = c.benchmark_group("route_concurrent");
    group.bench_function(BenchmarkId::from_parameter(1000), |b| {
        // One iteration = every thread makes one decision through the shared Router
        // (ArcSwap load + route); reported time is wall-clock per round.
        b.iter_custom(|iters| {
            let barrier = Barrier::new(THREADS + 1);
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    s.spawn(|| {
                        let req = request();
                        barrier.wait();
                        for _ in 0..iters {
                            black_box(router.route(black_box(&req)).ok());
                        }
                        barrier.wait();
                    });
                }
                barrier.wait();
                let start = Instant::now();
                barrier.wait();
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn explain(c: &mut Criterion) {
    let policy = Policy::default();
    let snap = snapshot(1000);
    let req = request();
    let mut group = c.benchmark_group("explain");
    group.bench_with_input(BenchmarkId::from_parameter(1000), &1000, |b, _| {
        b.iter(|| snap.explain(black_box(&policy), black_box(&req)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = route, route_variants, route_policies, route_concurrent, explain
}
criterion_main!(benches);
