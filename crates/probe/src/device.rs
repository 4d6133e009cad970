//! The data the probe returns. Units are in the field names; "MiB" is 1,048,576 bytes.

use serde::{Deserialize, Serialize};

/// GPU vendor, in the lower-case spelling SOLLOL's records use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Vendor {
    /// NVIDIA (NVML).
    Nvidia,
    /// AMD (amdgpu sysfs, or ROCm SMI with the `rocm` feature).
    Amd,
    /// Intel (i915 / xe sysfs).
    Intel,
}

impl Vendor {
    /// The spelling used in SOLLOL records (`"nvidia"`, `"amd"`, `"intel"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amd",
            Vendor::Intel => "intel",
        }
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a GPU's memory lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryKind {
    /// Dedicated VRAM on the card.
    Dedicated,
    /// Memory shared with the host (APUs, integrated GPUs, unified-memory parts).
    Unified,
}

/// One GPU as probed. Every value the probe could not read is `None`, never 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GpuDevice {
    /// Vendor of the device.
    pub vendor: Vendor,
    /// Index among this vendor's devices on the node, in PCI bus order.
    pub index: u32,
    /// Marketing name (e.g. `NVIDIA GeForce RTX 3090`), or a generic name built from
    /// the PCI ids when the real one is unknown.
    pub name: String,
    /// Stable unique id (NVML UUID, amdgpu `unique_id`) when known.
    pub uuid: Option<String>,
    /// PCI bus id in the canonical `dddd:bb:dd.f` lower-case form, when known.
    pub pci_bus_id: Option<String>,
    /// Total memory usable by the device, MiB.
    pub memory_total_mib: Option<u64>,
    /// Memory in use, MiB; `None` when the driver does not expose it.
    pub memory_used_mib: Option<u64>,
    /// Memory free, MiB; `None` when the driver does not expose it.
    pub memory_free_mib: Option<u64>,
    /// Busy percentage (0–100).
    pub utilization_percent: Option<u32>,
    /// Temperature in degrees Celsius.
    pub temperature_celsius: Option<f64>,
    /// Average power draw in watts.
    pub power_watts: Option<f64>,
    /// Dedicated VRAM or memory shared with the host.
    pub memory_kind: MemoryKind,
    /// Kernel driver or library that reported it: `nvidia`, `amdgpu`, `xe`, `i915`.
    pub driver: String,
}

impl GpuDevice {
    /// GPU `index` of `vendor`, named `name` and driven by `driver` (`nvidia`, `amdgpu`,
    /// `i915`, `xe`); dedicated memory, every reading unknown.
    ///
    /// ```
    /// use vramroute_probe::{GpuDevice, Vendor};
    /// let mut gpu = GpuDevice::new(Vendor::Nvidia, 0, "NVIDIA GeForce RTX 3090", "nvidia");
    /// gpu.memory_total_mib = Some(24_576);
    /// assert_eq!(gpu.memory_free_mib, None);
    /// ```
    pub fn new(
        vendor: Vendor,
        index: u32,
        name: impl Into<String>,
        driver: impl Into<String>,
    ) -> Self {
        Self {
            vendor,
            index,
            name: name.into(),
            uuid: None,
            pci_bus_id: None,
            memory_total_mib: None,
            memory_used_mib: None,
            memory_free_mib: None,
            utilization_percent: None,
            temperature_celsius: None,
            power_watts: None,
            memory_kind: MemoryKind::Dedicated,
            driver: driver.into(),
        }
    }
}

/// Host memory and CPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostMemory {
    /// Total RAM usable by this process's cgroup (the smaller of physical RAM and the
    /// cgroup limit), MiB.
    pub total_ram_mib: u64,
    /// RAM available for new allocations, MiB (capped by the cgroup's headroom).
    pub available_ram_mib: u64,
    /// Logical CPUs.
    pub cpu_count: u32,
    /// The cgroup memory limit when one applies, MiB.
    pub cgroup_limit_mib: Option<u64>,
    /// CPU load, percent: the 1-minute load average per logical CPU (`/proc/loadavg`),
    /// capped at 100; `None` when unreadable.
    #[serde(default)]
    pub cpu_load_percent: Option<f64>,
}

impl HostMemory {
    /// `total_ram_mib` of RAM with `available_ram_mib` available and `cpu_count` logical
    /// CPUs, no cgroup limit.
    pub fn new(total_ram_mib: u64, available_ram_mib: u64, cpu_count: u32) -> Self {
        Self {
            total_ram_mib,
            available_ram_mib,
            cpu_count,
            cgroup_limit_mib: None,
            cpu_load_percent: None,
        }
    }
}
