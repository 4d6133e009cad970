//! `route` (where a model should run, with the router's explanation) and `check`
//! (which nodes and GPUs can fit it, and why the others cannot). Shared by the CLI and
//! the HTTP API.

use std::fmt::Write as _;

use serde::Serialize;
use vramroute_router::{
    Explanation, FitKind, NodeStatus, Policy, Request, RpcEndpoint, Snapshot, Target,
};

use crate::cli::{ModelArgs, RouteArgs};
use crate::sizes::{model_size, ModelSize};
use crate::source::{self, Settings};
use crate::view::StatusView;

/// A routing question.
#[derive(Debug, Clone)]
pub(crate) struct RouteQuery {
    pub(crate) model: String,
    pub(crate) size_mb: Option<u64>,
    pub(crate) needs_gpu: bool,
    pub(crate) allow_cpu: bool,
    pub(crate) priority: u8,
}

impl RouteQuery {
    pub(crate) fn new(model: &str, size_mb: Option<u64>) -> Self {
        RouteQuery {
            model: model.to_owned(),
            size_mb,
            needs_gpu: true,
            allow_cpu: true,
            priority: Request::DEFAULT_PRIORITY,
        }
    }
}

/// The chosen placement.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Placement {
    pub(crate) node: String,
    pub(crate) target: Target,
    pub(crate) gpu: Option<u32>,
    pub(crate) fit: FitKind,
    pub(crate) score: f64,
    pub(crate) ollama_url: Option<String>,
    pub(crate) rpc: Option<RpcEndpoint>,
}

/// The answer to a routing question.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RouteAnswer {
    pub(crate) model: String,
    pub(crate) size_mb: u64,
    pub(crate) size_source: String,
    pub(crate) policy: &'static str,
    /// `None`: no node can take it (see `reason`).
    pub(crate) placement: Option<Placement>,
    pub(crate) reason: String,
    pub(crate) explanation: Explanation,
}

/// Routes on `snapshot`. The size comes from the query or [`model_size`].
pub(crate) fn route(
    view: &StatusView,
    snapshot: &Snapshot,
    policy: &Policy,
    q: &RouteQuery,
) -> Result<RouteAnswer, crate::sizes::UnknownModel> {
    let size = model_size(view, &q.model, q.size_mb)?;
    Ok(route_sized(snapshot, policy, q, &size))
}

pub(crate) fn request<'a>(q: &'a RouteQuery, size: &ModelSize) -> Request<'a> {
    Request::new(&q.model, size.size_mb)
        .needs_gpu(q.needs_gpu)
        .allow_cpu(q.allow_cpu)
        .priority(q.priority)
}

pub(crate) fn route_sized(
    snapshot: &Snapshot,
    policy: &Policy,
    q: &RouteQuery,
    size: &ModelSize,
) -> RouteAnswer {
    let req = request(q, size);
    let explanation = snapshot.explain(policy, &req);
    let placement = explanation.decision.map(|d| {
        let node = snapshot.node(d.node);
        Placement {
            node: node.id.clone(),
            target: d.target,
            gpu: d.gpu,
            fit: d.fit,
            score: d.score,
            ollama_url: node.ollama_url.clone(),
            rpc: node.rpc.clone(),
        }
    });
    RouteAnswer {
        model: q.model.clone(),
        size_mb: size.size_mb,
        size_source: size.source.clone(),
        policy: policy.name(),
        placement,
        reason: explanation.reason.clone(),
        explanation,
    }
}

/// Builds a snapshot for one-shot commands.
pub(crate) fn snapshot_of(view: &StatusView, settings: &Settings) -> anyhow::Result<Snapshot> {
    Ok(Snapshot::build(
        view.node_specs(),
        &settings.snapshot_config(),
    )?)
}

pub(crate) fn run_route(settings: &Settings, args: &RouteArgs) -> anyhow::Result<()> {
    let policy = settings.policy(args.policy.as_deref())?;
    source::block_on(async {
        let (_, view) = source::load(settings).await?;
        let snap = snapshot_of(&view, settings)?;
        let mut q = RouteQuery::new(&args.model.model, args.model.size_mb);
        q.allow_cpu = !args.no_cpu;
        let answer = route(&view, &snap, &policy, &q)?;
        if args.model.output.json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        } else {
            println!(
                "size: {} MB ({}); source: {}",
                answer.size_mb, answer.size_source, view.source
            );
            print!("{}", answer.explanation);
            if let Some(p) = &answer.placement {
                if let Some(url) = &p.ollama_url {
                    println!("ollama: {url}");
                }
            }
        }
        if answer.placement.is_none() {
            anyhow::bail!("no node can take {}: {}", answer.model, answer.reason);
        }
        Ok(())
    })
}

/// One GPU's fit.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GpuFit {
    pub(crate) index: u32,
    pub(crate) name: String,
    pub(crate) usable_mb: Option<u64>,
    pub(crate) free_mb: Option<u64>,
    pub(crate) fits: bool,
    pub(crate) reason: String,
}

/// One node's fit.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NodeFit {
    pub(crate) node: String,
    pub(crate) eligible: bool,
    /// Why the node is not routed to at all (stale, invalid report, ...).
    pub(crate) status: Option<String>,
    pub(crate) gpus: Vec<GpuFit>,
    pub(crate) cpu_fits: bool,
    pub(crate) cpu_reason: String,
    /// Already loaded there.
    pub(crate) loaded: bool,
}

/// What `check` answers.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckAnswer {
    pub(crate) model: String,
    pub(crate) size_mb: u64,
    pub(crate) size_source: String,
    pub(crate) vram_safety_margin: f64,
    pub(crate) nodes: Vec<NodeFit>,
    /// Nodes (and GPUs) that can take it now.
    pub(crate) fits_on: Vec<String>,
    /// Where `route` would send it.
    pub(crate) best: Option<Placement>,
}

pub(crate) fn check(
    view: &StatusView,
    snapshot: &Snapshot,
    policy: &Policy,
    model: &str,
    size_mb: Option<u64>,
) -> Result<CheckAnswer, crate::sizes::UnknownModel> {
    let size = model_size(view, model, size_mb)?;
    let cfg = snapshot.config();
    let need = size.size_mb;
    let mut nodes = Vec::new();
    let mut fits_on = Vec::new();
    for spec in snapshot.nodes() {
        let Some(idx) = snapshot.node_index(&spec.id) else {
            continue;
        };
        let status = match snapshot.node_status(idx) {
            Ok(NodeStatus::Eligible) => None,
            Ok(NodeStatus::Stale { age_ms, limit_ms }) => Some(format!(
                "Report stale ({age_ms}ms old > {limit_ms}ms): not routed to"
            )),
            Ok(NodeStatus::Unhealthy) => Some("Node unhealthy".to_owned()),
            Ok(NodeStatus::Invalid(e)) => Some(format!("Report invalid: {e}")),
            Err(e) => Some(e.to_string()),
        };
        let eligible = status.is_none();
        let loaded = spec
            .loaded_models
            .iter()
            .any(|m| crate::sizes::same_model(&m.name, model));
        let gpus: Vec<GpuFit> = spec
            .gpus
            .iter()
            .map(|g| {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss,
                    reason = "MiB figures far below 2^53; margin in (0, 1]"
                )]
                let usable = (g.memory_total_mib as f64 * cfg.vram_safety_margin).floor() as u64;
                let (fits, reason) = match g.memory_free_mib {
                    _ if need > usable => (
                        false,
                        format!("Model too large ({need}MB > {usable}MB usable VRAM)"),
                    ),
                    Some(free) if need > free => (
                        false,
                        format!("Not enough free VRAM ({need}MB needed, {free}MB free)"),
                    ),
                    Some(free) => (true, format!("Fits in {usable}MB VRAM ({free}MB free)")),
                    None => (true, format!("Fits in {usable}MB VRAM (free VRAM unknown)")),
                };
                GpuFit {
                    index: g.index,
                    name: g.name.clone(),
                    usable_mb: Some(usable),
                    free_mb: g.memory_free_mib,
                    fits,
                    reason,
                }
            })
            .collect();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "MiB figures far below 2^53; margin in (0, 1]"
        )]
        let ram_usable = spec
            .ram_total_mib
            .map(|t| (t as f64 * cfg.ram_safety_margin).floor() as u64);
        let (cpu_fits, cpu_reason) = match (ram_usable, spec.ram_free_mib) {
            (None, _) => (false, "RAM unknown (no CPU placement)".to_owned()),
            (Some(u), _) if need > u => (
                false,
                format!("Model too large for RAM ({need}MB > {u}MB usable RAM)"),
            ),
            (Some(_), Some(f)) if need > f => (
                false,
                format!("Not enough free RAM ({need}MB needed, {f}MB free)"),
            ),
            (Some(u), f) => (
                true,
                format!(
                    "Fits in {u}MB usable RAM ({} MB free)",
                    f.map_or_else(|| "?".to_owned(), |f| f.to_string())
                ),
            ),
        };
        if eligible {
            for g in gpus.iter().filter(|g| g.fits) {
                fits_on.push(format!("{} GPU {}", spec.id, g.index));
            }
            if gpus.iter().all(|g| !g.fits) && cpu_fits {
                fits_on.push(format!("{} CPU", spec.id));
            }
        }
        nodes.push(NodeFit {
            node: spec.id.clone(),
            eligible,
            status,
            gpus,
            cpu_fits,
            cpu_reason,
            loaded,
        });
    }
    let best = route_sized(snapshot, policy, &RouteQuery::new(model, size_mb), &size).placement;
    Ok(CheckAnswer {
        model: model.to_owned(),
        size_mb: need,
        size_source: size.source,
        vram_safety_margin: cfg.vram_safety_margin,
        nodes,
        fits_on,
        best,
    })
}

pub(crate) fn render_check(c: &CheckAnswer) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "check {} ({} MB, size from {}); usable = total × {}",
        c.model, c.size_mb, c.size_source, c.vram_safety_margin
    );
    for n in &c.nodes {
        let _ = writeln!(
            out,
            "{}{}{}",
            n.node,
            n.status
                .as_deref()
                .map(|s| format!(" | {s}"))
                .unwrap_or_default(),
            if n.loaded { " | already loaded" } else { "" }
        );
        if n.gpus.is_empty() {
            let _ = writeln!(out, "  Node has no GPU");
        }
        for g in &n.gpus {
            let _ = writeln!(
                out,
                "  GPU {} {}: {} {}",
                g.index,
                g.name,
                if g.fits { "fits:" } else { "no:" },
                g.reason
            );
        }
        let _ = writeln!(
            out,
            "  CPU: {} {}",
            if n.cpu_fits { "fits:" } else { "no:" },
            n.cpu_reason
        );
    }
    if c.fits_on.is_empty() {
        let _ = writeln!(out, "fits on: nothing right now");
    } else {
        let _ = writeln!(out, "fits on: {}", c.fits_on.join(", "));
    }
    match &c.best {
        Some(p) => {
            let place = match (p.target, p.gpu) {
                (Target::Gpu, Some(g)) => format!("GPU {g}"),
                (Target::Gpu, None) => "GPUs".to_owned(),
                (Target::Cpu, _) => "CPU".to_owned(),
            };
            let _ = writeln!(out, "best: {} {place}", p.node);
        }
        None => {
            let _ = writeln!(out, "best: none");
        }
    }
    out
}

pub(crate) fn run_check(settings: &Settings, args: &ModelArgs) -> anyhow::Result<()> {
    let policy = settings.policy(None)?;
    source::block_on(async {
        let (_, view) = source::load(settings).await?;
        let snap = snapshot_of(&view, settings)?;
        let answer = check(&view, &snap, &policy, &args.model, args.size_mb)?;
        if args.output.json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        } else {
            print!("{}", render_check(&answer));
        }
        Ok(())
    })
}
