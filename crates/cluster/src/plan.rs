//! The planner's inputs from the cluster view: every live rpc backend's devices as
//! planner workers, and a plan with the commands that realise it.

use serde::Serialize;
use vramroute_alloc::{plan, ClusterWorker, ModelEstimate, Plan, PlanOptions, WorkerKind};

use crate::error::{Error, Result};
use crate::view::StatusView;

/// A plan with what it was made from.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PlanAnswer {
    /// The model's memory estimate.
    pub estimate: ModelEstimate,
    /// The workers it was planned on.
    pub workers: Vec<ClusterWorker>,
    /// The plan.
    pub plan: Plan,
    /// One rpc-server command per backend.
    pub rpc_server_commands: Vec<String>,
    /// The `llama-server` command line.
    pub llama_server_command: String,
}

/// Every live rpc backend's devices as planner workers: the CPU (budget = registered RAM
/// after reserve) and each GPU (budget = registered VRAM after reserve, capped by the
/// node's live free VRAM when its stats record has it). Backends of stale nodes are left
/// out, and so are metadata-only backends (no registration: nothing known about them).
pub fn workers(view: &StatusView) -> Vec<ClusterWorker> {
    let mut out = Vec::new();
    for b in view.rpc_backends.iter().filter(|b| b.registered) {
        let node = view.nodes.iter().find(|n| {
            n.rpc
                .as_ref()
                .is_some_and(|r| r.host == b.host && r.port == b.port)
        });
        if node.is_some_and(|n| n.stale) {
            continue;
        }
        let node_id = node.map_or_else(|| format!("{}:{}", b.host, b.port), |n| n.id.clone());
        let worker = |kind, device_name: String, budget_mib: u64, free_mib| {
            let mut w = ClusterWorker::new(
                node_id.clone(),
                b.host.clone(),
                b.port,
                kind,
                device_name,
                budget_mib,
            );
            w.free_mib = free_mib;
            w
        };
        if let Some(ram) = b.cpu_ram_mb {
            out.push(worker(
                WorkerKind::Cpu,
                "CPU".to_owned(),
                ram,
                node.and_then(|n| n.cpu_ram_free_mb),
            ));
        }
        for (i, (dev, vram)) in b.ggml_devices.iter().zip(&b.gpu_vram_mb).enumerate() {
            let free = node
                .and_then(|n| n.gpus.get(i))
                .and_then(|g| g.memory_free_mb);
            out.push(worker(WorkerKind::Gpu, dev.clone(), *vram, free));
        }
    }
    out
}

/// Plans `estimate` on `workers`; `model_path` goes into the `llama-server` line.
pub fn make(
    estimate: ModelEstimate,
    workers: Vec<ClusterWorker>,
    model_path: Option<String>,
) -> Result<PlanAnswer> {
    if workers.is_empty() {
        return Err(Error::Plan(
            "no live rpc backends (llama.cpp registrations) to plan on: start \
             vramroute-reporter on the llama.cpp nodes"
                .to_owned(),
        ));
    }
    let mut opts = PlanOptions::default();
    opts.model_path = model_path;
    let plan = plan(&estimate, &workers, &opts).map_err(|e| Error::Plan(e.to_string()))?;
    Ok(PlanAnswer {
        rpc_server_commands: plan
            .rpc_servers
            .iter()
            .map(|s| s.command.to_string())
            .collect(),
        llama_server_command: plan.llama_server_command().to_string(),
        estimate,
        workers,
        plan,
    })
}
