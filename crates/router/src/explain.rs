//! Explanations: every candidate's score terms and every rejected node's reason.
//!
//! Built on demand (it allocates) by re-running the decision code with a recording trace,
//! so it cannot disagree with [`Snapshot::route`].

use std::fmt;

use serde::Serialize;

use crate::decision::{Decision, FitKind, NoRoute, RejectReason, Target};
use crate::fit::{gpu_miss, place, Cand, Placed, Resolved, Trace};
use crate::policy::Policy;
use crate::request::Request;
use crate::route::run_policy;
use crate::scorer::{Scorer, BIN_PACK, SPREAD};
use crate::snapshot::{NodeIndex, NodeStatus, Snapshot, NO_SLOT};
use crate::sollol::Sollol;

/// One factor of a candidate's score. Under `sollol` each value is a multiplier and the
/// score is their product (`base_score` first); under `binpack` / `spread` the values are
/// the ranking keys (`placement_rank`, `preferred`, `warm`, then MiB).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ScoreTerm {
    /// Which rule (named like the [`SollolParams`](crate::SollolParams) field it uses).
    pub name: &'static str,
    /// The factor or key value.
    pub value: f64,
}

/// A node that could take the request, with its placement and score terms.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Candidate {
    /// The node.
    pub node: NodeIndex,
    /// Its id.
    pub node_id: String,
    /// GPU or CPU.
    pub target: Target,
    /// The GPU, when one was chosen.
    pub gpu: Option<u32>,
    /// Why it fits.
    pub fit: FitKind,
    /// Tier (binpack / spread rank; 0 under sollol).
    pub tier: u8,
    /// Score within the tier.
    pub score: f64,
    /// How the score was made.
    pub terms: Vec<ScoreTerm>,
    /// SOLLOL-style reason, e.g. `Fits in 3276MB VRAM (2571MB free)`.
    pub reason: String,
}

/// A node that could not take the request.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Rejected {
    /// The node.
    pub node: NodeIndex,
    /// Its id.
    pub node_id: String,
    /// Why.
    pub reason: RejectReason,
    /// The reason as text (with validation details for invalid reports).
    pub text: String,
}

/// A decision with its reasons: what [`Snapshot::explain`] returns.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Explanation {
    /// Policy name.
    pub policy: &'static str,
    /// Requested model.
    pub model: String,
    /// Requested size, MiB.
    pub size_mib: u64,
    /// Whether the request wanted a GPU.
    pub needs_gpu: bool,
    /// SOLLOL's "all GPUs overwhelmed → CPU nodes compete" mode was in force.
    pub cpu_fallback: bool,
    /// The decision, identical to what `route` returns.
    pub decision: Option<Decision>,
    /// Why there is none, when there is none.
    pub no_route: Option<NoRoute>,
    /// Chosen node's id.
    pub node_id: Option<String>,
    /// One-line reason in SOLLOL's style.
    pub reason: String,
    /// Every candidate, best first.
    pub candidates: Vec<Candidate>,
    /// Every node that was not a candidate, in id order.
    pub rejected: Vec<Rejected>,
}

#[derive(Default)]
struct Recorder {
    reject: Option<RejectReason>,
    terms: Vec<ScoreTerm>,
}

impl Trace for Recorder {
    fn reject(&mut self, _node: usize, why: impl FnOnce() -> RejectReason) {
        self.reject = Some(why());
    }
    fn term(&mut self, name: &'static str, value: f64) {
        self.terms.push(ScoreTerm { name, value });
    }
}

fn candidate_reason(s: &Snapshot, ni: usize, c: &Cand, size: u64) -> String {
    match (c.fit, c.target) {
        (FitKind::SingleGpu, _) => {
            let usable = if c.slot == NO_SLOT {
                0
            } else {
                s.gpus[c.slot as usize].usable_mib
            };
            format!("Fits in {usable}MB VRAM ({}MB free)", c.gpu_free_mib)
        }
        (FitKind::AcrossGpus { gpu_count }, _) => {
            format!(
                "Fits across {gpu_count} GPUs ({}MB usable free VRAM)",
                c.gpu_free_mib
            )
        }
        (FitKind::AlreadyLoaded, Target::Gpu) => match c.gpu {
            Some(g) => format!("Already loaded on GPU {g} ({}MB free)", c.gpu_free_mib),
            None => "Already loaded in VRAM".to_owned(),
        },
        (FitKind::AlreadyLoaded, Target::Cpu) => "Already loaded in RAM (CPU)".to_owned(),
        (FitKind::CpuNoGpu, _) => "Node has no GPU".to_owned(),
        (FitKind::CpuGpuTooSmall, _) => match gpu_miss(s, ni, size) {
            Some(m) => format!("{m}; running on CPU"),
            None => "Node has no GPU".to_owned(),
        },
    }
}

fn explain_with<S: Scorer>(
    s: &Snapshot,
    sc: &S,
    (policy, name): (&Policy, &'static str),
    req: &Request<'_>,
) -> Explanation {
    let r = Resolved::new(s, req);
    // The decision itself comes from the same search as `route` (pruned or not).
    let outcome = run_policy(s, policy, &r);
    let mut candidates = Vec::new();
    let mut rejected = Vec::new();
    let mut max_free = 0;
    for ni in 0..s.rows.len() {
        let mut rec = Recorder::default();
        match place(s, &r, ni, sc.least_free(), &mut max_free, &mut rec) {
            Placed::Cand(c) => {
                let row = &s.rows[ni];
                let factor = sc.mode_factor(&r, row, &c, outcome.fallback, &mut rec);
                let base = sc.base(s, &r, ni, &c, &mut rec);
                // Same operation order as `route`, so the scores are bit-identical.
                let score = base.score * factor;
                candidates.push(Candidate {
                    node: NodeIndex(ni as u32),
                    node_id: s.specs[ni].id.to_string(),
                    target: c.target,
                    gpu: c.gpu,
                    fit: c.fit,
                    tier: base.tier,
                    score,
                    terms: rec.terms,
                    reason: candidate_reason(s, ni, &c, r.size),
                });
            }
            Placed::Ineligible | Placed::NoFit => {
                let reason = rec.reject.unwrap_or(RejectReason::Invalid);
                let text = match &s.status[ni] {
                    NodeStatus::Invalid(e) => format!("Report invalid: {e}"),
                    _ => reason.to_string(),
                };
                rejected.push(Rejected {
                    node: NodeIndex(ni as u32),
                    node_id: s.specs[ni].id.to_string(),
                    reason,
                    text,
                });
            }
        }
    }
    // Stable sort: equal keys keep id order, exactly as `route` breaks ties.
    candidates.sort_by(|a, b| {
        b.tier.cmp(&a.tier).then(
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(std::cmp::Ordering::Equal),
        )
    });
    let (decision, no_route) = match outcome.result {
        Ok(d) => (Some(d), None),
        Err(e) => (None, Some(e)),
    };
    let node_id = decision.map(|d| s.specs[d.node.get()].id.to_string());
    let reason = match decision {
        Some(d) => {
            let base = candidates
                .iter()
                .find(|c| c.node == d.node)
                .map_or_else(String::new, |c| c.reason.clone());
            if outcome.fallback {
                let threshold = sc.fallback_below_mib().unwrap_or(0);
                format!("All GPUs overwhelmed (< {threshold}MB free), CPU nodes compete; {base}")
            } else {
                base
            }
        }
        None => no_route.map_or_else(String::new, |e| e.to_string()),
    };
    Explanation {
        policy: name,
        model: req.model.to_owned(),
        size_mib: req.size_mib,
        needs_gpu: req.needs_gpu,
        cpu_fallback: outcome.fallback,
        decision,
        no_route,
        node_id,
        reason,
        candidates,
        rejected,
    }
}

impl Snapshot {
    /// Routes `req` and says why: the decision (identical to [`route`](Self::route)), a
    /// SOLLOL-style reason, every candidate's score terms (best first) and every other
    /// node's rejection reason. Allocates; meant for logs, CLIs and APIs, not the hot path.
    ///
    /// ```
    /// use vramroute_router::{GpuSpec, NodeSpec, Policy, Request, Snapshot, SnapshotConfig};
    /// let mut small = NodeSpec::new("small");
    /// small.gpus.push(GpuSpec::new(0, 4096, Some(2571)));
    /// let snap = Snapshot::build(vec![small], &SnapshotConfig::default())?;
    /// let e = snap.explain(&Policy::default(), &Request::new("llama3.2:3b", 1900));
    /// assert_eq!(e.reason, "Fits in 3276MB VRAM (2571MB free)");
    /// let e = snap.explain(&Policy::default(), &Request::new("llama3.1:8b", 4700).allow_cpu(false));
    /// assert_eq!(e.rejected[0].text, "Model too large (4700MB > 3276MB usable VRAM); CPU placement not allowed");
    /// # Ok::<(), vramroute_router::Error>(())
    /// ```
    pub fn explain(&self, policy: &Policy, req: &Request<'_>) -> Explanation {
        match policy {
            Policy::Sollol(p) => explain_with(
                self,
                &Sollol::new(p, &Resolved::new(self, req)),
                (policy, "sollol"),
                req,
            ),
            Policy::BinPack => explain_with(self, &BIN_PACK, (policy, "binpack"), req),
            Policy::Spread => explain_with(self, &SPREAD, (policy, "spread"), req),
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "route {} ({}MB, {}) with policy {}",
            self.model,
            self.size_mib,
            if self.needs_gpu {
                "needs GPU"
            } else {
                "GPU optional"
            },
            self.policy
        )?;
        match (&self.decision, &self.node_id) {
            (Some(d), Some(id)) => {
                let place = match (d.target, d.gpu) {
                    (Target::Gpu, Some(g)) => format!("GPU {g}"),
                    (Target::Gpu, None) => "GPUs".to_owned(),
                    (Target::Cpu, _) => "CPU".to_owned(),
                };
                writeln!(f, "-> {id} {place}: {} (score {:.3})", self.reason, d.score)?;
            }
            _ => writeln!(f, "-> no route: {}", self.reason)?,
        }
        if !self.candidates.is_empty() {
            writeln!(f, "candidates (best first):")?;
        }
        for (i, c) in self.candidates.iter().enumerate() {
            let gpu = c.gpu.map_or_else(|| "-".to_owned(), |g| g.to_string());
            write!(
                f,
                "  {}. {} target={:?} gpu={} score={:.3}:",
                i + 1,
                c.node_id,
                c.target,
                gpu,
                c.score
            )?;
            for t in &c.terms {
                write!(f, " {}={:.4}", t.name, t.value)?;
            }
            writeln!(f, " | {}", c.reason)?;
        }
        if !self.rejected.is_empty() {
            writeln!(f, "rejected:")?;
        }
        for r in &self.rejected {
            writeln!(f, "  {}: {}", r.node_id, r.text)?;
        }
        Ok(())
    }
}
