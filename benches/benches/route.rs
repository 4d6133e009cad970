//! Routing hot path: one decision among N synthetic nodes (0–8 GPUs each), `sollol` policy.
//!
//! Stable ids: `route/1000`, `route/10000` (llama3.1:8b, 4700 MiB, loaded on some nodes),
//! `route_concurrent/1000` (4 threads; one iteration = one decision on each thread),
//! `explain/1000`. Per-snapshot preparation (what a coordinator pays on every view it
//! publishes): `snapshot_build/{1000,10000}` (`Snapshot::build` from node specs; the
//! clone of the specs it consumes is not timed), `snapshot_prepare/{1000,10000}`
//! (`Snapshot::prepare` on a fresh snapshot: the pruned search's per-node bounds),
//! `router_update/{1000,10000}` (`Router::update` with a freshly built snapshot whose
//! nodes all changed since the previous one: 10 % of the nodes' free VRAM moved and every
//! report age grew), `router_update_same/{1000,10000}` (the same, but only report ages
//! grew: a republish on the tick), and `route_alternating/1000` (two `sollol` parameter
//! sets in turn, as `?policy=sollol` next to a configured policy does; one iteration =
//! two decisions). Same-run baselines: `route_variant/{cold_model,small_model,full_scan}/N`
//! (a model loaded nowhere; a 45 MiB model; an affinity request, which disables pruning
//! and scores every node) and `route_policy/{binpack,spread}/1000` (always full scans).
//! Run: `cargo bench -p vramroute-benches --bench route`.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vramroute_benches::route_fixtures::synthetic_cluster;
use vramroute_router::{NodeSpec, Policy, Request, Router, Snapshot, SnapshotConfig, SollolParams};

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

/// The next report of `nodes`: every report age grew by 1 s, and when `churn`, the
/// free VRAM of every tenth node moved (by a different amount each call).
fn next_reports(nodes: &mut [NodeSpec], churn: bool, round: u64) {
    for (i, n) in nodes.iter_mut().enumerate() {
        n.report_age_ms = (n.report_age_ms + 1_000) % 20_000;
        if churn && (i as u64 + round).is_multiple_of(10) {
            for g in &mut n.gpus {
                let total = g.memory_total_mib;
                let free = g.memory_free_mib.unwrap_or(0);
                g.memory_free_mib = Some((free + 512 + round % 1024) % total);
            }
        }
    }
}

fn preparation(c: &mut Criterion) {
    let cfg = SnapshotConfig::default();
    let policy = Policy::default();
    for nodes in [1000usize, 10_000] {
        let specs = synthetic_cluster(nodes, SEED);
        let mut group = c.benchmark_group("snapshot_build");
        group.throughput(Throughput::Elements(nodes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
            b.iter_batched(
                || specs.clone(),
                |s| Snapshot::build(s, &cfg).expect("valid"),
                criterion::BatchSize::LargeInput,
            )
        });
        group.finish();

        let mut group = c.benchmark_group("snapshot_prepare");
        group.throughput(Throughput::Elements(nodes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
            b.iter_batched(
                || Snapshot::build(specs.clone(), &cfg).expect("valid"),
                |s| {
                    s.prepare(&policy);
                    s
                },
                criterion::BatchSize::LargeInput,
            )
        });
        group.finish();

        for (id, churn) in [("router_update", true), ("router_update_same", false)] {
            let router = Router::new(snapshot(nodes), policy.clone()).expect("valid");
            let mut current = specs.clone();
            let mut round = 0u64;
            let mut group = c.benchmark_group(id);
            group.throughput(Throughput::Elements(nodes as u64));
            group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
                b.iter_batched(
                    || {
                        round += 1;
                        next_reports(&mut current, churn, round);
                        Snapshot::build(current.clone(), &cfg).expect("valid")
                    },
                    |s| router.update(s),
                    criterion::BatchSize::LargeInput,
                )
            });
            group.finish();
        }
    }
}

fn route_alternating(c: &mut Criterion) {
    let mut params = SollolParams::default();
    params.base_score = 120.0;
    let configured = Policy::Sollol(params);
    let per_request = Policy::default();
    let router = Router::new(snapshot(1000), configured.clone()).expect("valid");
    let snap = router.snapshot();
    let req = request();
    let mut group = c.benchmark_group("route_alternating");
    group.bench_function(BenchmarkId::from_parameter(1000), |b| {
        b.iter(|| {
            (
                snap.route(black_box(&configured), black_box(&req)).ok(),
                snap.route(black_box(&per_request), black_box(&req)).ok(),
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = route, route_variants, route_policies, route_concurrent, explain, preparation, route_alternating
}
criterion_main!(benches);
