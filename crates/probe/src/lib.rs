//! `vramroute-probe`: what GPUs and memory does this node have?
//!
//! Owns hardware discovery: NVIDIA through NVML (loaded at run time), AMD and Intel
//! through sysfs read under an injectable root, and host RAM/CPU through `sysinfo`.
//! It knows nothing about Redis, SOLLOL records or routing.
//!
//! Skeleton: the backends are being written under issue #2.
