//! Routing questions and the fit table. Both come from the router: `route` is the
//! router's decision, and [`check`]'s table is the router's explanation of that same
//! decision (every node a candidate or rejected with the router's reason), so `check`'s
//! best is always `route`'s choice and no fit rule is written twice.

use serde::Serialize;
use vramroute_router::{
    Decision, Explanation, FitKind, NodeStatus, Policy, RejectReason, Request, RpcEndpoint,
    Snapshot, Target,
};

use crate::error::Result;
use crate::sizes::{model_size, ModelSize};
use crate::view::StatusView;

/// A routing question.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RouteQuery {
    /// The model.
    pub model: String,
    /// Its size, MiB, when the caller knows it (else the size resolver finds it).
    pub size_mb: Option<u64>,
    /// Whether the request wants a GPU (default `true`).
    pub needs_gpu: bool,
    /// Whether a CPU placement is acceptable (default `true`).
    pub allow_cpu: bool,
    /// SOLLOL priority, 1–10.
    pub priority: u8,
}

impl RouteQuery {
    /// A GPU request for `model` with SOLLOL's defaults.
    pub fn new(model: &str, size_mb: Option<u64>) -> Self {
        RouteQuery {
            model: model.to_owned(),
            size_mb,
            needs_gpu: true,
            allow_cpu: true,
            priority: Request::DEFAULT_PRIORITY,
        }
    }

    /// The router's request for this query at `size`.
    pub fn request<'a>(&'a self, size: &ModelSize) -> Request<'a> {
        Request::new(&self.model, size.size_mb)
            .needs_gpu(self.needs_gpu)
            .allow_cpu(self.allow_cpu)
            .priority(self.priority)
    }
}

/// The chosen placement.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Placement {
    /// Node id.
    pub node: String,
    /// GPU or CPU.
    pub target: Target,
    /// The GPU, when one was chosen.
    pub gpu: Option<u32>,
    /// Why it fits.
    pub fit: FitKind,
    /// The policy's score.
    pub score: f64,
    /// The node's Ollama.
    pub ollama_url: Option<String>,
    /// The node's rpc-server.
    pub rpc: Option<RpcEndpoint>,
}

impl Placement {
    /// The placement a decision made on `snapshot` names.
    pub fn of(snapshot: &Snapshot, d: &Decision) -> Placement {
        let node = snapshot.node(d.node);
        Placement {
            node: node.id.to_string(),
            target: d.target,
            gpu: d.gpu,
            fit: d.fit,
            score: d.score,
            ollama_url: node.ollama_url.as_ref().map(ToString::to_string),
            rpc: node.rpc.clone(),
        }
    }
}

/// The answer to a routing question, with the router's explanation.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RouteAnswer {
    /// The model.
    pub model: String,
    /// Its size, MiB.
    pub size_mb: u64,
    /// Where the size came from.
    pub size_source: String,
    /// Policy name.
    pub policy: &'static str,
    /// `None`: no node can take it (see `reason`).
    pub placement: Option<Placement>,
    /// One-line reason: SOLLOL's style with an explanation, else the decision's short
    /// reason ([`short_reason`]) or why nothing fits.
    pub reason: String,
    /// Every candidate and every rejection, when asked for (it allocates: ~1 ms at
    /// 1,000 nodes).
    pub explanation: Option<Explanation>,
}

/// A decision's short reason, for headers and logs (no explanation is built):
/// `already loaded on GPU 0`, `fits GPU 1`, `split across GPUs`, `CPU (node has no
/// GPU)`, …, with the score.
pub fn short_reason(d: &Decision) -> String {
    let place = match (d.fit, d.gpu) {
        (FitKind::AlreadyLoaded, Some(g)) => format!("already loaded on GPU {g}"),
        (FitKind::AlreadyLoaded, None) if d.target == Target::Cpu => {
            "already loaded (CPU)".to_owned()
        }
        (FitKind::AlreadyLoaded, None) => "already loaded".to_owned(),
        (FitKind::SingleGpu, Some(g)) => format!("fits GPU {g}"),
        (FitKind::SingleGpu, None) => "fits a GPU".to_owned(),
        (FitKind::AcrossGpus { .. }, _) => "split across GPUs".to_owned(),
        (FitKind::CpuNoGpu, _) => "CPU (node has no GPU)".to_owned(),
        (FitKind::CpuGpuTooSmall, _) => "CPU (GPUs too small or full)".to_owned(),
        (_, _) => "routed".to_owned(),
    };
    format!("{place}; score {:.3}", d.score)
}

/// Routes `q` on `snapshot` and explains the decision (which allocates: for the hot path
/// use [`route_sized`] without an explanation, [`Snapshot::route`], or a
/// [`LiveCluster`](crate::LiveCluster)'s router). The size comes from the query or
/// [`model_size`].
pub fn route(
    view: &StatusView,
    snapshot: &Snapshot,
    policy: &Policy,
    q: &RouteQuery,
) -> Result<RouteAnswer> {
    let size = model_size(view, &q.model, q.size_mb)?;
    Ok(route_sized(snapshot, policy, q, &size, true))
}

/// [`route`] with the size already known; `explain: false` keeps to the router's fast
/// path (the answer's reason is then the decision's [`short_reason`]).
pub fn route_sized(
    snapshot: &Snapshot,
    policy: &Policy,
    q: &RouteQuery,
    size: &ModelSize,
    explain: bool,
) -> RouteAnswer {
    let (placement, reason, explanation) = if explain {
        let e = snapshot.explain(policy, &q.request(size));
        (
            e.decision.map(|d| Placement::of(snapshot, &d)),
            e.reason.clone(),
            Some(e),
        )
    } else {
        match snapshot.route(policy, &q.request(size)) {
            Ok(d) => (Some(Placement::of(snapshot, &d)), short_reason(&d), None),
            Err(no) => (None, no.to_string(), None),
        }
    };
    RouteAnswer {
        model: q.model.clone(),
        size_mb: size.size_mb,
        size_source: size.source.clone(),
        policy: policy.name(),
        placement,
        reason,
        explanation,
    }
}

/// One GPU's capacity and fit as the router sees it now (reservations counted).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct GpuRoom {
    /// GPU index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Usable VRAM (total × margin), MiB; `None` when the node's report is invalid.
    pub usable_mb: Option<u64>,
    /// Free VRAM now, less reservations, MiB; `None` when unknown.
    pub free_mb: Option<u64>,
    /// Whether the model fits this GPU now, by the router's rule.
    pub fits: bool,
    /// The router's reason (`Fits in 3276MB VRAM (2571MB free)`, `Model too large …`).
    pub reason: String,
}

/// One node's row of the fit table.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct NodeFit {
    /// Node id.
    pub node: String,
    /// Whether the router considers the node at all.
    pub eligible: bool,
    /// Why the node is not routed to at all (stale, invalid report, ...).
    pub status: Option<String>,
    /// Its GPUs' room.
    pub gpus: Vec<GpuRoom>,
    /// Where the router would place the model on this node, when it can.
    pub fits: Option<Target>,
    /// The GPU it would use.
    pub fits_gpu: Option<u32>,
    /// How it fits (`single_gpu`, `already_loaded`, ...).
    pub fit: Option<FitKind>,
    /// The router's reason (`Fits in 3276MB VRAM (2571MB free)`, `Model too large …`).
    pub reason: String,
    /// The model is loaded there now.
    pub loaded: bool,
}

/// What `check` answers: the router's fit table for one model.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CheckAnswer {
    /// The model.
    pub model: String,
    /// Its size, MiB.
    pub size_mb: u64,
    /// Where the size came from.
    pub size_source: String,
    /// usable = total × this.
    pub vram_safety_margin: f64,
    /// One row per node, in id order.
    pub nodes: Vec<NodeFit>,
    /// Nodes (and GPUs) that can take it now, best first.
    pub fits_on: Vec<String>,
    /// Where `route` sends it.
    pub best: Option<Placement>,
}

/// The fit table of `model` on `snapshot`: the router's explanation of a routing with
/// CPU placements allowed, one row per node.
pub fn check(
    view: &StatusView,
    snapshot: &Snapshot,
    policy: &Policy,
    model: &str,
    size_mb: Option<u64>,
) -> Result<CheckAnswer> {
    let size = model_size(view, model, size_mb)?;
    Ok(check_sized(snapshot, policy, model, &size))
}

/// [`check`] with the size already known.
pub fn check_sized(
    snapshot: &Snapshot,
    policy: &Policy,
    model: &str,
    size: &ModelSize,
) -> CheckAnswer {
    let q = RouteQuery::new(model, Some(size.size_mb));
    let e = snapshot.explain(policy, &q.request(size));
    let mut nodes = Vec::with_capacity(snapshot.len());
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
            Ok(NodeStatus::Invalid(err)) => Some(format!("Report invalid: {err}")),
            Ok(other) => Some(format!("Not routed to: {other:?}")),
            Err(err) => Some(err.to_string()),
        };
        let gpus = spec
            .gpus
            .iter()
            .map(|g| {
                let room = snapshot.gpu_capacity_mib(idx, g.index).ok().flatten();
                let fit = snapshot.gpu_fit(idx, g.index, size.size_mb).ok().flatten();
                GpuRoom {
                    index: g.index,
                    name: g.name.to_string(),
                    usable_mb: room.map(|r| r.0),
                    free_mb: room.map(|r| r.1),
                    fits: fit.is_some_and(|f| f.fits()),
                    reason: fit.map_or_else(|| "Report invalid".to_owned(), |f| f.to_string()),
                }
            })
            .collect();
        let candidate = e.candidates.iter().find(|c| c.node == idx);
        let rejected = e.rejected.iter().find(|r| r.node == idx);
        let reason = match (candidate, rejected) {
            (Some(c), _) => c.reason.clone(),
            (None, Some(r)) => match r.reason {
                RejectReason::DoesNotFit { .. } => r.text.clone(),
                _ => status.clone().unwrap_or_else(|| r.text.clone()),
            },
            (None, None) => "Not considered".to_owned(),
        };
        nodes.push(NodeFit {
            node: spec.id.to_string(),
            eligible: status.is_none(),
            status,
            gpus,
            fits: candidate.map(|c| c.target),
            fits_gpu: candidate.and_then(|c| c.gpu),
            fit: candidate.map(|c| c.fit),
            reason,
            loaded: spec
                .loaded_models
                .iter()
                .any(|m| vramroute_router::same_model(&m.name, model)),
        });
    }
    let fits_on = e
        .candidates
        .iter()
        .map(|c| match (c.target, c.gpu) {
            (Target::Gpu, Some(g)) => format!("{} GPU {g}", c.node_id),
            (Target::Gpu, None) => format!("{} GPUs", c.node_id),
            (Target::Cpu, _) => format!("{} CPU", c.node_id),
        })
        .collect();
    CheckAnswer {
        model: model.to_owned(),
        size_mb: size.size_mb,
        size_source: size.source.clone(),
        vram_safety_margin: snapshot.config().vram_safety_margin,
        nodes,
        fits_on,
        best: e.decision.map(|d| Placement::of(snapshot, &d)),
    }
}
