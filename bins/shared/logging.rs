//! Logging to stderr, as text or JSON lines. Shared by both binaries (each includes this
//! file with `#[path]`: too little code for a crate of its own).

use clap::ValueEnum;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber with `filter` (tracing `EnvFilter` syntax); a filter
/// that does not parse is reported on stderr under `program`'s name and replaced by
/// `fallback`.
pub(crate) fn init(format: LogFormat, filter: &str, program: &str, fallback: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("{program}: bad log filter {filter:?} ({e}); using \"{fallback}\"");
        EnvFilter::new(fallback)
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
