//! The in-process backend: same records, keys, validation and expiry semantics as Redis,
//! for the embedded single-node mode and for tests of the crates above.
//!
//! Time is tokio's (`tokio::time::Instant`), so tests can use a paused clock. Values are
//! stored as the exact JSON the Redis backend would write and decoded on read, so bad
//! records (inserted with [`MemoryRegistry::insert_raw`]) are skipped the same way.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::change::{Change, ChangeStream, PushMode};
use crate::config::RegistryConfig;
use crate::error::{Error, Result};
use crate::keys;
use crate::record::{GpuStatsRecord, RouterMetadata, RpcNodeRecord};
use crate::registry::Registry;
use crate::validate::{self, SkippedRecord};
use crate::view::{ClusterView, RpcNodeEntry};
use crate::watch::{Subscribers, QUEUE};

#[derive(Debug)]
struct Entry {
    json: String,
    deadline: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.deadline.is_none_or(|d| d > now)
    }
}

type StreamEntry = (String, Vec<(String, String)>);

#[derive(Debug, Default)]
struct State {
    stats: BTreeMap<String, Entry>,
    rpc: BTreeMap<(String, u16), Entry>,
    metadata: Option<String>,
    stream: VecDeque<StreamEntry>,
    last_stream_id: (u64, u64),
    locks: HashMap<String, (String, Instant)>,
    subscribers: Subscribers,
    reaper: bool,
}

impl State {
    /// Removes expired entries, announcing each removal.
    fn purge(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .stats
            .iter()
            .filter(|(_, e)| !e.live(now))
            .map(|(k, _)| k.clone())
            .collect();
        for id in gone {
            self.stats.remove(&id);
            self.subscribers.send(&Change::Removed(id));
        }
        let gone: Vec<(String, u16)> = self
            .rpc
            .iter()
            .filter(|(_, e)| !e.live(now))
            .map(|(k, _)| k.clone())
            .collect();
        for (host, port) in gone {
            self.rpc.remove(&(host.clone(), port));
            self.subscribers
                .send(&Change::RpcRemoved(keys::rpc_member(&host, port)));
        }
        self.locks.retain(|_, (_, d)| *d > now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.stats
            .values()
            .chain(self.rpc.values())
            .filter_map(|e| e.deadline)
            .min()
    }
}

#[derive(Debug)]
struct Inner {
    config: RegistryConfig,
    state: Mutex<State>,
    skipped: AtomicU64,
    wake: Notify,
}

/// The in-process [`Registry`]. Cheap to clone; clones share the data.
#[derive(Debug, Clone)]
pub struct MemoryRegistry {
    inner: Arc<Inner>,
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        Self::new(RegistryConfig::default())
    }
}

impl MemoryRegistry {
    /// An empty registry with `config`'s expiries and limits.
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                skipped: AtomicU64::new(0),
                wake: Notify::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent (every
        // mutation is a single insert/remove), so a poisoned lock is still usable.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `value` under a SOLLOL key exactly as another writer might, bypassing
    /// validation: `sollol:gpu:{id}`, `sollol:rpc:node:{host}:{port}` or
    /// `sollol:router:metadata`. Used to simulate SOLLOL's writers and bad records.
    pub fn insert_raw(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<()> {
        let deadline = ttl.map(|t| Instant::now() + t);
        let entry = Entry {
            json: value.to_owned(),
            deadline,
        };
        let mut st = self.state();
        let change = if let Some(id) = keys::node_id_from_stats_key(key) {
            st.stats.insert(id.to_owned(), entry);
            Change::Updated(id.to_owned())
        } else if let Some((host, port)) = keys::rpc_from_key(key) {
            st.rpc.insert((host.to_owned(), port), entry);
            Change::RpcUpdated(keys::rpc_member(host, port))
        } else if key == keys::ROUTER_METADATA {
            st.metadata = Some(entry.json);
            Change::MetadataChanged
        } else {
            return Err(Error::InvalidRecord {
                what: "key",
                reason: format!("{key:?} is not a registry key"),
            });
        };
        st.subscribers.send(&change);
        drop(st);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Remaining time to live of a key (`None` when absent or without expiry), like PTTL.
    pub fn ttl(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let st = self.state();
        let entry = if let Some(id) = keys::node_id_from_stats_key(key) {
            st.stats.get(id)
        } else if let Some((host, port)) = keys::rpc_from_key(key) {
            st.rpc.get(&(host.to_owned(), port))
        } else {
            None
        }?;
        entry.deadline.filter(|d| *d > now).map(|d| d - now)
    }

    fn skip(&self, skipped: &mut Vec<SkippedRecord>, key: String, reason: String) {
        tracing::warn!(%key, %reason, "skipping bad registry record");
        self.inner.skipped.fetch_add(1, Ordering::Relaxed);
        skipped.push(SkippedRecord { key, reason });
    }

    fn ensure_reaper(&self, st: &mut State) {
        if st.reaper {
            return;
        }
        st.reaper = true;
        let inner = Arc::clone(&self.inner);
        // The task holds the registry while someone watches; it ends when the last
        // ChangeStream is dropped (noticed at the next wake-up, at most 1 s later).
        tokio::spawn(async move {
            let reg = MemoryRegistry { inner };
            loop {
                let next = {
                    let mut st = reg.state();
                    st.purge(Instant::now());
                    if st.subscribers.is_empty() {
                        st.reaper = false;
                        return;
                    }
                    st.next_deadline()
                };
                let wake = reg.inner.wake.notified();
                tokio::pin!(wake);
                let limit = Instant::now() + Duration::from_secs(1);
                let until = next.map_or(limit, |d| d.min(limit));
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = &mut wake => {}
                }
            }
        });
    }

    fn put(&self, st: &mut State, change: Change) {
        st.subscribers.send(&change);
        self.inner.wake.notify_one();
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    async fn publish_stats(&self, record: &GpuStatsRecord) -> Result<()> {
        keys::check_key_part("node id", &record.node_id).map_err(|reason| {
            Error::InvalidRecord {
                what: "stats record",
                reason,
            }
        })?;
        validate::validate_stats(record, &self.inner.config.limits).map_err(|reason| {
            Error::InvalidRecord {
                what: "stats record",
                reason,
            }
        })?;
        let json = record.to_json();
        let fields = record.to_stream_fields();
        let now = Instant::now();
        let mut st = self.state();
        st.purge(now);
        st.stats.insert(
            record.node_id.to_string(),
            Entry {
                json,
                // An absurd TTL that overflows the clock never expires.
                deadline: now.checked_add(self.inner.config.stats_ttl),
            },
        );
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let id = if ms > st.last_stream_id.0 {
            (ms, 0)
        } else {
            (st.last_stream_id.0, st.last_stream_id.1 + 1)
        };
        st.last_stream_id = id;
        st.stream.push_back((format!("{}-{}", id.0, id.1), fields));
        while st.stream.len() > self.inner.config.stream_maxlen.max(1) {
            st.stream.pop_front();
        }
        self.put(&mut st, Change::Updated(record.node_id.to_string()));
        Ok(())
    }

    async fn register(&self, host: &str, port: u16, record: &RpcNodeRecord) -> Result<()> {
        keys::check_key_part("host", host).map_err(|reason| Error::InvalidRecord {
            what: "registration",
            reason,
        })?;
        validate::validate_rpc(record, &self.inner.config.limits).map_err(|reason| {
            Error::InvalidRecord {
                what: "registration",
                reason,
            }
        })?;
        let now = Instant::now();
        let mut st = self.state();
        st.purge(now);
        st.rpc.insert(
            (host.to_owned(), port),
            Entry {
                json: record.to_json(),
                deadline: now.checked_add(self.inner.config.registration_ttl),
            },
        );
        self.put(&mut st, Change::RpcUpdated(keys::rpc_member(host, port)));
        Ok(())
    }

    async fn deregister(&self, node_id: &str, rpc: Option<(&str, u16)>) -> Result<()> {
        let mut st = self.state();
        st.purge(Instant::now());
        if st.stats.remove(node_id).is_some() {
            self.put(&mut st, Change::Removed(node_id.to_owned()));
        }
        if let Some((host, port)) = rpc {
            if st.rpc.remove(&(host.to_owned(), port)).is_some() {
                self.put(&mut st, Change::RpcRemoved(keys::rpc_member(host, port)));
            }
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
        let mut st = self.state();
        st.metadata = Some(metadata.to_json());
        self.put(&mut st, Change::MetadataChanged);
        Ok(())
    }

    async fn router_metadata(&self) -> Result<Option<RouterMetadata>> {
        let raw = self.state().metadata.clone();
        let mut skipped = Vec::new();
        Ok(raw.and_then(|raw| {
            match validate::decode_metadata(raw.as_bytes(), &self.inner.config.limits) {
                Ok(m) => Some(m),
                Err(reason) => {
                    self.skip(&mut skipped, keys::ROUTER_METADATA.to_owned(), reason);
                    None
                }
            }
        }))
    }

    async fn discover(&self) -> Result<ClusterView> {
        let limits = &self.inner.config.limits;
        let (stats_raw, rpc_raw, meta_raw) = {
            let mut st = self.state();
            st.purge(Instant::now());
            let stats: Vec<(String, String)> = st
                .stats
                .iter()
                .map(|(k, e)| (k.clone(), e.json.clone()))
                .collect();
            let rpc: Vec<((String, u16), String)> = st
                .rpc
                .iter()
                .map(|(k, e)| (k.clone(), e.json.clone()))
                .collect();
            (stats, rpc, st.metadata.clone())
        };
        let mut view = ClusterView::default();
        let mut skipped = Vec::new();
        for (id, raw) in stats_raw {
            match validate::decode_stats(&id, raw.as_bytes(), limits) {
                Ok(r) => view.stats.push((id.into(), Arc::new(r))),
                Err(reason) => self.skip(&mut skipped, keys::gpu_stats_key(&id), reason),
            }
        }
        for ((host, port), raw) in rpc_raw {
            match validate::decode_rpc(raw.as_bytes(), limits) {
                Ok(record) => view.rpc_nodes.push(RpcNodeEntry {
                    host: host.into(),
                    port,
                    record: Arc::new(record),
                }),
                Err(reason) => self.skip(&mut skipped, keys::rpc_node_key(&host, port), reason),
            }
        }
        if let Some(raw) = meta_raw {
            match validate::decode_metadata(raw.as_bytes(), limits) {
                Ok(m) => view.metadata = Some(m),
                Err(reason) => self.skip(&mut skipped, keys::ROUTER_METADATA.to_owned(), reason),
            }
        }
        view.skipped = skipped;
        Ok(view)
    }

    async fn watch(&self) -> Result<ChangeStream> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut st = self.state();
        st.subscribers.add(tx);
        self.ensure_reaper(&mut st);
        drop(st);
        self.inner.wake.notify_one();
        Ok(ChangeStream::new(rx, PushMode::Memory, None))
    }

    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool> {
        let now = Instant::now();
        let mut st = self.state();
        st.purge(now);
        match st.locks.get_mut(name) {
            Some((holder, deadline)) if holder == owner => {
                *deadline = now + ttl;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => {
                st.locks
                    .insert(name.to_owned(), (owner.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<bool> {
        let mut st = self.state();
        st.purge(Instant::now());
        if st.locks.get(name).is_some_and(|(h, _)| h == owner) {
            st.locks.remove(name);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn history(&self, count: usize) -> Result<Vec<(String, Vec<(String, String)>)>> {
        let st = self.state();
        let skip = st.stream.len().saturating_sub(count);
        Ok(st.stream.iter().skip(skip).cloned().collect())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    fn skipped_records_total(&self) -> u64 {
        self.inner.skipped.load(Ordering::Relaxed)
    }

    fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }
}
