//! The workers alloc reasons about, and the device-name rules between SOLLOL and ggml.
//!
//! A [`Worker`] is one pool of a node's offer (the CPU, or one GPU); a [`ClusterWorker`]
//! is one ggml device somewhere in the cluster, as the planner sees it. Both `offer` and
//! `plan` build on these types, so they live here, below both.
//!
//! SOLLOL names a GPU `cuda:N` (`rocm:N`, `sycl:N` for our other vendors, see
//! [`sollol_device_name`]); llama.cpp's ggml names it `CUDA{N}` (`ROCm{N}`, `SYCL{N}`, see
//! [`GgmlBackend::device_name`]). [`ggml_device_of_sollol`] goes from the first to the
//! second; both directions live here so they cannot drift apart.

use serde::{Deserialize, Serialize};
use vramroute_probe::{GpuDevice, Vendor};

use crate::backend::GgmlBackend;

/// Whether a worker computes on the host CPU or on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerKind {
    /// Host CPU and RAM.
    Cpu,
    /// One GPU and its memory.
    Gpu,
}

/// One worker of a node's offer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Worker {
    /// CPU or GPU.
    pub kind: WorkerKind,
    /// `CPU`, or the GPU's name as probed.
    pub name: String,
    /// Total memory of the pool, MiB (RAM for the CPU worker); `None` when the probe
    /// could not read a GPU's VRAM size.
    pub total_mib: Option<u64>,
    /// What may be used after the reserve, MiB; `None` when the total is unknown.
    pub budget_mib: Option<u64>,
    /// Free right now, MiB (available RAM for the CPU worker), when known.
    pub free_mib: Option<u64>,
    /// The probed GPU this worker came from (`None` for the CPU worker).
    pub gpu: Option<GpuDevice>,
}

impl Worker {
    /// SOLLOL's device spelling for a GPU worker: `cuda:N` (NVIDIA), `rocm:N` (AMD),
    /// `sycl:N` (Intel; SOLLOL itself only knows NVIDIA, so this is our analogue: the
    /// compute stack's name and the vendor index, like `rocm`). `None` for the CPU worker.
    /// See [`sollol_device_name`].
    pub fn sollol_device(&self) -> Option<String> {
        let gpu = self.gpu.as_ref()?;
        Some(sollol_device_name(gpu.vendor, gpu.index))
    }
}

/// One ggml device somewhere in the cluster, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterWorker {
    /// The node it belongs to (e.g. `10.0.0.5:11434`), for explanations.
    pub node_id: String,
    /// Address its `rpc-server` listens on (ignored for local workers).
    pub host: String,
    /// Port of its `rpc-server` (ignored for local workers).
    pub rpc_port: u16,
    /// CPU or GPU.
    pub kind: WorkerKind,
    /// The ggml device name (`CPU`, `CUDA0`, `ROCm1`, ...).
    pub device_name: String,
    /// Budget after the node's reserve, MiB. 0 means "place nothing here".
    pub budget_mib: u64,
    /// Free right now, MiB, when known.
    pub free_mib: Option<u64>,
    /// Whether the device is on the machine that runs `llama-server` (used directly,
    /// not through RPC; the local CPU worker is where non-offloaded layers stay).
    pub local: bool,
}

impl ClusterWorker {
    /// Device `device_name` (`CPU`, `CUDA0`, ...) of `kind` on node `node_id`, reached at
    /// `host:rpc_port`, offering `budget_mib`; free memory unknown, not local.
    ///
    /// ```
    /// use vramroute_alloc::{ClusterWorker, WorkerKind};
    /// let mut w = ClusterWorker::new("10.0.0.9:11434", "10.0.0.9", 50052, WorkerKind::Gpu, "CUDA0", 19_660);
    /// w.free_mib = Some(20_000);
    /// assert!(!w.local);
    /// ```
    pub fn new(
        node_id: impl Into<String>,
        host: impl Into<String>,
        rpc_port: u16,
        kind: WorkerKind,
        device_name: impl Into<String>,
        budget_mib: u64,
    ) -> Self {
        Self {
            node_id: node_id.into(),
            host: host.into(),
            rpc_port,
            kind,
            device_name: device_name.into(),
            budget_mib,
            free_mib: None,
            local: false,
        }
    }
}

/// SOLLOL's device spelling for GPU number `index` of `vendor`: `cuda:N` (NVIDIA),
/// `rocm:N` (AMD), `sycl:N` (Intel; SOLLOL itself only knows NVIDIA, so this is our
/// analogue: the compute stack's name and the vendor index, like `rocm`). This is what
/// goes into the `gpu_devices` and `device_config` fields of a registration.
pub fn sollol_device_name(vendor: Vendor, index: u32) -> String {
    let stack = match vendor {
        Vendor::Nvidia => "cuda",
        Vendor::Amd => "rocm",
        Vendor::Intel => "sycl",
        // A vendor this crate does not know yet: Vulkan, as `GgmlBackend::for_vendor`.
        _ => "vulkan",
    };
    format!("{stack}:{index}")
}

/// The ggml device name (as `rpc-server --device` and `llama-server` spell it) of a
/// SOLLOL-style device id, assuming the vendor's usual build: `cuda:1` → `CUDA1`,
/// `rocm:0` / `hip:0` → `ROCm0`, `sycl:0` / `xpu:0` → `SYCL0`, `vulkan:0` → `Vulkan0`.
/// Anything else (`cpu`, an unknown stack) is returned upper-cased.
///
/// The inverse of [`sollol_device_name`]: for every vendor and index,
/// `ggml_device_of_sollol(&sollol_device_name(v, n))` is
/// `GgmlBackend::for_vendor(v).device_name(n)`.
///
/// ```
/// use vramroute_alloc::ggml_device_of_sollol;
/// assert_eq!(ggml_device_of_sollol("cuda:1"), "CUDA1");
/// assert_eq!(ggml_device_of_sollol("hip:0"), "ROCm0");
/// assert_eq!(ggml_device_of_sollol("cpu"), "CPU");
/// ```
pub fn ggml_device_of_sollol(dev: &str) -> String {
    let backend = match dev.split_once(':') {
        Some(("cuda", n)) => Some((GgmlBackend::Cuda, n)),
        Some(("rocm" | "hip", n)) => Some((GgmlBackend::Hip, n)),
        Some(("sycl" | "xpu", n)) => Some((GgmlBackend::Sycl, n)),
        Some(("vulkan", n)) => Some((GgmlBackend::Vulkan, n)),
        _ => None,
    };
    match backend {
        Some((backend, n)) => format!("{}{n}", backend.device_prefix()),
        None => dev.to_ascii_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sollol_names_round_trip_to_ggml_names() {
        for vendor in [Vendor::Nvidia, Vendor::Amd, Vendor::Intel] {
            for index in [0, 1, 7, 15, 123] {
                let sollol = sollol_device_name(vendor, index);
                assert_eq!(
                    ggml_device_of_sollol(&sollol),
                    GgmlBackend::for_vendor(vendor).device_name(index),
                    "{sollol}"
                );
            }
        }
    }

    #[test]
    fn sollol_names_map_to_ggml_names() {
        for (sollol, ggml) in [
            ("cuda:0", "CUDA0"),
            ("cuda:1", "CUDA1"),
            ("rocm:0", "ROCm0"),
            ("hip:2", "ROCm2"),
            ("sycl:0", "SYCL0"),
            ("xpu:3", "SYCL3"),
            ("vulkan:0", "Vulkan0"),
            ("cpu", "CPU"),
            ("metal:0", "METAL:0"),
        ] {
            assert_eq!(ggml_device_of_sollol(sollol), ggml, "{sollol}");
        }
    }
}
