//! The cluster layer's error type.

/// What can go wrong in the cluster layer. Messages say what to provide or check; none
/// names a command-line flag (an application maps them to its own inputs).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No source knows the model's size, and none is guessed.
    #[error(
        "unknown model `{model}`: no source knows its size, and none is guessed; give its \
         size explicitly, give its GGUF file, or make an Ollama node that has it pulled \
         known to the cluster view"
    )]
    UnknownModel {
        /// The model asked for.
        model: String,
    },
    /// A plan needs the model's layer count and per-layer size, and nothing gives them.
    #[error(
        "cannot plan `{model}`: its layer count and per-layer size are unknown{asked}; give \
         its GGUF file, or make an Ollama node that has it pulled known to the cluster view \
         (its /api/show reports block_count)"
    )]
    NeedLayerInfo {
        /// The model asked for.
        model: String,
        /// What was asked and what answered, as text (empty when nothing was asked).
        asked: String,
    },
    /// The planner refused: the model does not fit, or there is nothing to plan on.
    #[error("{0}")]
    Plan(String),
    /// The router refused its input (invalid configuration or policy).
    #[error(transparent)]
    Router(#[from] vramroute_router::Error),
    /// The registry failed (unreachable, refused).
    #[error(transparent)]
    Registry(#[from] vramroute_registry::Error),
    /// An application's [`Feed`](crate::Feed) could not read its source.
    #[error("cannot read the cluster source: {0}")]
    Source(String),
    /// A GGUF file could not be read or parsed.
    #[error(transparent)]
    Alloc(#[from] vramroute_alloc::Error),
}

impl Error {
    /// Whether the error is about what was asked (an unknown model, missing layer
    /// information) rather than about the cluster or the network.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            Error::UnknownModel { .. } | Error::NeedLayerInfo { .. }
        )
    }
}

/// The cluster layer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
