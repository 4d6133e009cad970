//! `vramroute-probe`: what GPUs and memory does this node have?
//!
//! **Owns** hardware discovery: NVIDIA through NVML (loaded at run time, so it builds
//! and runs anywhere), AMD through amdgpu sysfs (or ROCm SMI with the off-by-default
//! `rocm` feature), Intel through i915 / xe sysfs, and host RAM/CPUs through
//! `sysinfo` capped by the cgroup memory limit. Every sysfs path is read under an
//! injectable root (`/sys` by default) and all text is parsed by pure functions, so
//! the whole crate is tested on fixture trees.
//!
//! **Must not know:** Redis, SOLLOL record shapes, safety reserves, routing or
//! placement. It reports what the hardware says; others decide what to do with it.
//!
//! **Contract:** an unknown value is `None`, never 0. A missing, unreadable or
//! implausible file makes that one value unknown (with a `debug!` line); it never
//! panics and never hides a device.
//!
//! Entry types:
//! - [`Prober`] (configured by [`ProberConfig`]): [`Prober::probe_gpus`],
//!   [`Prober::probe_host`], [`Prober::probe`] → [`NodeHardware`]; [`probe()`] for a
//!   one-shot default probe.
//! - [`GpuDevice`] (one GPU) and [`HostMemory`] (RAM and CPUs), units in field names.
//! - [`GpuBackend`], the vendor trait, with [`NvmlBackend`], [`AmdSysfsBackend`],
//!   [`IntelSysfsBackend`] and (feature `rocm`) `RocmBackend`.
//! - [`ProbeWorker`]: a `Prober` on a thread of its own, each probe awaited under a
//!   timeout ([`ProbeOutcome::Stuck`] while a read blocks), for async callers that must
//!   not stall on a wedged driver or a FIFO in sysfs.
//!
//! Sources, units and rules are documented in `docs/probe.md`.

mod amd;
mod backend;
mod device;
mod error;
mod host;
mod intel;
pub mod local_file;
mod names;
mod nvml;
mod parse;
mod prober;
#[cfg(feature = "rocm")]
mod rocm;
mod sysfs;
mod worker;

pub use amd::{AmdSysfsBackend, APU_CARVE_OUT_MAX_BYTES};
pub use backend::{GpuBackend, PRIORITY_LIBRARY, PRIORITY_SYSFS};
pub use device::{GpuDevice, HostMemory, MemoryKind, Vendor};
pub use error::{Error, Result};
pub use host::CgroupMemory;
pub use intel::IntelSysfsBackend;
pub use nvml::NvmlBackend;
pub use prober::{default_proc_root, probe, NodeHardware, Prober, ProberConfig};
#[cfg(feature = "rocm")]
pub use rocm::RocmBackend;
pub use worker::{ProbeAnswer, ProbeOutcome, ProbeWorker};
