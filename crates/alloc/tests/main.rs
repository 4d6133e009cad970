//! Integration tests of `vramroute-alloc` (one test binary; modules under `alloc/`).

#[path = "alloc/commands.rs"]
mod commands;
#[path = "alloc/fixtures.rs"]
mod fixtures;
#[path = "alloc/offer.rs"]
mod offer;
