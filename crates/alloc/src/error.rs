//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `vramroute-alloc`. Each message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`crate::ReserveConfig`] value is out of range.
    #[error("invalid reserve setting: {0}")]
    InvalidReserve(String),

    /// The GGUF file could not be opened or read (the path is the one given).
    #[error("cannot read GGUF file {}: {source}", path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The GGUF path is not a regular file (a FIFO, a device, a directory) or cannot be
    /// opened.
    #[error("GGUF model file: {0}")]
    LocalFile(vramroute_probe::local_file::LocalFileError),

    /// The bytes are not a GGUF header this crate can use: truncated, corrupt, hostile
    /// or an unsupported variant.
    #[error("not a usable GGUF header (at byte {offset}): {reason}")]
    Gguf {
        /// Byte offset in the file where the problem was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// A model's metadata lacks a value needed for the estimate.
    #[error("model `{model}` lacks `{key}`: {hint}")]
    MissingMetadata {
        /// The model.
        model: String,
        /// The metadata key (GGUF key or Ollama field) that is missing.
        key: String,
        /// What the user can provide instead.
        hint: String,
    },

    /// No source knows this model's size.
    #[error("unknown model `{name}`: {hint}")]
    UnknownModel {
        /// The model name as given.
        name: String,
        /// What to provide so it can be sized.
        hint: String,
    },

    /// A plan needs the model's layer count and per-layer size, and the estimate has none.
    #[error("cannot split model `{name}` across devices: {hint}")]
    NoLayerInfo {
        /// The model.
        name: String,
        /// What to provide.
        hint: String,
    },

    /// Arguments that make no sense (zero layers, duplicate devices, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The model does not fit in the workers given.
    #[error(
        "model `{model}` does not fit: short by {short_by_mib} MiB \
         ({need_mib} MiB needed, {available_mib} MiB usable); what would help: {}",
        suggestions.join("; ")
    )]
    DoesNotFit {
        /// The model.
        model: String,
        /// What the placement needs, MiB (layers, output, one compute allowance per device).
        need_mib: u64,
        /// What the workers can take, MiB, at layer granularity.
        available_mib: u64,
        /// How much is missing, MiB (at least 1).
        short_by_mib: u64,
        /// Concrete changes that would make it fit.
        suggestions: Vec<String>,
    },
}

impl From<vramroute_probe::local_file::LocalFileError> for Error {
    fn from(e: vramroute_probe::local_file::LocalFileError) -> Self {
        match e {
            vramroute_probe::local_file::LocalFileError::Io { path, source } => {
                Error::Io { path, source }
            }
            other => Error::LocalFile(other),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
