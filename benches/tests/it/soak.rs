//! The soak harness end to end, short: a private redis-server, `vramroute-sim` with 200
//! nodes (a child process), and a coordinator following it — a real
//! `vramroute-coordinator daemon` process asked over HTTP (`soak_smoke_200_nodes`), and
//! an in-process `LiveCluster` (`soak_smoke_200_nodes_in_process`). Asserts only that
//! each completes and measured what it measures (no figure is asserted: this box is
//! shared and loaded; the figures live in `docs/scale.md`).

use std::path::PathBuf;
use std::time::Duration;

use vramroute_benches::soak::{self, SoakConfig, SoakReport};

fn config() -> SoakConfig {
    SoakConfig {
        nodes: 200,
        duration: Duration::from_secs(10),
        interval: Duration::from_secs(2),
        sample_every: Duration::from_secs(2),
        decision_rate: 2_000,
        sim: env!("CARGO_BIN_EXE_vramroute-sim").into(),
        verbose: false,
        ..SoakConfig::default()
    }
}

fn check(report: &SoakReport, mode: &str) {
    eprintln!("{}", report.render());
    assert_eq!(report.mode, mode);
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
        report.samples.iter().all(|s| s.nodes >= 180),
        "the coordinator's view held the simulated nodes: {}",
        report.render()
    );
    assert!(
        report.sim_summary.starts_with("publishes "),
        "the simulator printed its counters: {}",
        report.render()
    );
}

/// The coordinator binary: `VRAMROUTE_COORDINATOR_BIN`, else the one cargo built beside
/// `vramroute-sim` (`cargo test --workspace` builds it; alone:
/// `cargo build -p vramroute-coordinator --bin vramroute-coordinator`).
fn coordinator_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VRAMROUTE_COORDINATOR_BIN") {
        return p.into();
    }
    PathBuf::from(env!("CARGO_BIN_EXE_vramroute-sim")).with_file_name("vramroute-coordinator")
}

#[test]
fn soak_smoke_200_nodes() {
    let bin = coordinator_bin();
    assert!(
        bin.exists(),
        "{} is missing: this test measures the real daemon; build it first \
         (cargo build -p vramroute-coordinator --bin vramroute-coordinator) or set \
         VRAMROUTE_COORDINATOR_BIN",
        bin.display()
    );
    let config = SoakConfig {
        coordinator: Some(bin),
        ..config()
    };
    let report = soak::run(&config).expect("the soak completes");
    check(&report, "daemon");
    assert_eq!(report.decision_errors, 0, "{}", report.render());
    assert!(
        report.server_decision_ns.is_some(),
        "the daemon's /metrics has its decision histogram: {}",
        report.render()
    );
}

#[test]
fn soak_smoke_200_nodes_in_process() {
    let report = soak::run(&config()).expect("the soak completes");
    check(&report, "in-process");
}
