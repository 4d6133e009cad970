//! One probe of a node, turned into everything it publishes and prints.

use std::fmt::Write as _;

use serde_json::{json, Value};
use vramroute_alloc::{
    GgmlBackend, NodeOffer, ReserveConfig, RpcServerCommand, WorkerKind, LEGACY_RPC_SERVER_BINARY,
    RPC_SERVER_BINARY,
};
use vramroute_ollama::{OffloadVerdict, PsResponse};
use vramroute_probe::{GpuDevice, MemoryKind, NodeHardware};
use vramroute_registry::{
    keys, GpuOffload, GpuStat, GpuStatsRecord, LoadedModel, RpcNodeRecord, SmolStr, SCHEMA_VERSION,
};

use crate::Result;

const BYTES_PER_MIB: u64 = 1_048_576;

/// How this node names itself in the registry.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NodeIdentity {
    /// Stats key suffix: `sollol:gpu:{node_id}`, normally `{advertise_ip}:11434`.
    pub node_id: String,
    /// Address other nodes reach this one at (the rpc registration's host).
    pub advertise_ip: String,
    /// llama.cpp rpc-server port (`sollol:rpc:node:{ip}:{rpc_port}`).
    pub rpc_port: u16,
    /// The node's Ollama, when it has one.
    pub ollama_url: Option<String>,
    /// Host name, for operators.
    pub hostname: Option<String>,
}

impl NodeIdentity {
    /// Node `node_id` (SOLLOL's `"{ip}:{ollama_port}"`) advertising its rpc-server at
    /// `advertise_ip:rpc_port`; no Ollama URL, no host name.
    pub fn new(node_id: impl Into<String>, advertise_ip: impl Into<String>, rpc_port: u16) -> Self {
        Self {
            node_id: node_id.into(),
            advertise_ip: advertise_ip.into(),
            rpc_port,
            ollama_url: None,
            hostname: None,
        }
    }
}

/// What the node's Ollama said in `GET /api/ps`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OllamaState {
    /// The offload verdict.
    pub offload: OffloadVerdict,
    /// Models loaded now (empty when unknown).
    pub models: Vec<vramroute_ollama::PsModel>,
    /// Why Ollama could not be read, when it could not.
    pub error: Option<String>,
}

impl OllamaState {
    /// From the outcome of `GET /api/ps`.
    pub fn from_ps(ps: &vramroute_ollama::Result<PsResponse>) -> Self {
        OllamaState {
            offload: OffloadVerdict::from_ps(ps),
            models: ps.as_ref().map(|p| p.models.clone()).unwrap_or_default(),
            error: ps.as_ref().err().map(ToString::to_string),
        }
    }

    /// Ollama was not asked (`--no-ollama`).
    pub fn not_asked() -> Self {
        OllamaState {
            offload: OffloadVerdict::Unknown,
            models: Vec::new(),
            error: None,
        }
    }

    /// The record's `gpu_offload` and its human reason.
    fn verdict(&self) -> (GpuOffload, String) {
        let n = self.models.len();
        match self.offload {
            OffloadVerdict::On => (
                GpuOffload::On,
                format!("Ollama has {n} model(s) loaded, some in VRAM"),
            ),
            OffloadVerdict::Off => (
                GpuOffload::Off,
                format!(
                    "Ollama has {n} model(s) loaded, all with size_vram == 0: GPU offload is off"
                ),
            ),
            OffloadVerdict::Idle => (
                GpuOffload::Unknown,
                "Ollama answered with no model loaded; GPUs reported as probed".to_string(),
            ),
            OffloadVerdict::Unknown => match &self.error {
                Some(e) => (
                    GpuOffload::Unknown,
                    format!("Ollama not readable ({e}); GPUs reported as probed"),
                ),
                None => (
                    GpuOffload::Unknown,
                    "Ollama not asked; GPUs reported as probed".to_string(),
                ),
            },
        }
    }
}

/// One probe of the node with its offer and Ollama state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeReport {
    /// What the probe saw.
    pub hardware: NodeHardware,
    /// One CPU worker plus one per GPU, with reserves applied.
    pub offer: NodeOffer,
    /// ggml backend assumed for device names and commands.
    pub backend: GgmlBackend,
    /// What Ollama said.
    pub ollama: OllamaState,
    /// When the probe ran, Unix seconds.
    pub timestamp: f64,
}

impl NodeReport {
    /// Build the report. `backend` defaults to the first GPU vendor's usual one.
    pub fn new(
        hardware: NodeHardware,
        reserve: &ReserveConfig,
        backend: Option<GgmlBackend>,
        ollama: OllamaState,
        timestamp: f64,
    ) -> Result<Self> {
        let offer = NodeOffer::from_hardware(&hardware.gpus, &hardware.host, reserve)?;
        let backend = backend.unwrap_or_else(|| offer.default_backend());
        Ok(NodeReport {
            hardware,
            offer,
            backend,
            ollama,
            timestamp,
        })
    }

    /// ggml device name of a GPU under this report's backend, when that backend drives it.
    fn ggml_device(&self, gpu: &GpuDevice) -> Option<String> {
        self.offer
            .ggml_devices(self.backend)
            .into_iter()
            .find(|(_, w)| {
                w.kind == WorkerKind::Gpu
                    && w.gpu.as_ref().map(|g| (&g.pci_bus_id, g.vendor, g.index))
                        == Some((&gpu.pci_bus_id, gpu.vendor, gpu.index))
            })
            .map(|(name, _)| name)
    }

    /// The record entry of the GPU at `position` on this node. The record's `index` is
    /// that position, unique on the node: the probe numbers each vendor's GPUs from 0
    /// (their CUDA / ROCm / SYCL ordinals, kept in `ggml_device`), so on a node with
    /// GPUs of two vendors those numbers repeat and cannot identify a GPU.
    fn gpu_stat(&self, position: usize, gpu: &GpuDevice) -> GpuStat {
        let index = u32::try_from(position).unwrap_or(u32::MAX);
        let mut stat = GpuStat::new(index, gpu.name.clone());
        stat.memory_total_mb = gpu.memory_total_mib;
        stat.memory_free_mb = gpu.memory_free_mib;
        stat.memory_used_mb = gpu.memory_used_mib;
        stat.utilization_percent = gpu.utilization_percent;
        stat.temperature_c = gpu.temperature_celsius.map(|t| t.round() as i32);
        stat.uuid = gpu.uuid.as_deref().map(SmolStr::from);
        stat.pci_bus_id = gpu.pci_bus_id.as_deref().map(SmolStr::from);
        stat.power_w = gpu.power_watts;
        stat.memory_kind = Some(
            match gpu.memory_kind {
                MemoryKind::Dedicated => "dedicated",
                MemoryKind::Unified => "unified",
            }
            .into(),
        );
        stat.driver = Some(gpu.driver.as_str().into());
        stat.ggml_device = self.ggml_device(gpu).map(SmolStr::from);
        stat
    }

    /// The live stats record (`sollol:gpu:{node_id}`), its `gpus` in
    /// [`sollol_gpu_order`] (each entry keeps its own `index`).
    ///
    /// When Ollama positively runs every loaded model on the CPU, the SOLLOL fields say
    /// CPU-only (`vendor: "none"`, `gpus: []`) as SOLLOL's reporter would, and the
    /// probed GPUs move to the extra key `detected_gpus` so nothing is hidden.
    pub fn stats_record(&self, id: &NodeIdentity) -> GpuStatsRecord {
        let (offload, reason) = self.ollama.verdict();
        // Listed in SOLLOL's order; each entry's index is its position in probe order.
        let ordered = sollol_gpu_order(&self.hardware.gpus);
        let stats: Vec<GpuStat> = ordered
            .iter()
            .map(|&(position, g)| self.gpu_stat(position, g))
            .collect();
        let host = &self.hardware.host;
        let vendor = ordered
            .first()
            .map_or(SmolStr::new_static("none"), |(_, g)| {
                g.vendor.to_string().into()
            });
        let mut record = GpuStatsRecord::new(id.node_id.as_str(), vendor, self.timestamp);
        record.schema_version = Some(SCHEMA_VERSION);
        record.reporter_version = Some(SmolStr::new_static(env!("CARGO_PKG_VERSION")));
        record.hostname = id.hostname.as_deref().map(SmolStr::from);
        record.gpu_offload = Some(offload);
        record.gpu_offload_reason = Some(reason.into());
        record.loaded_models = Some(
            self.ollama
                .models
                .iter()
                .map(|m| {
                    LoadedModel::new(
                        m.name.as_str(),
                        Some(m.size / BYTES_PER_MIB),
                        Some(m.size_vram / BYTES_PER_MIB),
                    )
                })
                .collect(),
        );
        record.cpu_ram_total_mb = Some(host.total_ram_mib);
        record.cpu_ram_free_mb = Some(host.available_ram_mib);
        record.cpu_count = Some(host.cpu_count);
        record.cpu_load_percent = host.cpu_load_percent;
        record.ollama_url = id.ollama_url.as_deref().map(SmolStr::from);
        record.rpc_host = Some(id.advertise_ip.as_str().into());
        record.rpc_port = Some(id.rpc_port);
        if offload == GpuOffload::Off && !stats.is_empty() {
            record.vendor = SmolStr::new_static("none");
            record.note = Some(SmolStr::new_static(
                "GPUs present but Ollama runs every loaded model on the CPU; see detected_gpus",
            ));
            record
                .extra
                .insert("detected_gpus".to_string(), json!(stats));
        } else {
            record.gpus = stats;
        }
        record
    }

    /// The capability registration (`sollol:rpc:node:{ip}:{rpc_port}`): SOLLOL's fields
    /// exactly as `register_gpu_node.py` computes them, plus our hardware details.
    pub fn rpc_record(&self) -> RpcNodeRecord {
        let cap = self.offer.sollol_capability();
        // Extras run parallel to `gpu_devices`: the GPUs that made it into the record.
        let listed: Vec<&GpuDevice> = self
            .offer
            .gpus()
            .filter(|w| w.budget_mib.is_some() && w.sollol_device().is_some())
            .filter_map(|w| w.gpu.as_ref())
            .collect();
        let all = |f: &dyn Fn(&GpuDevice) -> Option<String>| -> Option<Vec<SmolStr>> {
            let v: Option<Vec<SmolStr>> = listed.iter().map(|g| f(g).map(SmolStr::from)).collect();
            v.filter(|v| !v.is_empty())
        };
        let host = &self.hardware.host;
        let mut record = RpcNodeRecord::default();
        record.has_gpu = cap.has_gpu;
        record.gpu_devices = cap.gpu_devices.into_iter().map(SmolStr::from).collect();
        record.gpu_vram_mb = cap.gpu_vram_mb;
        record.gpu_names = cap.gpu_names.into_iter().map(SmolStr::from).collect();
        record.cpu_ram_mb = cap.cpu_ram_mb;
        record.device_config = cap.device_config.into();
        record.memory_config = cap.memory_config.into();
        record.total_parallel_workers = cap.total_parallel_workers;
        record.schema_version = Some(SCHEMA_VERSION);
        record.reporter_version = Some(SmolStr::new_static(env!("CARGO_PKG_VERSION")));
        record.ggml_devices = all(&|g| self.ggml_device(g));
        record.gpu_uuids = all(&|g| g.uuid.clone());
        record.gpu_pci_bus_ids = all(&|g| g.pci_bus_id.clone());
        record.gpu_vram_total_mb = listed
            .iter()
            .map(|g| g.memory_total_mib)
            .collect::<Option<Vec<u64>>>()
            .filter(|v| !v.is_empty());
        record.cpu_ram_total_mb = Some(host.total_ram_mib);
        record.cpu_count = Some(host.cpu_count);
        record.reserve_fraction = Some(self.offer.reserve.gpu_fraction);
        record
    }

    /// The RPC server for today's llama.cpp (binary `ggml-rpc-server`, no `--mem`, real
    /// ggml device names).
    pub fn rpc_server_command(&self, host: &str, port: u16) -> RpcServerCommand {
        self.offer
            .rpc_server_command(host, port, self.backend, RPC_SERVER_BINARY)
    }

    /// `rpc-server` for llama.cpp builds from before October 2025: one per device.
    pub fn legacy_rpc_server_commands(
        &self,
        host: &str,
        base_port: u16,
    ) -> Result<Vec<RpcServerCommand>> {
        Ok(self.offer.legacy_rpc_server_commands(
            host,
            base_port,
            self.backend,
            LEGACY_RPC_SERVER_BINARY,
        )?)
    }

    /// What `vramroute-reporter probe --json` prints.
    pub fn to_json(&self, id: &NodeIdentity, rpc_host: &str) -> Value {
        let gpus: Vec<Value> = self
            .hardware
            .gpus
            .iter()
            .map(|g| {
                json!({
                    "vendor": g.vendor,
                    "index": g.index,
                    "name": g.name,
                    "uuid": g.uuid,
                    "pci_bus_id": g.pci_bus_id,
                    "driver": g.driver,
                    "memory_kind": g.memory_kind,
                    "memory_total_mb": g.memory_total_mib,
                    "memory_used_mb": g.memory_used_mib,
                    "memory_free_mb": g.memory_free_mib,
                    "utilization_percent": g.utilization_percent,
                    "temperature_c": g.temperature_celsius,
                    "power_w": g.power_watts,
                    "ggml_device": self.ggml_device(g),
                })
            })
            .collect();
        let host = &self.hardware.host;
        let legacy: Vec<String> = self
            .legacy_rpc_server_commands(rpc_host, id.rpc_port)
            .map(|v| v.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let rpc_record: Value =
            serde_json::from_str(&self.rpc_record().to_json()).unwrap_or(Value::Null);
        json!({
            "node_id": id.node_id,
            "gpus": gpus,
            "cpu_ram_mb": host.total_ram_mib,
            "cpu_ram_available_mb": host.available_ram_mib,
            "cpu_count": host.cpu_count,
            "cgroup_limit_mb": host.cgroup_limit_mib,
            "offer": self.offer,
            "ggml_backend": self.backend,
            "registration_key": keys::rpc_node_key(&id.advertise_ip, id.rpc_port),
            "registration": rpc_record,
            "rpc_server_command": self.rpc_server_command(rpc_host, id.rpc_port).to_string(),
            "rpc_server_legacy_commands": legacy,
        })
    }

    /// The human report (like SOLLOL's `register_gpu_node.py`, without emoji).
    pub fn render_text(&self, id: &NodeIdentity, rpc_host: &str) -> String {
        let mut out = String::new();
        let host = &self.hardware.host;
        let gpus = &self.hardware.gpus;
        let _ = writeln!(out, "Node {}", id.node_id);
        if gpus.is_empty() {
            let _ = writeln!(out, "GPUs: none detected (CPU-only node)");
        } else {
            let _ = writeln!(out, "GPUs: {} detected", gpus.len());
            for g in gpus {
                let _ = writeln!(out, "  {}", gpu_log_line(g));
                let _ = writeln!(
                    out,
                    "      {} | driver {} | {} memory | ggml {}",
                    g.pci_bus_id.as_deref().unwrap_or("PCI bus id unknown"),
                    g.driver,
                    match g.memory_kind {
                        MemoryKind::Dedicated => "dedicated",
                        MemoryKind::Unified => "unified",
                    },
                    self.ggml_device(g)
                        .unwrap_or_else(|| format!("(not driven by {})", self.backend)),
                );
            }
        }
        let limit = host
            .cgroup_limit_mib
            .map(|l| format!(" (cgroup limit {l} MB)"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "RAM: {} MB total, {} MB available{limit} | CPUs: {}",
            host.total_ram_mib, host.available_ram_mib, host.cpu_count
        );
        let _ = writeln!(out, "\nOffer (hybrid workers):");
        for line in self.offer.to_string().lines() {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(
            out,
            "\nSOLLOL registration ({}, expires after 1 h unless refreshed):",
            keys::rpc_node_key(&id.advertise_ip, id.rpc_port)
        );
        let _ = writeln!(out, "  {}", self.rpc_record().to_json());
        let _ = writeln!(
            out,
            "\nRPC server command (llama.cpp since 2025-10, binary ggml-rpc-server, ggml backend {}):",
            self.backend
        );
        let _ = writeln!(out, "  {}", self.rpc_server_command(rpc_host, id.rpc_port));
        match self.legacy_rpc_server_commands(rpc_host, id.rpc_port) {
            Ok(cmds) => {
                let _ = writeln!(
                    out,
                    "rpc-server commands (older llama.cpp builds, binary rpc-server, one per device):"
                );
                for c in cmds {
                    let _ = writeln!(out, "  {c}");
                }
            }
            Err(e) => {
                let _ = writeln!(out, "legacy rpc-server commands unavailable: {e}");
            }
        }
        out
    }
}

/// The order of the stats record's `gpus` list, for SOLLOL's readers, which look at
/// `gpus[0]` only: the GPU a request should go to comes first. Dedicated-memory GPUs
/// before unified ones (an integrated GPU's VRAM is host RAM, and its total is often
/// unknown), then the largest total VRAM first (unknown last), then the probe's PCI order.
/// Total VRAM, not free, so the order does not flip between reports as models load.
/// Each GPU comes with its position in probe order, which is its record `index` (unique
/// on the node; our readers key GPUs by `index` and never by list position).
pub fn sollol_gpu_order(gpus: &[GpuDevice]) -> Vec<(usize, &GpuDevice)> {
    let mut ordered: Vec<(usize, &GpuDevice)> = gpus.iter().enumerate().collect();
    ordered.sort_by_key(|(_, g)| {
        (
            g.memory_kind != MemoryKind::Dedicated,
            std::cmp::Reverse(g.memory_total_mib),
        )
    });
    ordered
}

/// SOLLOL's per-GPU log line, exactly as its `gpu_reporter.py` logs it (no space before
/// `MB`): `GPU 0: NAME | VRAM: used/totalMB | Util: N% | Temp: N°C`, with `?` for values
/// the probe could not read.
pub fn gpu_log_line(g: &GpuDevice) -> String {
    let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    format!(
        "GPU {}: {} | VRAM: {}/{}MB | Util: {}% | Temp: {}°C",
        g.index,
        g.name,
        opt(g.memory_used_mib),
        opt(g.memory_total_mib),
        g.utilization_percent
            .map_or("?".to_string(), |u| u.to_string()),
        g.temperature_celsius
            .map_or("?".to_string(), |t| format!("{t:.0}")),
    )
}
