//! A real HTTP server on loopback that behaves like Ollama, for tests.
//!
//! It runs on its own thread and Tokio runtime, so both synchronous tests (that spawn
//! binaries) and async tests can use it. It serves Ollama's API (`/api/generate` and
//! `/api/chat` streamed as NDJSON or in one object, `/api/embed`, `/api/embeddings`,
//! `/api/show`, `/api/tags`, `/api/ps`, `/api/version`, `GET`/`HEAD /`) and its
//! OpenAI-compatible API (`/v1/chat/completions` and `/v1/completions`, streamed as
//! server-sent events ending in `data: [DONE]`, `/v1/embeddings`, `/v1/models`). Replies
//! are written as literal JSON in Ollama's own field order, with fixed timestamps and
//! durations, and streamed chunk `i` carries the text [`token`]`(i)` = `"tok{i} "`.
//!
//! What it can simulate, per server, set at build time ([`FakeOllamaBuilder`]) and
//! changeable while it runs ([`FakeHandle`]):
//! - how many chunks a streamed reply has and the delay between them ([`Knobs`]);
//! - a delay before the first byte (a slow node);
//! - an injected [`Fault`] on the inference endpoints: HTTP 500 or 503 with Ollama's
//!   error body, a connection closed without any reply, or a stream aborted after N chunks;
//! - which models the node has (others get Ollama's 404 shapes);
//! - garbage, an error status or a hang on every endpoint ([`Behaviour`]);
//!
//! and it counts, per path, requests received, completed, failed on purpose and
//! cancelled by the client going away, and keeps the last raw request body
//! ([`PathStats`]).
//!
//! ```
//! use vramroute_ollama::testing::{FakeModel, FakeOllama, Fault};
//! let fake = FakeOllama::builder()
//!     .model(FakeModel::new("llama3.1:8b", 4_920_000_000))
//!     .chunks(5)
//!     .start()
//!     .unwrap();
//! let handle = fake.handle(); // Clone + Send: change knobs from anywhere
//! handle.set_fault(Fault::AbortAfterChunks(2));
//! assert_eq!(fake.stats("/api/chat").received, 0);
//! ```

mod track;
mod wire;

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::{LoadedModel, ModelDetails, PsResponse, TagModel};
pub use track::PathStats;
use track::{lock_stats, Outcome, Stats, Tracker};
pub use wire::{token, tokens};

/// How the server answers on every endpoint but `/` and `/api/version`.
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

/// A failure injected on the inference endpoints (`/api/generate` with a prompt,
/// `/api/chat` with messages, `/api/embed`, `/api/embeddings`, `/v1/chat/completions`,
/// `/v1/completions`, `/v1/embeddings`), after the first-byte delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// No failure.
    #[default]
    None,
    /// HTTP 500 before the first byte, with Ollama's error body
    /// (`{"error":"llama runner process has terminated: exit status 2"}`, or its
    /// OpenAI shape on `/v1/*`).
    InternalError,
    /// HTTP 503 before the first byte, with Ollama's "server busy" error body.
    Busy,
    /// Close the connection without sending anything (no status line).
    CloseWithoutReply,
    /// Send the status, headers and the first N chunks, then abort the connection (the
    /// chunked body is never terminated). With N at least the number of chunks, every
    /// chunk goes out but not the final `done` object / `[DONE]` event. A non-streamed
    /// reply sends the first half of its body (under a full `Content-Length`).
    AbortAfterChunks(usize),
}

/// How replies are shaped in time and whether they fail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Knobs {
    /// Chunks of a streamed reply before the final one (`"tok0 "`, `"tok1 "`, ...); a
    /// non-streamed reply carries their concatenation. Default 3.
    pub chunks: usize,
    /// Delay before each streamed chunk but the first (a non-streamed reply waits
    /// `chunks` times this before its first byte). Default 0.
    pub chunk_delay: Duration,
    /// Delay before the status line of every inference reply. Default 0.
    pub first_byte_delay: Duration,
    /// Failure to inject. Default none.
    pub fault: Fault,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            chunks: 3,
            chunk_delay: Duration::ZERO,
            first_byte_delay: Duration::ZERO,
            fault: Fault::None,
        }
    }
}

/// An installed model of the fake server.
#[derive(Debug, Clone)]
pub struct FakeModel {
    /// Name, e.g. `llama3.1:8b`. A request for a name without a tag also finds
    /// `name:latest`, as in Ollama.
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
    knobs: Knobs,
    version: String,
    installed: BTreeMap<String, FakeModel>,
    loaded: BTreeMap<String, LoadedModel>,
    generate_calls: Vec<Value>,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    stats: Stats,
}

type AppState = Arc<Shared>;

fn lock(state: &Shared) -> MutexGuard<'_, Inner> {
    // A panic in a handler cannot leave the state half-written in a way tests care
    // about, so a poisoned lock is still used.
    state.inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// A cheap, cloneable handle on a running [`FakeOllama`]: change its knobs and read its
/// counters from any thread or task. [`FakeOllama`] dereferences to it.
#[derive(Debug, Clone)]
pub struct FakeHandle {
    state: AppState,
}

impl FakeHandle {
    /// Switch how the server answers on every endpoint.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        lock(&self.state).behaviour = behaviour;
    }

    /// Install a model (listed by `/api/tags` and `/v1/models`, served by the inference
    /// endpoints, loadable through `/api/generate`).
    pub fn install(&self, model: FakeModel) {
        lock(&self.state)
            .installed
            .insert(model.name.clone(), model);
    }

    /// Remove an installed model (requests for it then get 404).
    pub fn uninstall(&self, name: &str) {
        lock(&self.state).installed.remove(name);
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

    /// The knobs in force now.
    pub fn knobs(&self) -> Knobs {
        lock(&self.state).knobs.clone()
    }

    /// Replace every knob (requests already streaming keep the knobs they started with).
    pub fn set_knobs(&self, knobs: Knobs) {
        lock(&self.state).knobs = knobs;
    }

    /// Number of chunks of streamed replies.
    pub fn set_chunks(&self, chunks: usize) {
        lock(&self.state).knobs.chunks = chunks;
    }

    /// Delay between streamed chunks.
    pub fn set_chunk_delay(&self, delay: Duration) {
        lock(&self.state).knobs.chunk_delay = delay;
    }

    /// Delay before the first byte of inference replies.
    pub fn set_first_byte_delay(&self, delay: Duration) {
        lock(&self.state).knobs.first_byte_delay = delay;
    }

    /// The failure to inject on inference endpoints ([`Fault::None`] to stop).
    pub fn set_fault(&self, fault: Fault) {
        lock(&self.state).knobs.fault = fault;
    }

    /// What `path` (e.g. `"/api/chat"`, `"/v1/chat/completions"`) has seen so far;
    /// all zero for a path never requested.
    pub fn stats(&self, path: &str) -> PathStats {
        lock_stats(&self.state.stats)
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// The raw body of the last request to `path`.
    pub fn last_body(&self, path: &str) -> Option<Vec<u8>> {
        self.stats(path).last_body
    }

    /// Wait (asynchronously, polling every 5 ms) until `path`'s stats satisfy `pred`, at
    /// most `timeout`; the stats that did, or `None` on timeout. Cancellations are seen
    /// only when the server notices the client has gone, so wait for them with this.
    pub async fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        pred: impl Fn(&PathStats) -> bool,
    ) -> Option<PathStats> {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats(path);
            if pred(&stats) {
                return Some(stats);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// [`FakeHandle::wait_for`] for synchronous tests (blocks the calling thread).
    pub fn wait_for_blocking(
        &self,
        path: &str,
        timeout: Duration,
        pred: impl Fn(&PathStats) -> bool,
    ) -> Option<PathStats> {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats(path);
            if pred(&stats) {
                return Some(stats);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Settings of a [`FakeOllama`] before it starts; from [`FakeOllama::builder`].
#[derive(Debug, Clone)]
pub struct FakeOllamaBuilder {
    knobs: Knobs,
    models: Vec<FakeModel>,
    version: String,
}

impl FakeOllamaBuilder {
    /// Chunks of streamed replies (default 3).
    pub fn chunks(mut self, chunks: usize) -> Self {
        self.knobs.chunks = chunks;
        self
    }

    /// Delay between streamed chunks (default 0).
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.knobs.chunk_delay = delay;
        self
    }

    /// Delay before the first byte of inference replies (default 0).
    pub fn first_byte_delay(mut self, delay: Duration) -> Self {
        self.knobs.first_byte_delay = delay;
        self
    }

    /// Failure to inject on inference endpoints (default none).
    pub fn fault(mut self, fault: Fault) -> Self {
        self.knobs.fault = fault;
        self
    }

    /// All knobs at once.
    pub fn knobs(mut self, knobs: Knobs) -> Self {
        self.knobs = knobs;
        self
    }

    /// Install a model.
    pub fn model(mut self, model: FakeModel) -> Self {
        self.models.push(model);
        self
    }

    /// Install a 1 GiB GPU model called `name`.
    pub fn model_named(self, name: &str) -> Self {
        self.model(FakeModel::new(name, 1 << 30))
    }

    /// The version `/api/version` reports (default `0.12.6`).
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_owned();
        self
    }

    /// Start the server on `127.0.0.1` with a free port.
    pub fn start(self) -> std::io::Result<FakeOllama> {
        let installed = self
            .models
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect();
        let state: AppState = Arc::new(Shared {
            inner: Mutex::new(Inner {
                behaviour: Behaviour::Normal,
                knobs: self.knobs,
                version: self.version,
                installed,
                loaded: BTreeMap::new(),
                generate_calls: Vec::new(),
            }),
            stats: Stats::default(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(state.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                // Not a graceful shutdown: a hanging or slow reply must not keep a
                // dropped server alive. Dropping the runtime drops every connection.
                tokio::select! {
                    _ = axum::serve(listener, app).into_future() => {}
                    _ = rx => {}
                }
            });
        });
        Ok(FakeOllama {
            addr,
            handle: FakeHandle { state },
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

/// The running server. Dropping it stops the server and closes every connection.
/// Dereferences to its [`FakeHandle`] for knobs and counters.
#[derive(Debug)]
pub struct FakeOllama {
    addr: SocketAddr,
    handle: FakeHandle,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeOllama {
    /// Settings for a server: no models, default [`Knobs`].
    pub fn builder() -> FakeOllamaBuilder {
        FakeOllamaBuilder {
            knobs: Knobs::default(),
            models: Vec::new(),
            version: "0.12.6".to_owned(),
        }
    }

    /// Start a server on `127.0.0.1` with a free port, no models and default knobs.
    pub fn start() -> std::io::Result<Self> {
        Self::builder().start()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that can outlive borrows of the server (it does not keep it running).
    pub fn handle(&self) -> FakeHandle {
        self.handle.clone()
    }
}

impl std::ops::Deref for FakeOllama {
    type Target = FakeHandle;

    fn deref(&self) -> &FakeHandle {
        &self.handle
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/api/version", get(version))
        .route("/api/ps", get(ps))
        .route("/api/tags", get(tags))
        .route("/api/show", post(show))
        .route("/api/generate", post(generate))
        .route("/api/chat", post(chat))
        .route("/api/embed", post(embed))
        .route("/api/embeddings", post(embeddings))
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/completions", post(openai_completions))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/v1/models", get(openai_models))
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found") })
        .with_state(state)
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

/// Which error shape a path speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Ollama,
    OpenAi,
}

const JSON: &str = "application/json; charset=utf-8";
const NDJSON: &str = "application/x-ndjson";
const EVENT_STREAM: &str = "text/event-stream";

/// A complete (not streamed) reply.
fn whole(status: StatusCode, content_type: &'static str, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// An error reply in `dialect`'s shape.
fn error(dialect: Dialect, status: StatusCode, message: &str) -> Response {
    let text = match dialect {
        Dialect::Ollama => wire::ollama_error(message),
        Dialect::OpenAi => wire::openai_error(status.as_u16(), message),
    };
    whole(status, JSON, text)
}

fn not_found(dialect: Dialect, model: &str) -> Response {
    let message = format!("model \"{model}\" not found, try pulling it first");
    error(dialect, StatusCode::NOT_FOUND, &message)
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

/// A request to a model endpoint, parsed: its JSON body and `model`.
struct ModelRequest {
    tracker: Tracker,
    seq: u64,
    body: Value,
    model: String,
}

/// Count the request, apply [`Behaviour`], parse the body and require `model`; or the
/// answer to send instead.
async fn model_request(
    state: &Shared,
    path: &'static str,
    dialect: Dialect,
    raw: &Bytes,
) -> Result<ModelRequest, Response> {
    let (tracker, seq) = Tracker::start(&state.stats, path, raw);
    if let Some(r) = misbehave(state).await {
        tracker.finish(Outcome::Failed);
        return Err(r);
    }
    let body: Value = match serde_json::from_slice(raw) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) | Err(_) if raw.is_empty() => {
            tracker.finish(Outcome::Completed);
            return Err(error(
                dialect,
                StatusCode::BAD_REQUEST,
                "missing request body",
            ));
        }
        Ok(_) | Err(_) => {
            tracker.finish(Outcome::Completed);
            return Err(error(dialect, StatusCode::BAD_REQUEST, "invalid JSON body"));
        }
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if model.is_empty() {
        tracker.finish(Outcome::Completed);
        return Err(error(dialect, StatusCode::BAD_REQUEST, "model is required"));
    }
    Ok(ModelRequest {
        tracker,
        seq,
        body,
        model,
    })
}

impl ModelRequest {
    /// The installed model the request names (`name` or `name:latest`), or the 404.
    #[allow(
        clippy::result_large_err,
        reason = "the error is the axum response to send, built once per request in a test server"
    )]
    fn resolve(self, state: &Shared, dialect: Dialect) -> Result<Self, Response> {
        let found = {
            let inner = lock(state);
            let latest = format!("{}:latest", self.model);
            inner
                .installed
                .get(&self.model)
                .or_else(|| {
                    (!self.model.contains(':'))
                        .then(|| inner.installed.get(&latest))
                        .flatten()
                })
                .cloned()
        };
        match found {
            Some(_) => Ok(self),
            None => {
                let r = not_found(dialect, &self.model);
                self.tracker.finish(Outcome::Completed);
                Err(r)
            }
        }
    }

    fn streamed(&self, default: bool) -> bool {
        self.body
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }
}

/// A reply ready to go out: its frames (streamed) or its one text.
struct Reply {
    content_type: &'static str,
    /// Streamed: the `chunks` token frames, then the closing frame(s).
    /// Not streamed: exactly one frame.
    frames: Vec<String>,
    streamed: bool,
}

/// Send `build(chunks)` under the knobs in force now: the first-byte delay, then the
/// fault or the reply.
async fn respond(
    state: &Shared,
    tracker: Tracker,
    dialect: Dialect,
    build: impl FnOnce(usize) -> Reply,
) -> Response {
    let knobs = lock(state).knobs.clone();
    // A client that goes away during a wait drops this future and `tracker` with it:
    // counted as cancelled.
    if !knobs.first_byte_delay.is_zero() {
        tokio::time::sleep(knobs.first_byte_delay).await;
    }
    let reply = build(knobs.chunks);
    if !reply.streamed && !knobs.chunk_delay.is_zero() {
        let chunks = u32::try_from(knobs.chunks).unwrap_or(u32::MAX);
        tokio::time::sleep(knobs.chunk_delay.saturating_mul(chunks)).await;
    }
    let failure = match knobs.fault {
        Fault::InternalError => Some((
            StatusCode::INTERNAL_SERVER_ERROR,
            "llama runner process has terminated: exit status 2",
        )),
        Fault::Busy => Some((
            StatusCode::SERVICE_UNAVAILABLE,
            "server busy, please try again.  maximum pending requests exceeded",
        )),
        _ => None,
    };
    if let Some((status, message)) = failure {
        tracker.finish(Outcome::Failed);
        return error(dialect, status, message);
    }
    let mut frames = reply.frames;
    let mut content_length = None;
    let abort_after = match knobs.fault {
        Fault::CloseWithoutReply => {
            frames.clear();
            Some(0)
        }
        Fault::AbortAfterChunks(n) if reply.streamed => Some(n.min(knobs.chunks)),
        Fault::AbortAfterChunks(_) => {
            let text = frames.concat();
            content_length = Some(text.len());
            let half = text.len() / 2;
            frames = vec![text[..half].to_owned(), text[half..].to_owned()];
            Some(1)
        }
        _ => None,
    };
    if !reply.streamed && content_length.is_none() {
        content_length = Some(frames.iter().map(String::len).sum());
    }
    let delay = if reply.streamed {
        knobs.chunk_delay
    } else {
        Duration::ZERO
    };
    let mut response = Response::new(track::body(frames, delay, abort_after, tracker));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(reply.content_type),
    );
    if let Some(len) = content_length {
        headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    }
    response
}

/// Frames of a streamed reply: `chunk(token(i))` for each chunk, then `closing`.
fn stream_frames(
    chunks: usize,
    chunk: impl Fn(&str) -> String,
    closing: impl IntoIterator<Item = String>,
) -> Vec<String> {
    (0..chunks)
        .map(|i| chunk(&wire::token(i)))
        .chain(closing)
        .collect()
}

fn ndjson(json: String) -> String {
    json + "\n"
}

async fn root(State(state): State<AppState>) -> Response {
    let (tracker, _) = Tracker::start(&state.stats, "/", &Bytes::new());
    tracker.finish(Outcome::Completed);
    whole(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        "Ollama is running".to_owned(),
    )
}

async fn version(State(state): State<AppState>) -> Response {
    let (tracker, _) = Tracker::start(&state.stats, "/api/version", &Bytes::new());
    let text = wire::version(&lock(&state).version);
    tracker.finish(Outcome::Completed);
    whole(StatusCode::OK, JSON, text)
}

async fn ps(State(state): State<AppState>) -> Response {
    let (tracker, _) = Tracker::start(&state.stats, "/api/ps", &Bytes::new());
    if let Some(r) = misbehave(&state).await {
        tracker.finish(Outcome::Failed);
        return r;
    }
    let models = lock(&state).loaded.values().cloned().collect();
    tracker.finish(Outcome::Completed);
    axum::Json(PsResponse { models }).into_response()
}

async fn tags(State(state): State<AppState>) -> Response {
    let (tracker, _) = Tracker::start(&state.stats, "/api/tags", &Bytes::new());
    if let Some(r) = misbehave(&state).await {
        tracker.finish(Outcome::Failed);
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
    tracker.finish(Outcome::Completed);
    axum::Json(json!({ "models": models })).into_response()
}

async fn show(State(state): State<AppState>, raw: Bytes) -> Response {
    let req = match model_request(&state, "/api/show", Dialect::Ollama, &raw).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let found = lock(&state).installed.get(&req.model).cloned();
    let reply = match found {
        Some(m) => axum::Json(json!({
            "details": details(),
            "model_info": m.model_info,
            "capabilities": ["completion"],
        }))
        .into_response(),
        // Ollama's /api/show words its 404 differently from the inference endpoints.
        None => error(
            Dialect::Ollama,
            StatusCode::NOT_FOUND,
            &format!("model '{}' not found", req.model),
        ),
    };
    req.tracker.finish(Outcome::Completed);
    reply
}

/// Load (`keep_alive` other than 0) or unload the model: what `/api/generate` and
/// `/api/chat` do without a prompt / messages.
fn load_or_unload(state: &Shared, req: ModelRequest, render: fn(&str, &str) -> String) -> Response {
    let unload =
        matches!(req.body.get("keep_alive"), Some(v) if v == &json!(0) || v == &json!("0"));
    let reply = {
        let mut inner = lock(state);
        match inner.installed.get(&req.model).cloned() {
            None => None,
            Some(model) => {
                let reason = if unload {
                    inner.loaded.remove(&req.model);
                    "unload"
                } else {
                    let vram = if model.on_gpu { model.size_bytes } else { 0 };
                    inner.loaded.insert(
                        req.model.clone(),
                        loaded(&req.model, model.size_bytes, vram),
                    );
                    "load"
                };
                Some(whole(StatusCode::OK, JSON, render(&req.model, reason)))
            }
        }
    };
    let reply = reply.unwrap_or_else(|| not_found(Dialect::Ollama, &req.model));
    req.tracker.finish(Outcome::Completed);
    reply
}

async fn generate(State(state): State<AppState>, raw: Bytes) -> Response {
    let req = match model_request(&state, "/api/generate", Dialect::Ollama, &raw).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    lock(&state).generate_calls.push(req.body.clone());
    let prompt = req.body.get("prompt").and_then(Value::as_str).unwrap_or("");
    if prompt.is_empty() {
        return load_or_unload(&state, req, wire::generate_load);
    }
    let req = match req.resolve(&state, Dialect::Ollama) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let streamed = req.streamed(true);
    let model = req.model;
    respond(&state, req.tracker, Dialect::Ollama, |chunks| {
        if streamed {
            Reply {
                content_type: NDJSON,
                frames: stream_frames(
                    chunks,
                    |t| ndjson(wire::generate_chunk(&model, t)),
                    [ndjson(wire::generate_done(&model, "", chunks))],
                ),
                streamed,
            }
        } else {
            Reply {
                content_type: JSON,
                frames: vec![wire::generate_done(&model, &wire::tokens(chunks), chunks)],
                streamed,
            }
        }
    })
    .await
}

async fn chat(State(state): State<AppState>, raw: Bytes) -> Response {
    let req = match model_request(&state, "/api/chat", Dialect::Ollama, &raw).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let no_messages = req
        .body
        .get("messages")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_messages {
        return load_or_unload(&state, req, wire::chat_load);
    }
    let req = match req.resolve(&state, Dialect::Ollama) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let streamed = req.streamed(true);
    let model = req.model;
    respond(&state, req.tracker, Dialect::Ollama, |chunks| {
        if streamed {
            Reply {
                content_type: NDJSON,
                frames: stream_frames(
                    chunks,
                    |t| ndjson(wire::chat_chunk(&model, t)),
                    [ndjson(wire::chat_done(&model, "", chunks))],
                ),
                streamed,
            }
        } else {
            Reply {
                content_type: JSON,
                frames: vec![wire::chat_done(&model, &wire::tokens(chunks), chunks)],
                streamed,
            }
        }
    })
    .await
}

/// Number of inputs in `input` (a string or a list of them).
fn input_count(body: &Value) -> usize {
    match body.get("input") {
        Some(Value::Array(items)) => items.len(),
        _ => 1,
    }
}

async fn embed(State(state): State<AppState>, raw: Bytes) -> Response {
    let req = match model_request(&state, "/api/embed", Dialect::Ollama, &raw).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let req = match req.resolve(&state, Dialect::Ollama) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let text = wire::embed(&req.model, input_count(&req.body));
    single(&state, req.tracker, Dialect::Ollama, text).await
}

async fn embeddings(State(state): State<AppState>, raw: Bytes) -> Response {
    let req = match model_request(&state, "/api/embeddings", Dialect::Ollama, &raw).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let req = match req.resolve(&state, Dialect::Ollama) {
        Ok(v) => v,
        Err(r) => return r,
    };
    single(&state, req.tracker, Dialect::Ollama, wire::embeddings()).await
}

/// A non-streamed inference reply of one JSON object.
async fn single(state: &Shared, tracker: Tracker, dialect: Dialect, text: String) -> Response {
    respond(state, tracker, dialect, |_| Reply {
        content_type: JSON,
        frames: vec![text],
        streamed: false,
    })
    .await
}

async fn openai_chat(State(state): State<AppState>, raw: Bytes) -> Response {
    let path = "/v1/chat/completions";
    let req = match model_request(&state, path, Dialect::OpenAi, &raw).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let req = match req.resolve(&state, Dialect::OpenAi) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let streamed = req.streamed(false);
    let id = format!("chatcmpl-{}", req.seq);
    let model = req.model;
    respond(&state, req.tracker, Dialect::OpenAi, |chunks| {
        if streamed {
            let last = wire::sse(&wire::openai_chat_chunk(&id, &model, "", true));
            Reply {
                content_type: EVENT_STREAM,
                frames: stream_frames(
                    chunks,
                    |t| wire::sse(&wire::openai_chat_chunk(&id, &model, t, false)),
                    [last, wire::SSE_DONE.to_owned()],
                ),
                streamed,
            }
        } else {
            Reply {
                content_type: JSON,
                frames: vec![wire::openai_chat(
                    &id,
                    &model,
                    &wire::tokens(chunks),
                    chunks,
                )],
                streamed,
            }
        }
    })
    .await
}

async fn openai_completions(State(state): State<AppState>, raw: Bytes) -> Response {
    let req = match model_request(&state, "/v1/completions", Dialect::OpenAi, &raw).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let req = match req.resolve(&state, Dialect::OpenAi) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let streamed = req.streamed(false);
    let id = format!("cmpl-{}", req.seq);
    let model = req.model;
    respond(&state, req.tracker, Dialect::OpenAi, |chunks| {
        if streamed {
            let last = wire::sse(&wire::openai_completion_chunk(&id, &model, "", true));
            Reply {
                content_type: EVENT_STREAM,
                frames: stream_frames(
                    chunks,
                    |t| wire::sse(&wire::openai_completion_chunk(&id, &model, t, false)),
                    [last, wire::SSE_DONE.to_owned()],
                ),
                streamed,
            }
        } else {
            Reply {
                content_type: JSON,
                frames: vec![wire::openai_completion(
                    &id,
                    &model,
                    &wire::tokens(chunks),
                    chunks,
                )],
                streamed,
            }
        }
    })
    .await
}

async fn openai_embeddings(State(state): State<AppState>, raw: Bytes) -> Response {
    let req = match model_request(&state, "/v1/embeddings", Dialect::OpenAi, &raw).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let req = match req.resolve(&state, Dialect::OpenAi) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let text = wire::openai_embeddings(&req.model, input_count(&req.body));
    single(&state, req.tracker, Dialect::OpenAi, text).await
}

async fn openai_models(State(state): State<AppState>) -> Response {
    let (tracker, _) = Tracker::start(&state.stats, "/v1/models", &Bytes::new());
    if let Some(r) = misbehave(&state).await {
        tracker.finish(Outcome::Failed);
        return r;
    }
    let text = wire::openai_models(lock(&state).installed.keys().map(String::as_str));
    tracker.finish(Outcome::Completed);
    whole(StatusCode::OK, JSON, text)
}
