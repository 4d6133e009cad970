//! The compact, read-only cluster snapshot the router decides on.
//!
//! Built once per update from [`NodeSpec`]s: nodes sorted by id (so nothing depends on
//! input order), GPUs flattened into one array with per-node ranges, usable and free VRAM
//! precomputed, model names interned to integers, labels to bits. The only mutable state
//! is the per-GPU and per-node reservation counters, plain atomics that readers load with
//! `Relaxed` ordering: reserving never blocks routing.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::error::{invalid_config, Error, Result};
use crate::input::NodeSpec;
use crate::model_name::{is_clean, normalize_model_name, untagged_alias};
use crate::policy::SollolParams;
use crate::sollol::{BOUND_CLASSES, WARM_CLASSES};

/// Most `sollol` parameter sets a snapshot keeps prepared at once (a configured policy,
/// the defaults a request's `?policy=sollol` asks for, and a few more); a further set
/// evicts the oldest.
pub(crate) const MAX_PREPARED: usize = 4;

/// Most distinct labels a snapshot can index (they become bits of a `u64`).
pub const MAX_LABELS: usize = 64;

pub(crate) const NO_SLOT: u32 = u32::MAX;
pub(crate) const UNKNOWN_MIB: u64 = u64::MAX;

pub(crate) const ELIGIBLE: u8 = 1;
pub(crate) const HAS_CPU_LOAD: u8 = 2;
pub(crate) const HAS_LATENCY: u8 = 4;
pub(crate) const HAS_SUCCESS_RATE: u8 = 8;
/// SOLLOL host priority 0.
pub(crate) const TOP_PRIORITY: u8 = 16;

/// Settings that shape a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SnapshotConfig {
    /// A node whose last report is older than this (ms) is stale and never chosen.
    /// Default 30 000 (six missed 5 s reports; SOLLOL's stats expire after 120 s).
    pub stale_after_ms: u64,
    /// Fraction of each GPU's VRAM a model may use (SOLLOL's `vram_safety_margin`, 0.8):
    /// usable = ⌊total × margin⌋. Must be in (0, 1].
    pub vram_safety_margin: f64,
    /// Fraction of RAM a CPU placement may use (SPEC: reserve 20 %, so 0.8). In (0, 1].
    pub ram_safety_margin: f64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            stale_after_ms: 30_000,
            vram_safety_margin: 0.8,
            ram_safety_margin: 0.8,
        }
    }
}

impl SnapshotConfig {
    /// The same settings with a node stale after `ms` milliseconds.
    ///
    /// ```
    /// let c = vramroute_router::SnapshotConfig::default()
    ///     .with_stale_after_ms(60_000)
    ///     .with_vram_safety_margin(0.9);
    /// assert_eq!((c.stale_after_ms, c.vram_safety_margin), (60_000, 0.9));
    /// c.validate()?;
    /// # Ok::<(), vramroute_router::Error>(())
    /// ```
    #[must_use]
    pub fn with_stale_after_ms(mut self, ms: u64) -> Self {
        self.stale_after_ms = ms;
        self
    }

    /// The same settings with a GPU's usable VRAM at `margin` of its total.
    #[must_use]
    pub fn with_vram_safety_margin(mut self, margin: f64) -> Self {
        self.vram_safety_margin = margin;
        self
    }

    /// The same settings with a CPU placement's usable RAM at `margin` of the total.
    #[must_use]
    pub fn with_ram_safety_margin(mut self, margin: f64) -> Self {
        self.ram_safety_margin = margin;
        self
    }

    /// Checks the margins are in (0, 1] and the staleness limit is positive.
    pub fn validate(&self) -> Result<()> {
        for (field, m) in [
            ("vram_safety_margin", self.vram_safety_margin),
            ("ram_safety_margin", self.ram_safety_margin),
        ] {
            if !(m.is_finite() && m > 0.0 && m <= 1.0) {
                return Err(invalid_config(field, m, "a fraction in (0, 1], e.g. 0.8"));
            }
        }
        if self.stale_after_ms == 0 {
            return Err(invalid_config(
                "stale_after_ms",
                0,
                "a positive number of milliseconds",
            ));
        }
        Ok(())
    }
}

/// Position of a node in a [`Snapshot`] (nodes are sorted by id). Only meaningful for the
/// snapshot it came from; [`Decision`](crate::Decision) carries that snapshot's [`SnapshotId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NodeIndex(pub(crate) u32);

impl NodeIndex {
    /// The index as `usize`.
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// Identity of one built snapshot (process-wide counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct SnapshotId(pub(crate) u64);

impl SnapshotId {
    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Whether a node may be routed to, and if not, why.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum NodeStatus {
    /// Healthy, fresh and valid.
    Eligible,
    /// The last health check failed.
    Unhealthy,
    /// The last report is too old.
    Stale {
        /// Age of the last report, ms.
        age_ms: u64,
        /// The configured limit, ms.
        limit_ms: u64,
    },
    /// The node's description failed [`NodeSpec::validate`]. Boxed: the snapshot keeps
    /// a status per node, and an [`Error`] is ~90 bytes against 24 for the others.
    Invalid(Box<Error>),
}

/// How a GPU's free VRAM was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FreeSource {
    /// Reported by the node.
    Reported,
    /// Free unknown: total − used.
    TotalMinusUsed,
    /// Free and used unknown: usable − VRAM of the models loaded on it.
    UsableMinusLoaded,
}

/// Hot per-node data, 32 bytes: what the decision loop reads for every node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeRow {
    pub(crate) gpu_start: u32,
    pub(crate) loaded_start: u32,
    pub(crate) gpu_len: u16,
    pub(crate) loaded_len: u16,
    pub(crate) flags: u8,
    pub(crate) tasks: u8,
    /// Saturated at `u16::MAX`.
    pub(crate) cpu_count: u16,
    pub(crate) active_requests: u32,
    /// Fraction 0–1.
    pub(crate) cpu_load: f32,
    pub(crate) latency_ms: f32,
    pub(crate) success_rate: f32,
}

impl NodeRow {
    /// CPU load, latency and success rate, each the reported value or the policy's
    /// default when the node did not report it.
    #[inline(always)]
    pub(crate) fn signals(&self, p: &SollolParams) -> (f64, f64, f64) {
        let known = |flag: u8, v: f32, default: f64| {
            if self.flags & flag != 0 {
                f64::from(v)
            } else {
                default
            }
        };
        (
            known(HAS_CPU_LOAD, self.cpu_load, p.default_cpu_load),
            known(HAS_LATENCY, self.latency_ms, p.default_latency_ms),
            known(HAS_SUCCESS_RATE, self.success_rate, p.default_success_rate),
        )
    }
}

impl NodeRow {
    #[inline(always)]
    pub(crate) fn gpus(&self) -> std::ops::Range<usize> {
        self.gpu_start as usize..self.gpu_start as usize + self.gpu_len as usize
    }
    #[inline(always)]
    pub(crate) fn loaded(&self) -> std::ops::Range<usize> {
        self.loaded_start as usize..self.loaded_start as usize + self.loaded_len as usize
    }
}

/// RAM of a node, read only for CPU placements.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RamRow {
    /// RAM usable by a CPU placement, MiB ([`UNKNOWN_MIB`] if unknown).
    pub(crate) usable_mib: u64,
    /// Free RAM, MiB ([`UNKNOWN_MIB`] if unknown).
    pub(crate) free_mib: u64,
}

/// Hot per-GPU data, 12 bytes, reservation counter inline so one stream feeds the loop.
#[derive(Debug)]
pub(crate) struct GpuRow {
    pub(crate) usable_mib: u32,
    /// Free VRAM before reservations.
    pub(crate) free_mib: u32,
    pub(crate) reserved_mib: AtomicU32,
}

impl GpuRow {
    #[inline(always)]
    pub(crate) fn free_now(&self) -> u64 {
        u64::from(
            self.free_mib
                .saturating_sub(self.reserved_mib.load(Ordering::Relaxed)),
        )
    }
}

/// Read-only cluster view plus lock-free reservation counters. Build it with
/// [`Snapshot::build`], route on it with [`Snapshot::route`] or through a
/// [`Router`](crate::Router).
///
/// ```
/// use vramroute_router::{GpuSpec, NodeSpec, Policy, Request, Snapshot, SnapshotConfig, Target};
/// let mut a = NodeSpec::new("a");
/// a.gpus.push(GpuSpec::new(0, 4096, Some(4000)));
/// let mut b = NodeSpec::new("b");
/// b.gpus.push(GpuSpec::new(0, 24576, Some(20000)));
/// let snap = Snapshot::build(vec![a, b], &SnapshotConfig::default())?;
/// let d = snap.route(&Policy::default(), &Request::new("llama3.1:8b", 4700)).expect("fits on b");
/// assert_eq!(snap.node(d.node).id, "b");
/// assert_eq!((d.target, d.gpu), (Target::Gpu, Some(0)));
/// # Ok::<(), vramroute_router::Error>(())
/// ```
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) id: SnapshotId,
    pub(crate) config: SnapshotConfig,
    /// Shared: a spec unchanged between snapshots (see [`Snapshot::build_shared`]) is
    /// one allocation for both.
    pub(crate) specs: Vec<Arc<NodeSpec>>,
    pub(crate) status: Vec<NodeStatus>,
    pub(crate) rows: Vec<NodeRow>,
    pub(crate) labels_of: Vec<u64>,
    pub(crate) ram: Vec<RamRow>,
    pub(crate) gpus: Vec<GpuRow>,
    pub(crate) gpu_index: Vec<u32>,
    pub(crate) free_source: Vec<FreeSource>,
    pub(crate) ram_reserved: Box<[AtomicU64]>,
    /// Per loaded-model row: interned model id, GPU slot (absolute, or [`NO_SLOT`]), VRAM.
    pub(crate) loaded_model: Vec<u32>,
    pub(crate) loaded_slot: Vec<u32>,
    pub(crate) loaded_vram_mib: Vec<u64>,
    pub(crate) models: HashMap<Box<str>, u32>,
    pub(crate) labels: HashMap<Box<str>, u8>,
    pub(crate) eligible: usize,
    /// Interned model id → nodes where it is loaded (ascending).
    pub(crate) model_nodes: Vec<Vec<u32>>,
    /// Eligible nodes by descending largest free VRAM (before reservations), then index.
    pub(crate) by_max_free: Vec<(u64, u32)>,
    /// One bit per node that ever had a reservation on this snapshot.
    pub(crate) reserved_bits: Box<[AtomicU64]>,
    /// Per-policy score bounds, one set per `sollol` parameter set used on this snapshot
    /// (at most [`MAX_PREPARED`], oldest evicted), built on first use (see `prune.rs`).
    pub(crate) prepared: ArcSwap<Vec<Arc<Prepared>>>,
}

static NEXT_SNAPSHOT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn to_u32_mib(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl Snapshot {
    /// Builds a snapshot. Fails only for an invalid `config`, duplicate node ids or more
    /// than [`MAX_LABELS`] distinct labels; a node with impossible values is kept but
    /// marked [`NodeStatus::Invalid`] and never chosen.
    pub fn build(nodes: Vec<NodeSpec>, config: &SnapshotConfig) -> Result<Snapshot> {
        let nodes = nodes
            .into_iter()
            .map(|n| {
                let age = n.report_age_ms;
                (Arc::new(n), age)
            })
            .collect();
        Snapshot::build_shared(nodes, config)
    }

    /// Builds a snapshot from shared specs, each with its report age in ms, which is
    /// used instead of the spec's own `report_age_ms`: a caller that keeps the spec of
    /// an unchanged node (same report, older now) passes the same `Arc` to every
    /// snapshot and only the age changes. The spec's `report_age_ms` (what
    /// [`node`](Self::node) shows) is then the age when the spec was made; the node's
    /// [`NodeStatus`] uses the age given here. A spec whose GPUs are not sorted by index
    /// is copied to sort them. Same errors as [`build`](Self::build).
    pub fn build_shared(
        mut nodes: Vec<(Arc<NodeSpec>, u64)>,
        config: &SnapshotConfig,
    ) -> Result<Snapshot> {
        config.validate()?;
        // Strictly ascending ids (what a follower passes) are sorted and unique at once;
        // otherwise sort, then look for a duplicate.
        if !nodes.windows(2).all(|w| w[0].0.id < w[1].0.id) {
            nodes.sort_by(|a, b| a.0.id.cmp(&b.0.id));
            if let Some(w) = nodes.windows(2).find(|w| w[0].0.id == w[1].0.id) {
                return Err(Error::DuplicateNode {
                    node: w[0].0.id.to_string(),
                });
            }
        }
        for (n, _) in &mut nodes {
            if !n.gpus.windows(2).all(|w| w[0].index <= w[1].index) {
                Arc::make_mut(n).gpus.sort_by_key(|g| g.index);
            }
        }
        let (nodes, ages): (Vec<Arc<NodeSpec>>, Vec<u64>) = nodes.into_iter().unzip();
        if nodes.len() >= u32::MAX as usize {
            return Err(invalid_config(
                "nodes",
                nodes.len(),
                "fewer than 4294967295 nodes",
            ));
        }

        let label_set: BTreeSet<&str> = nodes
            .iter()
            .flat_map(|n| n.labels.iter().map(String::as_str))
            .collect();
        if label_set.len() > MAX_LABELS {
            return Err(Error::TooManyLabels {
                count: label_set.len(),
                max: MAX_LABELS,
            });
        }
        let labels: HashMap<Box<str>, u8> = label_set
            .iter()
            .enumerate()
            .map(|(bit, l)| (Box::from(*l), bit as u8))
            .collect();
        // Every loaded model's name normalised once, in node order: interned here and
        // looked up by the rows below.
        let normalized: Vec<Cow<'_, str>> = nodes
            .iter()
            .flat_map(|n| {
                n.loaded_models
                    .iter()
                    .map(|m| normalize_model_name(&m.name))
            })
            .collect();
        let model_set: BTreeSet<&str> = normalized.iter().map(|m| &**m).collect();
        let mut models: HashMap<Box<str>, u32> = HashMap::with_capacity(model_set.len() * 2);
        for (id, m) in model_set.iter().enumerate() {
            models.insert(Box::from(*m), id as u32);
            // `llama3.1` for `llama3.1:latest`: see `model_id`. Never a canonical name
            // (those are tagged), so it cannot collide.
            if let Some(alias) = untagged_alias(m) {
                models.insert(Box::from(alias), id as u32);
            }
        }
        let model_count = model_set.len();
        drop(model_set);

        let mut status = Vec::with_capacity(nodes.len());
        let mut rows = Vec::with_capacity(nodes.len());
        let mut labels_of = Vec::with_capacity(nodes.len());
        let mut ram = Vec::with_capacity(nodes.len());
        // Sized up front (an upper bound: invalid nodes add none), not grown by
        // doubling: a snapshot lives until the next one, and a grown array holds up to
        // twice its rows.
        let gpu_rows: usize = nodes.iter().map(|n| n.gpus.len()).sum();
        let loaded_rows: usize = nodes.iter().map(|n| n.loaded_models.len()).sum();
        let mut gpus = Vec::with_capacity(gpu_rows);
        let mut gpu_index = Vec::with_capacity(gpu_rows);
        let mut free_source = Vec::with_capacity(gpu_rows);
        let mut loaded_model = Vec::with_capacity(loaded_rows);
        let mut loaded_slot = Vec::with_capacity(loaded_rows);
        let mut loaded_vram_mib = Vec::with_capacity(loaded_rows);
        let mut eligible = 0;

        let mut name_at = 0;
        for (node, &age_ms) in nodes.iter().zip(&ages) {
            // This node's normalised names (passed over whether or not it is valid).
            let node_names = &normalized[name_at..name_at + node.loaded_models.len()];
            name_at += node.loaded_models.len();
            let st = match node.validate() {
                Err(e) => NodeStatus::Invalid(Box::new(e)),
                Ok(()) if !node.healthy => NodeStatus::Unhealthy,
                Ok(()) if age_ms > config.stale_after_ms => NodeStatus::Stale {
                    age_ms,
                    limit_ms: config.stale_after_ms,
                },
                Ok(()) => NodeStatus::Eligible,
            };
            let valid = !matches!(st, NodeStatus::Invalid(_));
            let mut flags: u8 = 0;
            if st == NodeStatus::Eligible {
                flags |= ELIGIBLE;
                eligible += 1;
            }

            let gpu_start = gpus.len() as u32;
            let loaded_start = loaded_model.len() as u32;
            if valid {
                // Loaded models, sorted by (model, gpu) so lookups never depend on input order.
                let mut lm: Vec<(u32, u32, u64)> = node
                    .loaded_models
                    .iter()
                    .zip(node_names)
                    .map(|(m, name)| {
                        let id = models.get(&**name).copied().unwrap_or(u32::MAX);
                        let slot = match m.gpu {
                            Some(g) => node
                                .gpus
                                .iter()
                                .position(|x| x.index == g)
                                .map_or(NO_SLOT, |p| gpu_start + p as u32),
                            None => NO_SLOT,
                        };
                        // Unknown VRAM share: where Ollama puts a model by default.
                        let vram = match m.vram_mib {
                            Some(v) => v,
                            None if node.gpus.is_empty() => 0,
                            None => UNKNOWN_MIB,
                        };
                        (id, slot, vram)
                    })
                    .collect();
                lm.sort_unstable();
                for (id, slot, vram) in lm {
                    loaded_model.push(id);
                    loaded_slot.push(slot);
                    loaded_vram_mib.push(vram);
                }
                for g in &node.gpus {
                    let usable =
                        (g.memory_total_mib as f64 * config.vram_safety_margin).floor() as u64;
                    let (free, source) = match (g.memory_free_mib, g.memory_used_mib) {
                        (Some(f), _) => (f, FreeSource::Reported),
                        (None, Some(u)) => (g.memory_total_mib - u, FreeSource::TotalMinusUsed),
                        (None, None) => {
                            // Models pinned to this GPU, plus (conservatively) every model
                            // whose GPU is unknown.
                            let on_it: u64 = node
                                .loaded_models
                                .iter()
                                .filter(|m| m.gpu.is_none_or(|x| x == g.index))
                                // Unknown: as much as the whole GPU (conservative).
                                .map(|m| m.vram_mib.or(m.size_mib).unwrap_or(UNKNOWN_MIB))
                                .fold(0u64, u64::saturating_add);
                            (usable.saturating_sub(on_it), FreeSource::UsableMinusLoaded)
                        }
                    };
                    gpus.push(GpuRow {
                        usable_mib: to_u32_mib(usable),
                        free_mib: to_u32_mib(free),
                        reserved_mib: AtomicU32::new(0),
                    });
                    gpu_index.push(g.index);
                    free_source.push(source);
                }
            }
            ram.push(RamRow {
                usable_mib: node
                    .ram_total_mib
                    .filter(|_| valid)
                    .map_or(UNKNOWN_MIB, |t| {
                        (t as f64 * config.ram_safety_margin).floor() as u64
                    }),
                free_mib: node.ram_free_mib.filter(|_| valid).unwrap_or(UNKNOWN_MIB),
            });
            labels_of.push(
                node.labels
                    .iter()
                    .filter_map(|l| labels.get(l.as_str()))
                    .fold(0u64, |m, bit| m | (1 << bit)),
            );
            if node.priority == Some(0) {
                flags |= TOP_PRIORITY;
            }
            let mut row = NodeRow {
                gpu_start,
                loaded_start,
                gpu_len: (gpus.len() as u32 - gpu_start) as u16,
                loaded_len: (loaded_model.len() as u32 - loaded_start) as u16,
                flags,
                tasks: node.preferred_tasks.iter().fold(0, |m, t| m | t.bit()),
                cpu_count: node
                    .cpu_count
                    .map_or(0, |c| u16::try_from(c).unwrap_or(u16::MAX)),
                active_requests: node.active_requests,
                cpu_load: 0.0,
                latency_ms: 0.0,
                success_rate: 1.0,
            };
            if valid {
                if let Some(load) = node.cpu_load_percent {
                    row.cpu_load = (load / 100.0) as f32;
                    row.flags |= HAS_CPU_LOAD;
                }
                if let Some(lat) = node.latency_ms {
                    row.latency_ms = lat as f32;
                    row.flags |= HAS_LATENCY;
                }
                if let Some(sr) = node.success_rate {
                    row.success_rate = sr as f32;
                    row.flags |= HAS_SUCCESS_RATE;
                }
            }
            rows.push(row);
            status.push(st);
        }

        let ram_reserved = (0..rows.len()).map(|_| AtomicU64::new(0)).collect();
        let mut model_nodes = vec![Vec::new(); model_count];
        for (ni, row) in rows.iter().enumerate() {
            for &m in &loaded_model[row.loaded()] {
                if let Some(list) = model_nodes.get_mut(m as usize) {
                    if list.last() != Some(&(ni as u32)) {
                        list.push(ni as u32);
                    }
                }
            }
        }
        let mut by_max_free: Vec<(u64, u32)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.flags & ELIGIBLE != 0)
            .map(|(ni, r)| {
                let max = r
                    .gpus()
                    .map(|g| u64::from(gpus[g].free_mib))
                    .max()
                    .unwrap_or(0);
                (max, ni as u32)
            })
            .collect();
        by_max_free.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let reserved_bits = (0..rows.len().div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(Snapshot {
            id: SnapshotId(NEXT_SNAPSHOT_ID.fetch_add(1, Ordering::Relaxed)),
            config: config.clone(),
            specs: nodes,
            status,
            rows,
            labels_of,
            ram,
            gpus,
            gpu_index,
            free_source,
            ram_reserved,
            loaded_model,
            loaded_slot,
            loaded_vram_mib,
            models,
            labels,
            eligible,
            model_nodes,
            by_max_free,
            reserved_bits,
            prepared: ArcSwap::from_pointee(Vec::new()),
        })
    }

    /// This snapshot's identity.
    pub fn id(&self) -> SnapshotId {
        self.id
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &SnapshotConfig {
        &self.config
    }

    /// Number of nodes (eligible or not).
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Number of nodes that may be routed to.
    pub fn eligible_count(&self) -> usize {
        self.eligible
    }

    /// All nodes, sorted by id, GPUs sorted by index.
    pub fn nodes(&self) -> &[Arc<NodeSpec>] {
        &self.specs
    }

    /// One node. Panics if `node` is not from this snapshot and out of range.
    pub fn node(&self, node: NodeIndex) -> &NodeSpec {
        &self.specs[node.get()]
    }

    /// Finds a node by id (binary search).
    pub fn node_index(&self, id: &str) -> Option<NodeIndex> {
        self.specs
            .binary_search_by(|n| n.id.as_str().cmp(id))
            .ok()
            .map(|i| NodeIndex(i as u32))
    }

    /// Whether a node may be routed to.
    pub fn node_status(&self, node: NodeIndex) -> Result<&NodeStatus> {
        self.check(node)?;
        Ok(&self.status[node.get()])
    }

    /// How the free VRAM of a GPU was obtained (`None` for an invalid node).
    pub fn free_source(&self, node: NodeIndex, gpu: u32) -> Result<Option<FreeSource>> {
        Ok(self.gpu_slot(node, gpu)?.map(|s| self.free_source[s]))
    }

    /// Usable VRAM (total × margin) and free VRAM after reservations of one GPU, MiB.
    /// `None` for a node marked invalid.
    pub fn gpu_capacity_mib(&self, node: NodeIndex, gpu: u32) -> Result<Option<(u64, u64)>> {
        Ok(self
            .gpu_slot(node, gpu)?
            .map(|s| (u64::from(self.gpus[s].usable_mib), self.gpus[s].free_now())))
    }

    /// Bit mask of a label, `None` if no node carries it.
    pub(crate) fn label_bit(&self, label: &str) -> Option<u64> {
        self.labels.get(label).map(|b| 1u64 << b)
    }

    pub(crate) fn model_id(&self, name: &str) -> Option<u32> {
        // Canonical names, and clean untagged ones (interned as aliases), are looked up as
        // written: no allocation on the hot path. Other spellings are rare.
        if is_clean(name) {
            self.models.get(name).copied()
        } else {
            self.models.get(&*normalize_model_name(name)).copied()
        }
    }

    #[inline]
    pub(crate) fn ram_free_now(&self, node: usize) -> u64 {
        let free = self.ram[node].free_mib;
        if free == UNKNOWN_MIB {
            UNKNOWN_MIB
        } else {
            free.saturating_sub(self.ram_reserved[node].load(Ordering::Relaxed))
        }
    }

    pub(crate) fn check(&self, node: NodeIndex) -> Result<()> {
        if node.get() < self.specs.len() {
            Ok(())
        } else {
            Err(Error::NoSuchNode {
                index: node.0,
                len: self.specs.len(),
            })
        }
    }

    /// Absolute GPU slot; `Ok(None)` when the node is invalid (its GPUs are not indexed).
    pub(crate) fn gpu_slot(&self, node: NodeIndex, gpu: u32) -> Result<Option<usize>> {
        self.check(node)?;
        let spec = &self.specs[node.get()];
        if !spec.gpus.iter().any(|g| g.index == gpu) {
            return Err(Error::NoSuchGpu {
                node: spec.id.to_string(),
                gpu,
            });
        }
        Ok(self.rows[node.get()]
            .gpus()
            .find(|&s| self.gpu_index[s] == gpu))
    }
}

/// Per-policy score bounds of one snapshot: built and read by the pruned search
/// (`prune.rs`); the snapshot only holds the cache slot. Bounds are kept as `f32`
/// rounded up (`prune::up`): still bounds, in half the room.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) params: SollolParams,
    /// Per bound class (`sollol::bound_class`: models of at least
    /// `overwhelmed_below_mib` or smaller, complex requests or not, GPU mode or not):
    /// eligible nodes by descending bound, then ascending index.
    pub(crate) orders: [Vec<(f32, u32)>; BOUND_CLASSES],
    /// Per interned model and warm class (`sollol::warm_class`): eligible nodes where
    /// it is loaded, by descending bound of the warm placement's score.
    pub(crate) warm: Vec<[Vec<(f32, u32)>; WARM_CLASSES]>,
    /// Per node: its bound per class (0 for ineligible nodes), kept for the next
    /// snapshot's `build_reusing`.
    pub(crate) bounds: Vec<[f32; BOUND_CLASSES]>,
    /// Per loaded entry: the warm bounds of its model on its node per warm class (0 for
    /// ineligible nodes).
    pub(crate) warm_of: Vec<[f32; WARM_CLASSES]>,
}
