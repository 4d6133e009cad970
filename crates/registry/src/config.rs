//! Registry settings: expiries, timeouts, discovery and push strategies, and SOLLOL's
//! defaults (`SOLLOL_REDIS_URL`, its default URL, the default rpc-server port).

use std::time::Duration;

use crate::validate::Limits;

/// The environment variable SOLLOL reads its Redis URL from.
pub const REDIS_URL_ENV: &str = "SOLLOL_REDIS_URL";
/// SOLLOL's default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://localhost:6379";
/// The default llama.cpp rpc-server port SOLLOL registers.
pub const DEFAULT_RPC_PORT: u16 = 50052;

/// How discovery finds keys written by writers that keep no index (SOLLOL's Python tools).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScanStrategy {
    /// Never SCAN: only indexed keys (written by vramroute) are seen.
    Never,
    /// SCAN on the first discovery and then at most once per interval (default 30 s).
    Periodic(Duration),
    /// SCAN on every discovery (slow on big keyspaces; for tests and tiny clusters).
    EveryDiscover,
}

/// Whether [`Registry::watch`](crate::Registry::watch) uses Redis keyspace notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyspaceEvents {
    /// Use them if the server already has them on (`notify-keyspace-events` with `K`, `g`,
    /// `$`, `x` or `A`); otherwise fall back to our channel plus polling.
    IfEnabled,
    /// Add the flags we need with `CONFIG SET` (keeping the existing ones) when missing;
    /// fall back to our channel plus polling when the server refuses. Default.
    Enable,
    /// Never: our channel plus polling only.
    Off,
}

/// Settings of a registry backend. `Default` gives SOLLOL's expiries.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// Expiry of `sollol:gpu:{node_id}` (SOLLOL: 120 s).
    pub stats_ttl: Duration,
    /// Expiry of `sollol:rpc:node:{host}:{port}` (SOLLOL: 3600 s).
    pub registration_ttl: Duration,
    /// Approximate cap of the `sollol:gpu:stats` stream (`MAXLEN ~`, SOLLOL: 1000).
    pub stream_maxlen: usize,
    /// Approximate cap of our change log `vramroute:changes` (`MAXLEN ~`, default
    /// 100,000 entries, about 3.5 MB in Redis). A reader more writes than this behind reads
    /// the whole cluster again instead of the changes.
    pub change_log_maxlen: usize,
    /// How long a write by a writer that keeps no change log (a raw `SET`/`DEL` of one
    /// of our keys, an older vramroute) can go unseen by `discover` (default 30 s). After
    /// its first full read a discovery reads what the change log names plus a share of
    /// the other records again (the share of this interval since the last discovery,
    /// walking through them in id order), and lists the indexes whole once per interval:
    /// every record is read again within it without one discovery reading them all.
    pub full_read_interval: Duration,
    /// Bound on every Redis call, connection included (default 2 s).
    pub command_timeout: Duration,
    /// Reconnect backoff: first delay (default 100 ms), doubled per attempt up to
    /// `reconnect_max_delay` (default 5 s).
    pub reconnect_min_delay: Duration,
    /// Cap of the reconnect backoff.
    pub reconnect_max_delay: Duration,
    /// How SOLLOL-written (unindexed) keys are found.
    pub scan: ScanStrategy,
    /// `COUNT` hint of each SCAN call (default 1000).
    pub scan_count: usize,
    /// Whether watch uses keyspace notifications.
    pub keyspace_events: KeyspaceEvents,
    /// Interval of the polling fallback of watch (default 2 s).
    pub poll_interval: Duration,
    /// Index entries whose key should have expired this long ago are pruned
    /// (default 60 s; covers clock skew between writers and readers).
    pub index_prune_grace: Duration,
    /// Longest expiry any writer in the fleet gives a record (default 24 h; the
    /// registry's own `stats_ttl` and `registration_ttl` count too, whichever is
    /// longest). An index entry whose deadline lies further ahead than this plus
    /// `index_prune_grace` cannot be one of ours: discovery never lists it and prunes it
    /// (at most 50,000 per index per discovery, so a flood of bogus members costs each
    /// discovery a bounded amount of work). Raise it if some writer uses longer TTLs.
    pub max_record_ttl: Duration,
    /// Root CA certificate(s) (PEM) to verify a `rediss://` server with, instead of the
    /// system trust store.
    pub tls_root_ca_pem: Option<Vec<u8>>,
    /// Caps on what a reader accepts.
    pub limits: Limits,
    /// Discovery hands back changes only (see
    /// [`ClusterView::changes_only`](crate::ClusterView::changes_only)): a record
    /// unchanged since this registry's previous discovery is a shared marker, and the
    /// registry keeps, per record, only a fingerprint of its value instead of the
    /// decoded record. For a single reader that
    /// applies every view in order and keeps what it needs (the cluster layer's follow
    /// loop): it then holds each record's data once instead of twice. Default `false`.
    pub changes_only: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            stats_ttl: Duration::from_secs(120),
            registration_ttl: Duration::from_secs(3600),
            stream_maxlen: 1000,
            change_log_maxlen: 100_000,
            full_read_interval: Duration::from_secs(30),
            command_timeout: Duration::from_secs(2),
            reconnect_min_delay: Duration::from_millis(100),
            reconnect_max_delay: Duration::from_secs(5),
            scan: ScanStrategy::Periodic(Duration::from_secs(30)),
            scan_count: 1000,
            keyspace_events: KeyspaceEvents::Enable,
            poll_interval: Duration::from_secs(2),
            index_prune_grace: Duration::from_secs(60),
            max_record_ttl: Duration::from_secs(24 * 3600),
            tls_root_ca_pem: None,
            limits: Limits::default(),
            changes_only: false,
        }
    }
}
