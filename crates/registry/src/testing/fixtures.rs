//! Records exactly as SOLLOL's Python tools write them, captured from Redis after
//! running SOLLOL's own writers (`register_gpu_node.py`'s `publish_to_redis`,
//! `gpu_reporter.py`'s `publish_stats`); see `crates/registry/fixtures/sollol/README.md`.
//!
//! This is the workspace's one copy: `crates/registry/fixtures/sollol/`, byte-identical
//! to the canonical captures in `shared/sollol-records/` (a test checks it when that
//! folder is present). Values are the stored bytes: the files' trailing newline, which
//! Redis never held, is cut off.
//!
//! ```
//! use vramroute_registry::testing::fixtures;
//! use vramroute_registry::{decode_stats, Limits};
//! let rec = decode_stats("10.1.2.3:11434", fixtures::GPU_STATS_NVIDIA.as_bytes(), &Limits::default())?;
//! assert_eq!(rec.to_json(), fixtures::GPU_STATS_NVIDIA); // SOLLOL's bytes, field order included
//! # Ok::<(), String>(())
//! ```

/// `sollol:gpu:10.1.2.3:11434`: an NVIDIA node with two GPUs (`SETEX … 120`).
pub const GPU_STATS_NVIDIA: &str =
    include_str!("../../fixtures/sollol/gpu-stats-nvidia.json").trim_ascii_end();

/// `sollol:gpu:10.1.2.4:11434`: a CPU-only node (`vendor: "none"`, `gpus: []`).
pub const GPU_STATS_CPU_ONLY: &str =
    include_str!("../../fixtures/sollol/gpu-stats-cpu-only.json").trim_ascii_end();

/// `sollol:rpc:node:10.1.2.3:50052`: the registration of the NVIDIA node (`SET … EX 3600`).
pub const RPC_NODE_GPU: &str =
    include_str!("../../fixtures/sollol/rpc-node-gpu.json").trim_ascii_end();

/// `XRANGE sollol:gpu:stats - +` after both stats writes, as a JSON array of
/// `{"id", "fields"}` (field order as stored); [`stream_entries`] decodes it in order.
pub const STREAM_ENTRIES: &str =
    include_str!("../../fixtures/sollol/stream-entries.json").trim_ascii_end();

/// The file names under `crates/registry/fixtures/sollol/`, README included.
pub const FILES: [&str; 5] = [
    "README.md",
    "gpu-stats-cpu-only.json",
    "gpu-stats-nvidia.json",
    "rpc-node-gpu.json",
    "stream-entries.json",
];

/// The folder of the fixture files in this checkout (for tests that compare files).
pub fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sollol")
}

/// The entries of [`STREAM_ENTRIES`] as `(entry id, [(field, value)])`, fields in
/// their stored order (which a JSON map would lose).
pub fn stream_entries() -> Vec<(String, Vec<(String, String)>)> {
    let value: serde_json::Value = match serde_json::from_str(STREAM_ENTRIES) {
        Ok(v) => v,
        Err(e) => panic!("stream-entries.json: {e}"),
    };
    let ids: Vec<String> = value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.get("id")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let fields = field_objects(STREAM_ENTRIES);
    assert_eq!(
        ids.len(),
        fields.len(),
        "stream-entries.json: ids and field maps"
    );
    ids.into_iter().zip(fields).collect()
}

/// Every `"fields": {…}` object of `text`, decoded in order.
fn field_objects(text: &str) -> Vec<Vec<(String, String)>> {
    const OPEN: &str = "\"fields\": ";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        let start = at + OPEN.len();
        let bytes = rest.as_bytes();
        let (mut depth, mut in_str, mut i) = (0u32, false, start);
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if in_str => i += 1,
                b'"' => in_str = !in_str,
                b'{' if !in_str => depth += 1,
                b'}' if !in_str => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let object = &rest[start..=i.min(bytes.len() - 1)];
        match crate::pyjson::stream_fields(object) {
            Ok(fields) => out.push(fields),
            Err(e) => panic!("stream-entries.json: fields at byte {start}: {e}"),
        }
        rest = &rest[i.min(bytes.len())..];
    }
    out
}
