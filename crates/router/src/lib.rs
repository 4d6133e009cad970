//! `vramroute-router`: VRAM-aware fit checks and scoring.
//!
//! Pure and fast: takes a cluster snapshot and a request, returns a decision. Knows
//! nothing about Redis or GPU vendors.
//!
//! Skeleton: being written under issue #5.
