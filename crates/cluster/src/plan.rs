//! The planner's inputs from the cluster view: every live rpc backend's devices as
//! planner workers, and a plan with the commands that realise it.

use serde::Serialize;
use vramroute_alloc::{plan, ClusterWorker, ModelEstimate, Plan, PlanOptions, WorkerKind};

use vramroute_rpc::RpcState;

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
    /// Backends left out, and why.
    pub excluded: Vec<Excluded>,
    /// Things to check (busy backends, unknown protocol versions).
    pub warnings: Vec<String>,
}

/// A backend left out of a plan, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Excluded {
    /// `host:port`.
    pub backend: String,
    /// Why.
    pub reason: String,
}

/// Every live rpc backend's devices as planner workers (see [`workers_checked`]).
pub fn workers(view: &StatusView) -> Vec<ClusterWorker> {
    workers_checked(view).0
}

/// Every live rpc backend's devices as planner workers: the CPU (budget = registered RAM
/// after reserve) and each GPU (budget = registered VRAM after reserve, capped by the
/// node's live free VRAM when its stats record has it). Left out, each with its reason:
/// backends only the router metadata lists (nothing known of their devices), backends
/// whose node's stats record is gone (a node killed without deregistering keeps its
/// registration for up to an hour) or stale, and backends whose rpc-server a probe found
/// unreachable or answering garbage. Kept with a warning: a busy server (a llama-server
/// is attached) and one speaking a protocol major this build does not know.
pub fn workers_checked(view: &StatusView) -> (Vec<ClusterWorker>, Vec<Excluded>, Vec<String>) {
    let mut out = Vec::new();
    let mut excluded = Vec::new();
    let mut warnings = Vec::new();
    for b in &view.rpc_backends {
        let addr = format!("{}:{}", b.host, b.port);
        let mut leave_out = |reason: String| {
            excluded.push(Excluded {
                backend: addr.clone(),
                reason,
            });
        };
        if !b.registered {
            leave_out(
                "listed in the router metadata only: no registration, devices unknown".to_owned(),
            );
            continue;
        }
        let node = view.nodes.iter().find(|n| {
            n.rpc
                .as_ref()
                .is_some_and(|r| r.host == b.host && r.port == b.port)
        });
        match node {
            None => {
                leave_out(
                    "its node's stats record is gone (registration only: the node stopped \
                     reporting, e.g. it was killed without deregistering)"
                        .to_owned(),
                );
                continue;
            }
            Some(n) if n.stale => {
                leave_out(format!(
                    "its node {} reports stale ({:.0} s old)",
                    n.id, n.age_s
                ));
                continue;
            }
            Some(_) => {}
        }
        if let Some(h) = &b.health {
            match &h.state {
                RpcState::Unreachable | RpcState::BadReply(_) => {
                    leave_out(format!("rpc-server {}: {}", h.state.as_str(), h.detail));
                    continue;
                }
                RpcState::UnknownProtocol => warnings.push(format!(
                    "{addr}: rpc-server speaks protocol {} (unknown to this build): planned on \
                     its registration; check that llama-server speaks it too",
                    h.version_string().unwrap_or_else(|| "?".to_owned())
                )),
                RpcState::Busy => warnings.push(format!(
                    "{addr}: rpc-server busy (a llama-server is attached): planned on its \
                     registration"
                )),
                _ => {}
            }
        }
        let node_id = node.map_or_else(|| addr.clone(), |n| n.id.to_string());
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
            out.push(worker(WorkerKind::Gpu, dev.to_string(), *vram, free));
        }
    }
    (out, excluded, warnings)
}

/// Plans `estimate` on the view's live backends ([`workers_checked`]), saying which were
/// left out and why.
pub fn for_view(
    estimate: ModelEstimate,
    view: &StatusView,
    model_path: Option<String>,
) -> Result<PlanAnswer> {
    let (workers, excluded, warnings) = workers_checked(view);
    if workers.is_empty() && !excluded.is_empty() {
        let why: Vec<String> = excluded
            .iter()
            .map(|e| format!("{}: {}", e.backend, e.reason))
            .collect();
        return Err(Error::Plan(format!(
            "no usable rpc backend to plan on ({})",
            why.join("; ")
        )));
    }
    let mut answer = make(estimate, workers, model_path)?;
    answer.excluded = excluded;
    answer.warnings = warnings;
    Ok(answer)
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
        excluded: Vec::new(),
        warnings: Vec::new(),
    })
}
