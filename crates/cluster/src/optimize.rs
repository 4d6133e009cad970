//! `optimize`: load each priority model on its best GPU node through Ollama
//! (`POST /api/generate` with `keep_alive`, no prompt), confirm with `/api/ps`
//! `size_vram > 0`, report what moved. A node that hangs or answers garbage is skipped
//! with the reason and the model is routed again without it (bounded attempts).
//!
//! Loads in flight are remembered across passes ([`PendingLoads`]): while a load of a
//! model has been sent and neither the view (the node's report) nor `/api/ps` confirms
//! it, no pass sends another (outcome `loading`), until `load_timeout` has passed. A
//! daemon that optimizes every few seconds so sends one load per model, not one per pass
//! while Ollama's `/api/ps` or the node's report catch up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// `loaded`, `already_loaded`, `loading` (a load is in flight: sent, answered, not
    /// yet confirmed), `would_load` (dry run), `no_fit`, `unknown_size`, `failed` (every
    /// candidate node was skipped).
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

/// Loads sent and not yet seen loaded in the view, by (node id, model), with when they
/// were sent. Keep one across [`optimize_tracked`] passes (the daemon does).
#[derive(Debug, Default)]
pub struct PendingLoads {
    sent: Mutex<HashMap<(String, String), Instant>>,
}

impl PendingLoads {
    /// No load in flight.
    pub fn new() -> Self {
        PendingLoads::default()
    }

    /// Loads in flight now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no load is in flight.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Instant>> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, node: &str, model: &str) {
        self.lock()
            .insert((node.to_owned(), model.to_owned()), Instant::now());
    }

    fn remove_model(&self, model: &str) {
        self.lock().retain(|(_, m), _| m != model);
    }

    fn remove(&self, node: &str, model: &str) {
        self.lock().remove(&(node.to_owned(), model.to_owned()));
    }

    /// The node a load of `model` was sent to, and when.
    fn of_model(&self, model: &str) -> Option<(String, Instant)> {
        self.lock()
            .iter()
            .filter(|((_, m), _)| m == model)
            .map(|((n, _), at)| (n.clone(), *at))
            .max_by_key(|(_, at)| *at)
    }
}

/// Loads each of `models` on its best GPU node with an Ollama (dry run: only says
/// where). Each loaded model's size is reserved on the snapshot so the next model sees
/// the memory as taken. Remembers nothing between calls: see [`optimize_tracked`].
pub async fn optimize(
    view: &StatusView,
    snapshot: &Snapshot,
    policy: &Policy,
    models: &[String],
    opts: &OptimizeOptions,
) -> Vec<Outcome> {
    optimize_tracked(view, snapshot, policy, models, opts, &PendingLoads::new()).await
}

/// [`optimize`] that sends no second load of a model while one is in flight in
/// `pending` (sent, not yet in the view, not failed, younger than `load_timeout`).
pub async fn optimize_tracked(
    view: &StatusView,
    snapshot: &Snapshot,
    policy: &Policy,
    models: &[String],
    opts: &OptimizeOptions,
    pending: &PendingLoads,
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
            .map(|n| n.id.to_string())
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
            outcome.node = Some(node.id.to_string());
            outcome.gpu = d.gpu;
            if d.fit == FitKind::AlreadyLoaded {
                // The view shows it: nothing of it is in flight any more.
                pending.remove_model(model);
                outcome.action = "already_loaded";
                outcome.reason = format!("already loaded on {}", node.id);
                break;
            }
            if !opts.dry_run {
                if let Some(waiting) = in_flight(snapshot, pending, opts, model).await {
                    outcome.action = waiting.action;
                    outcome.node = Some(waiting.node);
                    outcome.gpu = None;
                    outcome.reason = waiting.reason;
                    break;
                }
            }
            let Some(url) = node.ollama_url.clone() else {
                excluded.push(node.id.to_string());
                continue;
            };
            if opts.dry_run {
                outcome.action = "would_load";
                outcome.reason = format!("would load on {} via {url}", node.id);
                break;
            }
            match load_and_confirm(opts, &url, &node.id, model, pending).await {
                Ok(Confirmed::InVram(vram_mb)) => {
                    let _ = snapshot.reserve(d.node, d.gpu, size.size_mb);
                    outcome.action = "loaded";
                    outcome.reason =
                        format!("loaded via {url}; /api/ps shows {vram_mb} MB in VRAM");
                    break;
                }
                Ok(Confirmed::NotYet(why)) => {
                    let _ = snapshot.reserve(d.node, d.gpu, size.size_mb);
                    outcome.action = "loading";
                    outcome.reason = format!(
                        "load sent via {url} and answered; {why}: no new load of it until it is confirmed or {} s pass",
                        opts.load_timeout.as_secs()
                    );
                    break;
                }
                Err(reason) => {
                    outcome.skipped.push(Skipped {
                        node: node.id.to_string(),
                        reason,
                    });
                    outcome.node = None;
                    outcome.gpu = None;
                    excluded.push(node.id.to_string());
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

/// What a pass says of a model whose load is in flight.
struct Waiting {
    action: &'static str,
    node: String,
    reason: String,
}

/// `Some` when a load of `model` is in flight: `/api/ps` of its node confirms it
/// (`already_loaded`, the view has not caught up), or it is younger than `load_timeout`
/// (`loading`). `None` when none is, or it timed out (forgotten: load again).
async fn in_flight(
    snapshot: &Snapshot,
    pending: &PendingLoads,
    opts: &OptimizeOptions,
    model: &str,
) -> Option<Waiting> {
    let (node_id, since) = pending.of_model(model)?;
    let url = snapshot
        .nodes()
        .iter()
        .find(|n| n.id == node_id)
        .and_then(|n| n.ollama_url.clone());
    if let Some(url) = &url {
        if let Ok(vram_mb) = ps_vram_mb(opts, url, model).await {
            if vram_mb > 0 {
                return Some(Waiting {
                    action: "already_loaded",
                    node: node_id.clone(),
                    reason: format!(
                        "loaded on {node_id}: /api/ps shows {vram_mb} MB in VRAM (the node's report has not caught up)"
                    ),
                });
            }
        }
    }
    let age = since.elapsed();
    if age < opts.load_timeout {
        return Some(Waiting {
            action: "loading",
            node: node_id.clone(),
            reason: format!(
                "a load was sent to {node_id} {} s ago and is not confirmed yet: not sending another",
                age.as_secs()
            ),
        });
    }
    pending.remove(&node_id, model);
    None
}

/// The MiB of `model` in VRAM per the `/api/ps` of the Ollama at `url` (`Ok(0)` when it
/// is listed on the CPU); `Err` when it is not listed or `/api/ps` fails.
async fn ps_vram_mb(opts: &OptimizeOptions, url: &str, model: &str) -> Result<u64, String> {
    let asker = OllamaClient::new(url, opts.ollama_timeout).map_err(|e| e.to_string())?;
    let ps = asker
        .ps()
        .await
        .map_err(|e| format!("cannot confirm with /api/ps: {e}"))?;
    ps.models
        .iter()
        .find(|m| same_model(&m.name, model))
        .map(|m| m.size_vram / 1_048_576)
        .ok_or_else(|| "/api/ps does not list it yet".to_owned())
}

/// What `/api/ps` said right after a load that Ollama answered.
enum Confirmed {
    /// Listed with this many MiB in VRAM.
    InVram(u64),
    /// Not listed yet, or `/api/ps` did not answer: the load stays in flight.
    NotYet(String),
}

/// Loads `model` on the Ollama at `url` (node `node_id`), remembering the load in
/// `pending` once Ollama answers it, and asks `/api/ps` whether it is in VRAM. `Err` (the
/// node is skipped, nothing stays in flight) when the load fails, or when the model runs
/// on the CPU (it is unloaded again).
async fn load_and_confirm(
    opts: &OptimizeOptions,
    url: &str,
    node_id: &str,
    model: &str,
    pending: &PendingLoads,
) -> Result<Confirmed, String> {
    let loader = OllamaClient::new(url, opts.load_timeout).map_err(|e| e.to_string())?;
    loader
        .load(model, &opts.keep_alive)
        .await
        .map_err(|e| format!("load failed: {e}"))?;
    pending.insert(node_id, model);
    match ps_vram_mb(opts, url, model).await {
        Ok(vram_mb) if vram_mb > 0 => Ok(Confirmed::InVram(vram_mb)),
        Ok(_) => {
            // Running on the CPU is not what optimize is for: give the memory back.
            pending.remove(node_id, model);
            if let Ok(asker) = OllamaClient::new(url, opts.ollama_timeout) {
                let _ = asker.unload(model).await;
            }
            Err("loaded, but /api/ps shows size_vram 0 (running on the CPU); unloaded".to_owned())
        }
        Err(why) => Ok(Confirmed::NotYet(why)),
    }
}
