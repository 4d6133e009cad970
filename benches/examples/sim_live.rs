//! What a following coordinator keeps live for `vramroute-sim`'s nodes after R report
//! intervals of the simulator's churn (models load and unload as a run goes on), for
//! dhat's "at t-end" (`valgrind --tool=dhat`): N simulated nodes (seed 1, as the
//! simulator draws them) step R times, their records are encoded to JSON and decoded
//! back as a read decodes them (`decode_stats`, `decode_rpc`), and (mode `cluster`) one
//! `LiveCluster` publishes them with a view. The program exits without destructors, so
//! "at t-end" is what stays live; the difference between R = 12 (1 minute at the 5 s
//! interval) and R = 120 (10 minutes) is how much the live data grows over a soak.
//!
//! ```sh
//! cargo build --release -p vramroute-benches --example sim_live
//! valgrind --tool=dhat target/release/examples/sim_live cluster 10000 12   # and 120; and: records
//! ```
//! A fourth argument sets the chance per interval of a model change (the simulator's
//! `--model-change`, default 0.02). A fifth, `settled`, first settles every node as
//! `vramroute-sim --settled` does (its default leaving rate and interval), so the R
//! rounds start from the churn's steady state. Leaving and rejoining nodes (the
//! simulator's `--leave-per-min`) are not modelled in the rounds.

use std::sync::Arc;

use vramroute_benches::route_fixtures::Lcg;
use vramroute_benches::sim::{sim_host, SimNode};
use vramroute_cluster::{LiveCluster, LiveConfig};
use vramroute_registry::{decode_rpc, decode_stats, ClusterView, Limits, RpcNodeEntry};
use vramroute_router::Policy;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("cluster", String::as_str);
    let count: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(12);
    let model_change: f64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(0.02);
    let mut rng = Lcg::new(1);
    let mut nodes: Vec<SimNode> = (0..count).map(|s| SimNode::new(s, 0, &mut rng)).collect();
    if args.get(5).map(String::as_str) == Some("settled") {
        let sim = vramroute_benches::sim::SimConfig::default();
        for node in &mut nodes {
            node.settle(&mut rng, model_change, sim.leave_per_min, sim.interval);
        }
    }
    for _ in 0..rounds {
        for node in &mut nodes {
            node.step(&mut rng, model_change);
        }
    }
    let now = 1_800_000_000.0;
    let limits = Limits::default();
    let mut view = ClusterView::default();
    let mut json_bytes = 0usize;
    for node in &nodes {
        let id = node.id();
        let bytes = serde_json::to_vec(&node.stats_record(now)).expect("encodes");
        json_bytes += bytes.len();
        let record = decode_stats(&id, &bytes, &limits).expect("decodes");
        view.stats.push((id.into(), Arc::new(record)));
        let bytes = serde_json::to_vec(&node.rpc_record()).expect("encodes");
        json_bytes += bytes.len();
        let record = decode_rpc(&bytes, &limits).expect("decodes");
        view.rpc_nodes.push(RpcNodeEntry::new(
            sim_host(node.slot),
            50052,
            Arc::new(record),
        ));
    }
    view.stats.sort_by(|a, b| a.0.cmp(&b.0));
    view.rpc_nodes
        .sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    let models: usize = nodes.iter().map(|n| n.loaded.len()).sum();
    println!(
        "mode {mode} nodes {count} rounds {rounds} model_change {model_change}: \
         {models} models loaded ({:.3} per node), {json_bytes} bytes of JSON ({:.0} per node)",
        models as f64 / count as f64,
        json_bytes as f64 / count as f64
    );
    if mode == "cluster" {
        let mut config = LiveConfig::default();
        config.view_interval = std::time::Duration::ZERO;
        let live = LiveCluster::new(
            config.view_of(&view, &[], "sim".to_owned(), now),
            Policy::default(),
            config.clone(),
        )
        .expect("valid");
        live.publish_records(&view, &[], "sim".to_owned(), now + 1.0, 0);
        std::mem::forget(live);
    }
    std::mem::forget(nodes);
    std::mem::forget(view);
    std::process::exit(0);
}
