//! Shared fixtures for vramroute's criterion benchmarks (synthetic clusters).
