//! End-to-end tests of `vramroute-coordinator`: real redis-server processes, real
//! `vramroute-reporter` processes on fixture sysfs trees, records written exactly as
//! SOLLOL writes them, real HTTP servers speaking Ollama's API, and the coordinator's
//! CLI and HTTP API. Every wait is bounded; nothing leaves 127.0.0.0/8 or touches 6379.
#![allow(missing_docs, reason = "test helpers")]
#![allow(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]

pub(crate) mod support;

mod api_props;
mod cli;
mod cluster;
mod control_chars;
mod daemon;
mod dashboard;
mod hostile;
mod local_inputs;
mod slow_clients;
