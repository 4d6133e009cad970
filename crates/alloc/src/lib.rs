//! `vramroute-alloc`: the hybrid CPU/GPU planner.
//!
//! Owns three things:
//! - **Offers** — what one node can give: one CPU worker plus one worker per GPU, each
//!   with a safe budget ([`ReserveConfig`], [`NodeOffer`]), SOLLOL's registration fields
//!   computed exactly as SOLLOL computes them ([`SollolCapability`]), and `rpc-server`
//!   command lines for today's and for pre-October-2025 llama.cpp ([`GgmlBackend`],
//!   [`RpcServerCommand`]).
//! - **Model memory** — what a model needs, from a GGUF header ([`GgufInfo`]), Ollama's
//!   metadata, SOLLOL's size table or an explicit size ([`ModelEstimate`],
//!   [`ModelSizer`]); every estimate names its source.
//! - **Plans** — which cluster workers hold which layers, with the `llama-server`
//!   arguments that make llama.cpp do exactly that ([`plan()`], [`Plan`]).
//!
//! **Must not know:** Redis, HTTP, Ollama's wire format, clocks. The crate is pure; the
//! only I/O is reading a GGUF header ([`GgufInfo::from_path`]), which is untrusted input.
//! All sizes are MiB (1,048,576 bytes) unless a name says otherwise.

mod backend;
mod command;
mod error;
mod offer;
mod plan;

pub use backend::GgmlBackend;
pub use command::{shell_quote, RpcServerCommand, ShellCommand};
pub use error::{Error, Result};
pub use offer::{NodeOffer, ReserveConfig, SollolCapability, Worker, WorkerKind};
pub use plan::ClusterWorker;
