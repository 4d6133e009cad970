//! The records SOLLOL and vramroute keep in Redis, as serde types.
//!
//! Every "MB" field is MiB (1,048,576 bytes), as in SOLLOL. Fields SOLLOL defines come
//! first, in the order SOLLOL's writers emit them; vramroute's richer data follows as
//! extra keys (SOLLOL ignores unknown keys). An unknown value is `None` and is **omitted**
//! when written, never written as 0 and never as `null`: SOLLOL's reader does
//! `gpu.get("memory_free_mb", 0)` and compares numbers, so an absent key degrades to its
//! default while a `null` would raise a `TypeError` inside its polling loop.
//!
//! Unknown top-level keys written by others are kept in `extra` and written back
//! unchanged; unknown keys inside a GPU entry are ignored.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pyjson;

pub use smol_str::SmolStr;

/// The schema version vramroute writes in `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// One GPU in a stats record (an element of `gpus`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub struct GpuStat {
    /// Position of the GPU on its node (SOLLOL: nvidia-smi index).
    pub index: u32,
    /// Marketing name, e.g. `NVIDIA GeForce RTX 3090`.
    pub name: SmolStr,
    /// Total VRAM in MiB; `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_mb: Option<u64>,
    /// Free VRAM in MiB; `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_free_mb: Option<u64>,
    /// Used VRAM in MiB; `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_mb: Option<u64>,
    /// Utilisation, 0–100 %; `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_percent: Option<u32>,
    /// Temperature in °C; `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<i32>,
    /// Extra (ours): vendor UUID (NVML `GPU-…`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<SmolStr>,
    /// Extra (ours): PCI bus id (`0000:01:00.0`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<SmolStr>,
    /// Extra (ours): board power draw in watts, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
    /// Extra (ours): memory kind, e.g. `dedicated`, `unified`, `gtt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_kind: Option<SmolStr>,
    /// Extra (ours): kernel driver, e.g. `nvidia`, `amdgpu`, `xe`, `i915`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<SmolStr>,
    /// Extra (ours): the ggml device name llama.cpp uses for it (`CUDA0`, `ROCm1`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ggml_device: Option<SmolStr>,
}

/// Whether the node's Ollama actually offloads to its GPUs (extra key `gpu_offload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuOffload {
    /// Some loaded model has `size_vram > 0`.
    On,
    /// Ollama answered with models loaded and all have `size_vram == 0`.
    Off,
    /// Ollama unreachable, idle, or not asked (any other value read is mapped here too).
    #[serde(other)]
    Unknown,
}

/// A model loaded in the node's Ollama (extra key `loaded_models`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub struct LoadedModel {
    /// Model name as Ollama reports it (`llama3.1:8b`).
    pub name: SmolStr,
    /// Total size in MiB, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_mb: Option<u64>,
    /// Part resident in VRAM in MiB, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_vram_mb: Option<u64>,
}

/// The live stats record: key `sollol:gpu:{node_id}`, expiry 120 s (configurable).
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct GpuStatsRecord {
    /// `nvidia`, `amd`, `intel` or `none` (others' writers may put other strings).
    pub vendor: SmolStr,
    /// One entry per GPU; empty on a CPU-only node.
    pub gpus: Vec<GpuStat>,
    /// Unix seconds of the measurement.
    pub timestamp: f64,
    /// `{ip}:{ollama_port}`. When read, a record without it gets the id from its key.
    pub node_id: SmolStr,
    /// Extra: schema version of the record (ours write [`SCHEMA_VERSION`]).
    pub schema_version: Option<u32>,
    /// Extra: version of the writing reporter.
    pub reporter_version: Option<SmolStr>,
    /// Extra: host name of the node.
    pub hostname: Option<SmolStr>,
    /// Extra: whether Ollama offloads to the GPUs.
    pub gpu_offload: Option<GpuOffload>,
    /// Extra: why `gpu_offload` has its value, in words.
    pub gpu_offload_reason: Option<SmolStr>,
    /// SOLLOL's optional `note` (e.g. "GPU present but Ollama using CPU-only").
    pub note: Option<SmolStr>,
    /// Extra: models loaded in the node's Ollama.
    pub loaded_models: Option<Vec<LoadedModel>>,
    /// Extra: host RAM total, MiB.
    pub cpu_ram_total_mb: Option<u64>,
    /// Extra: host RAM available, MiB.
    pub cpu_ram_free_mb: Option<u64>,
    /// Extra: logical CPUs.
    pub cpu_count: Option<u32>,
    /// Extra: CPU load over all CPUs, 0–100 %.
    pub cpu_load_percent: Option<f64>,
    /// Extra: the node's Ollama base URL.
    pub ollama_url: Option<SmolStr>,
    /// Extra: host of the node's llama.cpp rpc-server, if any.
    pub rpc_host: Option<SmolStr>,
    /// Extra: port of the node's llama.cpp rpc-server, if any.
    pub rpc_port: Option<u16>,
    /// Unknown top-level keys, kept as read and written back after ours.
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The capability registration: key `sollol:rpc:node:{ip}:{rpc_port}`, expiry 3600 s.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[non_exhaustive]
pub struct RpcNodeRecord {
    /// Whether the node offers GPUs.
    pub has_gpu: bool,
    /// SOLLOL-style device ids, `cuda:0`, `rocm:0` (not ggml names; see `ggml_devices`).
    pub gpu_devices: Vec<SmolStr>,
    /// Usable VRAM per GPU after the safety reserve, MiB.
    pub gpu_vram_mb: Vec<u64>,
    /// GPU names, one per device.
    pub gpu_names: Vec<SmolStr>,
    /// Usable host RAM after the reserve, MiB.
    pub cpu_ram_mb: u64,
    /// `cpu,cuda:0,…`.
    pub device_config: SmolStr,
    /// `12000,19200,…` MiB, CPU first.
    pub memory_config: SmolStr,
    /// 1 + number of GPUs.
    pub total_parallel_workers: u32,
    /// Extra: schema version (ours write [`SCHEMA_VERSION`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// Extra: version of the writing reporter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporter_version: Option<SmolStr>,
    /// Extra: host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<SmolStr>,
    /// Extra: ggml device names for `rpc-server -d` (`CPU`, `CUDA0`, …), one per entry
    /// of `gpu_devices`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ggml_devices: Option<Vec<SmolStr>>,
    /// Extra: GPU UUIDs, one per device (empty string when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_uuids: Option<Vec<SmolStr>>,
    /// Extra: PCI bus ids, one per device (empty string when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_pci_bus_ids: Option<Vec<SmolStr>>,
    /// Extra: total VRAM per GPU before the reserve, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_vram_total_mb: Option<Vec<u64>>,
    /// Extra: host RAM total before the reserve, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ram_total_mb: Option<u64>,
    /// Extra: logical CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<u32>,
    /// Extra: the reserve fraction applied (0.2 = 20 %).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserve_fraction: Option<f64>,
    /// Unknown top-level keys, kept as read and written back after ours.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One RPC backend in the router metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcBackend {
    /// Host or IP.
    pub host: String,
    /// Port (an integer; a numeric string is accepted when read).
    #[serde(deserialize_with = "de_port")]
    pub port: u16,
}

/// `sollol:router:metadata`: the list of RPC backends SOLLOL's discovery uses.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RouterMetadata {
    /// The backends, in order.
    pub rpc_backends: Vec<RpcBackend>,
    /// Unknown keys, kept as read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    struct PortVisitor;
    impl Visitor<'_> for PortVisitor {
        type Value = u16;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a port number (1-65535)")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u16, E> {
            u16::try_from(v)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| E::custom(format!("port {v} out of range 1-65535")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u16, E> {
            if v < 0 {
                return Err(E::custom(format!("port {v} out of range 1-65535")));
            }
            self.visit_u64(v.unsigned_abs())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u16, E> {
            let n: u64 = v
                .trim()
                .parse()
                .map_err(|_| E::custom(format!("port {v:?} is not a number")))?;
            self.visit_u64(n)
        }
    }
    d.deserialize_any(PortVisitor)
}

// ---------------------------------------------------------------------------------------
// Encoding

impl Serialize for GpuStatsRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        // SOLLOL's `gpu_reporter.py` builds every stats dict as `vendor, gpus, timestamp`
        // (`note` after `timestamp` on its CPU-only override path), then adds `node_id`
        // (see `testing::fixtures`); the same data gives the same bytes, in the key and
        // in the stream entry. Our extras follow.
        map.serialize_entry("vendor", &self.vendor)?;
        map.serialize_entry("gpus", &self.gpus)?;
        map.serialize_entry("timestamp", &self.timestamp)?;
        if let Some(note) = &self.note {
            map.serialize_entry("note", note)?;
        }
        map.serialize_entry("node_id", &self.node_id)?;
        macro_rules! opt {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field {
                    map.serialize_entry(stringify!($field), v)?;
                }
            )*};
        }
        opt!(
            schema_version,
            reporter_version,
            hostname,
            gpu_offload,
            gpu_offload_reason,
            loaded_models,
            cpu_ram_total_mb,
            cpu_ram_free_mb,
            cpu_count,
            cpu_load_percent,
            ollama_url,
            rpc_host,
            rpc_port
        );
        for (k, v) in &self.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl GpuStat {
    /// GPU `index` named `name`, everything else unknown.
    pub fn new(index: u32, name: impl Into<SmolStr>) -> Self {
        Self {
            index,
            name: name.into(),
            ..Self::default()
        }
    }
}

impl LoadedModel {
    /// A loaded model of `size_mb` MiB with `size_vram_mb` of it in VRAM (`None`: unknown).
    pub fn new(name: impl Into<SmolStr>, size_mb: Option<u64>, size_vram_mb: Option<u64>) -> Self {
        Self {
            name: name.into(),
            size_mb,
            size_vram_mb,
        }
    }
}

impl GpuStatsRecord {
    /// A record of node `node_id` at `timestamp` (Unix seconds) whose GPUs are of
    /// `vendor` (`"none"` for a CPU-only node); no GPU listed, everything else unknown.
    ///
    /// ```
    /// use vramroute_registry::{GpuStat, GpuStatsRecord};
    /// let mut r = GpuStatsRecord::new("10.0.0.5:11434", "nvidia", 1_700_000_000.0);
    /// r.gpus.push(GpuStat::new(0, "RTX 4090"));
    /// assert!(r.to_json().starts_with(r#"{"vendor": "nvidia", "gpus": [{"index": 0"#));
    /// ```
    pub fn new(node_id: impl Into<SmolStr>, vendor: impl Into<SmolStr>, timestamp: f64) -> Self {
        Self {
            vendor: vendor.into(),
            timestamp,
            node_id: node_id.into(),
            ..Self::default()
        }
    }

    /// The JSON SOLLOL's reporter would write to `sollol:gpu:{node_id}` for this record,
    /// byte for byte (Python `json.dumps` style).
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        pyjson::to_python_json(self).unwrap_or_default()
    }

    /// The fields of the `sollol:gpu:stats` stream entry for this record, in order.
    pub fn to_stream_fields(&self) -> Vec<(String, String)> {
        pyjson::stream_fields(&self.to_json()).unwrap_or_default()
    }
}

impl RpcNodeRecord {
    /// The JSON SOLLOL's `register_gpu_node.py` would write for this record.
    pub fn to_json(&self) -> String {
        pyjson::to_python_json(self).unwrap_or_default()
    }

    /// A CPU-only registration as SOLLOL writes it: no GPU lists, `device_config: "cpu"`,
    /// `memory_config: "<ram>"`, one worker.
    pub fn cpu_only(cpu_ram_mb: u64) -> Self {
        Self {
            has_gpu: false,
            cpu_ram_mb,
            device_config: SmolStr::new_static("cpu"),
            memory_config: smol_str::format_smolstr!("{cpu_ram_mb}"),
            total_parallel_workers: 1,
            ..Self::default()
        }
    }
}

impl RouterMetadata {
    /// Metadata listing `rpc_backends`, no extra keys.
    pub fn new(rpc_backends: Vec<RpcBackend>) -> Self {
        Self {
            rpc_backends,
            extra: BTreeMap::new(),
        }
    }

    /// The JSON written to `sollol:router:metadata`.
    pub fn to_json(&self) -> String {
        pyjson::to_python_json(self).unwrap_or_default()
    }

    /// The metadata a coordinator writes to keep `rpc_backends` current from the live
    /// `registered` backends, given what the key holds now (`current`).
    ///
    /// The backends we listed before are remembered in the extra key
    /// [`MANAGED_BACKENDS_FIELD`] (SOLLOL ignores it): those no longer registered go.
    /// Entries someone else wrote (SOLLOL's tools, an operator) stay, as do other keys.
    /// Existing entries keep their order; newly registered ones follow, sorted.
    pub fn with_registered(
        current: Option<&RouterMetadata>,
        registered: &[RpcBackend],
    ) -> RouterMetadata {
        let empty = RouterMetadata::default();
        let current = current.unwrap_or(&empty);
        let managed: Vec<RpcBackend> = current
            .extra
            .get(MANAGED_BACKENDS_FIELD)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let mut backends: Vec<RpcBackend> = current
            .rpc_backends
            .iter()
            .filter(|b| !managed.contains(b) || registered.contains(b))
            .cloned()
            .collect();
        let mut added: Vec<RpcBackend> = registered
            .iter()
            .filter(|b| !backends.contains(b))
            .cloned()
            .collect();
        added.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
        added.dedup();
        backends.extend(added);
        let mut mine: Vec<RpcBackend> = registered.to_vec();
        mine.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
        mine.dedup();
        let mut extra = current.extra.clone();
        extra.insert(
            MANAGED_BACKENDS_FIELD.to_owned(),
            serde_json::to_value(&mine).unwrap_or_default(),
        );
        RouterMetadata {
            rpc_backends: backends,
            extra,
        }
    }
}

/// Extra key of `sollol:router:metadata` listing the backends a vramroute coordinator
/// put in `rpc_backends` from live registrations (see [`RouterMetadata::with_registered`]).
pub const MANAGED_BACKENDS_FIELD: &str = "vramroute_registered";

// ---------------------------------------------------------------------------------------
// Decoding: hand-written map visitors so unknown keys can be kept without the cost of
// `#[serde(flatten)]` (which buffers the whole object first).

/// A map key, borrowed from the input when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

fn value_for<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    key: &'static str,
) -> Result<T, A::Error> {
    map.next_value::<T>()
        .map_err(|e| de::Error::custom(format!("field `{key}`: {e}")))
}

impl<'de> Deserialize<'de> for GpuStatsRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StatsVisitor;
        impl<'de> Visitor<'de> for StatsVisitor {
            type Value = GpuStatsRecord;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a GPU stats object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GpuStatsRecord, A::Error> {
                let mut r = GpuStatsRecord::default();
                let (mut vendor, mut gpus, mut timestamp) = (false, false, false);
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    macro_rules! opt {
                        ($field:ident) => {
                            r.$field = value_for(&mut map, stringify!($field))?
                        };
                    }
                    match key.as_str() {
                        "vendor" => {
                            r.vendor = value_for(&mut map, "vendor")?;
                            vendor = true;
                        }
                        "gpus" => {
                            r.gpus = value_for(&mut map, "gpus")?;
                            gpus = true;
                        }
                        "timestamp" => {
                            r.timestamp = value_for(&mut map, "timestamp")?;
                            timestamp = true;
                        }
                        "node_id" => r.node_id = value_for(&mut map, "node_id")?,
                        "schema_version" => opt!(schema_version),
                        "reporter_version" => opt!(reporter_version),
                        "hostname" => opt!(hostname),
                        "gpu_offload" => opt!(gpu_offload),
                        "gpu_offload_reason" => opt!(gpu_offload_reason),
                        "note" => opt!(note),
                        "loaded_models" => opt!(loaded_models),
                        "cpu_ram_total_mb" => opt!(cpu_ram_total_mb),
                        "cpu_ram_free_mb" => opt!(cpu_ram_free_mb),
                        "cpu_count" => opt!(cpu_count),
                        "cpu_load_percent" => opt!(cpu_load_percent),
                        "ollama_url" => opt!(ollama_url),
                        "rpc_host" => opt!(rpc_host),
                        "rpc_port" => opt!(rpc_port),
                        other => {
                            let other = other.to_owned();
                            let v = map.next_value::<serde_json::Value>()?;
                            r.extra.insert(other, v);
                        }
                    }
                }
                for (present, name) in
                    [(vendor, "vendor"), (gpus, "gpus"), (timestamp, "timestamp")]
                {
                    if !present {
                        return Err(de::Error::missing_field(name));
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_map(StatsVisitor)
    }
}

impl<'de> Deserialize<'de> for RpcNodeRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RpcVisitor;
        impl<'de> Visitor<'de> for RpcVisitor {
            type Value = RpcNodeRecord;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RPC node registration object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RpcNodeRecord, A::Error> {
                let mut r = RpcNodeRecord::default();
                let mut seen = [false; 8];
                const REQUIRED: [&str; 8] = [
                    "has_gpu",
                    "gpu_devices",
                    "gpu_vram_mb",
                    "gpu_names",
                    "cpu_ram_mb",
                    "device_config",
                    "memory_config",
                    "total_parallel_workers",
                ];
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    macro_rules! req {
                        ($i:expr, $field:ident) => {{
                            r.$field = value_for(&mut map, stringify!($field))?;
                            seen[$i] = true;
                        }};
                    }
                    macro_rules! opt {
                        ($field:ident) => {
                            r.$field = value_for(&mut map, stringify!($field))?
                        };
                    }
                    match key.as_str() {
                        "has_gpu" => req!(0, has_gpu),
                        "gpu_devices" => req!(1, gpu_devices),
                        "gpu_vram_mb" => req!(2, gpu_vram_mb),
                        "gpu_names" => req!(3, gpu_names),
                        "cpu_ram_mb" => req!(4, cpu_ram_mb),
                        "device_config" => req!(5, device_config),
                        "memory_config" => req!(6, memory_config),
                        "total_parallel_workers" => req!(7, total_parallel_workers),
                        "schema_version" => opt!(schema_version),
                        "reporter_version" => opt!(reporter_version),
                        "hostname" => opt!(hostname),
                        "ggml_devices" => opt!(ggml_devices),
                        "gpu_uuids" => opt!(gpu_uuids),
                        "gpu_pci_bus_ids" => opt!(gpu_pci_bus_ids),
                        "gpu_vram_total_mb" => opt!(gpu_vram_total_mb),
                        "cpu_ram_total_mb" => opt!(cpu_ram_total_mb),
                        "cpu_count" => opt!(cpu_count),
                        "reserve_fraction" => opt!(reserve_fraction),
                        other => {
                            let other = other.to_owned();
                            let v = map.next_value::<serde_json::Value>()?;
                            r.extra.insert(other, v);
                        }
                    }
                }
                for (present, name) in seen.iter().zip(REQUIRED) {
                    if !present {
                        return Err(de::Error::missing_field(name));
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_map(RpcVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{decode_rpc, decode_stats, Limits};

    /// A decoded record keeps its short strings inline (no heap block each: the point
    /// of `SmolStr`, docs/scale.md "Record representation") and a long one on the heap,
    /// and writes back the bytes it was read from.
    #[test]
    fn decoded_strings_are_inline_up_to_23_bytes_and_round_trip() {
        let mut r = GpuStatsRecord::new("10.0.0.5:11434", "nvidia", 1_700_000_000.5);
        let mut g = GpuStat::new(0, "NVIDIA GeForce RTX 3090"); // 23 bytes
        g.uuid = Some("GPU-00000001-0000-4a5b-8c9d-0123456789ab".into()); // 40 bytes
        g.driver = Some("nvidia".into());
        r.gpus.push(g);
        r.hostname = Some("gpu-node-1".into());
        r.loaded_models = Some(vec![LoadedModel::new("llama3.1:8b", Some(4_700), None)]);
        let json = r.to_json();
        let back =
            decode_stats("10.0.0.5:11434", json.as_bytes(), &Limits::default()).expect("decodes");
        assert_eq!(back, r);
        assert_eq!(back.to_json(), json);
        let gpu = &back.gpus[0];
        for s in [&back.node_id, &back.vendor, &gpu.name] {
            assert!(!s.is_heap_allocated(), "{s} should be inline");
        }
        assert!(!gpu.driver.as_ref().is_some_and(SmolStr::is_heap_allocated));
        assert!(gpu.uuid.as_ref().is_some_and(SmolStr::is_heap_allocated));

        let mut rpc = RpcNodeRecord::cpu_only(51_200);
        rpc.gpu_devices = vec!["cuda:0".into()];
        rpc.gpu_names = vec!["NVIDIA GeForce RTX 3090".into()];
        rpc.has_gpu = true;
        rpc.gpu_vram_mb = vec![19_660];
        rpc.device_config = "cpu,cuda:0".into();
        rpc.memory_config = "51200,19660".into();
        rpc.total_parallel_workers = 2;
        let json = rpc.to_json();
        let back = decode_rpc(json.as_bytes(), &Limits::default()).expect("decodes");
        assert_eq!(back.to_json(), json);
        assert!(back
            .gpu_names
            .iter()
            .chain(&back.gpu_devices)
            .all(|s| !s.is_heap_allocated()));
        assert_eq!(RpcNodeRecord::cpu_only(51_200).memory_config, "51200");
    }
}
