//! The cluster view: registry records (ours and SOLLOL's) turned into (a) the
//! serialisable view `status` prints and `--snapshot` reads back, and (b) the router's
//! [`NodeSpec`]s.
//!
//! Rules:
//! - one node per live stats record; its report age is "now" minus the record's
//!   `timestamp` (never negative), and it is stale when older than `stale_after` seconds,
//!   or when its timestamp is more than [`FUTURE_SKEW_S`] ahead of this clock;
//! - GPUs come from the record's `gpus` (SOLLOL-written records have nothing else);
//!   loaded models from our `loaded_models` extra, or from the node's Ollama when the
//!   config lists it under `nodes:`;
//! - the node's Ollama URL is our `ollama_url` extra, else `http://{node_id}` when the
//!   node id is `ip:port` (SOLLOL's convention);
//! - its rpc-server is our `rpc_host`/`rpc_port` extras, else the registration whose host
//!   is the node id's IP;
//! - every registration and every router-metadata backend is an rpc backend;
//! - a node whose stats record carries no RAM figures (SOLLOL writes none) takes its
//!   usable RAM from its rpc registration (`cpu_ram_mb`, after the node's own reserve),
//!   so a model larger than that never lands on its CPU.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vramroute_alloc::EstimateSource;

use crate::signals::{LoadSignals, NodeLoad};
use vramroute_ollama::{PsResponse, TagsResponse};
use vramroute_registry::{ClusterView, SmolStr};
use vramroute_router::{NodeSpec, RpcEndpoint, SnapshotConfig};

use crate::specs::{apply_node_load, node_spec, spec_age_ms};
pub(crate) use crate::view_rows::{
    merge_metadata, node_view, own_rpc, registered, rpc_view, total_for_usable, with_registration,
    Registered, Registrations,
};

const BYTES_PER_MIB: u64 = 1_048_576;
/// How far ahead of this clock a report's timestamp may be (clock skew between hosts)
/// before the report counts as stale.
pub const FUTURE_SKEW_S: f64 = 60.0;

/// What `status --json` prints and `--snapshot` reads. All memory in MiB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatusView {
    /// Where the view came from (`redis redis://…`, `embedded`, `snapshot FILE`).
    pub source: String,
    /// When the view was built, Unix seconds.
    pub generated_at: f64,
    /// Reports older than this many seconds are stale.
    pub stale_after_s: f64,
    /// usable = total × this.
    pub vram_safety_margin: f64,
    /// Every node, by id.
    pub nodes: Vec<NodeView>,
    /// Every llama.cpp rpc backend (registrations and router metadata).
    pub rpc_backends: Vec<RpcBackendView>,
    /// Sums over the fresh nodes.
    #[serde(default)]
    pub totals: Totals,
    /// Records the registry skipped, with the reason.
    #[serde(default)]
    pub skipped: Vec<SkippedView>,
    /// Problems met while building the view (unreachable Ollama nodes, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Model sizes the operator configured (the coordinator's `model_sizes`), MiB, by
    /// name: the size resolver takes them right after an explicit size.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_sizes: BTreeMap<String, u64>,
}

/// One node of the view: its report age, staleness and measured load, and the facts
/// its record gave ([`NodeFacts`], shared: a view built from the same record as the
/// previous one shares each unchanged node's facts with it, so building and freeing a
/// view costs a reference count per unchanged node, not a copy of its strings).
///
/// The facts read as fields of the node (`node.id`, `node.gpus`: it dereferences to
/// [`NodeFacts`]); changing one (`node.loaded_models.push(..)`) copies them first if
/// another view shares them. Serialised flat, in the field order of [`NodeFacts`] with
/// `age_s` and `stale` after `timestamp` and `load` last.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NodeView {
    /// Age of the report when the view was built, seconds.
    pub age_s: f64,
    /// Older than the view's `stale_after_s`: shown, not routed to.
    pub stale: bool,
    /// Load measured by whoever forwards requests to the node (the gateway), when it
    /// has: fed to the router as requests in flight, latency and success rate. Boxed:
    /// most nodes of a large cluster have none, and the view holds one per node.
    pub load: Option<Box<NodeLoad>>,
    pub(crate) facts: Arc<NodeFacts>,
}

/// What a node's record says (and, for a `nodes:` entry, its Ollama): the part of a
/// [`NodeView`] that does not change while the record does not, shared between views.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NodeFacts {
    /// SOLLOL's node id, `{ip}:{ollama_port}`.
    pub id: SmolStr,
    /// The node's hostname, when its reporter sent one.
    pub hostname: Option<SmolStr>,
    /// `nvidia`, `amd`, `intel`, `none`, or `unknown` for an Ollama-only node.
    pub vendor: SmolStr,
    /// Who wrote the record: `vramroute X.Y.Z`, `sollol` (no extras), or `ollama`
    /// (a `nodes:` entry with no registry record).
    pub writer: SmolStr,
    /// The record's timestamp, Unix seconds (0 when there is no record).
    pub timestamp: f64,
    /// Whether the node has a stats record in the registry (routable).
    pub in_registry: bool,
    /// The node's Ollama base URL (ours, or `http://{node_id}` by SOLLOL's convention).
    pub ollama_url: Option<SmolStr>,
    /// The node's llama.cpp rpc-server, when it runs one.
    pub rpc: Option<RpcEndpoint>,
    /// `on`, `off` or `unknown`: whether Ollama offloads to the GPU (ours only).
    pub gpu_offload: Option<SmolStr>,
    /// A note the reporter (or this view) attached.
    pub note: Option<SmolStr>,
    /// Total RAM, MiB (from our stats extras).
    pub cpu_ram_total_mb: Option<u64>,
    /// Free RAM, MiB (from our stats extras).
    pub cpu_ram_free_mb: Option<u64>,
    /// Usable RAM the node registered for llama.cpp (its rpc registration's
    /// `cpu_ram_mb`, after the node's own reserve), MiB. SOLLOL-written nodes have no
    /// other RAM figure.
    pub cpu_ram_registered_mb: Option<u64>,
    /// Logical CPUs.
    pub cpu_count: Option<u32>,
    /// CPU load, percent.
    pub cpu_load_percent: Option<f64>,
    /// The node's GPUs, as its record lists them.
    pub gpus: Vec<GpuView>,
    /// Models loaded now (our extras, or the node's Ollama `/api/ps`).
    pub loaded_models: Vec<LoadedView>,
    /// Models installed in the node's Ollama (`/api/tags`), when it was asked.
    pub installed_models: Vec<InstalledView>,
}

impl NodeView {
    /// A node of `facts`, `age_s` old, without measured load.
    pub(crate) fn new(facts: Arc<NodeFacts>, age_s: f64, stale: bool) -> Self {
        NodeView {
            age_s,
            stale,
            load: None,
            facts,
        }
    }

    /// The facts, shared.
    #[cfg(test)]
    pub(crate) fn facts(&self) -> &Arc<NodeFacts> {
        &self.facts
    }
}

impl std::ops::Deref for NodeView {
    type Target = NodeFacts;
    fn deref(&self) -> &NodeFacts {
        &self.facts
    }
}

impl std::ops::DerefMut for NodeView {
    /// The facts to change: copied first when another view shares them.
    fn deref_mut(&mut self) -> &mut NodeFacts {
        Arc::make_mut(&mut self.facts)
    }
}

pub(crate) fn yes() -> bool {
    true
}

/// One GPU of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GpuView {
    /// GPU index on the node.
    pub index: u32,
    /// Name.
    pub name: SmolStr,
    /// Total VRAM, MiB.
    pub memory_total_mb: Option<u64>,
    /// total × vram_safety_margin.
    #[serde(default)]
    pub memory_usable_mb: Option<u64>,
    /// Free VRAM, MiB.
    pub memory_free_mb: Option<u64>,
    /// Used VRAM, MiB.
    #[serde(default)]
    pub memory_used_mb: Option<u64>,
    /// Utilisation, percent.
    #[serde(default)]
    pub utilization_percent: Option<u32>,
    /// Temperature, °C.
    #[serde(default)]
    pub temperature_c: Option<i32>,
    /// llama.cpp's device name (`CUDA0`), when the reporter knows it.
    #[serde(default)]
    pub ggml_device: Option<SmolStr>,
}

/// A model loaded on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoadedView {
    /// Name.
    pub name: SmolStr,
    /// Size, MiB, when known.
    #[serde(default)]
    pub size_mb: Option<u64>,
    /// Part in VRAM, MiB, when known.
    #[serde(default)]
    pub size_vram_mb: Option<u64>,
}

/// A model pulled on a node (its Ollama's `/api/tags`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InstalledView {
    /// Name.
    pub name: String,
    /// File size, MiB (rounded up).
    pub size_mb: u64,
}

/// A llama.cpp rpc backend: whether the router metadata lists it and what the
/// rpc-server answered, and what its registration says ([`RpcBackendFacts`], shared
/// between views like a node's [`NodeFacts`]). Reads as fields through
/// [`RpcBackendFacts`]; serialised flat, `in_metadata` after `registered` and `health`
/// last.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RpcBackendView {
    /// Whether `sollol:router:metadata` lists it.
    pub in_metadata: bool,
    /// What the rpc-server itself answered (reachable, busy, unreachable, protocol
    /// version, per-device free/total), when it was probed. Boxed: a large `Probe`,
    /// absent until the backend is probed.
    pub health: Option<Box<vramroute_rpc::Probe>>,
    pub(crate) facts: Arc<RpcBackendFacts>,
}

/// What an rpc backend's registration says (or, for a backend only the router
/// metadata lists, its address): shared between views.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RpcBackendFacts {
    /// Host or IP.
    pub host: SmolStr,
    /// rpc-server port.
    pub port: u16,
    /// Whether a registration (`sollol:rpc:node:{host}:{port}`) is live.
    pub registered: bool,
    /// Registered with a GPU.
    pub has_gpu: bool,
    /// SOLLOL-style device names (`cuda:0`).
    pub gpu_devices: Vec<SmolStr>,
    /// Usable VRAM per GPU after the node's reserve, MiB.
    pub gpu_vram_mb: Vec<u64>,
    /// GPU names.
    pub gpu_names: Vec<SmolStr>,
    /// Usable RAM after the node's reserve, MiB (`None`: not registered).
    pub cpu_ram_mb: Option<u64>,
    /// SOLLOL's `device_config` (`cpu,cuda:0`).
    pub device_config: Option<SmolStr>,
    /// SOLLOL's worker count (1 + GPUs).
    pub total_parallel_workers: Option<u32>,
    /// ggml device names (ours; derived from `gpu_devices` for SOLLOL registrations).
    pub ggml_devices: Vec<SmolStr>,
}

impl std::ops::Deref for RpcBackendView {
    type Target = RpcBackendFacts;
    fn deref(&self) -> &RpcBackendFacts {
        &self.facts
    }
}

impl std::ops::DerefMut for RpcBackendView {
    /// The facts to change: copied first when another view shares them.
    fn deref_mut(&mut self) -> &mut RpcBackendFacts {
        Arc::make_mut(&mut self.facts)
    }
}

impl RpcBackendView {
    /// A backend of `facts`, not (yet) in the metadata, not probed.
    pub(crate) fn new(facts: Arc<RpcBackendFacts>) -> Self {
        RpcBackendView {
            in_metadata: false,
            health: None,
            facts,
        }
    }
}

/// Sums over the view's fresh nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Totals {
    /// Nodes in the view.
    pub nodes: usize,
    /// Of which stale.
    pub stale_nodes: usize,
    /// GPUs on fresh nodes.
    pub gpus: usize,
    /// Total VRAM of those GPUs, MiB.
    pub vram_total_mb: u64,
    /// Usable VRAM (total × margin), MiB.
    pub vram_usable_mb: u64,
    /// Free VRAM, MiB.
    pub vram_free_mb: u64,
    /// RAM of fresh nodes (known figures only), MiB.
    pub ram_total_mb: u64,
    /// rpc backends.
    pub rpc_backends: usize,
}

/// A registry record that was skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SkippedView {
    /// The Redis key.
    pub key: String,
    /// Why it was skipped.
    pub reason: String,
}

impl SkippedView {
    /// The records `cluster`'s discovery skipped, with their reasons.
    pub(crate) fn all_of(cluster: &ClusterView) -> Vec<SkippedView> {
        cluster
            .skipped
            .iter()
            .map(|s| SkippedView {
                key: s.key.clone(),
                reason: s.reason.clone(),
            })
            .collect()
    }
}

/// What one Ollama node outside the registry answered (`/api/ps`, `/api/tags`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OllamaNodeInfo {
    /// The Ollama base URL asked.
    pub url: String,
    /// Its `/api/ps`, or why not.
    pub ps: Result<PsResponse, String>,
    /// Its `/api/tags`, or why not.
    pub tags: Result<TagsResponse, String>,
}

/// Asks every Ollama at `urls` (`/api/ps`, `/api/tags`) at once, each request bounded
/// by `timeout`: what a [`Feed::ollama_nodes`](crate::Feed::ollama_nodes) over a list
/// of configured Ollama nodes returns. A node that cannot be asked (a bad URL, refused,
/// timed out) is in the answer with why, in `urls` order.
pub async fn ask_ollama_nodes(
    urls: &[String],
    timeout: std::time::Duration,
) -> Vec<OllamaNodeInfo> {
    let asks = urls.iter().map(|url| async move {
        match vramroute_ollama::OllamaClient::new(url, timeout) {
            Ok(client) => {
                let (ps, tags) = tokio::join!(client.ps(), client.tags());
                OllamaNodeInfo::new(
                    url.clone(),
                    ps.map_err(|e| e.to_string()),
                    tags.map_err(|e| e.to_string()),
                )
            }
            Err(e) => OllamaNodeInfo::new(url.clone(), Err(e.to_string()), Err(e.to_string())),
        }
    });
    futures_util::future::join_all(asks).await
}

/// `http://{node_id}` when the node id is `ip:port` (or `host:port`).
pub fn derived_ollama_url(node_id: &str) -> Option<String> {
    let (host, port) = node_id.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() || host.contains(['/', ' ']) {
        return None;
    }
    Some(format!("http://{node_id}"))
}

impl OllamaNodeInfo {
    /// The answers of the Ollama at `url` (each `Err` holds why it failed).
    pub fn new(
        url: impl Into<String>,
        ps: Result<PsResponse, String>,
        tags: Result<TagsResponse, String>,
    ) -> Self {
        OllamaNodeInfo {
            url: url.into(),
            ps,
            tags,
        }
    }
}

impl LoadedView {
    /// A loaded model of `size_mb` MiB with `size_vram_mb` in VRAM (`None`: unknown).
    pub fn new(name: impl Into<SmolStr>, size_mb: Option<u64>, size_vram_mb: Option<u64>) -> Self {
        LoadedView {
            name: name.into(),
            size_mb,
            size_vram_mb,
        }
    }
}

impl StatusView {
    /// A view with no nodes (for sizing models without a cluster).
    pub fn empty(source: impl Into<String>) -> StatusView {
        StatusView::from_cluster(&ClusterView::default(), source.into(), 0.0, 30.0, 0.8)
    }

    /// Builds the view from a registry read at `now` (Unix seconds).
    pub fn from_cluster(
        cluster: &ClusterView,
        source: String,
        now: f64,
        stale_after_s: f64,
        margin: f64,
    ) -> StatusView {
        let mut rpc_backends: Vec<RpcBackendView> = cluster
            .rpc_nodes
            .iter()
            .map(|e| rpc_view(&e.host, e.port, &e.record))
            .collect();
        if let Some(meta) = &cluster.metadata {
            merge_metadata(&mut rpc_backends, meta);
        }
        let registrations = Registrations::of(&cluster.rpc_nodes);
        let nodes = cluster
            .stats
            .iter()
            .map(|(id, r)| {
                let registration = registrations.of_node(id, r).map(registered);
                node_view(id, r, registration.as_ref(), now, stale_after_s, margin)
            })
            .collect();
        let mut view = StatusView {
            source,
            generated_at: now,
            stale_after_s,
            vram_safety_margin: margin,
            nodes,
            rpc_backends,
            totals: Totals::default(),
            skipped: SkippedView::all_of(cluster),
            warnings: Vec::new(),
            model_sizes: BTreeMap::new(),
        };
        view.recompute_totals();
        view
    }

    /// Merges what the config's Ollama nodes answered: loaded models (`/api/ps`) and
    /// installed models (`/api/tags`). A node the registry does not know is added as an
    /// Ollama-only node (shown, not routed to: its hardware is unknown).
    pub fn merge_ollama(&mut self, infos: &[OllamaNodeInfo]) {
        for info in infos {
            let url = info.url.trim_end_matches('/');
            let authority = url.strip_prefix("http://").unwrap_or(url);
            let idx = self.nodes.iter().position(|n| {
                n.ollama_url.as_deref().map(|u| u.trim_end_matches('/')) == Some(url)
                    || n.id == authority
            });
            let idx = idx.unwrap_or_else(|| {
                let facts = NodeFacts {
                    id: authority.into(),
                    hostname: None,
                    vendor: SmolStr::new_static("unknown"),
                    writer: SmolStr::new_static("ollama"),
                    timestamp: 0.0,
                    in_registry: false,
                    ollama_url: Some(url.into()),
                    rpc: None,
                    gpu_offload: None,
                    note: Some("listed in the config's nodes: but has no registry record; hardware unknown, not routed to".into()),
                    cpu_ram_total_mb: None,
                    cpu_ram_free_mb: None,
                    cpu_ram_registered_mb: None,
                    cpu_count: None,
                    cpu_load_percent: None,
                    gpus: Vec::new(),
                    loaded_models: Vec::new(),
                    installed_models: Vec::new(),
                };
                self.nodes.push(NodeView::new(Arc::new(facts), 0.0, false));
                self.nodes.len() - 1
            });
            let node = &mut self.nodes[idx];
            match &info.ps {
                Ok(ps) => {
                    node.loaded_models = ps
                        .models
                        .iter()
                        .map(|m| LoadedView {
                            name: m.name.as_str().into(),
                            size_mb: Some(m.size / BYTES_PER_MIB),
                            size_vram_mb: Some(m.size_vram / BYTES_PER_MIB),
                        })
                        .collect();
                }
                Err(e) => self.warnings.push(format!("{url}: /api/ps: {e}")),
            }
            match &info.tags {
                Ok(tags) => {
                    node.installed_models = tags
                        .models
                        .iter()
                        .map(|m| InstalledView {
                            name: m.name.clone(),
                            size_mb: m.size.div_ceil(BYTES_PER_MIB),
                        })
                        .collect();
                }
                Err(e) => self.warnings.push(format!("{url}: /api/tags: {e}")),
            }
        }
        self.nodes.sort_by(|a, b| a.id.cmp(&b.id));
        self.recompute_totals();
    }

    /// Attaches the measured load of every node that has some.
    pub fn apply_load(&mut self, signals: &LoadSignals) {
        let all = signals.all();
        if all.is_empty() {
            return;
        }
        for n in &mut self.nodes {
            n.load = all.get(n.id.as_str()).cloned().map(Box::new);
        }
    }

    /// Recomputes [`Totals`] from the nodes and backends (after editing them).
    pub fn recompute_totals(&mut self) {
        let mut t = Totals {
            nodes: self.nodes.len(),
            rpc_backends: self.rpc_backends.len(),
            ..Totals::default()
        };
        for n in &self.nodes {
            if n.stale {
                t.stale_nodes += 1;
                continue;
            }
            t.ram_total_mb += n.cpu_ram_total_mb.unwrap_or(0);
            for g in &n.gpus {
                t.gpus += 1;
                t.vram_total_mb += g.memory_total_mb.unwrap_or(0);
                t.vram_usable_mb += g.memory_usable_mb.unwrap_or(0);
                t.vram_free_mb += g.memory_free_mb.unwrap_or(0);
            }
        }
        self.totals = t;
    }

    /// The router's input: every node with a registry record. A GPU whose total is
    /// unknown is left out (the router cannot size it). RAM: the record's total when it
    /// has one; otherwise the usable RAM the node registered, given to the router as the
    /// total whose usable share (× `config.ram_safety_margin`) is exactly that figure, so
    /// a model larger than it never lands on the node's CPU. A loaded model's unknown
    /// sizes stay unknown.
    pub fn node_specs(&self, config: &SnapshotConfig) -> Vec<NodeSpec> {
        self.nodes
            .iter()
            .filter(|n| n.in_registry)
            .map(|n| {
                let mut spec = node_spec(n, config);
                apply_node_load(&mut spec, n.load.as_deref());
                spec.report_age_ms = spec_age_ms(n, config);
                spec
            })
            .collect()
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Every model name known anywhere in the view with the sizes seen, by source (the
    /// size resolver's labels: `Ollama /api/tags size of NODE`, `Ollama /api/ps size of
    /// a loaded copy on NODE`).
    pub fn model_sightings(&self) -> BTreeMap<String, Vec<(String, Option<u64>)>> {
        let mut out: BTreeMap<String, Vec<(String, Option<u64>)>> = BTreeMap::new();
        for n in &self.nodes {
            for m in &n.installed_models {
                out.entry(m.name.to_string()).or_default().push((
                    format!("{} of {}", EstimateSource::OllamaTags, n.id),
                    Some(m.size_mb),
                ));
            }
            for m in &n.loaded_models {
                out.entry(m.name.to_string()).or_default().push((
                    format!("{} on {}", EstimateSource::LoadedCopy, n.id),
                    m.size_mb,
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use vramroute_registry::{decode_rpc, decode_stats, Limits, RpcNodeEntry};

    use vramroute_registry::testing::fixtures::{
        GPU_STATS_CPU_ONLY as CPU_ONLY, GPU_STATS_NVIDIA as NVIDIA, RPC_NODE_GPU as RPC,
    };

    fn sollol_cluster() -> ClusterView {
        let limits = Limits::default();
        let nv = decode_stats("10.1.2.3:11434", NVIDIA.as_bytes(), &limits)
            .expect("SOLLOL's NVIDIA record parses");
        let cpu = decode_stats("10.1.2.4:11434", CPU_ONLY.as_bytes(), &limits)
            .expect("SOLLOL's CPU-only record parses");
        let rpc = decode_rpc(RPC.as_bytes(), &limits).expect("SOLLOL's registration parses");
        let mut view = ClusterView::default();
        view.stats = vec![
            ("10.1.2.3:11434".into(), nv.into()),
            ("10.1.2.4:11434".into(), cpu.into()),
        ];
        view.rpc_nodes = vec![RpcNodeEntry::new("10.1.2.3", 50052, rpc.into())];
        view
    }

    #[test]
    fn sollol_records_become_nodes_with_derived_urls_and_rpc() {
        let ts = 1_795_441_356.327;
        let view = StatusView::from_cluster(&sollol_cluster(), "test".into(), ts + 10.0, 30.0, 0.8);
        assert_eq!(view.nodes.len(), 2);
        let nv = &view.nodes[0];
        assert_eq!(nv.writer, "sollol");
        assert_eq!(nv.ollama_url.as_deref(), Some("http://10.1.2.3:11434"));
        assert_eq!(nv.rpc.as_ref().map(|r| r.port), Some(50052));
        assert_eq!(nv.gpus[0].memory_usable_mb, Some(19660));
        assert!(!nv.stale && (nv.age_s - 10.0).abs() < 0.01);
        assert_eq!(view.rpc_backends[0].ggml_devices, ["CUDA0", "CUDA1"]);
        assert_eq!(view.totals.gpus, 2);
        assert_eq!(view.totals.vram_free_mb, 27000);
        let specs = view.node_specs(&SnapshotConfig::default());
        assert_eq!(specs[0].gpus.len(), 2);
        assert_eq!(specs[0].report_age_ms / 1000, 10);

        let old = StatusView::from_cluster(&sollol_cluster(), "t".into(), ts + 31.0, 30.0, 0.8);
        assert!(old.nodes.iter().all(|n| n.stale));
        assert_eq!(old.totals.stale_nodes, 2);
        assert_eq!(old.totals.gpus, 0);
    }

    /// A node finds its registration by host (SOLLOL's records name no rpc port) among
    /// many, whether the registrations come sorted (binary search) or not (a scan).
    #[test]
    fn registrations_are_found_sorted_or_not() {
        let base = sollol_cluster();
        let rpc = Arc::clone(&base.rpc_nodes[0].record);
        let mut sorted = base.clone();
        sorted.rpc_nodes = ["10.1.2.2", "10.1.2.3", "10.1.2.30", "10.1.2.4"]
            .iter()
            .flat_map(|h| {
                let rpc = Arc::clone(&rpc);
                [50052u16, 50053].map(move |p| RpcNodeEntry::new(*h, p, Arc::clone(&rpc)))
            })
            .collect();
        let mut unsorted = sorted.clone();
        unsorted.rpc_nodes.reverse();
        for (cluster, port) in [(&sorted, 50052), (&unsorted, 50053)] {
            let view = StatusView::from_cluster(cluster, "t".into(), 1.8e9, 30.0, 0.8);
            for n in &view.nodes {
                let rpc = n.rpc.as_ref().expect("registered");
                assert_eq!(
                    (rpc.host.as_str(), rpc.port),
                    (&n.id[..8], port),
                    "{}",
                    n.id
                );
                assert_eq!(
                    n.cpu_ram_registered_mb,
                    Some(cluster.rpc_nodes[0].record.cpu_ram_mb)
                );
            }
        }
    }

    #[test]
    fn view_round_trips_through_json() {
        let view = StatusView::from_cluster(&sollol_cluster(), "t".into(), 1.8e9, 30.0, 0.8);
        let json = serde_json::to_string(&view).expect("serialises");
        let back: StatusView = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, view);
    }

    #[test]
    fn ollama_only_nodes_are_shown_not_routed() {
        let mut view = StatusView::from_cluster(&sollol_cluster(), "t".into(), 1.8e9, 30.0, 0.8);
        view.merge_ollama(&[
            OllamaNodeInfo {
                url: "http://10.1.2.3:11434".into(),
                ps: Ok(serde_json::from_str(
                    r#"{"models":[{"name":"llama3.1:8b","size":5000000000,"size_vram":5000000000}]}"#,
                )
                .expect("ps json")),
                tags: Err("down".into()),
            },
            OllamaNodeInfo {
                url: "http://10.9.9.9:11434/".into(),
                ps: Ok(PsResponse::default()),
                tags: Ok(TagsResponse::default()),
            },
        ]);
        assert_eq!(view.nodes.len(), 3);
        assert_eq!(view.nodes[0].loaded_models[0].size_mb, Some(4768));
        assert_eq!(view.warnings.len(), 1);
        assert!(!view.node("10.9.9.9:11434").expect("added").in_registry);
        assert_eq!(view.node_specs(&SnapshotConfig::default()).len(), 2);
    }

    /// A saved view with every field of a node and a backend set, and one of each
    /// with only the required fields.
    const SAVED: &str = r#"{"source":"snapshot test","generated_at":1800000000.5,"stale_after_s":30.0,"vram_safety_margin":0.8,"nodes":[{"id":"10.1.2.3:11434","hostname":"gpu-a","vendor":"nvidia","writer":"vramroute 0.1.0","timestamp":1799999990.25,"age_s":10.25,"stale":false,"in_registry":true,"ollama_url":"http://10.1.2.3:11434","rpc":{"host":"10.1.2.3","port":50052},"gpu_offload":"on","note":"a note","cpu_ram_total_mb":64000,"cpu_ram_free_mb":32000,"cpu_ram_registered_mb":25600,"cpu_count":16,"cpu_load_percent":12.5,"gpus":[{"index":0,"name":"RTX 4090","memory_total_mb":24576,"memory_usable_mb":19660,"memory_free_mb":20000,"memory_used_mb":4576,"utilization_percent":40,"temperature_c":61,"ggml_device":"CUDA0"}],"loaded_models":[{"name":"llama3.1:8b","size_mb":4700,"size_vram_mb":4700}],"installed_models":[{"name":"llama3.1:8b","size_mb":4661}],"load":{"in_flight":2,"ttfb_ms":12.5,"latency_ms":300.0,"success_rate":0.95,"requests":10,"failures":1}},{"id":"10.1.2.4:11434","vendor":"none","writer":"sollol","timestamp":1799999900.0,"age_s":100.5,"stale":true,"gpus":[]}],"rpc_backends":[{"host":"10.1.2.3","port":50052,"registered":true,"in_metadata":true,"has_gpu":true,"gpu_devices":["cuda:0"],"gpu_vram_mb":[19660],"gpu_names":["RTX 4090"],"cpu_ram_mb":25600,"device_config":"cpu,cuda:0","total_parallel_workers":2,"ggml_devices":["CUDA0"]},{"host":"10.9.9.9","port":50052,"in_metadata":true}],"totals":{"nodes":2,"stale_nodes":1,"gpus":1,"vram_total_mb":24576,"vram_usable_mb":19660,"vram_free_mb":20000,"ram_total_mb":64000,"rpc_backends":2},"skipped":[{"key":"a-bad-key","reason":"bad json"}],"warnings":["w1"],"model_sizes":{"x":5}}"#;

    /// What `status --snapshot` of [`SAVED`] printed (compacted) before the rows were
    /// shared: the flat shape, in that field order, defaults filled in.
    const SAVED_PRINTED: &str = r#"{"source":"snapshot test","generated_at":1800000000.5,"stale_after_s":30.0,"vram_safety_margin":0.8,"nodes":[{"id":"10.1.2.3:11434","hostname":"gpu-a","vendor":"nvidia","writer":"vramroute 0.1.0","timestamp":1799999990.25,"age_s":10.25,"stale":false,"in_registry":true,"ollama_url":"http://10.1.2.3:11434","rpc":{"host":"10.1.2.3","port":50052},"gpu_offload":"on","note":"a note","cpu_ram_total_mb":64000,"cpu_ram_free_mb":32000,"cpu_ram_registered_mb":25600,"cpu_count":16,"cpu_load_percent":12.5,"gpus":[{"index":0,"name":"RTX 4090","memory_total_mb":24576,"memory_usable_mb":19660,"memory_free_mb":20000,"memory_used_mb":4576,"utilization_percent":40,"temperature_c":61,"ggml_device":"CUDA0"}],"loaded_models":[{"name":"llama3.1:8b","size_mb":4700,"size_vram_mb":4700}],"installed_models":[{"name":"llama3.1:8b","size_mb":4661}],"load":{"in_flight":2,"ttfb_ms":12.5,"latency_ms":300.0,"success_rate":0.95,"requests":10,"failures":1}},{"id":"10.1.2.4:11434","hostname":null,"vendor":"none","writer":"sollol","timestamp":1799999900.0,"age_s":100.5,"stale":true,"in_registry":true,"ollama_url":null,"rpc":null,"gpu_offload":null,"note":null,"cpu_ram_total_mb":null,"cpu_ram_free_mb":null,"cpu_ram_registered_mb":null,"cpu_count":null,"cpu_load_percent":null,"gpus":[],"loaded_models":[],"installed_models":[],"load":null}],"rpc_backends":[{"host":"10.1.2.3","port":50052,"registered":true,"in_metadata":true,"has_gpu":true,"gpu_devices":["cuda:0"],"gpu_vram_mb":[19660],"gpu_names":["RTX 4090"],"cpu_ram_mb":25600,"device_config":"cpu,cuda:0","total_parallel_workers":2,"ggml_devices":["CUDA0"],"health":null},{"host":"10.9.9.9","port":50052,"registered":true,"in_metadata":true,"has_gpu":false,"gpu_devices":[],"gpu_vram_mb":[],"gpu_names":[],"cpu_ram_mb":null,"device_config":null,"total_parallel_workers":null,"ggml_devices":[],"health":null}],"totals":{"nodes":2,"stale_nodes":1,"gpus":1,"vram_total_mb":24576,"vram_usable_mb":19660,"vram_free_mb":20000,"ram_total_mb":64000,"rpc_backends":2},"skipped":[{"key":"a-bad-key","reason":"bad json"}],"warnings":["w1"],"model_sizes":{"x":5}}"#;

    /// The view's JSON is byte for byte what it was when every row was a flat struct.
    #[test]
    fn view_json_keeps_its_flat_shape() {
        let view: StatusView = serde_json::from_str(SAVED).expect("parses");
        assert_eq!(
            serde_json::to_string(&view).expect("serialises"),
            SAVED_PRINTED
        );
        let again: StatusView = serde_json::from_str(SAVED_PRINTED).expect("parses");
        assert_eq!(again, view);
    }

    /// Views share their rows' facts; changing one node of a copy copies that node's
    /// facts only, and leaves the other view as it was.
    #[test]
    fn changing_a_shared_node_copies_it_first() {
        let view = StatusView::from_cluster(&sollol_cluster(), "t".into(), 1.8e9, 30.0, 0.8);
        let mut copy = view.clone();
        assert!(Arc::ptr_eq(view.nodes[0].facts(), copy.nodes[0].facts()));
        copy.nodes[0]
            .loaded_models
            .push(LoadedView::new("llama3.1:8b", Some(4_700), None));
        copy.nodes[0].age_s = 1.0;
        copy.rpc_backends[0].gpu_names.push("extra".into());
        assert!(view.nodes[0].loaded_models.is_empty());
        assert_eq!(copy.nodes[0].loaded_models.len(), 1);
        assert!(view.nodes[0].age_s > 1.0);
        assert_eq!(view.rpc_backends[0].gpu_names.len(), 2);
        assert!(!Arc::ptr_eq(view.nodes[0].facts(), copy.nodes[0].facts()));
        assert!(Arc::ptr_eq(view.nodes[1].facts(), copy.nodes[1].facts()));
    }

    #[test]
    fn ollama_urls_derive_from_node_ids() {
        assert_eq!(
            derived_ollama_url("10.0.0.1:11434").as_deref(),
            Some("http://10.0.0.1:11434")
        );
        assert_eq!(derived_ollama_url("gpu-box"), None);
    }
}
