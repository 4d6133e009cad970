//! Integration tests of `vramroute-registry` against real `redis-server` processes the
//! tests start themselves (never the server on 6379), plus the memory backend.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

#[cfg(feature = "cluster")]
mod cluster;
mod compat;
mod delta;
mod faults;
mod fixtures;
mod hostile;
mod memory;
mod props;
mod push;
mod redis_ops;
#[cfg(feature = "tls")]
mod tls;
mod wrongtype;
