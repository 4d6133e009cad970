//! `vramroute-rpc`: a bounded health and memory probe for llama.cpp's `rpc-server`
//! (`ggml-rpc-server`), over its binary protocol.
//!
//! **Owns:** the bytes of the protocol a probe needs (HELLO, `DEVICE_COUNT`,
//! `GET_DEVICE_MEMORY`; [`wire`]), which protocol majors are known ([`wire::KNOWN_MAJORS`]:
//! 5, 6, 7), and the rule that turns what happened on the socket into an [`RpcState`]:
//! reachable, busy (rpc-server serves one client at a time, so while llama-server is
//! attached a second connection is accepted by the kernel and never answered), unreachable,
//! unknown protocol, or a bad reply.
//!
//! **Must not know:** Redis, SOLLOL records, routing, planning, GPU vendors. It depends on
//! no other vramroute crate; the coordinator decides what a [`Probe`] means for a plan.
//!
//! Bounds: the connect and every read and write are timeout-bounded, a whole probe takes
//! at most [`ProbeOptions::max_total`]; every reply size is checked against
//! [`wire::MAX_REPLY_BYTES`] (64 KiB) before anything is allocated for it; at most
//! [`ProbeOptions::max_devices`] devices are queried.
//!
//! Entry types: [`probe`] (or [`probe_all`], concurrent) with [`ProbeOptions`] → [`Probe`] ([`RpcState`],
//! [`DeviceMemory`]). With the `testing` feature, `testing::FakeRpcServer` is a loopback
//! server that speaks the same bytes, one client at a time, and can misbehave on purpose.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use vramroute_rpc::{probe, ProbeOptions, RpcState};
//! // Nothing listens on port 1 of loopback: connection refused.
//! let opts = ProbeOptions { connect_timeout: Duration::from_millis(200), ..ProbeOptions::default() };
//! let p = probe("127.0.0.1:1", &opts).await;
//! assert_eq!(p.state, RpcState::Unreachable);
//! assert!(p.version.is_none() && p.devices.is_empty());
//! assert!(p.elapsed_ms <= opts.max_total().as_millis() as u64);
//! println!("{}", serde_json::to_string(&p).unwrap());
//! # }
//! ```

mod probe;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wire;

pub use probe::{probe, probe_all, DeviceMemory, Probe, ProbeOptions, RpcState};

/// What went wrong in one exchange with a server; [`probe`] turns it into an
/// [`RpcState`] and a detail line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No (complete) reply in time.
    #[error("no reply to {what} within {after_ms} ms (got {got} bytes)")]
    Timeout {
        /// The command whose reply was awaited.
        what: &'static str,
        /// The timeout that expired.
        after_ms: u64,
        /// Bytes of the reply received before it expired.
        got: usize,
    },
    /// The server closed the connection before the reply was complete.
    #[error("the server closed the connection during the reply to {what} after {got} of {expected} bytes")]
    Closed {
        /// The command whose reply was awaited.
        what: &'static str,
        /// Bytes received.
        got: usize,
        /// Bytes expected (the 8-byte size, then the payload).
        expected: usize,
    },
    /// The reply announced more bytes than a probe ever needs.
    #[error(
        "the reply to {what} announced {size} bytes (more than {limit}): not an rpc-server reply"
    )]
    TooLarge {
        /// The command.
        what: &'static str,
        /// The announced size.
        size: u64,
        /// The largest accepted size.
        limit: u64,
    },
    /// The reply had the wrong shape.
    #[error("malformed reply to {what}: {reason}")]
    Malformed {
        /// The command.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A socket error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
