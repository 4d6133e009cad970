//! What a coordinator pays for every view it publishes: registry records → `StatusView`
//! → node specs → snapshot → `Router::update`, through `LiveCluster::publish`.
//!
//! Stable ids: `live_publish/1000`, `live_publish/10000` (the records of the `registry`
//! bench's synthetic nodes, two GPUs each; between publishes the stats of every tenth
//! node are replaced by a new record with other free VRAM, as a delta discovery returns
//! them: unchanged records are the same `Arc`s), and the part of it before the router,
//! `live_view/1000`, `live_view/10000` (`LiveConfig::view_of` alone).
//!
//! What a following coordinator pays since views are built incrementally (the same
//! records and churn): `live_view_incremental/N` (`ViewBuilder::build`: view and node
//! specs, reusing unchanged nodes' rows) and `live_cycle/N` (`LiveCluster::
//! publish_records`: records → view → shared specs → snapshot → `Router::update`, the
//! whole per-view cost with a view on every cycle, `view_interval` 0; compare with
//! `live_view` + `live_publish`), and `live_cycle_router/N` (the same between views:
//! records → shared specs → snapshot → `Router::update`, what a follow cycle puts
//! between a registry write and routing since the view left that path).
//! A request's routing size on such a view (`vramroute_cluster::model_size`), which walks
//! every node's models: `model_size/N` (a model no node has), `model_size_explicit/N`
//! (the same with an explicit size, which needs no walk), `model_size_cached/N` (the first
//! through the per-view `SizeCache` a `LiveCluster` keeps).
//! Run: `cargo bench -p vramroute-benches --bench live`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vramroute_benches::registry_fixtures::{churn, cluster};
use vramroute_cluster::{model_size, LiveCluster, LiveConfig, SizeCache, ViewBuilder};
use vramroute_registry::ClusterView;
use vramroute_router::Policy;

fn now(view: &ClusterView) -> f64 {
    view.stats
        .iter()
        .map(|(_, r)| r.timestamp)
        .fold(0.0, f64::max)
        + 1.0
}

fn live(c: &mut Criterion) {
    let config = LiveConfig::default();
    for nodes in [1000usize, 10_000] {
        let mut records = cluster(nodes);
        let mut group = c.benchmark_group("live_view");
        group.throughput(Throughput::Elements(nodes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
            b.iter(|| config.view_of(black_box(&records), &[], "bench".to_owned(), now(&records)))
        });
        group.finish();

        let first = config.view_of(&records, &[], "bench".to_owned(), now(&records));
        // A request's routing size on that view: a model no node has (every node's
        // models walked), the same with an explicit size (what the soak's requests ask),
        // and the first again through the per-view cache a live cluster keeps.
        let view = Arc::new(first.clone());
        let cache = SizeCache::default();
        for (name, explicit) in [("model_size", None), ("model_size_explicit", Some(4_700))] {
            let mut group = c.benchmark_group(name);
            group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
                b.iter(|| model_size(&view, black_box("nowhere:1b"), explicit))
            });
            group.finish();
        }
        let mut group = c.benchmark_group("model_size_cached");
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
            b.iter(|| cache.model_size(&view, black_box("nowhere:1b"), None))
        });
        group.finish();
        let live = LiveCluster::new(first, Policy::default(), config.clone()).expect("valid");
        let mut round = 0;
        let mut group = c.benchmark_group("live_publish");
        group.throughput(Throughput::Elements(nodes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
            b.iter_batched(
                || {
                    round += 1;
                    churn(&mut records, round);
                    config.view_of(&records, &[], "bench".to_owned(), now(&records))
                },
                |view| live.publish(view, 0),
                criterion::BatchSize::LargeInput,
            )
        });
        group.finish();

        let mut builder = ViewBuilder::new();
        let _ = builder.build(&config, &records, &[], "bench".to_owned(), now(&records));
        let mut group = c.benchmark_group("live_view_incremental");
        group.throughput(Throughput::Elements(nodes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
            b.iter_batched(
                || {
                    round += 1;
                    churn(&mut records, round);
                    records.clone()
                },
                |recs| {
                    let built = builder.build(&config, &recs, &[], "bench".to_owned(), now(&recs));
                    (built, recs)
                },
                criterion::BatchSize::LargeInput,
            )
        });
        group.finish();

        for (name, interval) in [
            ("live_cycle", Duration::ZERO),
            ("live_cycle_router", Duration::from_secs(3600)),
        ] {
            let mut config = config.clone();
            config.view_interval = interval;
            let live = LiveCluster::new(
                config.view_of(&records, &[], "bench".to_owned(), now(&records)),
                Policy::default(),
                config,
            )
            .expect("valid");
            live.publish_records(&records, &[], "bench".to_owned(), now(&records), 0);
            let mut group = c.benchmark_group(name);
            group.throughput(Throughput::Elements(nodes as u64));
            group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
                b.iter_batched(
                    || {
                        round += 1;
                        churn(&mut records, round);
                        records.clone()
                    },
                    |recs| {
                        live.publish_records(&recs, &[], "bench".to_owned(), now(&recs), 0);
                        recs
                    },
                    criterion::BatchSize::LargeInput,
                )
            });
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = live
}
criterion_main!(benches);
