//! ggml backends and their device names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use vramroute_probe::{GpuDevice, MemoryKind, Vendor};

use crate::error::Error;

/// The ggml backend an `rpc-server` / `llama-server` binary was built with. It decides
/// which GPUs the binary sees and what their device names are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum GgmlBackend {
    /// CUDA build (NVIDIA): devices `CUDA0`, `CUDA1`, ...
    Cuda,
    /// HIP build (AMD ROCm): devices `ROCm0`, `ROCm1`, ...
    Hip,
    /// SYCL build (Intel oneAPI): devices `SYCL0`, `SYCL1`, ...
    Sycl,
    /// Vulkan build (any vendor): devices `Vulkan0`, `Vulkan1`, ...
    Vulkan,
    /// CPU-only build: the `CPU` device only.
    Cpu,
}

impl GgmlBackend {
    /// Every backend, in declaration order.
    pub const ALL: [GgmlBackend; 5] = [
        GgmlBackend::Cuda,
        GgmlBackend::Hip,
        GgmlBackend::Sycl,
        GgmlBackend::Vulkan,
        GgmlBackend::Cpu,
    ];

    /// The backend a vendor's GPUs are normally driven with: NVIDIA → CUDA, AMD → HIP,
    /// Intel → SYCL; any other vendor → Vulkan.
    pub fn for_vendor(vendor: Vendor) -> Self {
        match vendor {
            Vendor::Nvidia => GgmlBackend::Cuda,
            Vendor::Amd => GgmlBackend::Hip,
            Vendor::Intel => GgmlBackend::Sycl,
            // A vendor this crate does not know yet: Vulkan drives any GPU.
            _ => GgmlBackend::Vulkan,
        }
    }

    /// Lower-case name, as accepted by [`FromStr`] (`cuda`, `hip`, `sycl`, `vulkan`, `cpu`).
    pub fn as_str(self) -> &'static str {
        match self {
            GgmlBackend::Cuda => "cuda",
            GgmlBackend::Hip => "hip",
            GgmlBackend::Sycl => "sycl",
            GgmlBackend::Vulkan => "vulkan",
            GgmlBackend::Cpu => "cpu",
        }
    }

    /// The ggml device-name prefix (`CUDA`, `ROCm`, `SYCL`, `Vulkan`; `CPU` for the CPU).
    pub fn device_prefix(self) -> &'static str {
        match self {
            GgmlBackend::Cuda => "CUDA",
            GgmlBackend::Hip => "ROCm",
            GgmlBackend::Sycl => "SYCL",
            GgmlBackend::Vulkan => "Vulkan",
            GgmlBackend::Cpu => "CPU",
        }
    }

    /// The ggml name of this backend's GPU number `index` (`CUDA0`, `ROCm1`, ...).
    /// For [`GgmlBackend::Cpu`] it is always `CPU`.
    pub fn device_name(self, index: u32) -> String {
        match self {
            GgmlBackend::Cpu => "CPU".to_owned(),
            other => format!("{}{}", other.device_prefix(), index),
        }
    }

    /// Whether a binary built with this backend drives `vendor`'s GPUs (as its default
    /// build does; SYCL and Vulkan builds can be made to reach other vendors, which this
    /// does not model except for Vulkan, which reaches every vendor).
    pub fn drives(self, vendor: Vendor) -> bool {
        match self {
            GgmlBackend::Cuda => vendor == Vendor::Nvidia,
            GgmlBackend::Hip => vendor == Vendor::Amd,
            GgmlBackend::Sycl => vendor == Vendor::Intel,
            GgmlBackend::Vulkan => true,
            GgmlBackend::Cpu => false,
        }
    }

    /// Environment the binary needs so device numbers are stable: CUDA numbers devices
    /// fastest-first unless `CUDA_DEVICE_ORDER=PCI_BUS_ID`, which makes `CUDAn` the n-th
    /// NVIDIA GPU by PCI bus id, the same order as NVML's index.
    pub fn env(self) -> Vec<(String, String)> {
        match self {
            GgmlBackend::Cuda => vec![("CUDA_DEVICE_ORDER".to_owned(), "PCI_BUS_ID".to_owned())],
            _ => Vec::new(),
        }
    }

    /// The ggml devices a binary with this backend exposes for `gpus` (given in the
    /// node's PCI bus order), as `(device name, index into gpus)`, in device-number order.
    ///
    /// CUDA/HIP/SYCL use the vendor index the probe assigned (PCI bus order among that
    /// vendor's GPUs). Vulkan numbers what ggml-vulkan selects by default: every
    /// dedicated GPU, or, when there is none, the first unified-memory one; its order is
    /// the Vulkan loader's, assumed here to be PCI bus order.
    pub fn devices(self, gpus: &[GpuDevice]) -> Vec<(String, usize)> {
        match self {
            GgmlBackend::Cpu => Vec::new(),
            GgmlBackend::Vulkan => {
                let dedicated: Vec<usize> = gpus
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| g.memory_kind == MemoryKind::Dedicated)
                    .map(|(i, _)| i)
                    .collect();
                let chosen = if dedicated.is_empty() {
                    (0..gpus.len().min(1)).collect()
                } else {
                    dedicated
                };
                chosen
                    .into_iter()
                    .zip(0u32..)
                    .map(|(i, n)| (self.device_name(n), i))
                    .collect()
            }
            _ => {
                let mut out: Vec<(u32, usize)> = gpus
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| self.drives(g.vendor))
                    .map(|(i, g)| (g.index, i))
                    .collect();
                out.sort_by_key(|&(index, i)| (index, i));
                out.into_iter()
                    .map(|(index, i)| (self.device_name(index), i))
                    .collect()
            }
        }
    }
}

impl fmt::Display for GgmlBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GgmlBackend {
    type Err = Error;

    /// Parses `cuda`, `hip` (or `rocm`), `sycl`, `vulkan`, `cpu`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cuda" => Ok(GgmlBackend::Cuda),
            "hip" | "rocm" => Ok(GgmlBackend::Hip),
            "sycl" => Ok(GgmlBackend::Sycl),
            "vulkan" => Ok(GgmlBackend::Vulkan),
            "cpu" => Ok(GgmlBackend::Cpu),
            other => Err(Error::InvalidInput(format!(
                "unknown ggml backend `{other}`: use one of cuda, hip (rocm), sycl, vulkan, cpu"
            ))),
        }
    }
}
