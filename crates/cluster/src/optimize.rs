//! `optimize`: load each priority model on its best GPU node through Ollama
//! (`POST /api/generate` with `keep_alive`, no prompt), confirm with `/api/ps`
//! `size_vram > 0`, report what moved. A node that hangs or answers garbage is skipped
//! with the reason and the model is routed again without it (bounded attempts).

use std::time::Duration;

use serde::Serialize;
use vramroute_ollama::OllamaClient;
use vramroute_router::{same_model, FitKind, Policy, Request, Snapshot};

use crate::sizes::model_size;
use crate::view::StatusView;

/// How long a model is kept loaded (`keep_alive`), by default.
pub const KEEP_ALIVE: &str = "1h";

/// How [`optimize`] talks to Ollama.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OptimizeOptions {
    /// Timeout of a load (`POST /api/generate` with no prompt): loads take long.
    pub load_timeout: Duration,
    /// Timeout of the confirming `/api/ps` and of an unload.
    pub ollama_timeout: Duration,
    /// `keep_alive` sent with each load.
    pub keep_alive: String,
    /// Only say where each model would go; load nothing.
    pub dry_run: bool,
}

impl Default for OptimizeOptions {
    fn default() -> Self {
        OptimizeOptions {
            load_timeout: Duration::from_secs(300),
            ollama_timeout: Duration::from_secs(5),
            keep_alive: KEEP_ALIVE.to_owned(),
            dry_run: false,
        }
    }
}

impl OptimizeOptions {
    /// Options with these timeouts, the default `keep_alive`, and loading on.
    pub fn new(load_timeout: Duration, ollama_timeout: Duration) -> Self {
        OptimizeOptions {
            load_timeout,
            ollama_timeout,
            ..OptimizeOptions::default()
        }
    }
}
/// Most nodes tried per model.
const MAX_ATTEMPTS: usize = 8;

/// A node that was tried and skipped.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Node id.
    pub node: String,
    /// Why it was skipped.
    pub reason: String,
}

/// What happened to one priority model.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Outcome {
    /// The model.
    pub model: String,
    /// Its size, MiB, when known.
    pub size_mb: Option<u64>,
    /// `loaded`, `already_loaded`, `would_load` (dry run), `no_fit`, `unknown_size`,
    /// `failed` (every candidate node was skipped).
    pub action: &'static str,
    /// Where it went (or would go).
    pub node: Option<String>,
    /// The GPU.
    pub gpu: Option<u32>,
    /// What happened, as text.
    pub reason: String,
    /// Nodes tried and skipped.
    pub skipped: Vec<Skipped>,
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

/// Loads each of `models` on its best GPU node with an Ollama (dry run: only says
/// where). Each loaded model's size is reserved on the snapshot so the next model sees
/// the memory as taken.
pub async fn optimize(
    view: &StatusView,
    snapshot: &Snapshot,
    policy: &Policy,
    models: &[String],
    opts: &OptimizeOptions,
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
            if opts.dry_run {
                outcome.action = "would_load";
                outcome.reason = format!("would load on {} via {url}", node.id);
                break;
            }
            match load_and_confirm(opts, &url, model).await {
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
async fn load_and_confirm(opts: &OptimizeOptions, url: &str, model: &str) -> Result<u64, String> {
    let loader = OllamaClient::new(url, opts.load_timeout).map_err(|e| e.to_string())?;
    loader
        .load(model, &opts.keep_alive)
        .await
        .map_err(|e| format!("load failed: {e}"))?;
    let asker = OllamaClient::new(url, opts.ollama_timeout).map_err(|e| e.to_string())?;
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
