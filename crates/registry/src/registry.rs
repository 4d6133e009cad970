//! The [`Registry`] trait every consumer programs against, implemented by the Redis
//! and the memory backends.

use std::time::Duration;

use async_trait::async_trait;

use crate::change::ChangeStream;
use crate::config::RegistryConfig;
use crate::error::Result;
use crate::record::{GpuStatsRecord, RouterMetadata, RpcNodeRecord};
use crate::view::ClusterView;

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

    /// Forgets what discovery kept from its previous reads, so the next
    /// [`discover`](Self::discover) hands back every record itself (also with
    /// [`RegistryConfig::changes_only`]): for a reader that lost track of the views it
    /// was given. Nothing to forget by default.
    fn forget_discovered(&self) {}
}
