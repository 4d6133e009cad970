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
//! index) are found by a bounded cursor `SCAN` (per [`ScanStrategy`](crate::ScanStrategy))
//! and by keyspace notifications, and remembered locally until they vanish.
//!
//! # Modules (each imports only those listed after it, never one above it)
//!
//! | module | owns |
//! |---|---|
//! | `impl_registry` | `impl Registry for RedisRegistry`: delegates to the others |
//! | `pubsub` | change push: subscribing, keyspace notifications, the watch task |
//! | `discover` | discovery's round trips and the [`ClusterView`](crate::ClusterView) it builds |
//! | `bounded` | discovery's size-checked reads, the junk it remembers, bounded index pruning |
//! | `write` | stats, registrations, deregistrations, router metadata |
//! | `scan` | the bounded `SCAN` sweep for keys without our index |
//! | `url` | URL parsing, TLS and cluster set-up, feature errors |
//! | `exec` | the connection on demand with backoff, timeouts, error mapping |
//! | `state` | [`RedisRegistry`] and the state its clones share |
//! | `conn`, `scripts`, `value` | the connection type, the Lua scripts, reply decoding (leaves) |
//!
//! `pubsub` uses `scan` (it sweeps while polling); `discover` uses `scan` and `bounded`;
//! `write` uses `bounded` (a write forgets the junk it replaced); the modules
//! above `state` that run commands do so through `exec`; nothing imports
//! `impl_registry` or this file.

mod bounded;
#[cfg(feature = "cluster")]
mod cluster_stage;
mod conn;
mod discover;
mod exec;
mod impl_registry;
mod pubsub;
mod scan;
mod scripts;
mod state;
mod url;
mod value;
mod write;

pub use state::RedisRegistry;
