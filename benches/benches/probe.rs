//! One reporter tick on fixture sysfs trees: probe the GPUs, build the node report and
//! encode the stats record as the reporter publishes it. Target: ≤ 2 ms.
//!
//! `cargo bench -p vramroute-benches --bench probe`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use vramroute_alloc::ReserveConfig;
use vramroute_node::{NodeIdentity, NodeReport, OllamaState};
use vramroute_probe::{HostMemory, NodeHardware, Prober, ProberConfig};

fn prober(tree: &str) -> Prober {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/probe/tests/data")
        .join(tree);
    let mut config = ProberConfig::with_sysfs_root(root);
    config.nvml = false;
    config.rocm = false;
    Prober::new(config)
}

fn bench(c: &mut Criterion) {
    let id = NodeIdentity::new("10.0.0.1:11434", "10.0.0.1", 50052);
    let host = HostMemory::new(64000, 51200, 16);
    let mut group = c.benchmark_group("probe_tick");
    for tree in ["amd-two-cards", "intel-xe", "empty"] {
        let p = prober(tree);
        group.bench_function(tree, |b| {
            b.iter(|| {
                let gpus = p.probe_gpus().expect("fixture readable");
                let hw = NodeHardware::new(gpus, host.clone());
                let report = NodeReport::new(
                    hw,
                    &ReserveConfig::default(),
                    None,
                    OllamaState::not_asked(),
                    1.0,
                )
                .expect("valid reserve");
                black_box(report.stats_record(&id).to_json())
            })
        });
    }
    group.finish();
    // The host half of a tick (sysinfo + cgroup files of this machine).
    let p = prober("empty");
    c.bench_function("probe_host", |b| {
        b.iter(|| black_box(p.probe_host().expect("host readable")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
