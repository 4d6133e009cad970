//! Builders of registry records for the tests.

use std::sync::Arc;

use vramroute_registry::{
    ClusterView, GpuStat, GpuStatsRecord, LoadedModel, RpcNodeEntry, RpcNodeRecord, SmolStr,
};

pub(crate) const NOW: f64 = 1_800_000_000.0;

pub(crate) fn gpu(index: u32, total: Option<u64>, free: Option<u64>) -> GpuStat {
    let mut g = GpuStat::new(index, format!("GPU {index}"));
    g.memory_total_mb = total;
    g.memory_free_mb = free;
    g
}

/// A stats record as vramroute writes it (RAM figures), or as SOLLOL writes it (`ram`
/// `None`: SOLLOL's records carry none).
pub(crate) fn stats(
    id: &str,
    gpus: Vec<GpuStat>,
    ram: Option<(u64, Option<u64>)>,
    loaded: Vec<LoadedModel>,
    age_s: f64,
) -> (SmolStr, Arc<GpuStatsRecord>) {
    let vendor = if gpus.is_empty() { "none" } else { "nvidia" };
    let mut r = GpuStatsRecord::new(id, vendor, NOW - age_s);
    r.gpus = gpus;
    if let Some((total, free)) = ram {
        r.reporter_version = Some("0.1.0".into());
        r.cpu_ram_total_mb = Some(total);
        r.cpu_ram_free_mb = free;
    }
    if !loaded.is_empty() {
        r.loaded_models = Some(loaded);
    }
    (id.into(), Arc::new(r))
}

/// SOLLOL's registration of a node's llama.cpp rpc-server.
pub(crate) fn registration(host: &str, cpu_ram_mb: u64, vram: &[u64]) -> RpcNodeEntry {
    let devices: Vec<String> = (0..vram.len()).map(|i| format!("cuda:{i}")).collect();
    let mut device_config = "cpu".to_owned();
    for d in &devices {
        device_config.push(',');
        device_config.push_str(d);
    }
    let mut r = RpcNodeRecord::default();
    r.has_gpu = !vram.is_empty();
    r.gpu_names = devices.iter().map(|_| "GPU".into()).collect();
    r.gpu_devices = devices.into_iter().map(Into::into).collect();
    r.gpu_vram_mb = vram.to_vec();
    r.cpu_ram_mb = cpu_ram_mb;
    r.device_config = device_config.into();
    r.memory_config = std::iter::once(cpu_ram_mb)
        .chain(vram.iter().copied())
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
        .into();
    r.total_parallel_workers = 1 + u32::try_from(vram.len()).expect("few GPUs");
    RpcNodeEntry::new(host, 50052, Arc::new(r))
}

pub(crate) fn cluster(
    stats: Vec<(SmolStr, Arc<GpuStatsRecord>)>,
    rpc: Vec<RpcNodeEntry>,
) -> ClusterView {
    #[allow(
        clippy::field_reassign_with_default,
        reason = "ClusterView is non_exhaustive: no struct expression outside its crate"
    )]
    let c = {
        let mut c = ClusterView::default();
        c.stats = stats;
        c.rpc_nodes = rpc;
        c
    };
    let mut c = c;
    c.stats.sort_by(|a, b| a.0.cmp(&b.0));
    c.rpc_nodes
        .sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    c
}
