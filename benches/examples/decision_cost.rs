//! Deterministic cost of one in-process decision on the soak's cluster, for instruction
//! counts (`valgrind --tool=callgrind`): builds the records `vramroute-sim` writes for N
//! simulated nodes after `STEPS` report intervals of churn (models loading and
//! unloading, free VRAM moving), publishes them into a `LiveCluster` the way its follow
//! loop does (`publish_records`), then makes `DECISIONS` decisions the way the soak's
//! deciding thread does (`live.router().route(&Request::new("llama3.1:8b", 4700))`).
//! `bench` makes the same decisions on the `route/N` bench's synthetic cluster instead.
//!
//! ```sh
//! cargo build --release -p vramroute-benches --example decision_cost
//! valgrind --tool=callgrind --toggle-collect='*Router*route*' \
//!     target/release/examples/decision_cost sim 1000 24 1000   # or: bench 1000 0 1000
//! ```
//! The instructions collected over DECISIONS is the cost of one decision.
//! `DECISION_COST_SCORES=1` also prints the top candidates' scores (from `explain`), and
//! `DECISION_COST_NODES=id,id` those nodes' score terms.

use std::hint::black_box;
use std::sync::Arc;

use vramroute_benches::route_fixtures::{synthetic_cluster, Lcg};
use vramroute_benches::sim::{sim_host, SimNode};
use vramroute_cluster::{LiveCluster, LiveConfig};
use vramroute_registry::{ClusterView, RpcNodeEntry};
use vramroute_router::{Policy, Request, Router, Snapshot, SnapshotConfig};

/// The soak's records after `steps` intervals (model change chance 0.02 per publish,
/// `vramroute-sim`'s default).
fn sim_cluster(nodes: usize, steps: u32, now: f64) -> ClusterView {
    let mut rng = Lcg::new(1);
    let mut view = ClusterView::default();
    for slot in 0..nodes {
        let mut node = SimNode::new(slot, 0, &mut rng);
        for _ in 0..steps {
            node.step(&mut rng, 0.02);
        }
        view.stats
            .push((node.id().into(), Arc::new(node.stats_record(now - 1.0))));
        view.rpc_nodes.push(RpcNodeEntry::new(
            sim_host(slot),
            50052,
            Arc::new(node.rpc_record()),
        ));
    }
    view.stats.sort_by(|a, b| a.0.cmp(&b.0));
    view.rpc_nodes
        .sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    view
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("sim", String::as_str);
    let nodes: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let steps: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(24);
    let decisions: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let req = Request::new("llama3.1:8b", 4700);
    let now = 1_795_441_356.0;
    let (live, router);
    let router: &Router = match mode {
        "bench" => {
            let snap = Snapshot::build(synthetic_cluster(nodes, 42), &SnapshotConfig::default())
                .expect("valid");
            router = Router::new(snap, Policy::default()).expect("valid");
            &router
        }
        _ => {
            let config = LiveConfig::default();
            let records = sim_cluster(nodes, steps, now);
            live = LiveCluster::new(
                config.view_of(&records, &[], "cost".to_owned(), now),
                Policy::default(),
                config,
            )
            .expect("valid");
            live.publish_records(&records, &[], "cost".to_owned(), now, 0);
            live.router()
        }
    };
    let mut last = None;
    for _ in 0..decisions {
        last = Some(black_box(router.route(black_box(&req))));
    }
    let snap = router.snapshot();
    if std::env::var_os("DECISION_COST_SCORES").is_some() {
        let e = router.explain(&req);
        let top = e.candidates.first().map_or(0.0, |c| c.score);
        let ties = e.candidates.iter().filter(|c| c.score == top).count();
        let mut scores: Vec<String> = e
            .candidates
            .iter()
            .take(12)
            .map(|c| format!("{}:{:.4}", c.node_id, c.score))
            .collect();
        scores.push(format!(
            "... {} candidates, {} at the top score",
            e.candidates.len(),
            ties
        ));
        println!("{}", scores.join(" "));
        if let Ok(ids) = std::env::var("DECISION_COST_NODES") {
            for c in e
                .candidates
                .iter()
                .filter(|c| ids.split(',').any(|i| i == c.node_id))
            {
                println!("{c:?}");
            }
        }
    }
    match last {
        Some(Ok(d)) => println!(
            "mode {mode} nodes {nodes} steps {steps} decisions {decisions}: {} ({:?}, score {:.4})",
            snap.node(d.node).id,
            d.target,
            d.score
        ),
        other => println!("mode {mode} nodes {nodes} decisions {decisions}: {other:?}"),
    }
}
