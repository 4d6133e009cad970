//! The router's node specs made from the view's rows: what a node of the view tells
//! the router (memory, models, report age, measured load).

use vramroute_router::{GpuSpec, NodeSpec, ResidentModel as RouterModel, SnapshotConfig};

use crate::signals::NodeLoad;
use crate::view::{total_for_usable, NodeView};

/// The router's input for one node of the view, without its measured load and with its
/// report age as [`spec_age_ms`] gives it (see [`StatusView::node_specs`]).
pub(crate) fn node_spec(n: &NodeView, config: &SnapshotConfig) -> NodeSpec {
    let mut spec = NodeSpec::new(n.id.clone());
    spec.ollama_url = n.ollama_url.clone();
    spec.rpc = n.rpc.clone();
    // Room for every GPU up front: a `filter_map` collected would allocate room for
    // four (384 bytes for one GPU) on every rebuild of a one- or two-GPU node.
    spec.gpus = Vec::with_capacity(n.gpus.len());
    spec.gpus.extend(n.gpus.iter().filter_map(|g| {
        let mut s = GpuSpec::new(g.index, g.memory_total_mb?, g.memory_free_mb);
        s.name = g.name.clone();
        s.memory_used_mib = g.memory_used_mb;
        s.utilization_percent = g.utilization_percent;
        s.temperature_celsius = g.temperature_c.map(f64::from);
        Some(s)
    }));
    // The snapshot wants them sorted by index: sorted here, a shared spec is never
    // copied to sort it.
    spec.gpus.sort_by_key(|g| g.index);
    spec.ram_total_mib = n.cpu_ram_total_mb.or_else(|| {
        n.cpu_ram_registered_mb
            .map(|usable| total_for_usable(usable, config.ram_safety_margin))
    });
    spec.ram_free_mib = n.cpu_ram_free_mb;
    spec.cpu_count = n.cpu_count;
    spec.cpu_load_percent = n.cpu_load_percent;
    spec.loaded_models = n
        .loaded_models
        .iter()
        .map(|m| RouterModel::with_sizes(m.name.clone(), m.size_mb, m.size_vram_mb))
        .collect();
    spec.report_age_ms = spec_age_ms(n, config);
    spec
}

/// Sets the load measured by whoever forwards requests to the node (none: unchanged).
pub(crate) fn apply_node_load(spec: &mut NodeSpec, load: Option<&NodeLoad>) {
    if let Some(load) = load {
        spec.active_requests = load.in_flight;
        spec.latency_ms = load.latency_ms;
        spec.success_rate = load.success_rate;
    }
}

/// The report age the router sees for a node of the view, ms: its age, or past the
/// router's staleness limit when the view marks it stale (also a report from the
/// future, whose age reads 0).
pub(crate) fn spec_age_ms(n: &NodeView, config: &SnapshotConfig) -> u64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "age is non-negative and far below u64::MAX ms"
    )]
    let age = (n.age_s * 1000.0) as u64;
    if n.stale {
        age.max(config.stale_after_ms.saturating_add(1))
    } else {
        age
    }
}
