//! Reading the `sollol:gpu:stats` stream back: one entry's fields (SOLLOL's encoding,
//! see [`crate::pyjson::stream_fields`]) → the [`GpuStatsRecord`] they were written from.
//!
//! SOLLOL's reporter writes every top-level key of the record as one field: lists and
//! objects as their `json.dumps`, everything else as Python's `str()`. The types are
//! therefore gone on the wire (`"5"` may have been a number or a string); they are
//! recovered from the record's schema: the string fields stay text, `True`/`False`/`None`
//! are Python's constants, `[`/`{` open JSON, and the rest is a number when it parses as
//! one. The result is validated as a stored record is ([`decode_stats`]).

use serde_json::{Map, Value};

use crate::record::GpuStatsRecord;
use crate::validate::{decode_stats, Limits};

/// The record's fields that hold text (kept as text even when they look like a number).
const TEXT_FIELDS: &[&str] = &[
    "vendor",
    "node_id",
    "hostname",
    "reporter_version",
    "gpu_offload",
    "gpu_offload_reason",
    "note",
    "ollama_url",
    "rpc_host",
];

/// Of those, the ones a record may leave out (Python writes a missing value as `None`).
const REQUIRED_TEXT: &[&str] = &["vendor", "node_id"];

/// Decodes one `sollol:gpu:stats` entry's fields into the stats record it was written
/// from, validated like a record read from `sollol:gpu:{node_id}`. An entry without a
/// `node_id` field, or one that does not decode, is an error saying why (the caller
/// skips it; one bad entry never hides the rest).
///
/// ```
/// use vramroute_registry::{decode_stream_entry, GpuStat, GpuStatsRecord, Limits};
/// let mut r = GpuStatsRecord::new("10.0.0.5:11434", "nvidia", 1_700_000_000.5);
/// r.gpus.push(GpuStat::new(0, "RTX 4090"));
/// let back = decode_stream_entry(&r.to_stream_fields(), &Limits::default())?;
/// assert_eq!(back, r);
/// # Ok::<(), String>(())
/// ```
pub fn decode_stream_entry(
    fields: &[(String, String)],
    limits: &Limits,
) -> Result<GpuStatsRecord, String> {
    let mut object = Map::new();
    let mut bytes = 0usize;
    for (key, text) in fields {
        bytes += key.len() + text.len();
        if bytes > limits.max_record_bytes {
            return Err(format!(
                "stream entry is over {} bytes",
                limits.max_record_bytes
            ));
        }
        object.insert(key.clone(), field_value(key, text)?);
    }
    let node_id = match object.get("node_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err("stream entry has no node_id".to_owned()),
    };
    let json = serde_json::to_vec(&Value::Object(object)).map_err(|e| e.to_string())?;
    decode_stats(&node_id, &json, limits)
}

/// One field's text back to the JSON value `json.dumps` / `str()` wrote it from.
fn field_value(key: &str, text: &str) -> Result<Value, String> {
    if TEXT_FIELDS.contains(&key) {
        return Ok(if text == "None" && !REQUIRED_TEXT.contains(&key) {
            Value::Null
        } else {
            Value::String(text.to_owned())
        });
    }
    Ok(match text {
        "True" => Value::Bool(true),
        "False" => Value::Bool(false),
        "None" => Value::Null,
        t if t.starts_with('[') || t.starts_with('{') => serde_json::from_str(t)
            .map_err(|e| format!("stream field {key} is not valid JSON: {e}"))?,
        t => match serde_json::from_str::<serde_json::Number>(t) {
            Ok(n) => Value::Number(n),
            Err(_) => Value::String(t.to_owned()),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::record::{GpuOffload, GpuStat, LoadedModel};

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_full_record_round_trips_through_the_stream_encoding() {
        let mut r = GpuStatsRecord::new("10.0.0.5:11434", "amd", 1_700_000_000.25);
        let mut g = GpuStat::new(1, "Radeon RX 7900 XTX");
        g.memory_total_mb = Some(24_560);
        g.memory_used_mb = Some(1_000);
        g.temperature_c = Some(-3);
        r.gpus.push(g);
        r.hostname = Some("12345".into());
        r.gpu_offload = Some(GpuOffload::On);
        r.loaded_models = Some(vec![LoadedModel {
            name: "llama3.1:8b".into(),
            size_mb: Some(4_700),
            size_vram_mb: Some(4_700),
        }]);
        r.cpu_load_percent = Some(12.5);
        r.rpc_port = Some(50_052);
        let back = decode_stream_entry(&r.to_stream_fields(), &Limits::default()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn sollol_entries_decode_and_bad_ones_say_why() {
        let ok = fields(&[
            ("vendor", "none"),
            ("gpus", "[]"),
            ("timestamp", "1795441356.3281927"),
            ("node_id", "10.1.2.4:11434"),
        ]);
        let r = decode_stream_entry(&ok, &Limits::default()).unwrap();
        assert_eq!(r.node_id, "10.1.2.4:11434");
        assert!(r.gpus.is_empty());
        let no_id = fields(&[("vendor", "none"), ("gpus", "[]"), ("timestamp", "1")]);
        let e = decode_stream_entry(&no_id, &Limits::default()).unwrap_err();
        assert!(e.contains("node_id"), "{e}");
        let bad_gpus = fields(&[("node_id", "a:1"), ("gpus", "[{"), ("timestamp", "1")]);
        let e = decode_stream_entry(&bad_gpus, &Limits::default()).unwrap_err();
        assert!(e.contains("gpus"), "{e}");
        let bad_ts = fields(&[("node_id", "a:1"), ("gpus", "[]"), ("timestamp", "soon")]);
        assert!(decode_stream_entry(&bad_ts, &Limits::default()).is_err());
        let huge = fields(&[("node_id", "a:1"), ("note", &"x".repeat(1 << 20))]);
        let e = decode_stream_entry(&huge, &Limits::default()).unwrap_err();
        assert!(e.contains("bytes"), "{e}");
    }
}
