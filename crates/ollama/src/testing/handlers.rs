//! The routes and their handlers: parse the request, count it, and answer with the
//! literal JSON of [`super::wire`] under the knobs in force.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::state::{details, loaded, lock, AppState, Behaviour, Fault, Shared};
use super::track::{self, Outcome, Tracker};
use super::wire;
use crate::{PsResponse, TagModel};

/// The fake server's routes over `state`.
pub(super) fn router(state: AppState) -> Router {
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

/// Which error shape a path speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Ollama,
    OpenAi,
}

/// The error Ollama reports when a generation fails after it started.
const MODEL_ERROR: &str = "an error was encountered while running the model";

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
        // Not streamed, Ollama reports a failed generation as a 500.
        Fault::ErrorAfterChunks(_) if !reply.streamed => {
            Some((StatusCode::INTERNAL_SERVER_ERROR, MODEL_ERROR))
        }
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
    let mut end = Outcome::Completed;
    if let Fault::ErrorAfterChunks(n) = knobs.fault {
        // The status is 200 already: Ollama appends the error to the stream and ends it.
        // On /v1 its error writer sends the OpenAI error object as raw JSON, without
        // `data: ` and without `[DONE]`.
        frames.truncate(n.min(knobs.chunks));
        frames.push(match dialect {
            Dialect::Ollama => ndjson(wire::ollama_error(MODEL_ERROR)),
            Dialect::OpenAi => ndjson(wire::openai_error(500, MODEL_ERROR)),
        });
        end = Outcome::Failed;
    }
    if !reply.streamed && content_length.is_none() {
        content_length = Some(frames.iter().map(String::len).sum());
    }
    let delay = if reply.streamed {
        knobs.chunk_delay
    } else {
        Duration::ZERO
    };
    let mut response = Response::new(track::body(frames, delay, abort_after, tracker, end));
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
    let models = {
        let mut inner = lock(&state);
        let inner = &mut *inner;
        inner.hidden_from_ps.retain(|_, left| {
            *left = left.saturating_sub(1);
            true
        });
        let models = inner
            .loaded
            .values()
            .filter(|m| !inner.hidden_from_ps.contains_key(&m.name))
            .cloned()
            .collect();
        inner.hidden_from_ps.retain(|_, left| *left > 0);
        models
    };
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
                    let lag = inner.knobs.ps_lag;
                    if lag > 0 {
                        inner.hidden_from_ps.insert(req.model.clone(), lag);
                    }
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
    let wire = OpenAiText {
        path: "/v1/chat/completions",
        id_prefix: "chatcmpl",
        chunk: wire::openai_chat_chunk,
        whole: wire::openai_chat,
    };
    openai_text(state, raw, wire).await
}

async fn openai_completions(State(state): State<AppState>, raw: Bytes) -> Response {
    let wire = OpenAiText {
        path: "/v1/completions",
        id_prefix: "cmpl",
        chunk: wire::openai_completion_chunk,
        whole: wire::openai_completion,
    };
    openai_text(state, raw, wire).await
}

/// How one OpenAI text endpoint (chat or completions) writes its answer.
struct OpenAiText {
    path: &'static str,
    id_prefix: &'static str,
    /// A streamed chunk: `(id, model, text, last)`.
    chunk: fn(&str, &str, &str, bool) -> String,
    /// The whole answer: `(id, model, text, chunks)`.
    whole: fn(&str, &str, &str, usize) -> String,
}

async fn openai_text(state: AppState, raw: Bytes, w: OpenAiText) -> Response {
    let req = match model_request(&state, w.path, Dialect::OpenAi, &raw).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let req = match req.resolve(&state, Dialect::OpenAi) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let streamed = req.streamed(false);
    let id = format!("{}-{}", w.id_prefix, req.seq);
    let model = req.model;
    respond(&state, req.tracker, Dialect::OpenAi, |chunks| {
        if streamed {
            let last = wire::sse(&(w.chunk)(&id, &model, "", true));
            Reply {
                content_type: EVENT_STREAM,
                frames: stream_frames(
                    chunks,
                    |t| wire::sse(&(w.chunk)(&id, &model, t, false)),
                    [last, wire::SSE_DONE.to_owned()],
                ),
                streamed,
            }
        } else {
            Reply {
                content_type: JSON,
                frames: vec![(w.whole)(&id, &model, &wire::tokens(chunks), chunks)],
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
