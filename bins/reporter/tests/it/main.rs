//! End-to-end tests of `vramroute-reporter` with a real redis-server, a real HTTP server
//! speaking Ollama's API and fixture sysfs trees. Every wait is bounded.
#![allow(missing_docs, reason = "test helpers")]
#![allow(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]

mod advertise;
mod cli;
mod faults;
mod local_inputs;
mod rpc_server;
mod run;
pub(crate) mod support;
