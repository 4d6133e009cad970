//! `vramroute-probe`: what GPUs and memory does this node have?
//!
//! Owns hardware discovery: NVIDIA through NVML (loaded at run time), AMD and Intel
//! through sysfs read under an injectable root, and host RAM/CPU through `sysinfo`.
//!
//! **Must not know:** Redis, SOLLOL record shapes, routing or placement.
//!
//! Entry types: [`GpuDevice`] (one GPU, every unknown value an `Option`) and
//! [`HostMemory`] (RAM and CPUs). The backends and the composing prober are being
//! written under issue #2.

mod device;

pub use device::{GpuDevice, HostMemory, MemoryKind, Vendor};
