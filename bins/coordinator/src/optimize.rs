//! `optimize`: load each priority model on its best GPU node through Ollama
//! (`POST /api/generate` with `keep_alive`, no prompt), confirm with `/api/ps`
//! `size_vram > 0`, report what moved. A node that hangs or answers garbage is skipped
//! with the reason and the model is routed again without it (bounded attempts).

use std::fmt::Write as _;

use serde::Serialize;
use vramroute_ollama::OllamaClient;
use vramroute_router::{FitKind, Policy, Request, Snapshot};

use crate::cli::OptimizeArgs;
use crate::sizes::{model_size, same_model};
use crate::source::{self, Settings};
use crate::view::StatusView;

/// How long a model is kept loaded (`keep_alive`).
pub(crate) const KEEP_ALIVE: &str = "1h";
/// Most nodes tried per model.
const MAX_ATTEMPTS: usize = 8;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Skipped {
    pub(crate) node: String,
    pub(crate) reason: String,
}

/// What happened to one priority model.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Outcome {
    pub(crate) model: String,
    pub(crate) size_mb: Option<u64>,
    /// `loaded`, `already_loaded`, `would_load` (dry run), `no_fit`, `unknown_size`,
    /// `failed` (every candidate node was skipped).
    pub(crate) action: &'static str,
    pub(crate) node: Option<String>,
    pub(crate) gpu: Option<u32>,
    pub(crate) reason: String,
    pub(crate) skipped: Vec<Skipped>,
}

impl Outcome {
    fn new(model: &str, size_mb: Option<u64>, action: &'static str, reason: String) -> Self {
        Outcome {
            model: model.to_owned(),
            size_mb,
            action,
            node: None,
            gpu: None,
            reason,
            skipped: Vec::new(),
        }
    }
}

/// Loads `models` (dry run: only says where). Routing reserves each loaded model's size
/// on the snapshot so the next model sees the memory as taken.
pub(crate) async fn optimize(
    view: &StatusView,
    snapshot: &Snapshot,
    policy: &Policy,
    settings: &Settings,
    models: &[String],
    dry_run: bool,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    for model in models {
        let size = match model_size(view, model, None) {
            Ok(s) => s,
            Err(e) => {
                out.push(Outcome::new(model, None, "unknown_size", e.to_string()));
                continue;
            }
        };
        // Only nodes with an Ollama can be loaded through Ollama.
        let mut excluded: Vec<String> = snapshot
            .nodes()
            .iter()
            .filter(|n| n.ollama_url.is_none())
            .map(|n| n.id.clone())
            .collect();
        let mut outcome = Outcome::new(model, Some(size.size_mb), "failed", String::new());
        for _ in 0..MAX_ATTEMPTS {
            let ex: Vec<&str> = excluded.iter().map(String::as_str).collect();
            let req = Request::new(model, size.size_mb)
                .allow_cpu(false)
                .exclude_nodes(&ex);
            let d = match snapshot.route(policy, &req) {
                Ok(d) => d,
                Err(_) => {
                    if outcome.skipped.is_empty() {
                        let e = snapshot.explain(policy, &req);
                        outcome.action = "no_fit";
                        outcome.reason =
                            format!("no GPU node with Ollama can take it: {}", e.reason);
                    } else {
                        outcome.reason = format!(
                            "no other GPU node with Ollama can take it after skipping {} node(s)",
                            outcome.skipped.len()
                        );
                    }
                    break;
                }
            };
            let node = snapshot.node(d.node);
            outcome.node = Some(node.id.clone());
            outcome.gpu = d.gpu;
            if d.fit == FitKind::AlreadyLoaded {
                outcome.action = "already_loaded";
                outcome.reason = format!("already loaded on {}", node.id);
                break;
            }
            let Some(url) = node.ollama_url.clone() else {
                excluded.push(node.id.clone());
                continue;
            };
            if dry_run {
                outcome.action = "would_load";
                outcome.reason = format!("would load on {} via {url}", node.id);
                break;
            }
            match load_and_confirm(settings, &url, model).await {
                Ok(vram_mb) => {
                    let _ = snapshot.reserve(d.node, d.gpu, size.size_mb);
                    outcome.action = "loaded";
                    outcome.reason =
                        format!("loaded via {url}; /api/ps shows {vram_mb} MB in VRAM");
                    break;
                }
                Err(reason) => {
                    outcome.skipped.push(Skipped {
                        node: node.id.clone(),
                        reason,
                    });
                    outcome.node = None;
                    outcome.gpu = None;
                    excluded.push(node.id.clone());
                }
            }
        }
        if outcome.action == "failed" && outcome.reason.is_empty() {
            outcome.reason = "every candidate node was skipped".to_owned();
        }
        out.push(outcome);
    }
    out
}

/// Loads `model` on the Ollama at `url` and returns the MiB `/api/ps` shows in VRAM.
async fn load_and_confirm(settings: &Settings, url: &str, model: &str) -> Result<u64, String> {
    let loader =
        OllamaClient::new(url, settings.config.load_timeout()).map_err(|e| e.to_string())?;
    loader
        .load(model, KEEP_ALIVE)
        .await
        .map_err(|e| format!("load failed: {e}"))?;
    let asker =
        OllamaClient::new(url, settings.config.ollama_timeout()).map_err(|e| e.to_string())?;
    let ps = asker
        .ps()
        .await
        .map_err(|e| format!("cannot confirm with /api/ps: {e}"))?;
    match ps.models.iter().find(|m| same_model(&m.name, model)) {
        Some(m) if m.size_vram > 0 => Ok(m.size_vram / 1_048_576),
        Some(_) => {
            // Running on the CPU is not what optimize is for: give the memory back.
            let _ = asker.unload(model).await;
            Err("loaded, but /api/ps shows size_vram 0 (running on the CPU); unloaded".to_owned())
        }
        None => Err("load answered, but /api/ps does not list the model".to_owned()),
    }
}

pub(crate) fn render(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    if outcomes.is_empty() {
        out.push_str("no priority_models in the config: nothing to optimize\n");
    }
    for o in outcomes {
        let size = o
            .size_mb
            .map_or_else(|| "size unknown".to_owned(), |s| format!("{s} MB"));
        let place = match (&o.node, o.gpu) {
            (Some(n), Some(g)) => format!(" -> {n} GPU {g}"),
            (Some(n), None) => format!(" -> {n}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{} ({size}): {}{place}: {}",
            o.model, o.action, o.reason
        );
        for s in &o.skipped {
            let _ = writeln!(out, "  skipped {}: {}", s.node, s.reason);
        }
    }
    out
}

pub(crate) fn run(settings: &Settings, args: &OptimizeArgs) -> anyhow::Result<()> {
    let policy = settings.policy(None)?;
    source::block_on(async {
        let (_, view) = source::load(settings).await?;
        let snap = crate::route::snapshot_of(&view, settings)?;
        let models = &settings.config.priority_models;
        let outcomes = optimize(&view, &snap, &policy, settings, models, args.dry_run).await;
        if args.output.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "dry_run": args.dry_run,
                    "outcomes": outcomes,
                }))?
            );
        } else {
            print!("{}", render(&outcomes));
        }
        Ok(())
    })
}
