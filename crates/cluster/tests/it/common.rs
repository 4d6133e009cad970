//! Builders of registry records for the tests.

use std::sync::Arc;

use vramroute_registry::{
    ClusterView, GpuStat, GpuStatsRecord, LoadedModel, RpcNodeEntry, RpcNodeRecord,
};

pub(crate) const NOW: f64 = 1_800_000_000.0;

pub(crate) fn gpu(index: u32, total: Option<u64>, free: Option<u64>) -> GpuStat {
    GpuStat {
        index,
        name: format!("GPU {index}"),
        memory_total_mb: total,
        memory_free_mb: free,
        ..GpuStat::default()
    }
}

/// A stats record as vramroute writes it (RAM figures), or as SOLLOL writes it (`ram`
/// `None`: SOLLOL's records carry none).
pub(crate) fn stats(
    id: &str,
    gpus: Vec<GpuStat>,
    ram: Option<(u64, Option<u64>)>,
    loaded: Vec<LoadedModel>,
    age_s: f64,
) -> (String, Arc<GpuStatsRecord>) {
    let mut r = GpuStatsRecord {
        vendor: if gpus.is_empty() { "none" } else { "nvidia" }.to_owned(),
        gpus,
        timestamp: NOW - age_s,
        node_id: id.to_owned(),
        ..GpuStatsRecord::default()
    };
    if let Some((total, free)) = ram {
        r.reporter_version = Some("0.1.0".to_owned());
        r.cpu_ram_total_mb = Some(total);
        r.cpu_ram_free_mb = free;
    }
    if !loaded.is_empty() {
        r.loaded_models = Some(loaded);
    }
    (id.to_owned(), Arc::new(r))
}

/// SOLLOL's registration of a node's llama.cpp rpc-server.
pub(crate) fn registration(host: &str, cpu_ram_mb: u64, vram: &[u64]) -> RpcNodeEntry {
    let devices: Vec<String> = (0..vram.len()).map(|i| format!("cuda:{i}")).collect();
    let mut device_config = "cpu".to_owned();
    for d in &devices {
        device_config.push(',');
        device_config.push_str(d);
    }
    RpcNodeEntry {
        host: host.to_owned(),
        port: 50052,
        record: Arc::new(RpcNodeRecord {
            has_gpu: !vram.is_empty(),
            gpu_names: devices.iter().map(|_| "GPU".to_owned()).collect(),
            gpu_devices: devices,
            gpu_vram_mb: vram.to_vec(),
            cpu_ram_mb,
            device_config,
            memory_config: std::iter::once(cpu_ram_mb)
                .chain(vram.iter().copied())
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(","),
            total_parallel_workers: 1 + u32::try_from(vram.len()).expect("few GPUs"),
            ..RpcNodeRecord::default()
        }),
    }
}

pub(crate) fn cluster(
    stats: Vec<(String, Arc<GpuStatsRecord>)>,
    rpc: Vec<RpcNodeEntry>,
) -> ClusterView {
    let mut c = ClusterView {
        stats,
        rpc_nodes: rpc,
        ..ClusterView::default()
    };
    c.stats.sort_by(|a, b| a.0.cmp(&b.0));
    c.rpc_nodes
        .sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    c
}
