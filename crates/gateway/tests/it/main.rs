//! Integration tests of the gateway: real HTTP everywhere (fake Ollama servers on
//! loopback that answer as Ollama does, the real gateway in front of them).

mod errors;
mod failover;
mod limits;
mod load;
mod props;
mod streaming;
mod support;
