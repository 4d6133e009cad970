//! Synthetic clusters for the placement-planner benchmark (`benches/plan.rs`).

use vramroute_alloc::{sollol_table_estimate, ClusterWorker, ModelEstimate, WorkerKind};

/// `workers` cluster workers: nodes with a CPU worker and one GPU each (8–24 GiB GPUs,
/// 16–64 GiB RAM, budgets at the default 20 % reserve), deterministic for a seed.
pub fn synthetic_workers(workers: usize, seed: u64) -> Vec<ClusterWorker> {
    let mut state = seed;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let mut out = Vec::with_capacity(workers);
    let mut node = 0u32;
    while out.len() < workers {
        let node_id = format!("10.1.{}.{}:11434", node / 250, node % 250 + 1);
        let host = format!("10.1.{}.{}", node / 250, node % 250 + 1);
        let ram_mib = 16_384 + 16_384 * next(4);
        let vram_mib = 8_192 + 4_096 * next(5);
        out.push({
            let mut cluster_worker = ClusterWorker::new(
                node_id.clone(),
                host.clone(),
                50052,
                WorkerKind::Cpu,
                "CPU",
                ram_mib * 4 / 5,
            );
            cluster_worker.free_mib = Some(ram_mib / 2);
            cluster_worker
        });
        if out.len() < workers {
            out.push({
                let mut cluster_worker = ClusterWorker::new(
                    node_id,
                    host,
                    50052,
                    WorkerKind::Gpu,
                    "CUDA0",
                    vram_mib * 4 / 5,
                );
                cluster_worker.free_mib = Some(vram_mib - 300 - 100 * next(20));
                cluster_worker
            });
        }
        node += 1;
    }
    out
}

/// The 80-layer model of SOLLOL's sharding example (llama3.1:70b, 40000 MiB).
pub fn model_80_layers() -> ModelEstimate {
    sollol_table_estimate("llama3.1:70b").expect("llama3.1:70b is in SOLLOL's table")
}
