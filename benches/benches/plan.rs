//! Placement planner: an 80-layer model (SOLLOL's 70B example) over N cluster workers.
//!
//! Stable ids: `plan/64` (the target: ≤ 100 µs), `plan/8` as a same-run baseline, and
//! `plan_does_not_fit/64` (the error path with its suggestions: a model 4× too big).
//! Run: `cargo bench -p vramroute-benches --bench plan`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vramroute_alloc::{plan, ModelEstimate, PlanOptions};
use vramroute_benches::plan_fixtures::{model_80_layers, synthetic_workers};

const SEED: u64 = 7;

fn plan_fits(c: &mut Criterion) {
    let model = model_80_layers();
    let opts = PlanOptions::default();
    let mut group = c.benchmark_group("plan");
    for workers in [8usize, 64] {
        let cluster = synthetic_workers(workers, SEED);
        if workers == 64 {
            assert!(
                plan(&model, &cluster, &opts).is_ok(),
                "plan/64 must find a plan"
            );
        }
        group.bench_with_input(
            BenchmarkId::from_parameter(workers),
            &cluster,
            |b, cluster| b.iter(|| plan(black_box(&model), black_box(cluster), black_box(&opts))),
        );
    }
    group.finish();
}

fn plan_does_not_fit(c: &mut Criterion) {
    let model = ModelEstimate::explicit("huge", 4_000_000)
        .with_layers(80)
        .expect("80 layers is plausible");
    let opts = PlanOptions::default();
    let cluster = synthetic_workers(64, SEED);
    assert!(plan(&model, &cluster, &opts).is_err());
    let mut group = c.benchmark_group("plan_does_not_fit");
    group.bench_with_input(BenchmarkId::from_parameter(64), &cluster, |b, cluster| {
        b.iter(|| plan(black_box(&model), black_box(cluster), black_box(&opts)))
    });
    group.finish();
}

criterion_group!(benches, plan_fits, plan_does_not_fit);
criterion_main!(benches);
