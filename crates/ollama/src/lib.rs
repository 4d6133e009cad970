//! `vramroute-ollama`: the parts of Ollama's HTTP API vramroute needs, with bounded
//! timeouts and typed answers.
//!
//! Owns: the request/response shapes of `GET /api/ps`, `GET /api/tags`,
//! `POST /api/show` and `POST /api/generate` (load / unload with `keep_alive`), and the
//! rule that decides whether a node's Ollama has GPU offload on ([`OffloadVerdict`]).
//!
//! **Must not know:** Redis, GPU probing, routing. It is a client, nothing more.
//!
//! Entry types: [`OllamaClient`], [`PsResponse`], [`TagsResponse`], [`ShowResponse`],
//! [`OffloadVerdict`]. With the `testing` feature, [`testing::FakeOllama`] is a real HTTP
//! server on loopback that behaves like Ollama for tests: these endpoints plus inference
//! (Ollama's and the OpenAI-compatible API, streamed chunk by chunk), with injectable
//! delays and faults and per-path counters.

mod client;
mod offload;
#[cfg(feature = "testing")]
pub mod testing;
mod types;

pub use client::OllamaClient;
pub use offload::OffloadVerdict;
pub use types::{ModelDetails, PsModel, PsResponse, ShowResponse, TagModel, TagsResponse};

/// Errors from talking to an Ollama server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL could not be used.
    #[error("invalid Ollama URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The server could not be reached or did not answer in time.
    #[error(
        "cannot reach Ollama at {url} ({reason}): is `ollama serve` running and listening there?"
    )]
    Unreachable {
        /// The URL that was requested.
        url: String,
        /// What the HTTP client reported.
        reason: String,
    },
    /// The server answered with a non-success status.
    #[error("Ollama at {url} answered HTTP {status}: {body}")]
    Status {
        /// The URL that was requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body (at most 200 characters).
        body: String,
    },
    /// The server answered with something that is not the expected JSON.
    #[error("Ollama at {url} returned an unexpected answer: {reason}")]
    BadResponse {
        /// The URL that was requested.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
