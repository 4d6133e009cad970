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

mod handlers;
mod state;
mod track;
mod wire;

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use state::{loaded, lock, AppState, Inner, Shared};
pub use state::{Behaviour, FakeModel, Fault, Knobs};
pub use track::PathStats;
use track::{lock_stats, Stats};
pub use wire::{token, tokens};

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

    /// Leave a newly loaded model out of the next `replies` `/api/ps` answers.
    pub fn set_ps_lag(&self, replies: u32) {
        lock(&self.state).knobs.ps_lag = replies;
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
                hidden_from_ps: BTreeMap::new(),
            }),
            stats: Stats::default(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = handlers::router(state.clone());
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
