//! Synthetic registry records for the `registry` benchmark: what vramroute's reporter
//! writes for a two-GPU node (SOLLOL fields plus our extras), so sizes are realistic.

use std::sync::Arc;

use anyhow::{Context, Result};
use vramroute_registry::{
    ClusterView, GpuOffload, GpuStat, GpuStatsRecord, LoadedModel, RedisRegistry, Registry,
    RpcNodeEntry, RpcNodeRecord, SCHEMA_VERSION,
};

/// The node id of synthetic node `i` (`10.x.y.z:11434`).
pub fn node_id(i: usize) -> String {
    format!(
        "10.{}.{}.{}:11434",
        i / 65_536 % 256,
        i / 256 % 256,
        i % 256
    )
}

/// The rpc-server host of synthetic node `i`.
pub fn rpc_host(i: usize) -> String {
    format!("10.{}.{}.{}", i / 65_536 % 256, i / 256 % 256, i % 256)
}

/// A stats record for node `i`: two GPUs with UUID and PCI bus id, one loaded model.
pub fn stats_record(i: usize) -> GpuStatsRecord {
    let gpu = |index: u32| {
        let mut gpu_stat = GpuStat::new(index, "NVIDIA GeForce RTX 3090");
        gpu_stat.memory_total_mb = Some(24_576);
        gpu_stat.memory_free_mb = Some(18_000 - (i as u64 % 1000));
        gpu_stat.memory_used_mb = Some(6_576 + (i as u64 % 1000));
        gpu_stat.utilization_percent = Some((i % 100) as u32);
        gpu_stat.temperature_c = Some(40 + (i % 40) as i32);
        gpu_stat.uuid = Some(format!("GPU-{i:08x}-{index:04x}-4a5b-8c9d-0123456789ab").into());
        gpu_stat.pci_bus_id = Some(format!("00000000:{:02x}:00.0", index + 1).into());
        gpu_stat.power_w = Some(215.5);
        gpu_stat.memory_kind = Some("dedicated".into());
        gpu_stat.driver = Some("nvidia".into());
        gpu_stat.ggml_device = Some(format!("CUDA{index}").into());
        gpu_stat
    };
    let mut r = GpuStatsRecord::new(node_id(i), "nvidia", 1_795_441_356.326_933_9 + i as f64);
    r.gpus = vec![gpu(0), gpu(1)];
    r.schema_version = Some(SCHEMA_VERSION);
    r.reporter_version = Some("0.1.0".into());
    r.hostname = Some(format!("gpu-node-{i}").into());
    r.gpu_offload = Some(GpuOffload::On);
    r.loaded_models = Some(vec![LoadedModel::new(
        "llama3.1:8b",
        Some(4_700),
        Some(4_700),
    )]);
    r.cpu_ram_total_mb = Some(64_000);
    r.cpu_ram_free_mb = Some(40_000);
    r.cpu_count = Some(16);
    r.cpu_load_percent = Some(12.5);
    r.ollama_url = Some(format!("http://{}:11434", rpc_host(i)).into());
    r
}

/// The registration of node `i` (two GPUs, 20 % reserve).
pub fn rpc_record(i: usize) -> RpcNodeRecord {
    let mut r = RpcNodeRecord::default();
    r.has_gpu = true;
    r.gpu_devices = vec!["cuda:0".into(), "cuda:1".into()];
    r.gpu_vram_mb = vec![19_660, 19_660];
    r.gpu_names = vec!["NVIDIA GeForce RTX 3090".into(); 2];
    r.cpu_ram_mb = 51_200;
    r.device_config = "cpu,cuda:0,cuda:1".into();
    r.memory_config = "51200,19660,19660".into();
    r.total_parallel_workers = 3;
    r.schema_version = Some(SCHEMA_VERSION);
    r.reporter_version = Some("0.1.0".into());
    r.hostname = Some(format!("gpu-node-{i}").into());
    r.ggml_devices = Some(vec!["CUDA0".into(), "CUDA1".into()]);
    r
}

/// The records of `nodes` synthetic nodes as one discovery returns them (stats by id,
/// registrations by (host, port)).
pub fn cluster(nodes: usize) -> ClusterView {
    let mut view = ClusterView::default();
    view.stats = (0..nodes)
        .map(|i| (node_id(i).into(), Arc::new(stats_record(i))))
        .collect();
    view.stats.sort_by(|a, b| a.0.cmp(&b.0));
    view.rpc_nodes = (0..nodes)
        .map(|i| RpcNodeEntry::new(rpc_host(i), 50052, Arc::new(rpc_record(i))))
        .collect();
    view.rpc_nodes
        .sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    view
}

/// Replaces the stats record of every tenth node (offset by `round`) with one whose
/// free VRAM moved, as the next delta discovery would.
pub fn churn(view: &mut ClusterView, round: usize) {
    for (i, (_, record)) in view.stats.iter_mut().enumerate() {
        if (i + round).is_multiple_of(10) {
            let mut r = (**record).clone();
            for g in &mut r.gpus {
                g.memory_free_mb = g.memory_free_mb.map(|f| (f + 512) % 20_000);
            }
            r.timestamp += 5.0;
            *record = Arc::new(r);
        }
    }
}

/// Publishes synthetic nodes `0..nodes` (stats record and registration each) through
/// `reg`, 200 nodes in flight at a time: the cluster the `registry` bench and the
/// `cold-read` harness read.
pub async fn populate(reg: &RedisRegistry, nodes: usize) -> Result<()> {
    let chunk = 200;
    for start in (0..nodes).step_by(chunk) {
        let mut set = tokio::task::JoinSet::new();
        for i in start..(start + chunk).min(nodes) {
            let reg = reg.clone();
            set.spawn(async move {
                reg.publish_stats(&stats_record(i)).await?;
                reg.register(&rpc_host(i), 50052, &rpc_record(i)).await
            });
        }
        while let Some(done) = set.join_next().await {
            done.context("writer task")??;
        }
    }
    Ok(())
}
