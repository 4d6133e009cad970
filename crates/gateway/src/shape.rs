//! Answers in each protocol's own shape: Ollama's `{"error": "..."}`, OpenAI's
//! `{"error": {"message", "type", "param", "code"}}`, and the in-band error that ends a
//! stream (an NDJSON line, or an SSE event).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Which API a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `/api/*`.
    Ollama,
    /// `/v1/*` (OpenAI-compatible).
    OpenAi,
}

impl Protocol {
    pub(crate) fn of(path: &str) -> Protocol {
        if path.starts_with("/v1/") {
            Protocol::OpenAi
        } else {
            Protocol::Ollama
        }
    }

    /// An error answer with `status` and `message`.
    pub(crate) fn error(self, status: StatusCode, message: &str) -> Response {
        let body = match self {
            Protocol::Ollama => json!({ "error": message }),
            Protocol::OpenAi => json!({
                "error": {
                    "message": message,
                    "type": openai_type(status),
                    "param": null,
                    "code": null,
                }
            }),
        };
        let mut r = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }

    /// The bytes that end a stream with an error after data was sent: an NDJSON line
    /// for Ollama, an SSE event for OpenAI (`text/event-stream`), else a JSON line.
    pub(crate) fn stream_error(self, sse: bool, message: &str) -> Vec<u8> {
        let mut out = match (self, sse) {
            (Protocol::OpenAi, true) => {
                let e = json!({ "error": { "message": message, "type": "api_error", "param": null, "code": null } });
                format!("data: {e}\n\n")
            }
            (Protocol::OpenAi, false) => {
                json!({ "error": { "message": message, "type": "api_error", "param": null, "code": null } })
                    .to_string()
            }
            (Protocol::Ollama, _) => json!({ "error": message }).to_string(),
        }
        .into_bytes();
        if !(self == Protocol::OpenAi && sse) {
            out.push(b'\n');
        }
        out
    }
}

/// OpenAI's error `type` for a status, as Ollama's compatibility layer names them.
fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 => "invalid_request_error",
        401 => "authentication_error",
        404 => "not_found_error",
        _ => "api_error",
    }
}
