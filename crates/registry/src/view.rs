//! What discovery returns: [`ClusterView`] and its [`RpcNodeEntry`]s. Plain data over
//! the record types; no I/O.

use std::sync::{Arc, OnceLock};

use crate::record::{GpuStatsRecord, RouterMetadata, RpcNodeRecord};
use crate::validate::SkippedRecord;
use crate::SmolStr;

/// A registered RPC node as discovery returns it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RpcNodeEntry {
    /// Host from the key `sollol:rpc:node:{host}:{port}`.
    pub host: SmolStr,
    /// Port from the key.
    pub port: u16,
    /// The registration, shared with the registry's cache (unchanged records are not
    /// copied from one discovery to the next).
    pub record: Arc<RpcNodeRecord>,
}

/// Everything discovery read, in one consistent shape. Two views are equal when they
/// hold the same records: which read they come from ([`sequence`](Self::sequence),
/// [`changes_since`](Self::changes_since)) is not compared.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ClusterView {
    /// Live stats records by node id (from the key), sorted by node id. Records are
    /// shared (`Arc`): a record unchanged since the previous discovery is the same
    /// allocation.
    pub stats: Vec<(SmolStr, Arc<GpuStatsRecord>)>,
    /// Live registrations, sorted by `(host, port)`.
    pub rpc_nodes: Vec<RpcNodeEntry>,
    /// `sollol:router:metadata`, when present and valid.
    pub metadata: Option<RouterMetadata>,
    /// Records that were present but unusable, with the reason.
    pub skipped: Vec<SkippedRecord>,
    /// Set by a registry configured for changes only
    /// ([`RegistryConfig::changes_only`](crate::RegistryConfig::changes_only)): every
    /// record unchanged since the previous discovery *of this registry* is the shared
    /// marker ([`unchanged_stats`], [`unchanged_rpc`]; test with [`is_unchanged_stats`], [`is_unchanged_rpc`])
    /// instead of the record, so the registry keeps no record alive between
    /// discoveries. Only a reader that applies every such view in order, keeping what
    /// it needs of each record it is given, can use it. `false`: every record is itself.
    pub changes_only: bool,
    /// This read's number among its registry's discoveries (from 1; 0: a registry that
    /// does not number them).
    pub sequence: u64,
    /// With [`changes_only`](Self::changes_only): the read (its
    /// [`sequence`](Self::sequence)) that this one's markers refer to, which the reader
    /// must have applied last; `None` when every record is itself.
    pub changes_since: Option<u64>,
}

/// The marker a changes-only discovery hands back for a stats record unchanged since
/// the previous one (see [`ClusterView::changes_only`]). Its node id is not one a
/// record can have.
pub fn unchanged_stats() -> &'static Arc<GpuStatsRecord> {
    static MARKER: OnceLock<Arc<GpuStatsRecord>> = OnceLock::new();
    MARKER.get_or_init(|| Arc::new(GpuStatsRecord::new("\u{0}unchanged", "none", 0.0)))
}

/// The marker a changes-only discovery hands back for a registration unchanged since the
/// previous one (see [`ClusterView::changes_only`]).
pub fn unchanged_rpc() -> &'static Arc<RpcNodeRecord> {
    static MARKER: OnceLock<Arc<RpcNodeRecord>> = OnceLock::new();
    MARKER.get_or_init(|| {
        Arc::new(RpcNodeRecord {
            device_config: "\u{0}unchanged".into(),
            ..RpcNodeRecord::default()
        })
    })
}

/// Whether `record` is the marker of an unchanged stats record ([`unchanged_stats`]).
pub fn is_unchanged_stats(record: &Arc<GpuStatsRecord>) -> bool {
    Arc::ptr_eq(record, unchanged_stats())
}

/// Whether `record` is the marker of an unchanged registration ([`unchanged_rpc`]).
pub fn is_unchanged_rpc(record: &Arc<RpcNodeRecord>) -> bool {
    Arc::ptr_eq(record, unchanged_rpc())
}

impl RpcNodeEntry {
    /// The registration `record` read from the key of `host:port`.
    pub fn new(host: impl Into<SmolStr>, port: u16, record: Arc<RpcNodeRecord>) -> Self {
        Self {
            host: host.into(),
            port,
            record,
        }
    }
}

impl PartialEq for ClusterView {
    fn eq(&self, other: &Self) -> bool {
        // Destructured: a field added later must be placed here.
        let ClusterView {
            stats,
            rpc_nodes,
            metadata,
            skipped,
            changes_only,
            sequence: _,
            changes_since: _,
        } = self;
        *stats == other.stats
            && *rpc_nodes == other.rpc_nodes
            && *metadata == other.metadata
            && *skipped == other.skipped
            && *changes_only == other.changes_only
    }
}

impl ClusterView {
    /// The stats record of `node_id`, if present.
    pub fn stats_of(&self, node_id: &str) -> Option<&GpuStatsRecord> {
        self.stats
            .binary_search_by(|(id, _)| id.as_str().cmp(node_id))
            .ok()
            .map(|i| &*self.stats[i].1)
    }

    /// The registration of `host:port`, if present.
    pub fn rpc_node(&self, host: &str, port: u16) -> Option<&RpcNodeRecord> {
        self.rpc_nodes
            .iter()
            .find(|e| e.host == host && e.port == port)
            .map(|e| &*e.record)
    }
}
