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

/// The text format's fields: `message` first, then `name=value`, each escaped by
/// [`crate::term::Term`] (`Debug` of a `&str` field is already escaped; a `%` field and
/// the message are not).
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt as _;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        if field.name() == "message" {
            write!(w, "{}", crate::term::Term(&text))
        } else {
            write!(w, "{}={}", field.name(), crate::term::Term(&text))
        }
    })
    .delimited(" ")
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
        // Field values and messages carry outside data (record keys, node ids, Ollama
        // errors): every control character is escaped, so none forges a log line.
        LogFormat::Text => builder.fmt_fields(escaped_fields()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
