//! A real HTTP server on loopback that speaks Ollama's API shapes, for tests.
//!
//! It runs on its own thread and Tokio runtime, so both synchronous tests (that spawn
//! binaries) and async tests can use it. It serves `GET /api/ps`, `GET /api/tags`,
//! `POST /api/show` and `POST /api/generate` (load / unload with `keep_alive`), and can
//! be switched to answer with garbage, an error status, or not at all (hang).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::{LoadedModel, ModelDetails, PsResponse, TagModel};

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Real answers.
    Normal,
    /// `200 OK` with a body that is not JSON.
    Garbage,
    /// `500 Internal Server Error`.
    Error,
    /// Accept the request and never answer (until the server is dropped).
    Hang,
}

/// An installed model of the fake server.
#[derive(Debug, Clone)]
pub struct FakeModel {
    /// Name, e.g. `llama3.1:8b`.
    pub name: String,
    /// File size, bytes (`/api/tags` `size`).
    pub size_bytes: u64,
    /// Whether loading it puts it in VRAM (`size_vram == size`) or on the CPU (`0`).
    pub on_gpu: bool,
    /// `model_info` returned by `/api/show`.
    pub model_info: serde_json::Map<String, Value>,
}

impl FakeModel {
    /// A model of `size_bytes` that loads onto the GPU.
    pub fn new(name: &str, size_bytes: u64) -> Self {
        FakeModel {
            name: name.to_string(),
            size_bytes,
            on_gpu: true,
            model_info: serde_json::Map::new(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    behaviour: Behaviour,
    installed: BTreeMap<String, FakeModel>,
    loaded: BTreeMap<String, LoadedModel>,
    generate_calls: Vec<Value>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    // A panic in a handler cannot leave the state half-written in a way tests care
    // about, so a poisoned lock is still used.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running server. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeOllama {
    addr: SocketAddr,
    state: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeOllama {
    /// Start a server on `127.0.0.1` with a free port.
    pub fn start() -> std::io::Result<Self> {
        let state: Shared = Arc::new(Mutex::new(Inner {
            behaviour: Behaviour::Normal,
            installed: BTreeMap::new(),
            loaded: BTreeMap::new(),
            generate_calls: Vec::new(),
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/api/ps", get(ps))
            .route("/api/tags", get(tags))
            .route("/api/show", post(show))
            .route("/api/generate", post(generate))
            .route("/", get(|| async { "Ollama is running" }))
            .with_state(state.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        Ok(FakeOllama {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switch how the server answers.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        lock(&self.state).behaviour = behaviour;
    }

    /// Install a model (listed by `/api/tags`, loadable through `/api/generate`).
    pub fn install(&self, model: FakeModel) {
        lock(&self.state)
            .installed
            .insert(model.name.clone(), model);
    }

    /// Mark a model loaded with `size_vram` bytes of it in VRAM (`/api/ps`).
    pub fn set_loaded(&self, name: &str, size_bytes: u64, size_vram: u64) {
        lock(&self.state)
            .loaded
            .insert(name.to_string(), loaded(name, size_bytes, size_vram));
    }

    /// Unload everything.
    pub fn clear_loaded(&self) {
        lock(&self.state).loaded.clear();
    }

    /// Bodies of every `/api/generate` request received, in order.
    pub fn generate_calls(&self) -> Vec<Value> {
        lock(&self.state).generate_calls.clone()
    }

    /// Names of the models loaded now.
    pub fn loaded_names(&self) -> Vec<String> {
        lock(&self.state).loaded.keys().cloned().collect()
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // A hanging handler keeps graceful shutdown waiting; don't block the test on it.
        if lock(&self.state).behaviour != Behaviour::Hang {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

fn loaded(name: &str, size: u64, size_vram: u64) -> LoadedModel {
    LoadedModel {
        name: name.to_string(),
        model: Some(name.to_string()),
        size,
        size_vram,
        digest: Some(format!("sha256:{:064x}", size)),
        details: Some(details()),
        expires_at: Some("2099-01-01T00:00:00Z".to_string()),
        context_length: Some(4096),
    }
}

fn details() -> ModelDetails {
    ModelDetails {
        format: Some("gguf".into()),
        family: Some("llama".into()),
        parameter_size: Some("8.0B".into()),
        quantization_level: Some("Q4_K_M".into()),
    }
}

/// What to send instead of a real answer, or `None` to answer normally.
async fn misbehave(state: &Shared) -> Option<Response> {
    let behaviour = lock(state).behaviour;
    match behaviour {
        Behaviour::Normal => None,
        Behaviour::Garbage => Some((StatusCode::OK, "<html>not json").into_response()),
        Behaviour::Error => Some((StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()),
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Some(StatusCode::GATEWAY_TIMEOUT.into_response())
        }
    }
}

async fn ps(State(state): State<Shared>) -> Response {
    if let Some(r) = misbehave(&state).await {
        return r;
    }
    let models = lock(&state).loaded.values().cloned().collect();
    Json(PsResponse { models }).into_response()
}

async fn tags(State(state): State<Shared>) -> Response {
    if let Some(r) = misbehave(&state).await {
        return r;
    }
    let models: Vec<TagModel> = lock(&state)
        .installed
        .values()
        .map(|m| TagModel {
            name: m.name.clone(),
            model: Some(m.name.clone()),
            modified_at: Some("2026-11-01T00:00:00Z".into()),
            size: m.size_bytes,
            digest: Some(format!("sha256:{:064x}", m.size_bytes)),
            details: Some(details()),
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

/// The request body and its `model`, or the answer to send instead (misbehaviour or 400).
async fn model_request(
    state: &Shared,
    body: Option<Json<Value>>,
) -> Result<(Value, String), Response> {
    if let Some(r) = misbehave(state).await {
        return Err(r);
    }
    let Some(Json(body)) = body else {
        return Err((
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid request"})),
        )
            .into_response());
    };
    let name = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok((body, name))
}

async fn show(State(state): State<Shared>, body: Option<Json<Value>>) -> Response {
    let (_, name) = match model_request(&state, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let inner = lock(&state);
    match inner.installed.get(&name) {
        Some(m) => Json(json!({
            "details": details(),
            "model_info": m.model_info,
            "capabilities": ["completion"],
        }))
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("model '{name}' not found") })),
        )
            .into_response(),
    }
}

async fn generate(State(state): State<Shared>, body: Option<Json<Value>>) -> Response {
    let (body, name) = match model_request(&state, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let unload = matches!(body.get("keep_alive"), Some(v) if v == &json!(0) || v == &json!("0"));
    let mut inner = lock(&state);
    inner.generate_calls.push(body.clone());
    let Some(model) = inner.installed.get(&name).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("model '{name}' not found, try pulling it first") })),
        )
            .into_response();
    };
    let reason = if unload {
        inner.loaded.remove(&name);
        "unload"
    } else {
        let vram = if model.on_gpu { model.size_bytes } else { 0 };
        inner
            .loaded
            .insert(name.clone(), loaded(&name, model.size_bytes, vram));
        "load"
    };
    Json(json!({
        "model": name,
        "created_at": "2026-11-23T00:00:00Z",
        "response": "",
        "done": true,
        "done_reason": reason,
    }))
    .into_response()
}
