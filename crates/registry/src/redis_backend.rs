//! The Redis backend: standalone (TCP, TLS, Unix socket, ACL, database number) or Redis
//! Cluster.
//!
//! Discovery reads, in one round trip, our change log (`vramroute:changes`) since the
//! last discovery, the index entries that expired since (`vramroute:index:gpu`,
//! `vramroute:index:rpc`) and the metadata; then — only if some record is new, changed or
//! unindexed — those records with one `MGET` per kind in a second: at most two round
//! trips whatever the node count, and work proportional to what changed. The first
//! discovery (and one after a gap) reads every live id of the indexes and every record
//! instead (`delta` explains both reads). Keys written by SOLLOL's tools (which keep no
//! index) are found by a bounded cursor `SCAN` (per [`ScanStrategy`]) and by keyspace
//! notifications, and remembered locally until they vanish.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, IntoConnectionInfo, RedisError, RedisFuture, Value};
use tokio::sync::mpsc;

use crate::config::{KeyspaceEvents, ScanStrategy};
use crate::delta::{self, Kept};
use crate::error::{redact_url, scrub};
use crate::watch::{self, PollState, Sink, QUEUE};
use crate::{
    keys, validate, Change, ChangeStream, ClusterView, Error, GpuStatsRecord, PushMode, Registry,
    RegistryConfig, Result, RouterMetadata, RpcNodeEntry, RpcNodeRecord, SkippedRecord,
    REDIS_URL_ENV,
};

const TRY_LOCK: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Most SCAN calls per node in one sweep (× `scan_count` keys each).
const MAX_SCAN_CALLS: usize = 100_000;

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
        }
    }
}

impl Conn {
    /// Runs `stages` of commands and returns every reply in order: one pipeline on a
    /// standalone server (executed in order); on a cluster (where pipelines must stay in
    /// one slot), the commands of a stage concurrently, each stage after the previous one
    /// has completed.
    async fn exec_stages(&mut self, stages: Vec<Vec<Cmd>>) -> redis::RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                for cmd in stages.into_iter().flatten() {
                    pipe.add_command(cmd);
                }
                pipe.query_async(c).await
            }
            Conn::Cluster(c) => {
                let mut out = Vec::new();
                for stage in stages {
                    out.extend(Self::concurrent(c, stage.into_iter()).await?);
                }
                Ok(out)
            }
        }
    }

    async fn concurrent(
        c: &ClusterConnection,
        cmds: impl Iterator<Item = Cmd>,
    ) -> redis::RedisResult<Vec<Value>> {
        let futs = cmds.map(|cmd| {
            let mut c = c.clone();
            async move { cmd.query_async::<Value>(&mut c).await }
        });
        futures_util::future::try_join_all(futs).await
    }
}

enum Target {
    Single(redis::Client),
    Cluster {
        client: Box<ClusterClient>,
        seeds: Vec<redis::Client>,
    },
}

#[derive(Default)]
struct Slot {
    conn: Option<Conn>,
    failures: u32,
    next_attempt: Option<Instant>,
    last_error: Option<Error>,
}

#[derive(Default)]
struct ScanState {
    last: Option<Instant>,
    /// Ids whose keys exist without our index (found by SCAN or keyspace events).
    legacy_gpu: BTreeSet<String>,
    legacy_rpc: BTreeSet<String>,
    /// Ids whose keys someone wrote or deleted (keyspace events) since the last
    /// discovery: read again by the next one.
    dirty_gpu: BTreeSet<String>,
    dirty_rpc: BTreeSet<String>,
}

/// What a registry kept from its previous discovery (see `delta`).
struct Known {
    /// Id of the newest change-log entry seen; `None` when the log was empty.
    cursor: Option<String>,
    stats: Kept<GpuStatsRecord>,
    rpc: Kept<RpcNodeRecord>,
    /// When it was read: after `index_prune_grace / 2`, expired index entries may have
    /// been pruned unseen, so the next discovery reads everything.
    at: Instant,
    /// When the last full read was; the next one is due `full_read_interval` after it.
    last_full: Instant,
}

/// What round trip 1 of a discovery found: the new cursor, what to read, the metadata.
struct Head {
    cursor: Option<String>,
    /// When the full read before this delta read was; `None` for a full read.
    last_full: Option<Instant>,
    stats: delta::Plan<GpuStatsRecord>,
    rpc: delta::Plan<RpcNodeRecord>,
    meta: Option<Vec<u8>>,
}

struct Inner {
    config: RegistryConfig,
    target: Target,
    url: String,
    secret: Option<String>,
    db: i64,
    slot: tokio::sync::Mutex<Slot>,
    scan: Mutex<ScanState>,
    skipped: AtomicU64,
    try_lock: redis::Script,
    unlock: redis::Script,
    warned: Mutex<HashSet<String>>,
    known: Mutex<Option<Known>>,
    /// Bumped by whatever invalidates what discovery keeps (a `Resync`, a cleared
    /// cache): a discovery that started before does not put its records back.
    known_epoch: AtomicU64,
}

/// The Redis [`Registry`]. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct RedisRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRegistry")
            .field("url", &self.inner.url)
            .field("cluster", &self.is_cluster())
            .finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A key expiry in milliseconds (`SET … PX`), at least 1 and at most 2^53 (285,000
/// years: Redis refuses larger ones, and index scores stay exact); the index deadline
/// of the record is the write time plus the same amount.
fn ttl_ms(ttl: Duration) -> u64 {
    const MAX: u64 = 1 << 53;
    u64::try_from(ttl.as_millis()).unwrap_or(MAX).clamp(1, MAX)
}

fn bytes_of(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

fn strings_of(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) | Value::Set(items) => items
            .into_iter()
            .filter_map(bytes_of)
            .filter_map(|b| String::from_utf8(b).ok())
            .collect(),
        _ => Vec::new(),
    }
}

/// A sorted-set score (`ZSCORE`), `None` for a missing member.
fn score_of(v: &Value) -> Option<f64> {
    match v {
        Value::Double(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// The entries of an `XRANGE`/`XREVRANGE` reply: `(entry id, [(field, value)])`.
fn stream_entries(v: Value) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for entry in array_of(v) {
        let mut parts = array_of(entry).into_iter();
        let id = parts
            .next()
            .and_then(bytes_of)
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        // Lossy, so a value that is not UTF-8 cannot shift the pairs.
        let flat: Vec<String> = parts
            .next()
            .map(array_of)
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                bytes_of(v).map_or_else(String::new, |b| String::from_utf8_lossy(&b).into_owned())
            })
            .collect();
        let mut fields = Vec::with_capacity(flat.len() / 2);
        let mut flat = flat.into_iter();
        while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
            fields.push((k, v));
        }
        if let Some(id) = id {
            out.push((id, fields));
        }
    }
    out
}

fn array_of(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        _ => Vec::new(),
    }
}

impl RedisRegistry {
    /// Parses `url` and connects now; fails with a clear error when the server is
    /// unreachable, refuses the credentials or does not answer in time.
    ///
    /// Accepted: `redis://[user[:password]@]host[:port][/db]`, `rediss://…` (TLS; add
    /// `#insecure` to skip verification, or set [`RegistryConfig::tls_root_ca_pem`]),
    /// `redis+unix:///path?db=N&user=U&pass=P`, `unix:///path`, and
    /// `redis-cluster://[user:password@]host:port,host:port,…` (or `rediss-cluster://`).
    pub async fn connect(url: &str, config: RegistryConfig) -> Result<Self> {
        let reg = Self::new_lazy(url, config)?;
        reg.ping().await?;
        Ok(reg)
    }

    /// Connects to a Redis Cluster given its seed node URLs (`redis://…` each).
    pub async fn connect_cluster(seeds: &[&str], config: RegistryConfig) -> Result<Self> {
        let reg = Self::build(
            seeds.join(","),
            Self::cluster_target(seeds, &config)?,
            config,
        )?;
        reg.ping().await?;
        Ok(reg)
    }

    /// Parses `url` without connecting: every call connects on demand (with capped
    /// exponential backoff between failed attempts) and fails cleanly while Redis is down.
    pub fn new_lazy(url: &str, config: RegistryConfig) -> Result<Self> {
        let target = if let Some((tls, rest)) = url
            .strip_prefix("redis-cluster://")
            .map(|r| (false, r))
            .or_else(|| url.strip_prefix("rediss-cluster://").map(|r| (true, r)))
        {
            let (userinfo, hosts) = match rest.rfind('@') {
                Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
                None => (None, rest),
            };
            let hosts = hosts.split(['/', '?', '#']).next().unwrap_or_default();
            let scheme = if tls { "rediss" } else { "redis" };
            let seeds: Vec<String> = hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| match userinfo {
                    Some(u) => format!("{scheme}://{u}@{h}"),
                    None => format!("{scheme}://{h}"),
                })
                .collect();
            if seeds.is_empty() {
                return Err(Error::InvalidUrl {
                    url: redact_url(url),
                    reason: "no seed nodes".to_owned(),
                });
            }
            let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
            Self::cluster_target(&seeds, &config)?
        } else {
            Target::Single(Self::client(url, &config)?)
        };
        Self::build(url.to_owned(), target, config)
    }

    /// A lazy registry for `$SOLLOL_REDIS_URL`, or `redis://localhost:6379` when unset.
    pub fn from_env(config: RegistryConfig) -> Result<Self> {
        let url =
            std::env::var(REDIS_URL_ENV).unwrap_or_else(|_| crate::DEFAULT_REDIS_URL.to_owned());
        Self::new_lazy(&url, config)
    }

    fn client(url: &str, config: &RegistryConfig) -> Result<redis::Client> {
        let invalid = |e: RedisError| Error::InvalidUrl {
            url: redact_url(url),
            reason: e.to_string(),
        };
        let info = url.into_connection_info().map_err(invalid)?;
        match (&config.tls_root_ca_pem, url.starts_with("rediss://")) {
            (Some(pem), true) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            )
            .map_err(invalid),
            _ => redis::Client::open(info).map_err(invalid),
        }
    }

    fn cluster_target(seeds: &[&str], config: &RegistryConfig) -> Result<Target> {
        let clients = seeds
            .iter()
            .map(|s| Self::client(s, config))
            .collect::<Result<Vec<_>>>()?;
        let infos: Vec<redis::ConnectionInfo> = clients
            .iter()
            .map(|c| c.get_connection_info().clone())
            .collect();
        let builder = ClusterClientBuilder::new(infos)
            .connection_timeout(config.command_timeout)
            .response_timeout(config.command_timeout)
            .retries(3)
            .min_retry_wait(config.reconnect_min_delay.as_millis() as u64)
            .max_retry_wait(config.reconnect_max_delay.as_millis() as u64);
        // Custom root CAs need the redis crate's rustls backend in cluster mode; with
        // native-tls, cluster TLS verifies against the system trust store.
        let client = builder.build().map_err(|e| Error::InvalidUrl {
            url: redact_url(&seeds.join(",")),
            reason: e.to_string(),
        })?;
        Ok(Target::Cluster {
            client: Box::new(client),
            seeds: clients,
        })
    }

    fn build(url: String, target: Target, config: RegistryConfig) -> Result<Self> {
        let (secret, db) = match &target {
            Target::Single(c) => {
                let s = c.get_connection_info().redis_settings();
                (s.password().map(str::to_owned), s.db())
            }
            Target::Cluster { seeds, .. } => (
                seeds.first().and_then(|c| {
                    c.get_connection_info()
                        .redis_settings()
                        .password()
                        .map(str::to_owned)
                }),
                0,
            ),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                target,
                url: redact_url(&url),
                secret,
                db,
                slot: tokio::sync::Mutex::new(Slot::default()),
                scan: Mutex::new(ScanState::default()),
                skipped: AtomicU64::new(0),
                try_lock: redis::Script::new(TRY_LOCK),
                unlock: redis::Script::new(UNLOCK),
                warned: Mutex::new(HashSet::new()),
                known: Mutex::new(None),
                known_epoch: AtomicU64::new(0),
            }),
        })
    }

    /// The URL, password redacted.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Whether this is a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.target, Target::Cluster { .. })
    }

    fn scan_state(&self) -> MutexGuard<'_, ScanState> {
        self.inner.scan.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn known(&self) -> MutexGuard<'_, Option<Known>> {
        self.inner.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the decoded records kept from the previous discovery, so the next
    /// [`Registry::discover`] is a full read: every live id, every record read and
    /// decoded (benchmarks use it to measure a cold read). Discovery itself keeps only
    /// the last read's records.
    pub fn clear_decode_cache(&self) {
        self.inner.known_epoch.fetch_add(1, Ordering::SeqCst);
        *self.known() = None;
    }

    fn map_err(&self, op: &'static str, e: &RedisError) -> Error {
        let url = self.inner.url.clone();
        let reason = scrub(&e.to_string(), self.inner.secret.as_deref());
        let auth = matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
            || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
        if auth {
            Error::Auth { url, reason }
        } else if e.is_timeout() {
            Error::Timeout {
                url,
                op,
                after: self.inner.config.command_timeout,
            }
        } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
            Error::Unreachable { url, reason }
        } else {
            Error::Redis { url, op, reason }
        }
    }

    fn copy_err(e: &Error) -> Error {
        match e {
            Error::Unreachable { url, reason } => Error::Unreachable {
                url: url.clone(),
                reason: reason.clone(),
            },
            Error::Auth { url, reason } => Error::Auth {
                url: url.clone(),
                reason: reason.clone(),
            },
            other => Error::Unreachable {
                url: String::new(),
                reason: other.to_string(),
            },
        }
    }

    async fn open(&self) -> Result<Conn> {
        let cfg = &self.inner.config;
        match &self.inner.target {
            Target::Single(client) => {
                let mc = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(cfg.command_timeout))
                    .set_response_timeout(Some(cfg.command_timeout))
                    .set_min_delay(cfg.reconnect_min_delay)
                    .set_max_delay(cfg.reconnect_max_delay)
                    .set_number_of_retries(3);
                ConnectionManager::new_with_config(client.clone(), mc)
                    .await
                    .map(Conn::Single)
                    .map_err(|e| self.map_err("connect", &e))
            }
            Target::Cluster { client, .. } => client
                .get_async_connection()
                .await
                .map(Conn::Cluster)
                .map_err(|e| self.map_err("connect", &e)),
        }
    }

    /// The shared connection, opened on demand with capped exponential backoff between
    /// failed attempts (failing fast in between).
    async fn conn(&self) -> Result<Conn> {
        let mut slot = self.inner.slot.lock().await;
        if let Some(c) = &slot.conn {
            return Ok(c.clone());
        }
        if let (Some(at), Some(err)) = (slot.next_attempt, &slot.last_error) {
            if Instant::now() < at {
                return Err(Self::copy_err(err));
            }
        }
        match self.open().await {
            Ok(c) => {
                slot.conn = Some(c.clone());
                slot.failures = 0;
                slot.next_attempt = None;
                slot.last_error = None;
                Ok(c)
            }
            Err(e) => {
                slot.failures = slot.failures.saturating_add(1);
                let cfg = &self.inner.config;
                let factor = 1u32 << slot.failures.min(16).saturating_sub(1);
                let delay = (cfg.reconnect_min_delay * factor).min(cfg.reconnect_max_delay);
                slot.next_attempt = Some(Instant::now() + delay);
                slot.last_error = Some(Self::copy_err(&e));
                Err(e)
            }
        }
    }

    /// Runs `f` on the connection, the whole under `command_timeout`.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let timeout = self.inner.config.command_timeout;
        let work = async {
            let conn = self.conn().await?;
            f(conn).await.map_err(|e| self.map_err(op, &e))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                url: self.inner.url.clone(),
                op,
                after: timeout,
            }),
        }
    }

    async fn exec(&self, op: &'static str, cmds: Vec<Cmd>) -> Result<Vec<Value>> {
        self.exec_staged(op, vec![cmds]).await
    }

    /// As [`Self::exec`], with each command completed before the next starts, also in
    /// cluster mode (a record's `SET`, then its index `ZADD`, then its log `XADD`).
    async fn exec_ordered(&self, op: &'static str, cmds: Vec<Cmd>) -> Result<Vec<Value>> {
        self.exec_staged(op, cmds.into_iter().map(|c| vec![c]).collect())
            .await
    }

    /// As [`Self::exec`], with each stage completed before the next starts (in cluster
    /// mode; a standalone pipeline runs in order anyway).
    async fn exec_staged(&self, op: &'static str, stages: Vec<Vec<Cmd>>) -> Result<Vec<Value>> {
        self.run(op, |mut c| async move { c.exec_stages(stages).await })
            .await
    }

    /// `XADD vramroute:changes MAXLEN ~ … * {field} {id}`: the change-log entry of a
    /// write (or delete) of the record `id`.
    fn log_cmd(&self, field: &str, id: &str) -> Cmd {
        let mut c = redis::cmd("XADD");
        c.arg(keys::CHANGES)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.inner.config.change_log_maxlen.max(1))
            .arg("*")
            .arg(field)
            .arg(id);
        c
    }

    fn publish_cmd(change: &Change) -> Cmd {
        let mut c = redis::cmd("PUBLISH");
        c.arg(keys::EVENTS_CHANNEL)
            .arg(watch::channel_message(change));
        c
    }

    /// Records a skipped record (the caller logs it when first seen).
    fn skip(&self, skipped: &mut Vec<SkippedRecord>, key: String, reason: String) {
        self.inner.skipped.fetch_add(1, Ordering::Relaxed);
        skipped.push(SkippedRecord { key, reason });
    }

    /// The masters' addresses of a cluster (from `CLUSTER NODES`).
    async fn cluster_masters(&self) -> Result<Vec<(String, u16)>> {
        let text: String = self
            .run("CLUSTER NODES", |c| async move {
                let Conn::Cluster(mut c) = c else {
                    return Ok(String::new());
                };
                let v = c
                    .route_command(
                        redis::cmd("CLUSTER").arg("NODES").clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    )
                    .await?;
                Ok(bytes_of(v)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default())
            })
            .await?;
        Ok(parse_cluster_masters(&text))
    }

    /// One cursor SCAN sweep for `sollol:*` on every (master) node, bounded in calls.
    async fn scan_sweep(&self) -> Result<()> {
        let nodes: Vec<Option<(String, u16)>> = if self.is_cluster() {
            self.cluster_masters()
                .await?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        let count = self.inner.config.scan_count.max(1);
        let (mut gpu, mut rpc) = (BTreeSet::new(), BTreeSet::new());
        for node in nodes {
            let mut cursor: u64 = 0;
            for _ in 0..MAX_SCAN_CALLS {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg("sollol:*")
                    .arg("COUNT")
                    .arg(count);
                let node = node.clone();
                let reply = self
                    .run("SCAN", |c| async move {
                        match (c, node) {
                            (Conn::Cluster(mut c), Some((host, port))) => {
                                c.route_command(
                                    cmd,
                                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                        host,
                                        port,
                                    }),
                                )
                                .await
                            }
                            (mut c, _) => cmd.query_async::<Value>(&mut c).await,
                        }
                    })
                    .await?;
                let mut parts = array_of(reply).into_iter();
                let next: u64 = parts
                    .next()
                    .and_then(bytes_of)
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                for key in parts.next().map(strings_of).unwrap_or_default() {
                    if let Some(id) = keys::node_id_from_stats_key(&key) {
                        gpu.insert(id.to_owned());
                    } else if let Some((h, p)) = keys::rpc_from_key(&key) {
                        rpc.insert(keys::rpc_member(h, p));
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        let mut st = self.scan_state();
        st.legacy_gpu.extend(gpu);
        st.legacy_rpc.extend(rpc);
        st.last = Some(Instant::now());
        Ok(())
    }

    fn scan_due(&self) -> bool {
        match self.inner.config.scan {
            ScanStrategy::Never => false,
            ScanStrategy::EveryDiscover => true,
            ScanStrategy::Periodic(every) => {
                self.scan_state().last.is_none_or(|t| t.elapsed() >= every)
            }
        }
    }

    /// Remaining time to live of `key` in milliseconds (`PTTL`: -2 absent, -1 no expiry).
    pub async fn pttl(&self, key: &str) -> Result<i64> {
        let key = key.to_owned();
        self.run("PTTL", |mut c| async move {
            redis::cmd("PTTL").arg(key).query_async::<i64>(&mut c).await
        })
        .await
    }

    /// Runs one SCAN sweep now (normally done by discovery per [`ScanStrategy`]).
    pub async fn rescan(&self) -> Result<()> {
        self.scan_sweep().await
    }

    /// Sets up a pub/sub connection for [`Registry::watch`]: keyspace notifications when
    /// possible, our channel otherwise.
    async fn subscribe(&self) -> Result<(redis::aio::PubSub, PushMode)> {
        let timeout = self.inner.config.command_timeout;
        let work = async {
            let client = match &self.inner.target {
                Target::Single(c) => c.clone(),
                Target::Cluster { seeds, .. } => {
                    // PUBLISH is broadcast to every cluster node: any seed will do.
                    let mut last = None;
                    let mut found = None;
                    for s in seeds {
                        match s.get_async_pubsub().await {
                            Ok(p) => {
                                found = Some(p);
                                break;
                            }
                            Err(e) => last = Some(e),
                        }
                    }
                    return match (found, last) {
                        (Some(mut p), _) => {
                            p.subscribe(keys::EVENTS_CHANNEL).await?;
                            Ok((p, PushMode::ChannelAndPolling))
                        }
                        (None, Some(e)) => Err(e),
                        (None, None) => Err(RedisError::from((
                            redis::ErrorKind::Client,
                            "no seed nodes",
                        ))),
                    };
                }
            };
            let mut pubsub = client.get_async_pubsub().await?;
            let keyspace = self.enable_keyspace().await;
            if keyspace {
                let pattern = format!("__keyspace@{}__:sollol:*", self.inner.db);
                pubsub.psubscribe(pattern).await?;
                Ok((pubsub, PushMode::KeyspaceEvents))
            } else {
                pubsub.subscribe(keys::EVENTS_CHANNEL).await?;
                Ok((pubsub, PushMode::ChannelAndPolling))
            }
        };
        match tokio::time::timeout(timeout * 2, work).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_err("SUBSCRIBE", &e)),
            Err(_) => Err(Error::Timeout {
                url: self.inner.url.clone(),
                op: "SUBSCRIBE",
                after: timeout * 2,
            }),
        }
    }

    /// Makes sure `notify-keyspace-events` has K, g, $ and x; returns whether it has.
    async fn enable_keyspace(&self) -> bool {
        let mode = self.inner.config.keyspace_events;
        if mode == KeyspaceEvents::Off || self.is_cluster() {
            return false;
        }
        let current = self
            .run("CONFIG GET", |mut c| async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("notify-keyspace-events")
                    .query_async::<Vec<String>>(&mut c)
                    .await
            })
            .await;
        let current = match current {
            Ok(v) => v.get(1).cloned().unwrap_or_default(),
            Err(e) => {
                tracing::info!(error = %e, "cannot read notify-keyspace-events; change push falls back to polling");
                return false;
            }
        };
        let wanted = keyspace_flags(&current);
        if wanted == current {
            return true;
        }
        if mode == KeyspaceEvents::IfEnabled {
            return false;
        }
        let set = self
            .run("CONFIG SET", |mut c| async move {
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("notify-keyspace-events")
                    .arg(wanted)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        match set {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "cannot enable keyspace notifications; change push falls back to our channel plus polling");
                false
            }
        }
    }

    fn note_key_seen(&self, change: &Change) {
        // A write or delete by any writer (keyspace mode sees SOLLOL's too, which write
        // no change log) makes the next discovery read the key again.
        match change {
            Change::Updated(id) | Change::Removed(id) => {
                self.scan_state().dirty_gpu.insert(id.clone());
            }
            Change::RpcUpdated(m) | Change::RpcRemoved(m) => {
                self.scan_state().dirty_rpc.insert(m.clone());
            }
            Change::MetadataChanged => {}
            Change::Resync => self.clear_decode_cache(),
        }
    }
}

impl RedisRegistry {
    /// Discovery in at most two round trips (a Lua script doing the same in one was
    /// measured 2× slower: Lua string and table work costs more than the saved round trip
    /// on a LAN): what changed (or, on a full read, every live id) and the metadata, then
    /// — only when some record is new, changed or unindexed — one `MGET` per kind of the
    /// records to read. See `delta` for the two kinds of read.
    async fn discover_inner(
        &self,
        dirty: &(BTreeSet<String>, BTreeSet<String>),
    ) -> Result<ClusterView> {
        // A discovery that sweeps also re-reads every record: writes by others that
        // write no change log (a raw `SET` or `DEL` of an indexed key) are seen within
        // the sweep period at worst.
        let sweep = self.scan_due();
        if sweep {
            if let Err(e) = self.scan_sweep().await {
                // Indexed keys can still be read.
                tracing::warn!(error = %e, "SCAN sweep for SOLLOL-written keys failed");
            }
        }
        // What the last discovery kept is taken out while this one runs (a concurrent
        // discovery does a full read rather than waiting), and is only put back by a
        // discovery that succeeded.
        let epoch = self.inner.known_epoch.load(Ordering::SeqCst);
        let known = self.known().take();
        let cfg = &self.inner.config;
        let mut head = match known {
            Some(known)
                if !sweep
                    && known.at.elapsed() < cfg.index_prune_grace / 2
                    && known.last_full.elapsed() < cfg.full_read_interval =>
            {
                match self.read_changes(known, dirty).await? {
                    Some(head) => head,
                    None => self.read_live(dirty).await?,
                }
            }
            _ => self.read_live(dirty).await?,
        };
        let at = Instant::now();

        // Round trip 2, only if something is to be read: the records, then the index
        // entries of the logged ones (a record is kept only while the index lists it).
        let counts = [head.stats.fetch_count(), head.rpc.fetch_count()];
        let mut mgets = Vec::new();
        let mut scores = Vec::new();
        let mut key = String::new();
        let mut mget = |prefix: &str, ids: &mut dyn Iterator<Item = &str>| {
            let mut mget = redis::cmd("MGET");
            for id in ids {
                key.clear();
                key.push_str(prefix);
                key.push_str(id);
                mget.arg(key.as_str());
            }
            mget
        };
        if counts[0] > 0 {
            mgets.push(mget(keys::GPU_STATS_PREFIX, &mut head.stats.to_fetch()));
        }
        if counts[1] > 0 {
            mgets.push(mget(keys::RPC_NODE_PREFIX, &mut head.rpc.to_fetch()));
        }
        let zscore = |index: &str, id: &str| redis::cmd("ZSCORE").arg(index).arg(id).clone();
        scores.extend(
            head.stats
                .to_confirm()
                .map(|id| zscore(keys::INDEX_GPU, id)),
        );
        let gpu_confirms = scores.len();
        scores.extend(head.rpc.to_confirm().map(|id| zscore(keys::INDEX_RPC, id)));
        let confirms = scores.len();
        let mut values = if mgets.is_empty() {
            Vec::new()
        } else {
            self.exec_staged("discover (MGET)", vec![mgets, scores])
                .await?
        }
        .into_iter();
        let mut take = |n: usize| -> Vec<Option<Vec<u8>>> {
            if n == 0 {
                return Vec::new();
            }
            values
                .next()
                .map(array_of)
                .unwrap_or_default()
                .into_iter()
                .map(bytes_of)
                .collect()
        };
        let (gpu_vals, rpc_vals) = (take(counts[0]), take(counts[1]));
        let now = unix_ms() as f64;
        let live: Vec<bool> = values
            .map(|v| score_of(&v).is_some_and(|s| s > now))
            .collect();
        // A short reply must not read as "every record gone".
        if gpu_vals.len() != counts[0] || rpc_vals.len() != counts[1] || live.len() != confirms {
            return Err(Error::Redis {
                url: self.inner.url.clone(),
                op: "discover (MGET)",
                reason: format!(
                    "unexpected reply: {} + {} values for {} + {} keys, {} index entries for {}",
                    gpu_vals.len(),
                    rpc_vals.len(),
                    counts[0],
                    counts[1],
                    live.len(),
                    confirms
                ),
            });
        }
        {
            // A logged id the index no longer lists is returned as a full read would:
            // when SCAN or a keyspace event found its key.
            let st = self.scan_state();
            let (gpu_live, rpc_live) = live.split_at(gpu_confirms);
            head.stats.confirm(gpu_live, |id| {
                st.legacy_gpu.contains(id) || dirty.0.contains(id)
            });
            head.rpc.confirm(rpc_live, |id| {
                st.legacy_rpc.contains(id) || dirty.1.contains(id)
            });
        }
        let limits = &self.inner.config.limits;
        let stats = delta::finish(head.stats, gpu_vals, |id, bytes| {
            validate::decode_stats(id, bytes, limits)
        });
        let rpcs = delta::finish(head.rpc, rpc_vals, |_, bytes| {
            validate::decode_rpc(bytes, limits)
        });
        {
            let mut st = self.scan_state();
            stats.note_unindexed(&mut st.legacy_gpu);
            rpcs.note_unindexed(&mut st.legacy_rpc);
        }
        let mut slot = self.known();
        if self.inner.known_epoch.load(Ordering::SeqCst) == epoch {
            *slot = Some(Known {
                cursor: head.cursor,
                stats: stats.kept,
                rpc: rpcs.kept,
                at,
                last_full: head.last_full.unwrap_or(at),
            });
        }
        drop(slot);

        let mut view = ClusterView::default();
        let mut bad = Vec::new();
        view.stats.reserve(stats.found.len());
        // Already sorted by id.
        for (id, outcome) in stats.found {
            match outcome {
                Ok(r) => view.stats.push((id, r)),
                Err(reason) => bad.push(SkippedRecord {
                    key: keys::gpu_stats_key(&id),
                    reason: reason.to_string(),
                }),
            }
        }
        view.rpc_nodes.reserve(rpcs.found.len());
        for (member, outcome) in rpcs.found {
            let key = || format!("{}{member}", keys::RPC_NODE_PREFIX);
            let split = keys::split_host_port(&member).map(|(host, port)| (host.len(), port));
            match (split, outcome) {
                (Some((host_len, port)), Ok(record)) => {
                    // The member's own buffer becomes the host (no new allocation).
                    let mut host = member;
                    host.truncate(host_len);
                    view.rpc_nodes.push(RpcNodeEntry { host, port, record });
                }
                (None, _) => bad.push(SkippedRecord {
                    key: key(),
                    reason: "key has no valid :port".to_owned(),
                }),
                (_, Err(reason)) => bad.push(SkippedRecord {
                    key: key(),
                    reason: reason.to_string(),
                }),
            }
        }
        // Members sort as strings; the view is sorted by (host, port).
        view.rpc_nodes
            .sort_unstable_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
        if let Some(raw) = head.meta {
            match validate::decode_metadata(&raw, limits) {
                Ok(m) => view.metadata = Some(m),
                Err(reason) => bad.push(SkippedRecord {
                    key: keys::ROUTER_METADATA.to_owned(),
                    reason,
                }),
            }
        }
        self.report_skipped(&bad);
        view.skipped = bad;
        Ok(view)
    }

    /// `ZREMRANGEBYSCORE` of the index entries of `key` whose deadline passed more than
    /// `index_prune_grace` ago.
    fn prune_cmd(&self, key: &str) -> Cmd {
        let grace = u64::try_from(self.inner.config.index_prune_grace.as_millis());
        let stale = unix_ms().saturating_sub(grace.unwrap_or(u64::MAX));
        redis::cmd("ZREMRANGEBYSCORE")
            .arg(key)
            .arg("-inf")
            .arg(stale)
            .clone()
    }

    /// Round trip 1 of a full read: the newest change-log entry (the cursor: read first,
    /// so every write after it shows up in the log), every live id of both indexes
    /// (deadline in the future; no scores, which Redis formats slowly), the metadata,
    /// and pruning of long-dead index entries.
    async fn read_live(&self, dirty: &(BTreeSet<String>, BTreeSet<String>)) -> Result<Head> {
        let now = unix_ms();
        let live = |key: &str| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(key)
                .arg(format!("({now}"))
                .arg("+inf")
                .clone()
        };
        let mut replies = self
            .exec_staged(
                "discover (index)",
                vec![
                    vec![redis::cmd("XREVRANGE")
                        .arg(keys::CHANGES)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .clone()],
                    vec![
                        live(keys::INDEX_GPU),
                        live(keys::INDEX_RPC),
                        redis::cmd("GET").arg(keys::ROUTER_METADATA).clone(),
                        self.prune_cmd(keys::INDEX_GPU),
                        self.prune_cmd(keys::INDEX_RPC),
                    ],
                ],
            )
            .await?
            .into_iter();
        let cursor = replies
            .next()
            .map(stream_entries)
            .and_then(|e| e.into_iter().next())
            .map(|(id, _)| id);
        let gpu_live = replies.next().map(strings_of).unwrap_or_default();
        let rpc_live = replies.next().map(strings_of).unwrap_or_default();
        let meta = replies.next().and_then(bytes_of);
        let st = self.scan_state();
        // Ids keyspace events named are read like ids SCAN found.
        let with = |found: &BTreeSet<String>, named: &BTreeSet<String>| {
            let mut all = found.clone();
            all.extend(named.iter().cloned());
            all
        };
        let stats = delta::plan_full(gpu_live, &with(&st.legacy_gpu, &dirty.0));
        let rpc = delta::plan_full(rpc_live, &with(&st.legacy_rpc, &dirty.1));
        drop(st);
        Ok(Head {
            cursor,
            last_full: None,
            stats,
            rpc,
            meta,
        })
    }

    /// Round trip 1 of a delta read: the index entries whose deadline has passed, the
    /// change log from `known.cursor` on, the metadata, and pruning. `None` when the log
    /// cannot be trusted (cursor entry trimmed or log reset) or holds more changes than
    /// a full read would cost: the caller then does a full read.
    async fn read_changes(
        &self,
        known: Known,
        dirty: &(BTreeSet<String>, BTreeSet<String>),
    ) -> Result<Option<Head>> {
        let now = unix_ms();
        let expired = |key: &str| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(key)
                .arg("-inf")
                .arg(now)
                .clone()
        };
        // More changes than this: a full read is cheaper.
        let cap = known.stats.len() + known.rpc.len() + 1024;
        // Expired entries first: a record republished in between is in the log.
        let mut replies = self
            .exec_staged(
                "discover (changes)",
                vec![
                    vec![expired(keys::INDEX_GPU), expired(keys::INDEX_RPC)],
                    vec![
                        redis::cmd("XRANGE")
                            .arg(keys::CHANGES)
                            .arg(known.cursor.as_deref().unwrap_or("-"))
                            .arg("+")
                            .arg("COUNT")
                            .arg(cap + 1)
                            .clone(),
                        redis::cmd("GET").arg(keys::ROUTER_METADATA).clone(),
                        self.prune_cmd(keys::INDEX_GPU),
                        self.prune_cmd(keys::INDEX_RPC),
                    ],
                ],
            )
            .await?
            .into_iter();
        let gpu_expired = replies.next().map(strings_of).unwrap_or_default();
        let rpc_expired = replies.next().map(strings_of).unwrap_or_default();
        let entries = replies.next().map(stream_entries).unwrap_or_default();
        let meta = replies.next().and_then(bytes_of);
        let Some(logged) = delta::read_log(known.cursor, entries, cap) else {
            tracing::debug!("change log trimmed past our cursor, reset or too long: full read");
            return Ok(None);
        };
        let st = self.scan_state();
        let stats = delta::plan_delta(
            known.stats,
            gpu_expired,
            logged.gpu,
            &dirty.0,
            &st.legacy_gpu,
        );
        let rpc = delta::plan_delta(known.rpc, rpc_expired, logged.rpc, &dirty.1, &st.legacy_rpc);
        drop(st);
        Ok(Some(Head {
            cursor: logged.cursor,
            last_full: Some(known.last_full),
            stats,
            rpc,
            meta,
        }))
    }

    /// Counts skipped records and logs each once while it stays bad (not on every
    /// discovery).
    fn report_skipped(&self, bad: &[SkippedRecord]) {
        self.inner
            .skipped
            .fetch_add(bad.len() as u64, Ordering::Relaxed);
        let mut warned = self.inner.warned.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = HashSet::with_capacity(bad.len());
        for s in bad {
            if !warned.contains(&s.key) {
                tracing::warn!(key = %s.key, reason = %s.reason, "skipping bad registry record");
            }
            now.insert(s.key.clone());
        }
        *warned = now;
    }
}

/// The `notify-keyspace-events` value with our flags added to `current`.
fn keyspace_flags(current: &str) -> String {
    let mut flags = current.to_owned();
    let all = current.contains('A');
    if !current.contains('K') {
        flags.push('K');
    }
    for f in ['g', '$', 'x'] {
        if !all && !current.contains(f) {
            flags.push(f);
        }
    }
    flags
}

/// Masters from `CLUSTER NODES` output (`id ip:port@cport flags master …`).
fn parse_cluster_masters(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let _id = f.next()?;
            let addr = f.next()?;
            let flags = f.next()?;
            if !flags.split(',').any(|x| x == "master") || flags.contains("fail") {
                return None;
            }
            let hostport = addr.split('@').next()?;
            let (host, port) = keys::split_host_port(hostport)?;
            Some((host.to_owned(), port))
        })
        .collect()
}

async fn watch_task(
    reg: RedisRegistry,
    mut pubsub: redis::aio::PubSub,
    mut mode: PushMode,
    tx: mpsc::Sender<Change>,
) {
    let mut sink = Sink::new(tx.clone());
    let mut poll_state = PollState::default();
    let cfg = reg.inner.config.clone();
    let mut backoff = cfg.reconnect_min_delay;
    loop {
        if mode == PushMode::ChannelAndPolling {
            if let Ok(view) = reg.discover().await {
                poll_state.diff(&view);
            }
        }
        let mut poll = tokio::time::interval(cfg.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        let mut messages = pubsub.into_on_message();
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else { break };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    let change = match mode {
                        PushMode::KeyspaceEvents => watch::parse_keyspace(msg.get_channel_name(), &payload),
                        _ => watch::parse_channel_message(&payload),
                    };
                    if let Some(change) = change {
                        reg.note_key_seen(&change);
                        if !sink.send(change) {
                            return;
                        }
                    }
                }
                _ = poll.tick(), if mode == PushMode::ChannelAndPolling => {
                    // Without keyspace events, new SOLLOL-written keys are only visible
                    // to a SCAN: sweep on every poll (unless scanning is off).
                    if reg.inner.config.scan != ScanStrategy::Never {
                        if let Err(e) = reg.scan_sweep().await {
                            tracing::debug!(error = %e, "watch poll sweep failed");
                        }
                    }
                    match reg.discover().await {
                        Ok(view) => {
                            for change in poll_state.diff(&view) {
                                if !sink.send(change) {
                                    return;
                                }
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "watch poll failed"),
                    }
                }
                _ = tx.closed() => return,
            }
        }
        // The connection is gone: reconnect with capped exponential backoff.
        tracing::warn!(url = %reg.inner.url, "change push lost its Redis connection; reconnecting");
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = tx.closed() => return,
            }
            backoff = (backoff * 2).min(cfg.reconnect_max_delay);
            match reg.subscribe().await {
                Ok((p, m)) => {
                    pubsub = p;
                    mode = m;
                    backoff = cfg.reconnect_min_delay;
                    // Keyspace events may have been missed: read everything next time.
                    reg.note_key_seen(&Change::Resync);
                    if !sink.send(Change::Resync) {
                        return;
                    }
                    break;
                }
                Err(e) => tracing::debug!(error = %e, "change push reconnect failed"),
            }
        }
    }
}

#[async_trait]
impl Registry for RedisRegistry {
    async fn publish_stats(&self, record: &GpuStatsRecord) -> Result<()> {
        let invalid = |reason| Error::InvalidRecord {
            what: "stats record",
            reason,
        };
        keys::check_key_part("node id", &record.node_id).map_err(invalid)?;
        validate::validate_stats(record, &self.inner.config.limits).map_err(invalid)?;
        let cfg = &self.inner.config;
        let json = record.to_json();
        let fields = pyjson_fields(&json);
        let mut set = redis::cmd("SET");
        set.arg(keys::gpu_stats_key(&record.node_id))
            .arg(json)
            .arg("PX")
            .arg(ttl_ms(cfg.stats_ttl));
        let mut xadd = redis::cmd("XADD");
        xadd.arg(keys::GPU_STATS_STREAM)
            .arg("MAXLEN")
            .arg("~")
            .arg(cfg.stream_maxlen)
            .arg("*");
        for (k, v) in &fields {
            xadd.arg(k).arg(v);
        }
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(keys::INDEX_GPU)
            .arg(unix_ms().saturating_add(ttl_ms(cfg.stats_ttl)))
            .arg(&record.node_id);
        let log = self.log_cmd(keys::CHANGE_GPU, &record.node_id);
        let publish = Self::publish_cmd(&Change::Updated(record.node_id.clone()));
        // In this order: a reader that sees the index entry or the log entry must find
        // this value, and one that sees the log entry must find the index entry.
        self.exec_ordered("publish stats", vec![set, xadd, zadd, log, publish])
            .await?;
        Ok(())
    }

    async fn register(&self, host: &str, port: u16, record: &RpcNodeRecord) -> Result<()> {
        let invalid = |reason| Error::InvalidRecord {
            what: "registration",
            reason,
        };
        keys::check_key_part("host", host).map_err(invalid)?;
        validate::validate_rpc(record, &self.inner.config.limits).map_err(invalid)?;
        let ttl = self.inner.config.registration_ttl;
        let member = keys::rpc_member(host, port);
        let mut set = redis::cmd("SET");
        set.arg(keys::rpc_node_key(host, port))
            .arg(record.to_json())
            .arg("PX")
            .arg(ttl_ms(ttl));
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(keys::INDEX_RPC)
            .arg(unix_ms().saturating_add(ttl_ms(ttl)))
            .arg(&member);
        let log = self.log_cmd(keys::CHANGE_RPC, &member);
        let publish = Self::publish_cmd(&Change::RpcUpdated(member));
        // In this order: see `publish_stats`.
        self.exec_ordered("register", vec![set, zadd, log, publish])
            .await?;
        Ok(())
    }

    async fn deregister(&self, node_id: &str, rpc: Option<(&str, u16)>) -> Result<()> {
        let mut cmds = vec![
            redis::cmd("DEL").arg(keys::gpu_stats_key(node_id)).clone(),
            redis::cmd("ZREM").arg(keys::INDEX_GPU).arg(node_id).clone(),
            self.log_cmd(keys::CHANGE_GPU, node_id),
            Self::publish_cmd(&Change::Removed(node_id.to_owned())),
        ];
        if let Some((host, port)) = rpc {
            let member = keys::rpc_member(host, port);
            cmds.push(
                redis::cmd("DEL")
                    .arg(keys::rpc_node_key(host, port))
                    .clone(),
            );
            cmds.push(redis::cmd("ZREM").arg(keys::INDEX_RPC).arg(&member).clone());
            cmds.push(self.log_cmd(keys::CHANGE_RPC, &member));
            cmds.push(Self::publish_cmd(&Change::RpcRemoved(member)));
        }
        self.exec_ordered("deregister", cmds).await?;
        let mut st = self.scan_state();
        st.legacy_gpu.remove(node_id);
        if let Some((host, port)) = rpc {
            st.legacy_rpc.remove(&keys::rpc_member(host, port));
        }
        Ok(())
    }

    async fn set_router_metadata(&self, metadata: &RouterMetadata) -> Result<()> {
        validate::validate_metadata(metadata, &self.inner.config.limits).map_err(|reason| {
            Error::InvalidRecord {
                what: "router metadata",
                reason,
            }
        })?;
        let set = redis::cmd("SET")
            .arg(keys::ROUTER_METADATA)
            .arg(metadata.to_json())
            .clone();
        self.exec(
            "set router metadata",
            vec![set, Self::publish_cmd(&Change::MetadataChanged)],
        )
        .await?;
        Ok(())
    }

    async fn router_metadata(&self) -> Result<Option<RouterMetadata>> {
        let raw: Option<Vec<u8>> = self
            .run("GET", |mut c| async move {
                redis::cmd("GET")
                    .arg(keys::ROUTER_METADATA)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut skipped = Vec::new();
        Ok(raw.and_then(
            |raw| match validate::decode_metadata(&raw, &self.inner.config.limits) {
                Ok(m) => Some(m),
                Err(reason) => {
                    self.skip(&mut skipped, keys::ROUTER_METADATA.to_owned(), reason);
                    None
                }
            },
        ))
    }

    async fn discover(&self) -> Result<ClusterView> {
        // The whole discovery (SCAN sweep included) is bounded by one timeout.
        let timeout = self.inner.config.command_timeout;
        // Ids keyspace events named since the last discovery, put back if this one fails
        // or times out (taken out here, outside the timeout, so a cancelled discovery
        // cannot lose them).
        let dirty = {
            let mut st = self.scan_state();
            (
                std::mem::take(&mut st.dirty_gpu),
                std::mem::take(&mut st.dirty_rpc),
            )
        };
        let result = match tokio::time::timeout(timeout, self.discover_inner(&dirty)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                url: self.inner.url.clone(),
                op: "discover",
                after: timeout,
            }),
        };
        if result.is_err() {
            let mut st = self.scan_state();
            st.dirty_gpu.extend(dirty.0);
            st.dirty_rpc.extend(dirty.1);
        }
        result
    }

    async fn watch(&self) -> Result<ChangeStream> {
        let (pubsub, mode) = self.subscribe().await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(watch_task(self.clone(), pubsub, mode, tx));
        Ok(ChangeStream::new(rx, mode, Some(task)))
    }

    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool> {
        let (key, owner, ms) = (
            keys::lock_key(name),
            owner.to_owned(),
            ttl.as_millis().max(1) as u64,
        );
        let script = self.inner.try_lock.clone();
        let got: i64 = self
            .run("lock", |mut c| async move {
                script
                    .key(key)
                    .arg(owner)
                    .arg(ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(got == 1)
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<bool> {
        let (key, owner) = (keys::lock_key(name), owner.to_owned());
        let script = self.inner.unlock.clone();
        let got: i64 = self
            .run("unlock", |mut c| async move {
                script.key(key).arg(owner).invoke_async(&mut c).await
            })
            .await?;
        Ok(got == 1)
    }

    async fn history(&self, count: usize) -> Result<Vec<(String, Vec<(String, String)>)>> {
        let reply: Value = self
            .run("XREVRANGE", |mut c| async move {
                redis::cmd("XREVRANGE")
                    .arg(keys::GPU_STATS_STREAM)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut out = stream_entries(reply);
        out.reverse();
        Ok(out)
    }

    async fn ping(&self) -> Result<()> {
        self.run("PING", |mut c| async move {
            redis::cmd("PING").query_async::<()>(&mut c).await
        })
        .await
    }

    fn skipped_records_total(&self) -> u64 {
        self.inner.skipped.load(Ordering::Relaxed)
    }

    fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }
}

fn pyjson_fields(json: &str) -> Vec<(String, String)> {
    crate::pyjson::stream_fields(json).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_flags_are_merged() {
        assert_eq!(keyspace_flags(""), "Kg$x");
        assert_eq!(keyspace_flags("Kg$x"), "Kg$x");
        assert_eq!(keyspace_flags("AKE"), "AKE");
        assert_eq!(keyspace_flags("Ex"), "ExKg$");
    }

    #[test]
    fn cluster_masters_are_parsed() {
        let text = "a 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\n\
                    b 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922\n\
                    c 127.0.0.1:7003@17003 slave b 0 0 2 connected\n\
                    d 127.0.0.1:7004@17004 master,fail - 0 0 3 disconnected\n";
        assert_eq!(
            parse_cluster_masters(text),
            vec![
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002)
            ]
        );
    }
}
