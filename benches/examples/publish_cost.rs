//! Deterministic per-view cost of a live cluster at N nodes, for instruction counts
//! (`valgrind --tool=callgrind`) and heap figures (`valgrind --tool=dhat`): builds the
//! records of N synthetic nodes (the `live` bench's), publishes one view, then
//! `ROUNDS` more with every tenth record replaced before each. Run it with 0 and with
//! R rounds: the difference over R is the cost of one publish.
//!
//! ```sh
//! cargo build --release -p vramroute-benches --example publish_cost
//! valgrind --tool=callgrind target/release/examples/publish_cost incremental 10000 5   # or: fresh
//! ```
//! `fresh`: `LiveConfig::view_of` then `LiveCluster::publish` (every row and spec
//! rebuilt); `incremental`: `LiveCluster::publish_records` with a view on every call
//! (`view_interval` 0: what `follow` did before the view left the staleness path);
//! `router`: `publish_records` with no view due after the first (`view_interval` one
//! hour: what a `follow` cycle costs between views); `records`: the records and their
//! churn only, no live cluster (subtract it to get what the cluster holds).
//!
//! The program exits without running destructors, so dhat's "at t-end" figures are
//! what is live at steady state: the records plus (except in `records` mode) the live
//! cluster's builder rows, view, snapshot and router after the last publish.

use std::time::Duration;

use vramroute_benches::registry_fixtures::{churn, cluster};
use vramroute_cluster::{LiveCluster, LiveConfig};
use vramroute_registry::ClusterView;
use vramroute_router::Policy;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("incremental", String::as_str);
    let nodes: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5);
    if mode == "records" {
        let mut records = cluster(nodes);
        for round in 1..=rounds {
            churn(&mut records, round);
        }
        println!("mode records nodes {nodes} rounds {rounds}");
        std::mem::forget(records);
        std::process::exit(0);
    }
    let mut config = LiveConfig::default();
    config.view_interval = match mode {
        "router" => Duration::from_secs(3600),
        _ => Duration::ZERO,
    };
    let mut records = cluster(nodes);
    let mut now = records
        .stats
        .iter()
        .map(|(_, r)| r.timestamp)
        .fold(0.0, f64::max)
        + 1.0;
    let live = LiveCluster::new(
        config.view_of(&records, &[], "cost".to_owned(), now),
        Policy::default(),
        config.clone(),
    )
    .expect("valid");
    let publish = |records: &ClusterView, now: f64| match mode {
        "fresh" => live.publish(config.view_of(records, &[], "cost".to_owned(), now), 0),
        _ => {
            live.publish_records(records, &[], "cost".to_owned(), now, 0);
        }
    };
    // The first publish builds every row.
    publish(&records, now);
    for round in 1..=rounds {
        churn(&mut records, round);
        now += 1.0;
        publish(&records, now);
    }
    println!(
        "mode {mode} nodes {nodes} rounds {rounds}: {} nodes routed",
        live.router().snapshot().len()
    );
    // Steady state stays live for dhat's t-end figures.
    std::mem::forget(live);
    std::mem::forget(records);
    std::process::exit(0);
}
