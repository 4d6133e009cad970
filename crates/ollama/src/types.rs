//! Ollama's JSON shapes (the fields vramroute reads; unknown fields are ignored).
//! Sizes are in bytes, as Ollama sends them.

use serde::{Deserialize, Serialize};

/// `details` of a model in `/api/ps`, `/api/tags` and `/api/show`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ModelDetails {
    /// File format, e.g. `gguf`.
    pub format: Option<String>,
    /// Model family, e.g. `llama`.
    pub family: Option<String>,
    /// Parameter count as Ollama prints it, e.g. `8.0B`.
    pub parameter_size: Option<String>,
    /// Quantization, e.g. `Q4_K_M`.
    pub quantization_level: Option<String>,
}

/// One loaded model from `GET /api/ps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PsModel {
    /// Model name, e.g. `llama3.1:8b`.
    pub name: String,
    /// Model reference (usually equal to `name`).
    #[serde(default)]
    pub model: Option<String>,
    /// Total memory the loaded model occupies, bytes.
    pub size: u64,
    /// Part of `size` that sits in GPU memory, bytes (`size_vram == size`: fully on GPU).
    #[serde(default)]
    pub size_vram: u64,
    /// Content digest.
    #[serde(default)]
    pub digest: Option<String>,
    /// Model details.
    #[serde(default)]
    pub details: Option<ModelDetails>,
    /// When Ollama will unload it (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Context length it was loaded with (newer Ollama versions).
    #[serde(default)]
    pub context_length: Option<u64>,
}

impl PsModel {
    /// A loaded model `name` of `size` bytes, `size_vram` of them in VRAM; nothing else
    /// known.
    pub fn new(name: impl Into<String>, size: u64, size_vram: u64) -> Self {
        Self {
            name: name.into(),
            model: None,
            size,
            size_vram,
            digest: None,
            details: None,
            expires_at: None,
            context_length: None,
        }
    }
}

/// `GET /api/ps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PsResponse {
    /// Models loaded right now.
    #[serde(default)]
    pub models: Vec<PsModel>,
}

impl PsResponse {
    /// An answer listing `models`.
    pub fn new(models: Vec<PsModel>) -> Self {
        Self { models }
    }
}

/// One installed model from `GET /api/tags`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TagModel {
    /// Model name, e.g. `llama3.1:8b`.
    pub name: String,
    /// Model reference.
    #[serde(default)]
    pub model: Option<String>,
    /// Last modification time (RFC 3339).
    #[serde(default)]
    pub modified_at: Option<String>,
    /// Size of the model file, bytes.
    pub size: u64,
    /// Content digest.
    #[serde(default)]
    pub digest: Option<String>,
    /// Model details.
    #[serde(default)]
    pub details: Option<ModelDetails>,
}

impl TagModel {
    /// An installed model `name`, a file of `size` bytes; nothing else known.
    pub fn new(name: impl Into<String>, size: u64) -> Self {
        Self {
            name: name.into(),
            model: None,
            modified_at: None,
            size,
            digest: None,
            details: None,
        }
    }
}

/// `GET /api/tags`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TagsResponse {
    /// Installed models.
    #[serde(default)]
    pub models: Vec<TagModel>,
}

impl TagsResponse {
    /// An answer listing `models`.
    pub fn new(models: Vec<TagModel>) -> Self {
        Self { models }
    }
}

/// `POST /api/show` (the fields vramroute reads).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ShowResponse {
    /// Model details.
    pub details: Option<ModelDetails>,
    /// GGUF metadata: `general.architecture`, `<arch>.block_count`, ...
    pub model_info: serde_json::Map<String, serde_json::Value>,
    /// Capabilities, e.g. `["completion", "tools"]`.
    pub capabilities: Vec<String>,
}

impl ShowResponse {
    /// The architecture named by `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.model_info.get("general.architecture")?.as_str()
    }

    /// An unsigned integer under `<arch>.<suffix>`, e.g. `block_count`.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.model_info.get(&format!("{arch}.{suffix}"))?.as_u64()
    }

    /// The parameter count (`general.parameter_count`).
    pub fn parameter_count(&self) -> Option<u64> {
        self.model_info.get("general.parameter_count")?.as_u64()
    }
}
