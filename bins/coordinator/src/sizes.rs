//! How big a model is, and where that figure came from. Never guessed: an unknown model
//! with no source is an [`UnknownModel`] error that says what to provide.

use serde::Serialize;
use vramroute_alloc::sollol_table_estimate;

use crate::view::StatusView;

/// The size used for fit checks and routing, MiB, with its source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ModelSize {
    pub(crate) model: String,
    pub(crate) size_mb: u64,
    pub(crate) source: String,
}

/// No source knows the model's size.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UnknownModel(pub(crate) String);

impl std::fmt::Display for UnknownModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown model `{}`: no source knows its size, and none is guessed; give it with \
             --size-mb N (HTTP: size_mb=N), point `plan` at its GGUF file with --gguf FILE, \
             or list an Ollama node that has it pulled under `nodes:` in the config",
            self.0
        )
    }
}

impl std::error::Error for UnknownModel {}

pub(crate) use vramroute_router::same_model;

/// The size of `model`: an explicit size wins, then SOLLOL's table, then an Ollama
/// node's `/api/tags` file size, then the size of a loaded copy (`/api/ps`).
pub(crate) fn model_size(
    view: &StatusView,
    model: &str,
    explicit_mb: Option<u64>,
) -> Result<ModelSize, UnknownModel> {
    let found = |size_mb: u64, source: String| ModelSize {
        model: model.to_owned(),
        size_mb,
        source,
    };
    if let Some(mb) = explicit_mb {
        return Ok(found(mb, "given (--size-mb)".to_owned()));
    }
    if let Some(e) = sollol_table_estimate(model) {
        return Ok(found(e.weights_mib, "SOLLOL table".to_owned()));
    }
    for n in &view.nodes {
        if let Some(m) = n
            .installed_models
            .iter()
            .find(|m| same_model(&m.name, model))
        {
            return Ok(found(m.size_mb, format!("Ollama /api/tags of {}", n.id)));
        }
    }
    for n in &view.nodes {
        if let Some((m, size)) = n
            .loaded_models
            .iter()
            .find_map(|m| Some((m, m.size_mb?)).filter(|(m, _)| same_model(&m.name, model)))
        {
            return Ok(found(size, format!("loaded copy ({}) on {}", m.name, n.id)));
        }
    }
    Err(UnknownModel(model.to_owned()))
}
