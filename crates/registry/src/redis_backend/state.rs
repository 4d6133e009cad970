//! The registry's shared state: what it connects to ([`Target`]), its one connection
//! slot with the backoff bookkeeping ([`Slot`]), what SCAN and keyspace events found
//! ([`ScanState`]), what the previous discovery kept ([`Known`]), and the
//! [`RedisRegistry`] handle itself. Every other module of `redis` works on these; this
//! one imports none of them but `conn` and `scripts`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

#[cfg(feature = "cluster")]
use redis::cluster::ClusterClient;

use super::conn::Conn;
use super::scripts::Scripts;
use crate::config::RegistryConfig;
use crate::delta::Kept;
use crate::error::Error;
use crate::record::{GpuStatsRecord, RpcNodeRecord};
use crate::validate::SkippedRecord;
use crate::watch::Listed;
use crate::SmolStr;

/// What a registry connects to.
pub(super) enum Target {
    /// One server (TCP, TLS or Unix socket).
    Single(redis::Client),
    /// A Redis Cluster, with its seed nodes (pub/sub connects to one of them).
    #[cfg(feature = "cluster")]
    Cluster {
        client: Box<ClusterClient>,
        seeds: Vec<redis::Client>,
    },
}

/// The shared connection, or when the next attempt to open one may start.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) conn: Option<Conn>,
    pub(super) failures: u32,
    pub(super) next_attempt: Option<Instant>,
    pub(super) last_error: Option<Error>,
}

/// Ids of keys without our index, found by SCAN or named by keyspace events.
#[derive(Default)]
pub(super) struct ScanState {
    pub(super) last: Option<Instant>,
    /// Ids whose keys exist without our index (found by SCAN or keyspace events).
    pub(super) legacy_gpu: BTreeSet<String>,
    pub(super) legacy_rpc: BTreeSet<String>,
}

/// Keys found holding junk (a value over the size cap, one that does not decode, another
/// Redis type), remembered with the length they had (or [`Junk::WRONG_TYPE`]) so
/// discovery does not read them again while they stay the same (see `bounded`).
#[derive(Default)]
pub(super) struct Junk {
    pub(super) by_key: HashMap<String, JunkEntry>,
}

/// One remembered junk key.
pub(super) struct JunkEntry {
    /// Its length in bytes when it was read, or [`Junk::WRONG_TYPE`].
    pub(super) len: i64,
    /// Why it was skipped.
    pub(super) reason: std::sync::Arc<str>,
    /// When it was found: forgotten after `full_read_interval` (unless over the cap), so
    /// a rewrite to the same length that no keyspace event announced is read within that
    /// time.
    pub(super) at: Instant,
}

impl Junk {
    /// The `len` of a key holding another Redis type than a string.
    pub(super) const WRONG_TYPE: i64 = -2;
    /// Most keys remembered (a flood beyond this is read again, still size-checked).
    pub(super) const MAX: usize = 100_000;
}

/// What a registry kept from its previous discovery (see `delta`).
pub(super) struct Known {
    /// Id of the newest change-log entry seen; `None` when the log was empty.
    pub(super) cursor: Option<String>,
    pub(super) stats: Kept<GpuStatsRecord>,
    pub(super) rpc: Kept<RpcNodeRecord>,
    /// When it was read: after `index_prune_grace / 2`, expired index entries may have
    /// been pruned unseen, so the next discovery reads everything.
    pub(super) at: Instant,
    /// When the index was last listed whole (a full read, or a delta read's listing);
    /// the next listing is due `full_read_interval` after it.
    pub(super) last_listed: Instant,
    /// Per kind (stats, registrations): where the last audit stopped (see
    /// `delta::Audit`), and the fraction of a record due to be read again that it
    /// left over (every kept record is read again within `full_read_interval`).
    pub(super) audit: [(Option<SmolStr>, f64); 2],
    /// The number of the discovery that kept this (`ClusterView::sequence`).
    pub(super) sequence: u64,
}
/// Everything a [`RedisRegistry`] and its clones share.
pub(super) struct Inner {
    pub(super) config: RegistryConfig,
    pub(super) target: Target,
    pub(super) url: String,
    pub(super) secret: Option<String>,
    pub(super) db: i64,
    pub(super) slot: tokio::sync::Mutex<Slot>,
    pub(super) scan: Mutex<ScanState>,
    pub(super) skipped: AtomicU64,
    pub(super) scripts: Scripts,
    pub(super) warned: Mutex<HashSet<String>>,
    /// Our own keys (indexes, change log, history stream) last found holding the wrong
    /// Redis type: warned about once until they are usable again.
    pub(super) wrong_type: Mutex<HashSet<&'static str>>,
    /// Junk keys discovery does not read again while they stay the same.
    pub(super) junk: Mutex<Junk>,
    /// The server refused one of discovery's `EVAL`s (an ACL without `+eval`, scripting
    /// disabled): discovery uses plain commands instead (see `bounded`).
    pub(super) no_scripts: AtomicBool,
}

/// What one reader's delta reads rest on: what its last discovery kept and what was
/// announced since. A registry and its clones are one reader; the watch's polling
/// fallback reads as another ([`RedisRegistry::poll_reader`]), so that its discoveries,
/// running beside the caller's, neither take what the caller's next delta read needs
/// nor make the caller's reads refer to a read the caller never saw.
#[derive(Default)]
pub(super) struct Reader {
    /// The polling fallback's reader ([`RedisRegistry::poll_reader`]): its discoveries
    /// list the indexes' live ids instead of reading their records, and read only the
    /// records no index lists (and the metadata). It keeps nothing for delta reads.
    pub(super) poll_only: bool,
    /// The live ids (stats, registrations) the last poll-only discovery listed, for
    /// the poll to take ([`RedisRegistry::take_listed`]).
    pub(super) listed: Mutex<Option<Listed>>,
    pub(super) known: Mutex<Option<Known>>,
    /// Bumped by whatever invalidates what discovery keeps (a `Resync`, a cleared
    /// cache): a discovery that started before does not put its records back.
    pub(super) known_epoch: AtomicU64,
    /// Discoveries started (`ClusterView::sequence`).
    pub(super) reads: AtomicU64,
    /// Ids whose keys someone wrote or deleted (keyspace events, our channel) since the
    /// last discovery, stats and registrations: read again by the next one.
    pub(super) dirty: Mutex<(BTreeSet<String>, BTreeSet<String>)>,
}

/// The Redis [`Registry`](crate::Registry). Cheap to clone; clones share one connection
/// and one reader's state (what the last discovery kept).
#[derive(Clone)]
pub struct RedisRegistry {
    pub(super) inner: Arc<Inner>,
    pub(super) reader: Arc<Reader>,
}

impl std::fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRegistry")
            .field("url", &self.inner.url)
            .field("cluster", &self.is_cluster())
            .finish_non_exhaustive()
    }
}

impl RedisRegistry {
    /// The URL, password redacted.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Whether this is a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        #[cfg(feature = "cluster")]
        return matches!(self.inner.target, Target::Cluster { .. });
        #[cfg(not(feature = "cluster"))]
        false
    }

    pub(super) fn scan_state(&self) -> MutexGuard<'_, ScanState> {
        self.inner.scan.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn junk(&self) -> MutexGuard<'_, Junk> {
        self.inner.junk.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn known(&self) -> MutexGuard<'_, Option<Known>> {
        self.reader.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ids announced as written or deleted since this reader's last discovery.
    pub(super) fn dirty(&self) -> MutexGuard<'_, (BTreeSet<String>, BTreeSet<String>)> {
        self.reader.dirty.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The same registry (connection, junk memory, SCAN findings) as the polling
    /// fallback's reader of its own (see [`Reader::poll_only`]): a poll must neither
    /// take what the caller's delta reads rest on nor read again and decode every record
    /// our writers changed since the last poll — they announce each write on our channel,
    /// and the caller reads those itself. What a poll is for is what no push announces:
    /// SOLLOL's writes (keys no index lists), the metadata, and our records expiring or
    /// removed without a word (their ids leaving the indexes).
    pub(super) fn poll_reader(&self) -> RedisRegistry {
        RedisRegistry {
            inner: Arc::clone(&self.inner),
            reader: Arc::new(Reader {
                poll_only: true,
                ..Reader::default()
            }),
        }
    }

    /// The live ids the last poll-only discovery listed (empty when none did).
    pub(super) fn take_listed(&self) -> Listed {
        self.reader
            .listed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default()
    }

    /// Forgets the decoded records kept from the previous discovery, so the next
    /// [`Registry::discover`](crate::Registry::discover) is a full read: every live id, every record read and
    /// decoded (benchmarks use it to measure a cold read). Discovery itself keeps only
    /// the last read's records.
    pub fn clear_decode_cache(&self) {
        self.reader.known_epoch.fetch_add(1, Ordering::SeqCst);
        *self.known() = None;
    }

    /// Notes whether our key `key` (which should hold a `expected`) was found holding
    /// another Redis type (`WRONGTYPE`) by `by`: warns once when it becomes so, logs
    /// once when it is usable again.
    pub(super) fn note_wrong_type(&self, key: &'static str, wrong: bool, by: &'static str) {
        let mut set = self
            .inner
            .wrong_type
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if wrong && set.insert(key) {
            let expected = crate::keys::expected_type(key);
            tracing::warn!(
                key,
                expected,
                by,
                "registry key {key} holds the wrong Redis type (expected a {expected}): \
                 discovery falls back to reads that do not need it and writers skip it; \
                 an operator should delete it (`redis-cli DEL {key}`): our writers \
                 recreate it"
            );
        } else if !wrong && set.remove(key) {
            tracing::info!(key, "registry key {key} is usable again");
        }
    }

    /// Records a skipped record (the caller logs it when first seen).
    pub(super) fn skip(&self, skipped: &mut Vec<SkippedRecord>, key: String, reason: String) {
        self.inner.skipped.fetch_add(1, Ordering::Relaxed);
        skipped.push(SkippedRecord { key, reason });
    }

    /// Counts skipped records and logs each once while it stays bad (not on every
    /// discovery).
    pub(super) fn report_skipped(&self, bad: &[SkippedRecord]) {
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
