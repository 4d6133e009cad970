//! `vramroute-node`: what one node publishes.
//!
//! Composes one probe of the hardware ([`vramroute_probe`]), the node's offer
//! ([`vramroute_alloc`]) and what its Ollama says ([`vramroute_ollama`]) into the
//! registry's record types ([`vramroute_registry`]): the live stats record, the
//! capability registration, the human report and the JSON the reporter prints. It also
//! owns the "publish now?" rule ([`ChangeDetector`]) and the rule for the address a
//! node advertises ([`choose_advertise_ip`]: not loopback on the machine that runs Redis),
//! and the marking of a record republished while the probe is stuck
//! ([`mark_probe_stale`]).
//!
//! **Must not know:** Redis I/O (records are handed to a `Registry` by the caller),
//! routing, clocks (the caller passes the timestamp), HTTP (the caller passes the
//! outcome of `GET /api/ps`), the network (the caller passes the route's address and
//! the interface list).
//!
//! Used by `vramroute-reporter` and by the coordinator's embedded single-node mode, so
//! both describe a node the same way.

mod advertise;
mod change;
mod report;
mod stale;

pub use advertise::{choose_advertise_ip, AdvertiseChoice, NetInterface};
pub use change::ChangeDetector;
pub use report::{gpu_log_line, sollol_gpu_order, NodeIdentity, NodeReport, OllamaState};
pub use stale::{mark_probe_stale, PROBE_STALE_FIELD, PROBE_STUCK_SECONDS_FIELD};

/// Errors building a node report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The offer could not be computed (e.g. an invalid reserve).
    #[error(transparent)]
    Alloc(#[from] vramroute_alloc::Error),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
