//! The soak harness end to end, short: a private redis-server, `vramroute-sim` with 200
//! nodes (a child process), an in-process `LiveCluster` following it. Asserts only that
//! it completes and measured what it measures (no figure is asserted: this box is
//! shared and loaded; the figures live in `docs/scale.md`).

use std::time::Duration;

use vramroute_benches::soak::{self, SoakConfig};

#[test]
fn soak_smoke_200_nodes() {
    let config = SoakConfig {
        nodes: 200,
        duration: Duration::from_secs(10),
        interval: Duration::from_secs(2),
        sample_every: Duration::from_secs(2),
        decision_rate: 2_000,
        sim: env!("CARGO_BIN_EXE_vramroute-sim").into(),
        verbose: false,
        ..SoakConfig::default()
    };
    let report = soak::run(&config).expect("the soak completes");
    assert!(
        report.staleness_samples > 0,
        "no staleness sample: {}",
        report.render()
    );
    assert!(report.staleness_ms[1] > 0.0, "{}", report.render());
    assert!(report.decisions > 0, "{}", report.render());
    assert!(report.samples.len() >= 2, "{}", report.render());
    assert!(report.rss_end_mib > 0.0, "{}", report.render());
    assert!(
        report.sim_summary.starts_with("publishes "),
        "the simulator printed its counters: {}",
        report.render()
    );
}
