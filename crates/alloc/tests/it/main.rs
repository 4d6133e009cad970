//! Integration tests of `vramroute-alloc` (one test binary, `it`; its modules are the other files of `tests/it/`).

mod commands;
mod estimate;
mod fixtures;
mod gguf;
mod gguf_hostile;
mod offer;
mod placement;
mod plan;
