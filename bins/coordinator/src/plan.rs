//! `plan`: how to split a model over the cluster's llama.cpp rpc-servers — workers,
//! layer ranges, the `rpc-server` command per node and the `llama-server` line.
//!
//! Needs the model's layer count: from `--gguf FILE`, from `/api/show` of an Ollama node
//! that has the model pulled (config `nodes:`), or from SOLLOL's table (which carries
//! the architecture's layer count).

use std::path::Path;

use serde::Serialize;
use vramroute_alloc::{
    estimate_from_gguf, estimate_from_ollama_show, plan, sollol_table_estimate, ClusterWorker,
    GgufInfo, ModelEstimate, OllamaShowInfo, Plan, PlanOptions, WorkerKind,
};
use vramroute_ollama::{OllamaClient, ShowResponse};

use crate::cli::PlanArgs;
use crate::sizes::same_model;
use crate::source::{self, Settings};
use crate::view::StatusView;

/// Why no plan could be made.
#[derive(Debug)]
pub(crate) enum PlanError {
    /// Nothing gives the model's layers: says what to provide (HTTP 404).
    NeedLayerInfo(String),
    /// The planner refused (does not fit, bad input): HTTP 422.
    Plan(String),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::NeedLayerInfo(s) | PlanError::Plan(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for PlanError {}

/// A plan with what it was made from.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlanAnswer {
    pub(crate) estimate: ModelEstimate,
    pub(crate) workers: Vec<ClusterWorker>,
    pub(crate) plan: Plan,
    pub(crate) rpc_server_commands: Vec<String>,
    pub(crate) llama_server_command: String,
}

fn show_info(show: &ShowResponse, size_bytes: Option<u64>) -> Option<OllamaShowInfo> {
    let u32_of = |k: &str| show.arch_u64(k).and_then(|v| u32::try_from(v).ok());
    Some(OllamaShowInfo {
        architecture: show.architecture()?.to_owned(),
        block_count: u32_of("block_count")?,
        context_length: u32_of("context_length"),
        embedding_length: u32_of("embedding_length").unwrap_or(0),
        head_count: u32_of("attention.head_count").unwrap_or(0),
        head_count_kv: u32_of("attention.head_count_kv"),
        key_length: u32_of("attention.key_length"),
        value_length: u32_of("attention.value_length"),
        parameter_count: show.parameter_count(),
        quantization_level: show
            .details
            .as_ref()
            .and_then(|d| d.quantization_level.clone()),
        size_bytes,
    })
}

/// The model's estimate at `ctx` tokens, with per-layer figures.
pub(crate) async fn estimate(
    view: &StatusView,
    settings: &Settings,
    model: &str,
    ctx: u32,
    gguf: Option<&Path>,
) -> Result<ModelEstimate, PlanError> {
    if let Some(path) = gguf {
        let info = GgufInfo::from_path(path).map_err(|e| PlanError::Plan(e.to_string()))?;
        let mut e = estimate_from_gguf(&info, ctx).map_err(|e| PlanError::Plan(e.to_string()))?;
        e.name = model.to_owned();
        return Ok(e);
    }
    let mut tried = Vec::new();
    // Only nodes known to have the model pulled are asked (at most 4, each bounded).
    for n in view
        .nodes
        .iter()
        .filter(|n| n.ollama_url.is_some())
        .take(64)
    {
        let Some(installed) = n
            .installed_models
            .iter()
            .find(|m| same_model(&m.name, model))
        else {
            continue;
        };
        if tried.len() >= 4 {
            break;
        }
        let Some(url) = n.ollama_url.as_deref() else {
            continue;
        };
        let client = OllamaClient::new(url, settings.config.ollama_timeout())
            .map_err(|e| PlanError::Plan(e.to_string()))?;
        match client.show(&installed.name).await {
            Ok(show) => {
                let size = installed.size_mb.saturating_mul(1_048_576);
                match show_info(&show, Some(size)) {
                    Some(info) => {
                        return estimate_from_ollama_show(model, &info, ctx)
                            .map_err(|e| PlanError::Plan(e.to_string()));
                    }
                    None => tried.push(format!(
                        "{url}: /api/show has no general.architecture / <arch>.block_count"
                    )),
                }
            }
            Err(e) => tried.push(format!("{url}: {e}")),
        }
    }
    if let Some(e) = sollol_table_estimate(model) {
        return Ok(e);
    }
    let asked = if tried.is_empty() {
        String::new()
    } else {
        format!(" (asked: {})", tried.join("; "))
    };
    Err(PlanError::NeedLayerInfo(format!(
        "cannot plan `{model}`: its layer count and per-layer size are unknown{asked}; \
         give its GGUF file with --gguf FILE, or list an Ollama node that has it pulled \
         under `nodes:` in the config (its /api/show reports block_count)"
    )))
}

/// Every live rpc backend's devices as planner workers: the CPU (budget = registered RAM
/// after reserve) and each GPU (budget = registered VRAM after reserve, capped by the
/// node's live free VRAM when its stats record has it). Backends of stale nodes are left
/// out.
pub(crate) fn workers(view: &StatusView) -> Vec<ClusterWorker> {
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
        let worker = |kind, device_name: String, budget_mib: u64, free_mib| ClusterWorker {
            node_id: node_id.clone(),
            host: b.host.clone(),
            rpc_port: b.port,
            kind,
            device_name,
            budget_mib,
            free_mib,
            local: false,
        };
        out.push(worker(
            WorkerKind::Cpu,
            "CPU".to_owned(),
            b.cpu_ram_mb.unwrap_or(0),
            node.and_then(|n| n.cpu_ram_free_mb),
        ));
        for (i, (dev, vram)) in b.ggml_devices.iter().zip(&b.gpu_vram_mb).enumerate() {
            let free = node
                .and_then(|n| n.gpus.get(i))
                .and_then(|g| g.memory_free_mb);
            out.push(worker(WorkerKind::Gpu, dev.clone(), *vram, free));
        }
    }
    out
}

pub(crate) fn make(
    estimate: ModelEstimate,
    workers: Vec<ClusterWorker>,
    model_path: Option<String>,
) -> Result<PlanAnswer, PlanError> {
    if workers.is_empty() {
        return Err(PlanError::Plan(
            "no live rpc backends (sollol:rpc:node:* registrations) to plan on: start \
             vramroute-reporter on the llama.cpp nodes"
                .to_owned(),
        ));
    }
    let opts = PlanOptions {
        model_path,
        ..PlanOptions::default()
    };
    let plan = plan(&estimate, &workers, &opts).map_err(|e| PlanError::Plan(e.to_string()))?;
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

pub(crate) fn render(a: &PlanAnswer) -> String {
    let mut out = format!("model: {}\n", a.estimate);
    out.push_str("devices (llama.cpp order):\n");
    for d in &a.plan.devices {
        let range = if d.layers == 0 {
            "no layers".to_owned()
        } else {
            format!("layers {}..{}", d.first_layer, d.first_layer + d.layers - 1)
        };
        out.push_str(&format!(
            "  {} {} ({}): {range}{} | {} of {} MiB\n",
            d.node_id,
            d.device_name,
            d.endpoint.as_deref().unwrap_or("local"),
            if d.holds_output { " + output" } else { "" },
            d.planned_mib,
            d.capacity_mib
        ));
    }
    if a.plan.host_cpu_layers > 0 {
        out.push_str(&format!(
            "  llama-server host CPU: {} layer(s), {} MiB\n",
            a.plan.host_cpu_layers, a.plan.host_cpu_mib
        ));
    }
    out.push_str(&a.plan.to_string());
    out.push('\n');
    out
}

pub(crate) fn run(settings: &Settings, args: &PlanArgs) -> anyhow::Result<()> {
    source::block_on(async {
        let (_, view) = source::load(settings).await?;
        let model = &args.model.model;
        let est = estimate(&view, settings, model, args.ctx, args.gguf.as_deref()).await?;
        let path = args.gguf.as_ref().map(|p| p.display().to_string());
        let answer = make(est, workers(&view), path)?;
        if args.model.output.json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        } else {
            print!("{}", render(&answer));
        }
        Ok(())
    })
}
