//! The record shapes read with [`Parser`]: a GPU entry, a loaded model, the stats
//! record and the registration, each field matched against its key table (writer order
//! first) and each refusing what serde's derived visitors refuse.

use super::json::{keys, Key, Parser};
use crate::record::{GpuOffload, GpuStat, GpuStatsRecord, LoadedModel, RpcNodeRecord};

impl Parser<'_> {
    fn gpu(&mut self) -> Option<GpuStat> {
        let mut g = GpuStat::default();
        // Bit per field: the derived visitor refuses a repeated field, and needs
        // `index` and `name`.
        let mut seen = 0u32;
        self.keyed_object(&GPU_KEYS, |p, key| {
            let Ok(k) = key else { return p.skip(1) };
            match k {
                0 => g.index = p.u32()?,
                1 => g.name = p.smol()?,
                2 => g.memory_total_mb = p.opt(Self::u64)?,
                3 => g.memory_free_mb = p.opt(Self::u64)?,
                4 => g.memory_used_mb = p.opt(Self::u64)?,
                5 => g.utilization_percent = p.opt(Self::u32)?,
                6 => g.temperature_c = p.opt(Self::i32)?,
                7 => g.uuid = p.opt(Self::smol)?,
                8 => g.pci_bus_id = p.opt(Self::smol)?,
                9 => g.power_w = p.opt(Self::f64)?,
                10 => g.memory_kind = p.opt(Self::smol)?,
                11 => g.driver = p.opt(Self::smol)?,
                _ => g.ggml_device = p.opt(Self::smol)?,
            }
            first_time(&mut seen, k)
        })?;
        (seen & 3 == 3).then_some(g)
    }

    fn loaded_model(&mut self) -> Option<LoadedModel> {
        let mut m = LoadedModel::default();
        let mut seen = 0u32;
        self.keyed_object(&MODEL_KEYS, |p, key| {
            let Ok(k) = key else { return p.skip(1) };
            match k {
                0 => m.name = p.smol()?,
                1 => m.size_mb = p.opt(Self::u64)?,
                _ => m.size_vram_mb = p.opt(Self::u64)?,
            }
            first_time(&mut seen, k)
        })?;
        (seen & 1 == 1).then_some(m)
    }

    fn gpu_offload(&mut self) -> Option<GpuOffload> {
        // A string names the variant (any other string is `Unknown`, `#[serde(other)]`);
        // serde's map form of an enum goes to serde.
        Some(match &*self.str()? {
            "on" => GpuOffload::On,
            "off" => GpuOffload::Off,
            _ => GpuOffload::Unknown,
        })
    }

    /// As the visitor in `record.rs`: a repeated top-level key keeps its last value.
    pub(super) fn stats(&mut self) -> Option<GpuStatsRecord> {
        let mut r = GpuStatsRecord::default();
        let mut seen = 0u8;
        self.keyed_object(&STATS_KEYS, |p, key| {
            let k = match key {
                Ok(k) => k,
                Err(other) => {
                    let v = p.extra_value()?;
                    r.extra.insert(other.into_owned(), v);
                    return Some(());
                }
            };
            match k {
                0 => {
                    r.vendor = p.smol()?;
                    seen |= 1;
                }
                1 => {
                    r.gpus = p.array(Self::gpu)?;
                    seen |= 2;
                }
                2 => {
                    r.timestamp = p.f64()?;
                    seen |= 4;
                }
                3 => r.note = p.opt(Self::smol)?,
                4 => r.node_id = p.smol()?,
                5 => r.schema_version = p.opt(Self::u32)?,
                6 => r.reporter_version = p.opt(Self::smol)?,
                7 => r.hostname = p.opt(Self::smol)?,
                8 => r.gpu_offload = p.opt(Self::gpu_offload)?,
                9 => r.gpu_offload_reason = p.opt(Self::smol)?,
                10 => r.loaded_models = p.opt(|p| p.array(Self::loaded_model))?,
                11 => r.cpu_ram_total_mb = p.opt(Self::u64)?,
                12 => r.cpu_ram_free_mb = p.opt(Self::u64)?,
                13 => r.cpu_count = p.opt(Self::u32)?,
                14 => r.cpu_load_percent = p.opt(Self::f64)?,
                15 => r.ollama_url = p.opt(Self::smol)?,
                16 => r.rpc_host = p.opt(Self::smol)?,
                _ => r.rpc_port = p.opt(|p| p.u64().and_then(|v| u16::try_from(v).ok()))?,
            }
            Some(())
        })?;
        (seen == 7).then_some(r)
    }

    pub(super) fn rpc(&mut self) -> Option<RpcNodeRecord> {
        let mut r = RpcNodeRecord::default();
        let mut seen = 0u8;
        self.keyed_object(&RPC_KEYS, |p, key| {
            let k = match key {
                Ok(k) => k,
                Err(other) => {
                    let v = p.extra_value()?;
                    r.extra.insert(other.into_owned(), v);
                    return Some(());
                }
            };
            match k {
                0 => r.has_gpu = p.bool()?,
                1 => r.gpu_devices = p.array(Self::smol)?,
                2 => r.gpu_vram_mb = p.array(Self::u64)?,
                3 => r.gpu_names = p.array(Self::smol)?,
                4 => r.cpu_ram_mb = p.u64()?,
                5 => r.device_config = p.smol()?,
                6 => r.memory_config = p.smol()?,
                7 => r.total_parallel_workers = p.u32()?,
                8 => r.schema_version = p.opt(Self::u32)?,
                9 => r.reporter_version = p.opt(Self::smol)?,
                10 => r.hostname = p.opt(Self::smol)?,
                11 => r.ggml_devices = p.opt(|p| p.array(Self::smol))?,
                12 => r.gpu_uuids = p.opt(|p| p.array(Self::smol))?,
                13 => r.gpu_pci_bus_ids = p.opt(|p| p.array(Self::smol))?,
                14 => r.gpu_vram_total_mb = p.opt(|p| p.array(Self::u64))?,
                15 => r.cpu_ram_total_mb = p.opt(Self::u64)?,
                16 => r.cpu_count = p.opt(Self::u32)?,
                _ => r.reserve_fraction = p.opt(Self::f64)?,
            }
            if k < 8 {
                seen |= 1 << k;
            }
            Some(())
        })?;
        (seen == 0xff).then_some(r)
    }
}

/// The keys of a GPU entry, in the order the derived `Serialize` writes them; the
/// indexes are those `Parser::gpu` matches on.
const GPU_KEYS: [Key; 13] = keys([
    "index",
    "name",
    "memory_total_mb",
    "memory_free_mb",
    "memory_used_mb",
    "utilization_percent",
    "temperature_c",
    "uuid",
    "pci_bus_id",
    "power_w",
    "memory_kind",
    "driver",
    "ggml_device",
]);

/// The keys of a loaded model, in writer order.
const MODEL_KEYS: [Key; 3] = keys(["name", "size_mb", "size_vram_mb"]);

/// The keys of a stats record, in the order `GpuStatsRecord`'s `Serialize` writes them
/// (SOLLOL's `vendor, gpus, timestamp[, note], node_id`, then ours).
const STATS_KEYS: [Key; 18] = keys([
    "vendor",
    "gpus",
    "timestamp",
    "note",
    "node_id",
    "schema_version",
    "reporter_version",
    "hostname",
    "gpu_offload",
    "gpu_offload_reason",
    "loaded_models",
    "cpu_ram_total_mb",
    "cpu_ram_free_mb",
    "cpu_count",
    "cpu_load_percent",
    "ollama_url",
    "rpc_host",
    "rpc_port",
]);

/// The keys of a registration, in writer order; the first eight are required.
const RPC_KEYS: [Key; 18] = keys([
    "has_gpu",
    "gpu_devices",
    "gpu_vram_mb",
    "gpu_names",
    "cpu_ram_mb",
    "device_config",
    "memory_config",
    "total_parallel_workers",
    "schema_version",
    "reporter_version",
    "hostname",
    "ggml_devices",
    "gpu_uuids",
    "gpu_pci_bus_ids",
    "gpu_vram_total_mb",
    "cpu_ram_total_mb",
    "cpu_count",
    "reserve_fraction",
]);

/// Marks field `k` as read in `seen`; `None` (left to serde, whose derived visitor
/// refuses a repeated field) when it was read before.
fn first_time(seen: &mut u32, k: usize) -> Option<()> {
    let bit = 1u32.checked_shl(u32::try_from(k).ok()?)?;
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}
