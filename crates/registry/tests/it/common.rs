//! Shared helpers of the integration tests.

use std::time::Duration;

use vramroute_registry::{GpuStat, GpuStatsRecord, RegistryConfig, RpcNodeRecord};

/// Short timeouts so fault tests finish quickly.
pub(crate) fn cfg() -> RegistryConfig {
    RegistryConfig {
        command_timeout: Duration::from_millis(1000),
        reconnect_min_delay: Duration::from_millis(50),
        reconnect_max_delay: Duration::from_millis(400),
        poll_interval: Duration::from_millis(300),
        ..RegistryConfig::default()
    }
}

/// The data of `testing::fixtures::GPU_STATS_NVIDIA` as our types.
pub(crate) fn nvidia_record() -> GpuStatsRecord {
    GpuStatsRecord {
        vendor: "nvidia".into(),
        timestamp: 1795441356.3269339,
        gpus: vec![
            GpuStat {
                index: 0,
                name: "NVIDIA GeForce RTX 3090".into(),
                memory_total_mb: Some(24576),
                memory_free_mb: Some(18000),
                memory_used_mb: Some(6576),
                utilization_percent: Some(41),
                temperature_c: Some(63),
                ..GpuStat::default()
            },
            GpuStat {
                index: 1,
                name: "NVIDIA GeForce RTX 3080".into(),
                memory_total_mb: Some(10240),
                memory_free_mb: Some(9000),
                memory_used_mb: Some(1240),
                utilization_percent: Some(3),
                temperature_c: Some(40),
                ..GpuStat::default()
            },
        ],
        node_id: "10.1.2.3:11434".into(),
        ..GpuStatsRecord::default()
    }
}

/// The data of `testing::fixtures::GPU_STATS_CPU_ONLY`.
pub(crate) fn cpu_record() -> GpuStatsRecord {
    GpuStatsRecord {
        vendor: "none".into(),
        timestamp: 1795441356.3281927,
        node_id: "10.1.2.4:11434".into(),
        ..GpuStatsRecord::default()
    }
}

/// The data of `testing::fixtures::RPC_NODE_GPU`.
pub(crate) fn rpc_record() -> RpcNodeRecord {
    RpcNodeRecord {
        has_gpu: true,
        gpu_devices: vec!["cuda:0".into(), "cuda:1".into()],
        gpu_vram_mb: vec![19660, 8192],
        gpu_names: vec![
            "NVIDIA GeForce RTX 3090".into(),
            "NVIDIA GeForce RTX 3080".into(),
        ],
        cpu_ram_mb: 51200,
        device_config: "cpu,cuda:0,cuda:1".into(),
        memory_config: "51200,19660,8192".into(),
        total_parallel_workers: 3,
        ..RpcNodeRecord::default()
    }
}

/// A stats record for node `i` (one GPU), current timestamp.
pub(crate) fn node(i: usize) -> GpuStatsRecord {
    let mut r = nvidia_record();
    r.node_id = format!("10.0.{}.{}:11434", i / 250, i % 250);
    r.gpus.truncate(1);
    r.timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    r
}

/// Polls `check` every 20 ms until it returns true or `limit` passes.
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The calls count of a command from `INFO commandstats` (0 when never called).
pub(crate) fn command_calls(info: &str, cmd: &str) -> u64 {
    let prefix = format!("cmdstat_{cmd}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
