//! The HTTP client. Every request is bounded by a timeout and a response-size cap.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, PsResponse, Result, ShowResponse, TagsResponse};

/// Largest response body read from Ollama. `/api/show` of a big model (with its
/// tokenizer metadata stripped, as Ollama does by default) is well under this.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A client for one Ollama server.
#[derive(Debug, Clone)]
pub struct OllamaClient {
    base: String,
    http: reqwest::Client,
}

impl OllamaClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:11434`), each request bounded by
    /// `timeout` (connect and whole-response).
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self> {
        let base = base_url.trim().trim_end_matches('/').to_string();
        let invalid = |reason: &str| Error::InvalidUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| invalid("only http:// URLs are supported"))?;
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(invalid("missing or malformed host"));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(OllamaClient { base, http })
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /api/ps`: the models loaded now.
    pub async fn ps(&self) -> Result<PsResponse> {
        self.get("/api/ps").await
    }

    /// `GET /api/tags`: the models installed.
    pub async fn tags(&self) -> Result<TagsResponse> {
        self.get("/api/tags").await
    }

    /// `POST /api/show {"model": M}`: a model's metadata.
    pub async fn show(&self, model: &str) -> Result<ShowResponse> {
        self.post("/api/show", &serde_json::json!({ "model": model }))
            .await
    }

    /// Load `model` and keep it loaded for `keep_alive` (e.g. `"1h"`):
    /// `POST /api/generate` with no prompt.
    pub async fn load(&self, model: &str, keep_alive: &str) -> Result<()> {
        let body = serde_json::json!({ "model": model, "keep_alive": keep_alive, "stream": false });
        let _: serde_json::Value = self.post("/api/generate", &body).await?;
        Ok(())
    }

    /// Unload `model` now: `POST /api/generate {"model": M, "keep_alive": 0}`.
    pub async fn unload(&self, model: &str) -> Result<()> {
        let body = serde_json::json!({ "model": model, "keep_alive": 0, "stream": false });
        let _: serde_json::Value = self.post("/api/generate", &body).await?;
        Ok(())
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let request = self.http.get(&url);
        self.send(url, request).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let request = self.http.post(&url).json(body);
        self.send(url, request).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        url: String,
        request: reqwest::RequestBuilder,
    ) -> Result<T> {
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            url: url.clone(),
            reason: describe(&e),
        };
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Error::BadResponse {
                    url,
                    reason: format!("response larger than {MAX_BODY_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(Error::Status {
                url,
                status: status.as_u16(),
                body: text.chars().take(200).collect(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| Error::BadResponse {
            url,
            reason: e.to_string(),
        })
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        e.to_string()
    }
}
