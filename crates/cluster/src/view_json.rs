//! The view's JSON: [`NodeView`] and [`RpcBackendView`] hold their shared facts behind
//! an `Arc` beside what changes per view, and are written and read flat, field by
//! field in the order the flat structs they replaced had (byte for byte the same JSON:
//! `view_json_keeps_its_flat_shape`), through borrowed mirrors of those structs.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vramroute_registry::SmolStr;
use vramroute_router::RpcEndpoint;

use crate::signals::NodeLoad;
use crate::view::{
    yes, GpuView, InstalledView, LoadedView, NodeFacts, NodeView, RpcBackendFacts, RpcBackendView,
};

/// [`NodeView`]'s JSON, field by field in its historical order (borrowed).
#[derive(Serialize)]
struct NodeViewOut<'a> {
    id: &'a str,
    hostname: &'a Option<SmolStr>,
    vendor: &'a str,
    writer: &'a str,
    timestamp: f64,
    age_s: f64,
    stale: bool,
    in_registry: bool,
    ollama_url: &'a Option<SmolStr>,
    rpc: &'a Option<RpcEndpoint>,
    gpu_offload: &'a Option<SmolStr>,
    note: &'a Option<SmolStr>,
    cpu_ram_total_mb: Option<u64>,
    cpu_ram_free_mb: Option<u64>,
    cpu_ram_registered_mb: Option<u64>,
    cpu_count: Option<u32>,
    cpu_load_percent: Option<f64>,
    gpus: &'a [GpuView],
    loaded_models: &'a [LoadedView],
    installed_models: &'a [InstalledView],
    load: &'a Option<Box<NodeLoad>>,
}

/// [`NodeView`]'s JSON as read back (saved views), with its defaults.
#[derive(Deserialize)]
struct NodeViewIn {
    id: SmolStr,
    #[serde(default)]
    hostname: Option<SmolStr>,
    vendor: SmolStr,
    writer: SmolStr,
    timestamp: f64,
    age_s: f64,
    stale: bool,
    #[serde(default = "yes")]
    in_registry: bool,
    #[serde(default)]
    ollama_url: Option<SmolStr>,
    #[serde(default)]
    rpc: Option<RpcEndpoint>,
    #[serde(default)]
    gpu_offload: Option<SmolStr>,
    #[serde(default)]
    note: Option<SmolStr>,
    #[serde(default)]
    cpu_ram_total_mb: Option<u64>,
    #[serde(default)]
    cpu_ram_free_mb: Option<u64>,
    #[serde(default)]
    cpu_ram_registered_mb: Option<u64>,
    #[serde(default)]
    cpu_count: Option<u32>,
    #[serde(default)]
    cpu_load_percent: Option<f64>,
    gpus: Vec<GpuView>,
    #[serde(default)]
    loaded_models: Vec<LoadedView>,
    #[serde(default)]
    installed_models: Vec<InstalledView>,
    #[serde(default)]
    load: Option<Box<NodeLoad>>,
}

impl Serialize for NodeView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let f = &*self.facts;
        NodeViewOut {
            id: &f.id,
            hostname: &f.hostname,
            vendor: &f.vendor,
            writer: &f.writer,
            timestamp: f.timestamp,
            age_s: self.age_s,
            stale: self.stale,
            in_registry: f.in_registry,
            ollama_url: &f.ollama_url,
            rpc: &f.rpc,
            gpu_offload: &f.gpu_offload,
            note: &f.note,
            cpu_ram_total_mb: f.cpu_ram_total_mb,
            cpu_ram_free_mb: f.cpu_ram_free_mb,
            cpu_ram_registered_mb: f.cpu_ram_registered_mb,
            cpu_count: f.cpu_count,
            cpu_load_percent: f.cpu_load_percent,
            gpus: &f.gpus,
            loaded_models: &f.loaded_models,
            installed_models: &f.installed_models,
            load: &self.load,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for NodeView {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let n = NodeViewIn::deserialize(d)?;
        Ok(NodeView {
            age_s: n.age_s,
            stale: n.stale,
            load: n.load,
            facts: Arc::new(NodeFacts {
                id: n.id,
                hostname: n.hostname,
                vendor: n.vendor,
                writer: n.writer,
                timestamp: n.timestamp,
                in_registry: n.in_registry,
                ollama_url: n.ollama_url,
                rpc: n.rpc,
                gpu_offload: n.gpu_offload,
                note: n.note,
                cpu_ram_total_mb: n.cpu_ram_total_mb,
                cpu_ram_free_mb: n.cpu_ram_free_mb,
                cpu_ram_registered_mb: n.cpu_ram_registered_mb,
                cpu_count: n.cpu_count,
                cpu_load_percent: n.cpu_load_percent,
                gpus: n.gpus,
                loaded_models: n.loaded_models,
                installed_models: n.installed_models,
            }),
        })
    }
}

/// [`RpcBackendView`]'s JSON, field by field in its historical order (borrowed).
#[derive(Serialize)]
struct RpcBackendOut<'a> {
    host: &'a str,
    port: u16,
    registered: bool,
    in_metadata: bool,
    has_gpu: bool,
    gpu_devices: &'a [SmolStr],
    gpu_vram_mb: &'a [u64],
    gpu_names: &'a [SmolStr],
    cpu_ram_mb: Option<u64>,
    device_config: &'a Option<SmolStr>,
    total_parallel_workers: Option<u32>,
    ggml_devices: &'a [SmolStr],
    health: &'a Option<Box<vramroute_rpc::Probe>>,
}

/// [`RpcBackendView`]'s JSON as read back, with its defaults.
#[derive(Deserialize)]
struct RpcBackendIn {
    host: SmolStr,
    port: u16,
    #[serde(default = "yes")]
    registered: bool,
    #[serde(default)]
    in_metadata: bool,
    #[serde(default)]
    has_gpu: bool,
    #[serde(default)]
    gpu_devices: Vec<SmolStr>,
    #[serde(default)]
    gpu_vram_mb: Vec<u64>,
    #[serde(default)]
    gpu_names: Vec<SmolStr>,
    #[serde(default)]
    cpu_ram_mb: Option<u64>,
    #[serde(default)]
    device_config: Option<SmolStr>,
    #[serde(default)]
    total_parallel_workers: Option<u32>,
    #[serde(default)]
    ggml_devices: Vec<SmolStr>,
    #[serde(default)]
    health: Option<Box<vramroute_rpc::Probe>>,
}

impl Serialize for RpcBackendView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let f = &*self.facts;
        RpcBackendOut {
            host: &f.host,
            port: f.port,
            registered: f.registered,
            in_metadata: self.in_metadata,
            has_gpu: f.has_gpu,
            gpu_devices: &f.gpu_devices,
            gpu_vram_mb: &f.gpu_vram_mb,
            gpu_names: &f.gpu_names,
            cpu_ram_mb: f.cpu_ram_mb,
            device_config: &f.device_config,
            total_parallel_workers: f.total_parallel_workers,
            ggml_devices: &f.ggml_devices,
            health: &self.health,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for RpcBackendView {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let b = RpcBackendIn::deserialize(d)?;
        Ok(RpcBackendView {
            in_metadata: b.in_metadata,
            health: b.health,
            facts: Arc::new(RpcBackendFacts {
                host: b.host,
                port: b.port,
                registered: b.registered,
                has_gpu: b.has_gpu,
                gpu_devices: b.gpu_devices,
                gpu_vram_mb: b.gpu_vram_mb,
                gpu_names: b.gpu_names,
                cpu_ram_mb: b.cpu_ram_mb,
                device_config: b.device_config,
                total_parallel_workers: b.total_parallel_workers,
                ggml_devices: b.ggml_devices,
            }),
        })
    }
}
