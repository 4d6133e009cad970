//! Builders for test clusters.

use vramroute_router::{Explanation, GpuSpec, NodeSpec, Policy, Request, Snapshot, SnapshotConfig};

/// A node whose SOLLOL factors are all neutral (×1): success 1, latency 0 ms, CPU load
/// 0 %, one CPU, no requests, nothing loaded. Its score is 100 × the resource factor.
pub(crate) fn neutral(id: &str, gpus: &[(u64, u64)]) -> NodeSpec {
    let mut n = NodeSpec::new(id);
    for (i, &(total, free)) in gpus.iter().enumerate() {
        n.gpus.push(GpuSpec::new(i as u32, total, Some(free)));
    }
    n.success_rate = Some(1.0);
    n.latency_ms = Some(0.0);
    n.cpu_load_percent = Some(0.0);
    n.cpu_count = Some(1);
    n.ram_total_mib = Some(65_536);
    n.ram_free_mib = Some(60_000);
    n
}

pub(crate) fn snap(nodes: Vec<NodeSpec>) -> Snapshot {
    Snapshot::build(nodes, &SnapshotConfig::default()).expect("valid test cluster")
}

/// Id of the chosen node, or `None`.
pub(crate) fn chosen(s: &Snapshot, policy: &Policy, req: &Request<'_>) -> Option<String> {
    s.route(policy, req)
        .ok()
        .map(|d| s.node(d.node).id.to_string())
}

/// The explained score of one candidate node.
pub(crate) fn score_of(e: &Explanation, id: &str) -> f64 {
    e.candidates
        .iter()
        .find(|c| c.node_id == id)
        .unwrap_or_else(|| panic!("{id} is not a candidate:\n{e}"))
        .score
}

pub(crate) fn assert_close(actual: f64, expected: f64, what: &str) {
    // Node metrics are stored as f32 in the hot rows (about 1e-7 relative).
    let tol = 1e-6 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tol,
        "{what}: got {actual}, expected {expected}"
    );
}
