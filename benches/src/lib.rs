//! Shared fixtures for vramroute's criterion benchmarks (synthetic clusters).
pub mod plan_fixtures;
pub mod process;
pub mod registry_fixtures;
pub mod route_fixtures;
pub mod sim;
pub mod soak;
