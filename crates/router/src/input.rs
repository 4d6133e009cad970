//! What the coordinator tells the router about each node (the snapshot's input).
//!
//! All memory figures are MiB (1,048,576 bytes), as in SOLLOL's `*_mb` fields. A value
//! that is not known is `None`, never `0`.

use serde::{Deserialize, Serialize};
/// The strings of a node spec (`smol_str`'s: inline up to 23 bytes, `clone` O(1); the
/// registry's record strings are the same type, so a spec shares them).
pub use smol_str::SmolStr;

use crate::error::{Error, Result};
use crate::request::TaskKind;

/// Largest plausible memory of one GPU, in MiB (64 TiB). Anything above is a broken report.
pub const MAX_GPU_MEMORY_MIB: u64 = 1 << 26;
/// Largest plausible RAM of one node, in MiB (1 PiB). Anything above is a broken report.
pub const MAX_RAM_MIB: u64 = 1 << 30;
/// Largest plausible recent latency, in milliseconds (one day).
pub const MAX_LATENCY_MS: f64 = 86_400_000.0;

/// A llama.cpp `rpc-server` endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RpcEndpoint {
    /// Host name or IP address.
    pub host: SmolStr,
    /// TCP port (llama.cpp's default is 50052).
    pub port: u16,
}

impl RpcEndpoint {
    /// The rpc-server at `host:port`.
    pub fn new(host: impl Into<SmolStr>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

/// One GPU of a node, as last reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GpuSpec {
    /// Device index on its node (SOLLOL's `index`).
    pub index: u32,
    /// Marketing name, for explanations only.
    #[serde(default)]
    pub name: SmolStr,
    /// Total VRAM in MiB.
    pub memory_total_mib: u64,
    /// Free VRAM in MiB right now; `None` when the probe could not read it.
    #[serde(default)]
    pub memory_free_mib: Option<u64>,
    /// Used VRAM in MiB; `None` when unknown.
    #[serde(default)]
    pub memory_used_mib: Option<u64>,
    /// Utilisation in percent (informational; not scored).
    #[serde(default)]
    pub utilization_percent: Option<u32>,
    /// Temperature in °C (informational; not scored).
    #[serde(default)]
    pub temperature_celsius: Option<f64>,
}

impl GpuSpec {
    /// A GPU with `total_mib` of VRAM of which `free_mib` is free (`None` = unknown).
    ///
    /// ```
    /// let gpu = vramroute_router::GpuSpec::new(0, 8192, Some(6000));
    /// assert_eq!(gpu.memory_used_mib, None);
    /// ```
    pub fn new(index: u32, total_mib: u64, free_mib: Option<u64>) -> Self {
        Self {
            index,
            name: SmolStr::default(),
            memory_total_mib: total_mib,
            memory_free_mib: free_mib,
            memory_used_mib: None,
            utilization_percent: None,
            temperature_celsius: None,
        }
    }
}

/// A model resident on a node (from Ollama's `/api/ps`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResidentModel {
    /// Model name as Ollama reports it (`llama3.1:8b`; a missing tag means `:latest`).
    pub name: SmolStr,
    /// Whole model size in MiB; `None` when unknown.
    #[serde(default)]
    pub size_mib: Option<u64>,
    /// Part of it held in VRAM, in MiB (`Some(0)` = running on CPU); `None` when unknown:
    /// the model is then taken to be where Ollama puts a model by default, on the GPU
    /// when the node has one.
    #[serde(default)]
    pub vram_mib: Option<u64>,
    /// The GPU index holding it, when known.
    #[serde(default)]
    pub gpu: Option<u32>,
}

impl ResidentModel {
    /// A model of `size_mib` with `vram_mib` of it in VRAM, GPU unknown.
    pub fn new(name: impl Into<SmolStr>, size_mib: u64, vram_mib: u64) -> Self {
        Self::with_sizes(name, Some(size_mib), Some(vram_mib))
    }

    /// A model whose sizes may be unknown (`None`), GPU unknown.
    pub fn with_sizes(
        name: impl Into<SmolStr>,
        size_mib: Option<u64>,
        vram_mib: Option<u64>,
    ) -> Self {
        Self {
            name: name.into(),
            size_mib,
            vram_mib,
            gpu: None,
        }
    }

    /// The same model, held by GPU `index`.
    ///
    /// ```
    /// let m = vramroute_router::ResidentModel::new("llama3.1:8b", 4700, 4700).with_gpu(1);
    /// assert_eq!(m.gpu, Some(1));
    /// ```
    #[must_use]
    pub fn with_gpu(mut self, index: u32) -> Self {
        self.gpu = Some(index);
        self
    }
}

fn default_true() -> bool {
    true
}

/// Everything the router knows about one node. The coordinator builds these from the
/// registry's records; the router never looks anything up itself.
///
/// ```
/// use vramroute_router::{GpuSpec, NodeSpec};
/// let mut node = NodeSpec::new("10.0.0.5:11434");
/// node.gpus.push(GpuSpec::new(0, 24576, Some(18000)));
/// node.validate()?;
/// # Ok::<(), vramroute_router::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeSpec {
    /// Unique id, SOLLOL's node id (`"{ip}:{ollama_port}"`). Ties break by this id.
    pub id: SmolStr,
    /// Ollama base URL, when the node runs Ollama.
    #[serde(default)]
    pub ollama_url: Option<SmolStr>,
    /// llama.cpp rpc-server endpoint, when the node runs one.
    #[serde(default)]
    pub rpc: Option<RpcEndpoint>,
    /// Every GPU of the node (any order; the snapshot sorts them by index).
    #[serde(default)]
    pub gpus: Vec<GpuSpec>,
    /// Total RAM in MiB.
    #[serde(default)]
    pub ram_total_mib: Option<u64>,
    /// Free (available) RAM in MiB.
    #[serde(default)]
    pub ram_free_mib: Option<u64>,
    /// Logical CPU count.
    #[serde(default)]
    pub cpu_count: Option<u32>,
    /// CPU load in percent, 0–100.
    #[serde(default)]
    pub cpu_load_percent: Option<f64>,
    /// Models currently resident.
    #[serde(default)]
    pub loaded_models: Vec<ResidentModel>,
    /// Requests in flight on the node.
    #[serde(default)]
    pub active_requests: u32,
    /// Recent average request latency in milliseconds.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Recent success rate, 0.0–1.0.
    #[serde(default)]
    pub success_rate: Option<f64>,
    /// Whether the last health check passed (default `true`).
    #[serde(default = "default_true")]
    pub healthy: bool,
    /// Age of the last report in milliseconds (freshness); compared with
    /// [`SnapshotConfig::stale_after_ms`](crate::SnapshotConfig::stale_after_ms).
    #[serde(default)]
    pub report_age_ms: u64,
    /// Free-form labels for affinity (`"fast"`, `"rack-3"`).
    #[serde(default)]
    pub labels: Vec<String>,
    /// SOLLOL host priority: `0` is the most preferred; `None` means SOLLOL's default (999).
    #[serde(default)]
    pub priority: Option<u32>,
    /// Task kinds the node is tuned for (SOLLOL's `preferred_task_types`).
    #[serde(default)]
    pub preferred_tasks: Vec<TaskKind>,
}

impl NodeSpec {
    /// A healthy, fresh node with no GPU and nothing else known.
    pub fn new(id: impl Into<SmolStr>) -> Self {
        Self {
            id: id.into(),
            ollama_url: None,
            rpc: None,
            gpus: Vec::new(),
            ram_total_mib: None,
            ram_free_mib: None,
            cpu_count: None,
            cpu_load_percent: None,
            loaded_models: Vec::new(),
            active_requests: 0,
            latency_ms: None,
            success_rate: None,
            healthy: true,
            report_age_ms: 0,
            labels: Vec::new(),
            priority: None,
            preferred_tasks: Vec::new(),
        }
    }

    /// Checks that every value is plausible: no NaN, no negative or absurd numbers, free
    /// memory not above total, unique GPU indices, loaded models on existing GPUs.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: String, value: String, expected: &'static str| Error::InvalidNode {
            node: self.id.to_string(),
            field,
            value,
            expected,
        };
        if self.id.is_empty() {
            return Err(bad("id".into(), "\"\"".into(), "a non-empty node id"));
        }
        for (i, gpu) in self.gpus.iter().enumerate() {
            let field = |name: &str| format!("gpus[{i}].{name}");
            if gpu.memory_total_mib > MAX_GPU_MEMORY_MIB {
                return Err(bad(
                    field("memory_total_mib"),
                    gpu.memory_total_mib.to_string(),
                    "at most 64 TiB (67108864 MiB)",
                ));
            }
            if let Some(free) = gpu.memory_free_mib {
                if free > gpu.memory_total_mib {
                    return Err(bad(
                        field("memory_free_mib"),
                        free.to_string(),
                        "at most memory_total_mib",
                    ));
                }
            }
            if let Some(used) = gpu.memory_used_mib {
                if used > gpu.memory_total_mib {
                    return Err(bad(
                        field("memory_used_mib"),
                        used.to_string(),
                        "at most memory_total_mib",
                    ));
                }
            }
            if let Some(util) = gpu.utilization_percent {
                if util > 100 {
                    return Err(bad(
                        field("utilization_percent"),
                        util.to_string(),
                        "0 to 100",
                    ));
                }
            }
            if let Some(t) = gpu.temperature_celsius {
                if !t.is_finite() || !(-100.0..=250.0).contains(&t) {
                    return Err(bad(
                        field("temperature_celsius"),
                        t.to_string(),
                        "a finite temperature between -100 and 250",
                    ));
                }
            }
            if self.gpus[..i].iter().any(|g| g.index == gpu.index) {
                return Err(bad(
                    field("index"),
                    gpu.index.to_string(),
                    "GPU indices unique within a node",
                ));
            }
        }
        for (name, value) in [
            ("ram_total_mib", self.ram_total_mib),
            ("ram_free_mib", self.ram_free_mib),
        ] {
            if let Some(v) = value {
                if v > MAX_RAM_MIB {
                    return Err(bad(
                        name.into(),
                        v.to_string(),
                        "at most 1 PiB (1073741824 MiB)",
                    ));
                }
            }
        }
        if let (Some(total), Some(free)) = (self.ram_total_mib, self.ram_free_mib) {
            if free > total {
                return Err(bad(
                    "ram_free_mib".into(),
                    free.to_string(),
                    "at most ram_total_mib",
                ));
            }
        }
        if let Some(load) = self.cpu_load_percent {
            if !load.is_finite() || !(0.0..=100.0).contains(&load) {
                return Err(bad(
                    "cpu_load_percent".into(),
                    load.to_string(),
                    "a percentage from 0 to 100",
                ));
            }
        }
        if let Some(lat) = self.latency_ms {
            if !lat.is_finite() || !(0.0..=MAX_LATENCY_MS).contains(&lat) {
                return Err(bad(
                    "latency_ms".into(),
                    lat.to_string(),
                    "a finite latency from 0 to 86400000 ms",
                ));
            }
        }
        if let Some(rate) = self.success_rate {
            if !rate.is_finite() || !(0.0..=1.0).contains(&rate) {
                return Err(bad(
                    "success_rate".into(),
                    rate.to_string(),
                    "a fraction from 0.0 to 1.0",
                ));
            }
        }
        for (i, model) in self.loaded_models.iter().enumerate() {
            if model.name.is_empty() {
                return Err(bad(
                    format!("loaded_models[{i}].name"),
                    "\"\"".into(),
                    "a model name",
                ));
            }
            if model.vram_mib.is_some_and(|v| v > MAX_GPU_MEMORY_MIB * 64) {
                return Err(bad(
                    format!("loaded_models[{i}].vram_mib"),
                    format!("{:?}", model.vram_mib),
                    "a plausible VRAM size",
                ));
            }
            if let Some(gpu) = model.gpu {
                if !self.gpus.iter().any(|g| g.index == gpu) {
                    return Err(bad(
                        format!("loaded_models[{i}].gpu"),
                        gpu.to_string(),
                        "the index of one of the node's GPUs",
                    ));
                }
            }
        }
        if let Some(i) = self.labels.iter().position(String::is_empty) {
            return Err(bad(
                format!("labels[{i}]"),
                "\"\"".into(),
                "a non-empty label",
            ));
        }
        Ok(())
    }
}
