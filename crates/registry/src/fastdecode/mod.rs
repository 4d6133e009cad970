//! A single-pass reader for the record shapes vramroute and SOLLOL write (stats record,
//! GPU entries, loaded models, RPC registration), working on the value's text.
//!
//! It handles what those writers produce (Python `json.dumps` or compact spacing, any key
//! order, plain and escaped strings, integers, floats, `null` for optional fields,
//! unknown keys) and answers `None` for anything else: a syntax error, a missing or
//! repeated field where serde would refuse it, a number in a form or range it does not
//! take exactly, a lone surrogate, deep nesting. The caller then decodes the value with
//! the serde path (`serde_json` and the visitors in `record.rs`), which gives the same
//! record or the exact error. So a `Some` here must always be exactly what serde would
//! produce; the property tests (`tests.rs`) check that on generated and mutated records.
//!
//! `json.rs` is the reader of JSON text (tokens, strings, numbers, objects, known keys);
//! `shapes.rs` reads the record shapes with it.
//!
//! Why: decoding the two records was half of a cold discovery's client instructions
//! (≈ 18,900 of ≈ 37,400 per node with serde; ≈ 13,500 with this reader: docs/scale.md,
//! "Record decoding").

mod json;
mod shapes;
#[cfg(test)]
mod tests;

use crate::record::{GpuStatsRecord, RpcNodeRecord};
use json::Parser;

/// The deepest unknown value (top-level extra key, unknown key of a GPU entry or loaded
/// model) this reader takes; deeper ones go to serde (whose recursion limit is 128).
const MAX_UNKNOWN_DEPTH: usize = 32;

/// Decodes a stats record, or `None`: decode it with serde instead.
pub(crate) fn stats(text: &str) -> Option<GpuStatsRecord> {
    let mut p = Parser::new(text);
    let r = p.stats()?;
    p.end()?;
    Some(r)
}

/// Decodes a registration, or `None`: decode it with serde instead.
pub(crate) fn rpc(text: &str) -> Option<RpcNodeRecord> {
    let mut p = Parser::new(text);
    let r = p.rpc()?;
    p.end()?;
    Some(r)
}
