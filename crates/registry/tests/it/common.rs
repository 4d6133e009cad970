//! Shared helpers of the integration tests.

use std::time::Duration;

use vramroute_registry::{GpuStat, GpuStatsRecord, RegistryConfig, RpcNodeRecord};

/// Short timeouts so fault tests finish quickly.
pub(crate) fn cfg() -> RegistryConfig {
    let mut c = RegistryConfig::default();
    c.command_timeout = Duration::from_millis(1000);
    c.reconnect_min_delay = Duration::from_millis(50);
    c.reconnect_max_delay = Duration::from_millis(400);
    c.poll_interval = Duration::from_millis(300);
    c
}

/// The data of `testing::fixtures::GPU_STATS_NVIDIA` as our types.
pub(crate) fn nvidia_record() -> GpuStatsRecord {
    let mut r = GpuStatsRecord::new("10.1.2.3:11434", "nvidia", 1795441356.3269339);
    r.gpus = vec![
        {
            let mut gpu_stat = GpuStat::new(0, "NVIDIA GeForce RTX 3090");
            gpu_stat.memory_total_mb = Some(24576);
            gpu_stat.memory_free_mb = Some(18000);
            gpu_stat.memory_used_mb = Some(6576);
            gpu_stat.utilization_percent = Some(41);
            gpu_stat.temperature_c = Some(63);
            gpu_stat
        },
        {
            let mut gpu_stat = GpuStat::new(1, "NVIDIA GeForce RTX 3080");
            gpu_stat.memory_total_mb = Some(10240);
            gpu_stat.memory_free_mb = Some(9000);
            gpu_stat.memory_used_mb = Some(1240);
            gpu_stat.utilization_percent = Some(3);
            gpu_stat.temperature_c = Some(40);
            gpu_stat
        },
    ];
    r
}

/// The data of `testing::fixtures::GPU_STATS_CPU_ONLY`.
pub(crate) fn cpu_record() -> GpuStatsRecord {
    GpuStatsRecord::new("10.1.2.4:11434", "none", 1795441356.3281927)
}

/// The data of `testing::fixtures::RPC_NODE_GPU`.
pub(crate) fn rpc_record() -> RpcNodeRecord {
    let mut c = RpcNodeRecord::default();
    c.has_gpu = true;
    c.gpu_devices = vec!["cuda:0".into(), "cuda:1".into()];
    c.gpu_vram_mb = vec![19660, 8192];
    c.gpu_names = vec![
        "NVIDIA GeForce RTX 3090".into(),
        "NVIDIA GeForce RTX 3080".into(),
    ];
    c.cpu_ram_mb = 51200;
    c.device_config = "cpu,cuda:0,cuda:1".into();
    c.memory_config = "51200,19660,8192".into();
    c.total_parallel_workers = 3;
    c
}

/// A stats record for node `i` (one GPU), current timestamp.
pub(crate) fn node(i: usize) -> GpuStatsRecord {
    let mut r = nvidia_record();
    r.node_id = vramroute_registry::SmolStr::from(format!("10.0.{}.{}:11434", i / 250, i % 250));
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

/// An index score (Unix ms) `secs` seconds from now, as our writers set it.
pub(crate) fn deadline_in(secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    (now + secs * 1000).to_string()
}
