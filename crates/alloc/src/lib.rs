//! `vramroute-alloc`: the hybrid CPU/GPU planner.
//!
//! Turns probed hardware into worker offers and a model plus a cluster into a placement
//! plan with llama.cpp commands. Pure: no network, no Redis; the only I/O is reading a
//! model file's header.
//!
//! Skeleton: being written under issue #4.
