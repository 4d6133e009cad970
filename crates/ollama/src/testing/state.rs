//! The fake server's settings and shared state: what it simulates ([`Behaviour`],
//! [`Fault`], [`Knobs`]), what it has installed ([`FakeModel`]) and loaded, and the lock
//! around them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use super::track::Stats;
use crate::{ModelDetails, PsModel};

/// How the server answers on every endpoint but `/` and `/api/version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
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
    /// Send the first N chunks, then Ollama's in-band error and end the reply cleanly,
    /// status still 200: `{"error":"an error was encountered while running the model"}`
    /// as one more NDJSON line on `/api/*`; on `/v1/*`, as Ollama does, the OpenAI error
    /// object as raw JSON (no `data: ` prefix, no `[DONE]`). A non-streamed reply is a
    /// 500 with that error instead.
    ErrorAfterChunks(usize),
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
    /// A model loaded through `/api/generate` (or `/api/chat`) is left out of the next
    /// this many `/api/ps` replies, as a real Ollama's list lags a load. Default 0.
    pub ps_lag: u32,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            chunks: 3,
            chunk_delay: Duration::ZERO,
            first_byte_delay: Duration::ZERO,
            fault: Fault::None,
            ps_lag: 0,
        }
    }
}

/// An installed model of the fake server.
#[derive(Debug, Clone)]
#[non_exhaustive]
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
pub(super) struct Inner {
    pub(super) behaviour: Behaviour,
    pub(super) knobs: Knobs,
    pub(super) version: String,
    pub(super) installed: BTreeMap<String, FakeModel>,
    pub(super) loaded: BTreeMap<String, PsModel>,
    pub(super) generate_calls: Vec<Value>,
    /// Models `/api/ps` still leaves out, with how many more replies do (`Knobs::ps_lag`).
    pub(super) hidden_from_ps: BTreeMap<String, u32>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) inner: Mutex<Inner>,
    pub(super) stats: Stats,
}

pub(super) type AppState = Arc<Shared>;

pub(super) fn lock(state: &Shared) -> MutexGuard<'_, Inner> {
    // A panic in a handler cannot leave the state half-written in a way tests care
    // about, so a poisoned lock is still used.
    state.inner.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn loaded(name: &str, size: u64, size_vram: u64) -> PsModel {
    PsModel {
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

pub(super) fn details() -> ModelDetails {
    ModelDetails {
        format: Some("gguf".into()),
        family: Some("llama".into()),
        parameter_size: Some("8.0B".into()),
        quantization_level: Some("Q4_K_M".into()),
    }
}
