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
//!   private `redis-server` processes for tests; [`testing::fixtures`] holds SOLLOL's
//!   captured records (the workspace's one copy).
//!
//! # Cargo features
//!
//! - `tls` (default): `rediss://` URLs and [`RegistryConfig::tls_root_ca_pem`], through
//!   redis's native-tls backend (OpenSSL on Linux). Without it a `rediss://` URL is an
//!   [`Error::FeatureDisabled`].
//! - `cluster` (default): Redis Cluster (`redis-cluster://…`,
//!   [`RedisRegistry::connect_cluster`]). Without it those are an
//!   [`Error::FeatureDisabled`].
//! - `testing`: the [`testing`] module (private `redis-server`s, SOLLOL fixtures).
//!
//! An embedder that needs neither TLS nor Cluster builds without OpenSSL with
//! `default-features = false`.
//!
//! # Module layering
//!
//! Modules form a DAG; each imports only modules on a lower line (never `lib.rs`, which
//! only declares and re-exports):
//!
//! ```text
//! testing                      (feature: test servers; testing/fixtures → pyjson)
//! redis_backend/*              (the Redis backend; its own layering in its mod.rs)
//! memory                       (the in-process backend)
//! watch                        (push plumbing shared by both backends)
//! registry                     (the Registry trait)
//! change, view                 (Change, PushMode, ChangeStream; ClusterView)
//! delta                        (what incremental discovery reads and keeps)
//! stream                       (decoding sollol:gpu:stats entries)
//! config → validate → record → pyjson
//! error, keys                  (leaves)
//! ```

mod change;
mod config;
mod delta;
mod error;
mod fastdecode;
pub mod keys;
mod memory;
pub mod pyjson;
mod record;
mod redis_backend;
mod registry;
mod stream;
mod validate;
mod view;
mod watch;

#[cfg(feature = "testing")]
pub mod testing;

pub use change::{Change, ChangeStream, PushMode};
pub use config::{
    KeyspaceEvents, RegistryConfig, ScanStrategy, DEFAULT_REDIS_URL, DEFAULT_RPC_PORT,
    REDIS_URL_ENV,
};
pub use error::{redact_url, url_with_password, Error, Result};
pub use memory::MemoryRegistry;
pub use record::{
    GpuOffload, GpuStat, GpuStatsRecord, LoadedModel, RouterMetadata, RpcBackend, RpcNodeRecord,
    SmolStr, MANAGED_BACKENDS_FIELD, SCHEMA_VERSION,
};
pub use redis_backend::RedisRegistry;
pub use registry::Registry;
pub use stream::decode_stream_entry;
pub use validate::{
    decode_metadata, decode_rpc, decode_stats, validate_metadata, validate_rpc, validate_stats,
    Limits, SkippedRecord, KNOWN_VENDORS, MAX_TIMESTAMP, UNKNOWN_VENDOR,
};
pub use view::{
    is_unchanged_rpc, is_unchanged_stats, unchanged_rpc, unchanged_stats, ClusterView, RpcNodeEntry,
};
