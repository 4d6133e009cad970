//! `vramroute-registry`: the SOLLOL-compatible Redis schema, TTLs, reads and writes.
//!
//! This crate owns every Redis key name vramroute and SOLLOL share (see [`keys`] and
//! `docs/registry.md`). It knows the record shapes ([`GpuStatsRecord`],
//! [`RpcNodeRecord`], [`RouterMetadata`]) but nothing about GPUs, probing or routing, and
//! depends on no other vramroute crate.
//!
//! Entry points:
//! - [`Registry`], the async trait every consumer programs against;
//! - [`RedisRegistry`] (standalone, TLS, Unix socket, ACL, Redis Cluster) and
//!   [`MemoryRegistry`] (in-process, same semantics, expiry included);
//! - [`Registry::discover`] returns a [`ClusterView`] in a constant number of round
//!   trips, reading only what changed since the previous call; bad records become
//!   [`SkippedRecord`]s, never errors;
//! - [`Registry::watch`] returns a [`ChangeStream`] of [`Change`]s;
//! - feature `testing`: [`testing::RedisServer`] and [`testing::RedisCluster`] start
//!   private `redis-server` processes for tests.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

mod config;
mod delta;
mod error;
pub mod keys;
mod memory;
pub mod pyjson;
mod record;
mod redis_backend;
mod validate;
mod watch;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::{KeyspaceEvents, RegistryConfig, ScanStrategy};
pub use error::{redact_url, Error, Result};
pub use memory::MemoryRegistry;
pub use record::{
    GpuOffload, GpuStat, GpuStatsRecord, LoadedModel, RouterMetadata, RpcBackend, RpcNodeRecord,
    SCHEMA_VERSION,
};
pub use redis_backend::RedisRegistry;
pub use validate::{
    decode_metadata, decode_rpc, decode_stats, validate_metadata, validate_rpc, validate_stats,
    Limits, SkippedRecord, MAX_TIMESTAMP,
};

/// The environment variable SOLLOL reads its Redis URL from.
pub const REDIS_URL_ENV: &str = "SOLLOL_REDIS_URL";
/// SOLLOL's default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://localhost:6379";
/// The default llama.cpp rpc-server port SOLLOL registers.
pub const DEFAULT_RPC_PORT: u16 = 50052;

/// A registered RPC node as discovery returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcNodeEntry {
    /// Host from the key `sollol:rpc:node:{host}:{port}`.
    pub host: String,
    /// Port from the key.
    pub port: u16,
    /// The registration, shared with the registry's cache (unchanged records are not
    /// copied from one discovery to the next).
    pub record: Arc<RpcNodeRecord>,
}

/// Everything discovery read, in one consistent shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    /// Live stats records by node id (from the key), sorted by node id. Records are
    /// shared (`Arc`): a record unchanged since the previous discovery is the same
    /// allocation.
    pub stats: Vec<(String, Arc<GpuStatsRecord>)>,
    /// Live registrations, sorted by `(host, port)`.
    pub rpc_nodes: Vec<RpcNodeEntry>,
    /// `sollol:router:metadata`, when present and valid.
    pub metadata: Option<RouterMetadata>,
    /// Records that were present but unusable, with the reason.
    pub skipped: Vec<SkippedRecord>,
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

/// A change announced by [`Registry::watch`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Change {
    /// The stats record of this node id was written.
    Updated(String),
    /// The stats record of this node id expired or was deleted.
    Removed(String),
    /// The registration of this `host:port` was written.
    RpcUpdated(String),
    /// The registration of this `host:port` expired or was deleted.
    RpcRemoved(String),
    /// `sollol:router:metadata` was written or deleted.
    MetadataChanged,
    /// Changes may have been missed (reconnect, slow consumer): call
    /// [`Registry::discover`] again.
    Resync,
}

/// How a [`ChangeStream`] learns about changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushMode {
    /// In-process notifications of the memory backend.
    Memory,
    /// Redis keyspace notifications (covers every writer and expiries).
    KeyspaceEvents,
    /// vramroute's channel `vramroute:events` for our writers, plus polling every
    /// `poll_interval` for other writers and expiries.
    ChannelAndPolling,
}

/// A stream of [`Change`]s; stops the background work when dropped.
///
/// Implements [`futures_util::Stream`]; [`ChangeStream::recv`] is the plain async way.
#[derive(Debug)]
pub struct ChangeStream {
    rx: mpsc::Receiver<Change>,
    mode: PushMode,
    _task: Option<watch::AbortOnDrop>,
}

impl ChangeStream {
    pub(crate) fn new(
        rx: mpsc::Receiver<Change>,
        mode: PushMode,
        task: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        Self {
            rx,
            mode,
            _task: task.map(watch::AbortOnDrop),
        }
    }

    /// The next change; `None` when the registry is gone.
    pub async fn recv(&mut self) -> Option<Change> {
        self.rx.recv().await
    }

    /// The next change if one is waiting.
    pub fn try_recv(&mut self) -> Option<Change> {
        self.rx.try_recv().ok()
    }

    /// The next change, or `None` if none arrives within `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Option<Change> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// How changes reach this stream (decided when it was created).
    pub fn mode(&self) -> PushMode {
        self.mode
    }
}

impl futures_util::Stream for ChangeStream {
    type Item = Change;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change>> {
        self.rx.poll_recv(cx)
    }
}

/// The registry: SOLLOL's records in Redis (or in memory), read and written safely.
///
/// All methods are bounded by [`RegistryConfig::command_timeout`] (Redis backend).
#[async_trait]
pub trait Registry: Send + Sync {
    /// Publishes live stats: `SET sollol:gpu:{node_id} … PX stats_ttl`, `XADD
    /// sollol:gpu:stats MAXLEN ~ stream_maxlen …` (SOLLOL's field encoding), our index, our
    /// change log and a change announcement, in one round trip (one per command, in
    /// order, in Cluster mode). Refuses a record our reader would skip.
    async fn publish_stats(&self, record: &GpuStatsRecord) -> Result<()>;

    /// Registers (or refreshes) an RPC node: `SET sollol:rpc:node:{host}:{port} … PX
    /// registration_ttl`, plus our index, change log and announcement.
    async fn register(&self, host: &str, port: u16, record: &RpcNodeRecord) -> Result<()>;

    /// Deletes a node's stats key now (and its registration when `rpc` is given), for a
    /// graceful shutdown; announces the removal.
    async fn deregister(&self, node_id: &str, rpc: Option<(&str, u16)>) -> Result<()>;

    /// Writes `sollol:router:metadata` (no expiry, as SOLLOL).
    async fn set_router_metadata(&self, metadata: &RouterMetadata) -> Result<()>;

    /// Reads `sollol:router:metadata`; `Ok(None)` when absent. A malformed value is an
    /// `Ok(None)` too (counted as skipped and logged).
    async fn router_metadata(&self) -> Result<Option<RouterMetadata>>;

    /// Reads the whole cluster in a constant number of round trips. The Redis backend
    /// reads only what its change log names since the previous call (records unchanged
    /// since are shared `Arc`s), or everything when it cannot trust the log.
    async fn discover(&self) -> Result<ClusterView>;

    /// Subscribes to changes. A new stats record is announced within 100 ms of its write;
    /// an expiry or deletion when Redis notices it (or within `poll_interval` in polling
    /// mode).
    async fn watch(&self) -> Result<ChangeStream>;

    /// Takes the named lock for `owner` for `ttl`, or extends it if `owner` holds it.
    /// Returns whether `owner` holds it now.
    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool>;

    /// Releases the named lock if `owner` holds it; returns whether it did.
    async fn unlock(&self, name: &str, owner: &str) -> Result<bool>;

    /// The last `count` entries of the `sollol:gpu:stats` stream, oldest first, as
    /// `(entry id, fields)`.
    async fn history(&self, count: usize) -> Result<Vec<(String, Vec<(String, String)>)>>;

    /// Checks that the backend answers.
    async fn ping(&self) -> Result<()>;

    /// How many records readers of this registry have skipped so far.
    fn skipped_records_total(&self) -> u64;

    /// The settings in force.
    fn config(&self) -> &RegistryConfig;
}
