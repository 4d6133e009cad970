//! Integration tests of `vramroute-ollama` (one test binary, `it`).

mod client;
mod fake_server;
mod props;
