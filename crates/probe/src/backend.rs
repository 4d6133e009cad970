//! The vendor trait every backend implements.

use crate::device::GpuDevice;
use crate::error::Result;

/// One source of GPU facts (NVML, amdgpu sysfs, i915/xe sysfs, ROCm SMI).
///
/// A backend reports the devices it sees; the [`Prober`](crate::Prober) merges the
/// reports of all backends, removes duplicates and assigns indices. `index` in the
/// returned devices is provisional: the prober renumbers them per vendor in PCI order.
pub trait GpuBackend: Send + Sync {
    /// Short stable name for logs (`"nvml"`, `"amdgpu-sysfs"`, ...).
    fn name(&self) -> &'static str;

    /// Every device this backend can see right now. A machine without this vendor's
    /// hardware (or library) returns `Ok(vec![])`; `Err` means the backend itself is
    /// broken, and the prober logs it and keeps the other backends' devices.
    fn probe(&self) -> Result<Vec<GpuDevice>>;

    /// How rich this backend's data is. When two backends report the same PCI bus
    /// id, the devices of the higher-priority one are kept. Library backends (NVML,
    /// ROCm SMI) return [`PRIORITY_LIBRARY`]; sysfs readers the default
    /// [`PRIORITY_SYSFS`].
    fn priority(&self) -> u8 {
        PRIORITY_SYSFS
    }
}

/// Priority of the sysfs readers.
pub const PRIORITY_SYSFS: u8 = 10;
/// Priority of vendor-library backends (NVML, ROCm SMI), preferred over sysfs.
pub const PRIORITY_LIBRARY: u8 = 20;
