//! The rules that turn one registry record into one view row: a node's row from its
//! stats record (its Ollama URL, its rpc-server, its usable memory, who wrote it), an
//! rpc backend's row from its registration, and SOLLOL's router-metadata backends
//! merged into those rows. The rules themselves are listed in the `view` module's doc;
//! `view` keeps the view's types and the whole-view assembly.

use std::sync::Arc;

use vramroute_alloc::ggml_device_of_sollol;
use vramroute_registry::{
    GpuOffload, GpuStatsRecord, RouterMetadata, RpcNodeEntry, RpcNodeRecord, SmolStr,
};
use vramroute_router::RpcEndpoint;

use crate::view::{
    derived_ollama_url, GpuView, LoadedView, NodeFacts, NodeView, RpcBackendFacts, RpcBackendView,
    FUTURE_SKEW_S,
};

/// Lookup of a node's registration by host (and port): a binary search when the
/// registrations are sorted by (host, port), as discovery returns them (a scan per node
/// made building a view of 10,000 nodes quadratic), else the first match in order.
pub(crate) struct Registrations<'a> {
    entries: &'a [RpcNodeEntry],
    sorted: bool,
}

impl<'a> Registrations<'a> {
    pub(crate) fn of(entries: &'a [RpcNodeEntry]) -> Self {
        let sorted = entries
            .windows(2)
            .all(|w| (&w[0].host, w[0].port) <= (&w[1].host, w[1].port));
        Registrations { entries, sorted }
    }

    /// The registration of the node `id` whose stats record is `r`: the one its
    /// `rpc_host`/`rpc_port` extras name, else the first of the node id's host.
    pub(crate) fn of_node(&self, id: &str, r: &GpuStatsRecord) -> Option<&'a RpcNodeEntry> {
        self.of_endpoint(id, own_rpc(r).as_ref())
    }

    /// [`of_node`](Self::of_node) for a record whose own endpoint ([`own_rpc`]) is `own`.
    pub(crate) fn of_endpoint(
        &self,
        id: &str,
        own: Option<&(SmolStr, u16)>,
    ) -> Option<&'a RpcNodeEntry> {
        match own {
            Some((h, p)) => self.find(h, Some(*p)),
            None => self.find(host_of(id), None),
        }
    }

    /// The host whose registrations [`of_endpoint`](Self::of_endpoint) looks among.
    pub(crate) fn host_for<'i>(id: &'i str, own: Option<&'i (SmolStr, u16)>) -> &'i str {
        own.map_or_else(|| host_of(id), |(h, _)| h.as_str())
    }

    /// The registration of `host:port`, or with `port: None` the first of `host`.
    fn find(&self, host: &str, port: Option<u16>) -> Option<&'a RpcNodeEntry> {
        let matches = |e: &RpcNodeEntry| e.host == host && port.is_none_or(|p| e.port == p);
        if !self.sorted {
            return self.entries.iter().find(|e| matches(e));
        }
        let key = (host, port.unwrap_or(0));
        let at = self
            .entries
            .partition_point(|e| (e.host.as_str(), e.port) < key);
        self.entries.get(at).filter(|e| matches(e))
    }
}

/// The rpc-server endpoint a stats record names itself (`rpc_host` and `rpc_port`).
pub(crate) fn own_rpc(r: &GpuStatsRecord) -> Option<(SmolStr, u16)> {
    match (&r.rpc_host, r.rpc_port) {
        (Some(h), Some(p)) => Some((h.clone(), p)),
        _ => None,
    }
}

/// What a node's row takes from its registration: the registration's host and port
/// (the node's rpc-server when its record names none) and its usable RAM, MiB.
pub(crate) type Registered = (SmolStr, u16, u64);

/// [`Registered`] of a registration.
pub(crate) fn registered(e: &RpcNodeEntry) -> Registered {
    (e.host.clone(), e.port, e.record.cpu_ram_mb)
}

/// Brings the row `node` (built from a record whose own endpoint was `own_rpc`) to the
/// registration `registration`: what [`node_view`] takes from it, and nothing else.
pub(crate) fn with_registration(
    node: &mut NodeView,
    own_rpc: bool,
    registration: Option<&Registered>,
) {
    let facts = &mut **node;
    facts.cpu_ram_registered_mb = registration.map(|r| r.2);
    if !own_rpc {
        facts.rpc = registration.map(|(h, p, _)| RpcEndpoint::new(h.clone(), *p));
    }
}

fn host_of(node_id: &str) -> &str {
    node_id.rsplit_once(':').map_or(node_id, |(h, _)| h)
}

fn usable(total: Option<u64>, margin: f64) -> Option<u64> {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "MiB figures far below 2^53; margin in (0, 1]"
    )]
    total.map(|t| (t as f64 * margin).floor() as u64)
}

/// The smallest total whose usable share `floor(total × margin)` is `usable` (for
/// `margin` in (0, 1]: `ceil(usable / margin)` satisfies `usable ≤ total × margin <
/// usable + margin`).
pub(crate) fn total_for_usable(usable: u64, margin: f64) -> u64 {
    if !(margin > 0.0 && margin <= 1.0) {
        return usable;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "MiB figures far below 2^53; margin in (0, 1]"
    )]
    let mut total = (usable as f64 / margin).ceil() as u64;
    // Float rounding can land one off either way: settle on the exact figure.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "as above"
    )]
    let usable_of = |t: u64| (t as f64 * margin).floor() as u64;
    for _ in 0..4 {
        if total > 0 && usable_of(total - 1) >= usable {
            total -= 1;
        } else if usable_of(total) < usable {
            total = total.saturating_add(1);
        }
    }
    total
}

fn writer_of(record: &GpuStatsRecord) -> SmolStr {
    match (&record.reporter_version, record.schema_version) {
        (Some(v), _) => smol_str::format_smolstr!("vramroute {v}"),
        (None, Some(s)) => smol_str::format_smolstr!("vramroute (schema {s})"),
        (None, None) => SmolStr::new_static("sollol"),
    }
}

pub(crate) fn rpc_view(host: &str, port: u16, r: &RpcNodeRecord) -> RpcBackendView {
    // The record's strings are shared (`SmolStr`: inline, or a reference count).
    let ggml = r.ggml_devices.clone().unwrap_or_else(|| {
        r.gpu_devices
            .iter()
            .map(|d| SmolStr::from(ggml_device_of_sollol(d)))
            .collect()
    });
    RpcBackendView::new(Arc::new(RpcBackendFacts {
        host: host.into(),
        port,
        registered: true,
        has_gpu: r.has_gpu,
        gpu_devices: r.gpu_devices.clone(),
        gpu_vram_mb: r.gpu_vram_mb.clone(),
        gpu_names: r.gpu_names.clone(),
        cpu_ram_mb: Some(r.cpu_ram_mb),
        device_config: Some(r.device_config.clone()),
        total_parallel_workers: Some(r.total_parallel_workers),
        ggml_devices: ggml,
    }))
}

/// One node of the view: the stats record of `id`, with `registration` (its rpc
/// registration, see [`Registrations::of_node`]), at `now`.
pub(crate) fn node_view(
    id: &str,
    r: &GpuStatsRecord,
    registration: Option<&Registered>,
    now: f64,
    stale_after_s: f64,
    margin: f64,
) -> NodeView {
    let age_s = (now - r.timestamp).max(0.0);
    // A report stamped well in the future (a wrong clock, a bad writer)
    // cannot be aged: it would never go stale. Not routed to.
    let ahead_s = r.timestamp - now;
    let from_future = ahead_s > FUTURE_SKEW_S;
    let rpc = match (&r.rpc_host, r.rpc_port) {
        (Some(h), Some(p)) => Some(RpcEndpoint::new(h.as_str(), p)),
        _ => registration.map(|(h, p, _)| RpcEndpoint::new(h.clone(), *p)),
    };
    // The record's strings are shared (`SmolStr`: inline, or a reference count).
    let facts = NodeFacts {
        id: id.into(),
        hostname: r.hostname.clone(),
        vendor: r.vendor.clone(),
        writer: writer_of(r),
        timestamp: r.timestamp,
        in_registry: true,
        ollama_url: r
            .ollama_url
            .clone()
            .or_else(|| derived_ollama_url(id).map(SmolStr::from)),
        rpc,
        gpu_offload: r.gpu_offload.map(|o| {
            SmolStr::new_static(match o {
                GpuOffload::On => "on",
                GpuOffload::Off => "off",
                GpuOffload::Unknown => "unknown",
            })
        }),
        note: if from_future {
            Some(smol_str::format_smolstr!(
                "report timestamp is {ahead_s:.0} s in the future (clock skew or a \
                 bad writer): treated as stale, not routed to"
            ))
        } else {
            r.note.clone()
        },
        cpu_ram_total_mb: r.cpu_ram_total_mb,
        cpu_ram_free_mb: r.cpu_ram_free_mb,
        cpu_ram_registered_mb: registration.map(|e| e.2),
        cpu_count: r.cpu_count,
        cpu_load_percent: r.cpu_load_percent,
        gpus: r
            .gpus
            .iter()
            .map(|g| GpuView {
                index: g.index,
                name: g.name.clone(),
                memory_total_mb: g.memory_total_mb,
                memory_usable_mb: usable(g.memory_total_mb, margin),
                memory_free_mb: g.memory_free_mb,
                memory_used_mb: g.memory_used_mb,
                utilization_percent: g.utilization_percent,
                temperature_c: g.temperature_c,
                ggml_device: g.ggml_device.clone(),
            })
            .collect(),
        // From a slice, not `Option::iter().flatten()`: an exact size, so the vector is
        // allocated for the models there are (a flattened iterator's first push
        // allocates room for four: 224 bytes for one model).
        loaded_models: r
            .loaded_models
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|m| LoadedView {
                name: m.name.clone(),
                size_mb: m.size_mb,
                size_vram_mb: m.size_vram_mb,
            })
            .collect(),
        installed_models: Vec::new(),
    };
    NodeView::new(Arc::new(facts), age_s, age_s > stale_after_s || from_future)
}

/// Marks the backends `meta` lists, and adds those no registration knows.
pub(crate) fn merge_metadata(backends: &mut Vec<RpcBackendView>, meta: &RouterMetadata) {
    for b in &meta.rpc_backends {
        match backends
            .iter_mut()
            .find(|r| r.host == b.host && r.port == b.port)
        {
            Some(r) => r.in_metadata = true,
            None => backends.push(RpcBackendView {
                in_metadata: true,
                health: None,
                facts: Arc::new(RpcBackendFacts {
                    host: b.host.as_str().into(),
                    port: b.port,
                    registered: false,
                    has_gpu: false,
                    gpu_devices: Vec::new(),
                    gpu_vram_mb: Vec::new(),
                    gpu_names: Vec::new(),
                    cpu_ram_mb: None,
                    device_config: None,
                    total_parallel_workers: None,
                    ggml_devices: Vec::new(),
                }),
            }),
        }
    }
}
