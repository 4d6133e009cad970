//! `vramroute-registry`: the SOLLOL-compatible Redis schema, TTLs, reads and writes.
//!
//! The only crate that knows Redis key names. Knows nothing about GPUs beyond the
//! record shapes, and nothing about routing.
//!
//! Skeleton: being written under issue #3.
