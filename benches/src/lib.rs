//! Shared fixtures for vramroute's criterion benchmarks (synthetic clusters).
pub mod route_fixtures;
pub mod plan_fixtures;
pub mod registry_fixtures;
