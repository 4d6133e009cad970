//! Integration tests of `vramroute-alloc` (one test binary; modules under `alloc/`).

#[path = "alloc/commands.rs"]
mod commands;
#[path = "alloc/estimate.rs"]
mod estimate;
#[path = "alloc/fixtures.rs"]
mod fixtures;
#[path = "alloc/gguf.rs"]
mod gguf;
#[path = "alloc/offer.rs"]
mod offer;
#[path = "alloc/plan.rs"]
mod plan;
