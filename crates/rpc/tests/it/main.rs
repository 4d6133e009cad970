//! Integration tests of `vramroute-rpc` (one test binary, `it`): the probe against
//! `testing::FakeRpcServer` on loopback, in every state.

mod fake;
mod probe;
