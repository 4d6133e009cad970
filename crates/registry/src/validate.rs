//! Decoding with validation: what a reader accepts from a key anyone may have written.
//!
//! A record that fails any check is skipped by discovery with a [`SkippedRecord`]; the
//! rest of the view is unaffected. Writers run the same checks before writing, so we
//! never publish what we would refuse to read.

use crate::fastdecode;
use crate::record::{GpuStatsRecord, RouterMetadata, RpcNodeRecord, SmolStr};

/// Caps applied to every record read (and written). Defaults are documented in
/// `docs/registry.md`; they are far above any real machine and far below what would
/// hurt a reader.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest accepted value, in bytes. Default 256 KiB. Checked before parsing; the
    /// Redis backend checks it before reading (a longer value is never transferred, only
    /// its length: see `docs/registry.md`, "Oversized values, junk keys and floods").
    pub max_record_bytes: usize,
    /// Most GPUs per record (`gpus`, `gpu_devices`, …). Default 256.
    pub max_gpus: usize,
    /// Longest string field, in bytes. Default 1024.
    pub max_string_bytes: usize,
    /// Longest identifier or name, in bytes: node ids (the record's and the key's), host
    /// names, `vendor`, GPU names and device names, router-metadata hosts. Default 255
    /// (what our writers accept in a key, and a DNS name's limit): a name is echoed in
    /// every answer, so a 1 MiB one is refused rather than carried.
    pub max_name_bytes: usize,
    /// Largest memory value, MiB. Default 2^30 MiB (1 PiB).
    pub max_mib: u64,
    /// Most entries in other lists (`loaded_models`, `rpc_backends`). Default 4096.
    pub max_list_len: usize,
    /// Most unknown top-level keys kept. Default 64.
    pub max_extra_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_record_bytes: 256 * 1024,
            max_gpus: 256,
            max_string_bytes: 1024,
            max_name_bytes: 255,
            max_mib: 1 << 30,
            max_list_len: 4096,
            max_extra_keys: 64,
        }
    }
}

/// Latest accepted `timestamp`: 4102444800 s = 2100-01-01.
pub const MAX_TIMESTAMP: f64 = 4_102_444_800.0;

/// A record discovery could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedRecord {
    /// The Redis key (or memory-backend key) it was read from.
    pub key: String,
    /// Why it was skipped, in words.
    pub reason: String,
}

impl SkippedRecord {
    /// The record at `key`, skipped because of `reason`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// A field name, formatted only when a check fails (validation runs on every record
/// read, so the happy path must not allocate).
trait Name {
    fn name(&self) -> String;
}

impl Name for &str {
    fn name(&self) -> String {
        (*self).to_owned()
    }
}

impl Name for String {
    fn name(&self) -> String {
        self.clone()
    }
}

/// `prefix[index].field`, built lazily.
struct At<'a>(&'a str, usize, &'a str);

impl Name for At<'_> {
    fn name(&self) -> String {
        if self.2.is_empty() {
            format!("{}[{}]", self.0, self.1)
        } else {
            format!("{}[{}].{}", self.0, self.1, self.2)
        }
    }
}

fn check_len(what: impl Name, len: usize, max: usize) -> Result<(), String> {
    if len > max {
        Err(format!("{} has {len} entries (max {max})", what.name()))
    } else {
        Ok(())
    }
}

fn check_str(what: impl Name, s: &str, limits: &Limits) -> Result<(), String> {
    if s.len() > limits.max_string_bytes {
        Err(format!(
            "{} is {} bytes long (max {})",
            what.name(),
            s.len(),
            limits.max_string_bytes
        ))
    } else {
        Ok(())
    }
}

fn check_name(what: impl Name, s: &str, limits: &Limits) -> Result<(), String> {
    if s.len() > limits.max_name_bytes {
        Err(format!(
            "{} is {} bytes long (max {} for a name or id)",
            what.name(),
            s.len(),
            limits.max_name_bytes
        ))
    } else {
        Ok(())
    }
}

fn check_opt_name(what: impl Name, s: &Option<SmolStr>, limits: &Limits) -> Result<(), String> {
    s.as_deref().map_or(Ok(()), |s| check_name(what, s, limits))
}

fn check_opt_str(what: impl Name, s: &Option<SmolStr>, limits: &Limits) -> Result<(), String> {
    s.as_deref().map_or(Ok(()), |s| check_str(what, s, limits))
}

fn check_mib(what: impl Name, v: u64, limits: &Limits) -> Result<(), String> {
    if v > limits.max_mib {
        Err(format!(
            "{} = {v} MiB is absurd (max {} MiB)",
            what.name(),
            limits.max_mib
        ))
    } else {
        Ok(())
    }
}

fn check_opt_mib(what: impl Name, v: Option<u64>, limits: &Limits) -> Result<(), String> {
    v.map_or(Ok(()), |v| check_mib(what, v, limits))
}

fn check_extra(
    extra: &std::collections::BTreeMap<String, serde_json::Value>,
    limits: &Limits,
) -> Result<(), String> {
    check_len("unknown keys", extra.len(), limits.max_extra_keys)
}

/// Checks a stats record against `limits`.
pub fn validate_stats(r: &GpuStatsRecord, limits: &Limits) -> Result<(), String> {
    check_name("vendor", &r.vendor, limits)?;
    check_name("node_id", &r.node_id, limits)?;
    if !r.timestamp.is_finite() || r.timestamp < 0.0 || r.timestamp > MAX_TIMESTAMP {
        return Err(format!(
            "timestamp {} is not a plausible Unix time",
            r.timestamp
        ));
    }
    check_len("gpus", r.gpus.len(), limits.max_gpus)?;
    for (i, g) in r.gpus.iter().enumerate() {
        let at = |f: &'static str| At("gpus", i, f);
        if g.index as usize >= limits.max_gpus.max(1) * 16 {
            return Err(format!("{} = {} is absurd", at("index").name(), g.index));
        }
        check_name(at("name"), &g.name, limits)?;
        check_opt_mib(at("memory_total_mb"), g.memory_total_mb, limits)?;
        check_opt_mib(at("memory_free_mb"), g.memory_free_mb, limits)?;
        check_opt_mib(at("memory_used_mb"), g.memory_used_mb, limits)?;
        if let Some(u) = g.utilization_percent {
            if u > 100 {
                return Err(format!(
                    "{} = {u} is outside 0-100",
                    at("utilization_percent").name()
                ));
            }
        }
        if let Some(t) = g.temperature_c {
            if !(-100..=300).contains(&t) {
                return Err(format!(
                    "{} = {t} is outside -100..300 °C",
                    at("temperature_c").name()
                ));
            }
        }
        if let Some(p) = g.power_w {
            if !p.is_finite() || !(0.0..=100_000.0).contains(&p) {
                return Err(format!(
                    "{} = {p} is outside 0..100000 W",
                    at("power_w").name()
                ));
            }
        }
        for (f, s) in [
            ("uuid", &g.uuid),
            ("pci_bus_id", &g.pci_bus_id),
            ("memory_kind", &g.memory_kind),
            ("driver", &g.driver),
            ("ggml_device", &g.ggml_device),
        ] {
            check_opt_str(at(f), s, limits)?;
        }
    }
    check_unique_gpus(&r.gpus)?;
    check_opt_name("hostname", &r.hostname, limits)?;
    check_opt_name("rpc_host", &r.rpc_host, limits)?;
    for (f, s) in [
        ("reporter_version", &r.reporter_version),
        ("gpu_offload_reason", &r.gpu_offload_reason),
        ("note", &r.note),
        ("ollama_url", &r.ollama_url),
    ] {
        check_opt_str(f, s, limits)?;
    }
    if let Some(models) = &r.loaded_models {
        check_len("loaded_models", models.len(), limits.max_list_len)?;
        for (i, m) in models.iter().enumerate() {
            check_str(At("loaded_models", i, "name"), &m.name, limits)?;
            check_opt_mib(At("loaded_models", i, "size_mb"), m.size_mb, limits)?;
            check_opt_mib(
                At("loaded_models", i, "size_vram_mb"),
                m.size_vram_mb,
                limits,
            )?;
        }
    }
    check_opt_mib("cpu_ram_total_mb", r.cpu_ram_total_mb, limits)?;
    check_opt_mib("cpu_ram_free_mb", r.cpu_ram_free_mb, limits)?;
    if let Some(n) = r.cpu_count {
        if n > 1 << 20 {
            return Err(format!("cpu_count = {n} is absurd"));
        }
    }
    if let Some(l) = r.cpu_load_percent {
        if !l.is_finite() || !(0.0..=100.0).contains(&l) {
            return Err(format!("cpu_load_percent = {l} is outside 0-100"));
        }
    }
    check_extra(&r.extra, limits)
}

/// Checks a registration against `limits`.
pub fn validate_rpc(r: &RpcNodeRecord, limits: &Limits) -> Result<(), String> {
    check_len("gpu_devices", r.gpu_devices.len(), limits.max_gpus)?;
    check_len("gpu_vram_mb", r.gpu_vram_mb.len(), limits.max_gpus)?;
    check_len("gpu_names", r.gpu_names.len(), limits.max_gpus)?;
    if r.gpu_vram_mb.len() != r.gpu_devices.len() {
        return Err(format!(
            "gpu_devices has {} entries but gpu_vram_mb has {}",
            r.gpu_devices.len(),
            r.gpu_vram_mb.len()
        ));
    }
    for (i, v) in r.gpu_vram_mb.iter().enumerate() {
        check_mib(At("gpu_vram_mb", i, ""), *v, limits)?;
    }
    for (i, s) in r.gpu_devices.iter().enumerate() {
        check_name(At("gpu_devices", i, ""), s, limits)?;
    }
    for (i, s) in r.gpu_names.iter().enumerate() {
        check_name(At("gpu_names", i, ""), s, limits)?;
    }
    check_mib("cpu_ram_mb", r.cpu_ram_mb, limits)?;
    check_str("device_config", &r.device_config, limits)?;
    check_str("memory_config", &r.memory_config, limits)?;
    if r.total_parallel_workers as usize > limits.max_gpus + 1 {
        return Err(format!(
            "total_parallel_workers = {} is absurd (max {})",
            r.total_parallel_workers,
            limits.max_gpus + 1
        ));
    }
    for (f, v) in [
        ("ggml_devices", &r.ggml_devices),
        ("gpu_uuids", &r.gpu_uuids),
        ("gpu_pci_bus_ids", &r.gpu_pci_bus_ids),
    ] {
        if let Some(v) = v {
            check_len(f, v.len(), limits.max_gpus)?;
            for s in v {
                check_str(f, s, limits)?;
            }
        }
    }
    if let Some(v) = &r.gpu_vram_total_mb {
        check_len("gpu_vram_total_mb", v.len(), limits.max_gpus)?;
        for (i, m) in v.iter().enumerate() {
            check_mib(At("gpu_vram_total_mb", i, ""), *m, limits)?;
        }
    }
    check_opt_mib("cpu_ram_total_mb", r.cpu_ram_total_mb, limits)?;
    check_opt_str("reporter_version", &r.reporter_version, limits)?;
    check_opt_name("hostname", &r.hostname, limits)?;
    if let Some(f) = r.reserve_fraction {
        if !f.is_finite() || !(0.0..1.0).contains(&f) {
            return Err(format!("reserve_fraction = {f} is outside 0..1"));
        }
    }
    check_extra(&r.extra, limits)
}

/// Checks router metadata against `limits`.
pub fn validate_metadata(m: &RouterMetadata, limits: &Limits) -> Result<(), String> {
    check_len("rpc_backends", m.rpc_backends.len(), limits.max_list_len)?;
    for (i, b) in m.rpc_backends.iter().enumerate() {
        check_name(At("rpc_backends", i, "host"), &b.host, limits)?;
        if b.host.is_empty() {
            return Err(format!("rpc_backends[{i}].host is empty"));
        }
    }
    check_extra(&m.extra, limits)
}

/// Refuses a record that lists one GPU twice. Two entries are the same GPU when they
/// share a UUID or a PCI bus id, or share an `index` with nothing to tell them apart
/// (neither has a UUID or PCI bus id, and their `driver`s are equal). A shared index
/// alone is not enough: indexes count per vendor (`cuda:0` and `rocm:0` on one node).
/// SOLLOL's reader only ever reads `gpus[0]` and so never notices; we place models on
/// every GPU by index, and of two contradicting entries neither can be trusted.
fn check_unique_gpus(gpus: &[crate::record::GpuStat]) -> Result<(), String> {
    for (j, b) in gpus.iter().enumerate().skip(1) {
        for (i, a) in gpus[..j].iter().enumerate() {
            let same_id = |x: &Option<SmolStr>, y: &Option<SmolStr>| matches!((x, y), (Some(x), Some(y)) if x == y);
            let anonymous = |g: &crate::record::GpuStat| g.uuid.is_none() && g.pci_bus_id.is_none();
            let what = if same_id(&a.uuid, &b.uuid) {
                "uuid"
            } else if same_id(&a.pci_bus_id, &b.pci_bus_id) {
                "pci_bus_id"
            } else if a.index == b.index && anonymous(a) && anonymous(b) && a.driver == b.driver {
                "index"
            } else {
                continue;
            };
            return Err(format!(
                "gpus[{j}] repeats gpus[{i}] (same {what}; index {}): one GPU listed twice",
                b.index
            ));
        }
    }
    Ok(())
}

/// The vendors a stats record may name; any other is read as [`UNKNOWN_VENDOR`].
pub const KNOWN_VENDORS: [&str; 4] = ["nvidia", "amd", "intel", "none"];

/// What [`decode_stats`] makes of a `vendor` outside [`KNOWN_VENDORS`].
pub const UNKNOWN_VENDOR: &str = "unknown";

/// SOLLOL's reader never looks at `vendor` (it reads `gpus[0]`), so a record with an
/// unexpected one still describes usable GPUs and is kept: a known vendor in another
/// case or with spaces is normalised (`" NVIDIA"` → `nvidia`), anything else becomes
/// [`UNKNOWN_VENDOR`] so no arbitrary text travels on as a vendor.
fn normalize_vendor(vendor: &mut SmolStr) {
    let trimmed = vendor.trim();
    if KNOWN_VENDORS.contains(&trimmed) && trimmed.len() == vendor.len() {
        return;
    }
    *vendor = KNOWN_VENDORS
        .into_iter()
        .find(|v| trimmed.eq_ignore_ascii_case(v))
        .map_or(SmolStr::new_static(UNKNOWN_VENDOR), SmolStr::new_static);
}

fn check_size(bytes: &[u8], limits: &Limits) -> Result<(), String> {
    if bytes.len() > limits.max_record_bytes {
        Err(format!(
            "value is {} bytes (max {})",
            bytes.len(),
            limits.max_record_bytes
        ))
    } else {
        Ok(())
    }
}

/// The value as text: one UTF-8 check of the whole value, cheaper than the check of
/// every string that parsing bytes would do.
fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("value is not UTF-8 text: {e}"))
}

/// The serde path for a stats record: what [`decode_stats`] falls back to when the
/// single-pass reader (`fastdecode`) does not take a value, and the reference it is
/// tested against. Its error is the one a bad record is skipped with.
pub(crate) fn parse_stats_serde(text: &str) -> Result<GpuStatsRecord, String> {
    serde_json::from_str(text).map_err(|e| format!("bad stats record: {e}"))
}

/// The serde path for a registration (see [`parse_stats_serde`]).
pub(crate) fn parse_rpc_serde(text: &str) -> Result<RpcNodeRecord, String> {
    serde_json::from_str(text).map_err(|e| format!("bad registration: {e}"))
}

/// Parses and validates a stats record read from `sollol:gpu:{key_node_id}`. A record
/// without `node_id` gets `key_node_id`; a key whose node id is longer than
/// [`Limits::max_name_bytes`] is refused before anything is parsed; `vendor` is
/// normalised (see [`KNOWN_VENDORS`]).
pub fn decode_stats(
    key_node_id: &str,
    bytes: &[u8],
    limits: &Limits,
) -> Result<GpuStatsRecord, String> {
    check_name("node id in the key", key_node_id, limits)?;
    check_size(bytes, limits)?;
    let text = utf8(bytes)?;
    let mut r = match fastdecode::stats(text) {
        Some(r) => r,
        None => parse_stats_serde(text)?,
    };
    if r.node_id.is_empty() {
        r.node_id = SmolStr::new(key_node_id);
    }
    validate_stats(&r, limits)?;
    normalize_vendor(&mut r.vendor);
    Ok(r)
}

/// Parses and validates a registration.
pub fn decode_rpc(bytes: &[u8], limits: &Limits) -> Result<RpcNodeRecord, String> {
    check_size(bytes, limits)?;
    let text = utf8(bytes)?;
    let r = match fastdecode::rpc(text) {
        Some(r) => r,
        None => parse_rpc_serde(text)?,
    };
    validate_rpc(&r, limits)?;
    Ok(r)
}

/// Parses and validates router metadata.
pub fn decode_metadata(bytes: &[u8], limits: &Limits) -> Result<RouterMetadata, String> {
    check_size(bytes, limits)?;
    let m: RouterMetadata =
        serde_json::from_str(utf8(bytes)?).map_err(|e| format!("bad router metadata: {e}"))?;
    validate_metadata(&m, limits)?;
    Ok(m)
}
