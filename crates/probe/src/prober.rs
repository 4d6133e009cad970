//! The composing prober: runs every enabled backend, merges their reports, and reads
//! the host.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::amd::AmdSysfsBackend;
use crate::backend::GpuBackend;
use crate::device::{GpuDevice, HostMemory, Vendor};
use crate::error::{Error, Result};
use crate::host::{self, CgroupMemory};
use crate::intel::IntelSysfsBackend;
use crate::nvml::NvmlBackend;

/// Where and how to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProberConfig {
    /// Root of the sysfs tree (`/sys`); fixture trees in tests.
    pub sysfs_root: PathBuf,
    /// Root of procfs (`/proc`): this process's cgroup and the load average
    /// (`loadavg`) are read under it. See [`default_proc_root`].
    pub proc_root: PathBuf,
    /// Use NVML for NVIDIA GPUs.
    pub nvml: bool,
    /// Use ROCm SMI for AMD GPUs. Ignored unless built with the `rocm` feature.
    pub rocm: bool,
}

impl Default for ProberConfig {
    fn default() -> Self {
        Self {
            sysfs_root: PathBuf::from("/sys"),
            proc_root: PathBuf::from("/proc"),
            nvml: true,
            rocm: true,
        }
    }
}

/// The procfs root that goes with a sysfs root: `/proc` for the real `/sys`, and
/// `<sysfs_root>/proc` for any other tree (a fixture or a container's copy carries its
/// own `proc/`, so nothing of this machine leaks into a probe of another tree; files
/// missing there are unknown, never this machine's).
///
/// ```
/// use std::path::Path;
/// use vramroute_probe::default_proc_root;
/// assert_eq!(default_proc_root(Path::new("/sys")), Path::new("/proc"));
/// assert_eq!(default_proc_root(Path::new("/t/amd")), Path::new("/t/amd/proc"));
/// ```
pub fn default_proc_root(sysfs_root: &std::path::Path) -> PathBuf {
    if sysfs_root == std::path::Path::new("/sys") {
        PathBuf::from("/proc")
    } else {
        sysfs_root.join("proc")
    }
}

impl ProberConfig {
    /// The default configuration reading sysfs under `root`.
    pub fn with_sysfs_root(root: impl Into<PathBuf>) -> Self {
        Self {
            sysfs_root: root.into(),
            ..Self::default()
        }
    }

    /// The same configuration reading `/proc` files under `root`.
    ///
    /// ```
    /// let c = vramroute_probe::ProberConfig::with_sysfs_root("/tmp/tree/sys")
    ///     .with_proc_root("/tmp/tree/proc")
    ///     .with_nvml(false);
    /// assert!(!c.nvml && c.rocm);
    /// ```
    #[must_use]
    pub fn with_proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.proc_root = root.into();
        self
    }

    /// The same configuration with the NVML backend on or off.
    #[must_use]
    pub fn with_nvml(mut self, on: bool) -> Self {
        self.nvml = on;
        self
    }

    /// The same configuration with the ROCm SMI backend on or off.
    #[must_use]
    pub fn with_rocm(mut self, on: bool) -> Self {
        self.rocm = on;
        self
    }
}

/// Everything the probe knows about this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeHardware {
    /// GPUs in PCI bus order (devices without a bus id last).
    pub gpus: Vec<GpuDevice>,
    /// Host RAM and CPUs.
    pub host: HostMemory,
}

impl NodeHardware {
    /// A node with `gpus` and `host`.
    pub fn new(gpus: Vec<GpuDevice>, host: HostMemory) -> Self {
        Self { gpus, host }
    }
}

/// Runs the backends and merges what they see. Build it once and reuse it: the NVML
/// and ROCm backends load their library on the first probe and keep it.
pub struct Prober {
    config: ProberConfig,
    backends: Vec<Box<dyn GpuBackend>>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("config", &self.config)
            .field("backends", &self.backend_names())
            .finish()
    }
}

impl Default for Prober {
    fn default() -> Self {
        Self::new(ProberConfig::default())
    }
}

impl Prober {
    /// A prober with the backends `config` enables: NVML (if `nvml`), ROCm SMI (if
    /// `rocm` and the feature is on), amdgpu sysfs and Intel sysfs.
    pub fn new(config: ProberConfig) -> Self {
        let mut backends: Vec<Box<dyn GpuBackend>> = Vec::new();
        if config.nvml {
            backends.push(Box::new(NvmlBackend::new()));
        }
        #[cfg(feature = "rocm")]
        if config.rocm {
            backends.push(Box::new(crate::rocm::RocmBackend::new()));
        }
        backends.push(Box::new(AmdSysfsBackend::new(config.sysfs_root.clone())));
        backends.push(Box::new(IntelSysfsBackend::new(config.sysfs_root.clone())));
        Self { config, backends }
    }

    /// A prober with exactly these backends (for tests and embedders).
    pub fn with_backends(config: ProberConfig, backends: Vec<Box<dyn GpuBackend>>) -> Self {
        Self { config, backends }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ProberConfig {
        &self.config
    }

    /// Names of the backends that will run, in order.
    pub fn backend_names(&self) -> Vec<&'static str> {
        self.backends.iter().map(|b| b.name()).collect()
    }

    /// Every GPU on the node: all backends' devices, de-duplicated by PCI bus id
    /// (the higher-[`priority`](GpuBackend::priority) backend's devices win), ordered
    /// by PCI bus id (devices without one last), each vendor's devices numbered from
    /// 0 in that order.
    ///
    /// # Errors
    /// [`Error::SysfsRoot`] when the sysfs root is not a readable directory. A
    /// failing backend is logged and skipped; it never hides the others' devices.
    pub fn probe_gpus(&self) -> Result<Vec<GpuDevice>> {
        std::fs::read_dir(&self.config.sysfs_root).map_err(|source| Error::SysfsRoot {
            path: self.config.sysfs_root.clone(),
            source,
        })?;
        let mut reports = Vec::with_capacity(self.backends.len());
        for backend in &self.backends {
            match backend.probe() {
                Ok(devices) => {
                    debug!(
                        backend = backend.name(),
                        count = devices.len(),
                        "backend probed"
                    );
                    reports.push((backend.priority(), devices));
                }
                Err(e) => {
                    warn!(backend = backend.name(), error = %e, "GPU backend failed: its devices are missing from this probe");
                }
            }
        }
        Ok(merge_devices(reports))
    }

    /// Host RAM (capped by the cgroup limit, see [`Prober::cgroup_memory`]) and CPUs.
    ///
    /// # Errors
    /// [`Error::Host`] when `sysinfo` cannot read the machine's memory.
    pub fn probe_host(&self) -> Result<HostMemory> {
        let (total, available, cpus) = host::system_figures()?;
        let mut host = host::host_memory(total, available, cpus, self.cgroup_memory());
        host.cpu_load_percent = host::read_cpu_load_percent(&self.config.proc_root, cpus);
        Ok(host)
    }

    /// The cgroup memory limit that applies to this process, read under the sysfs
    /// root (`fs/cgroup/...`); `None` when there is none.
    pub fn cgroup_memory(&self) -> Option<CgroupMemory> {
        host::read_cgroup_memory(&self.config.sysfs_root, &self.config.proc_root)
    }

    /// GPUs and host together.
    ///
    /// # Errors
    /// As [`Prober::probe_gpus`] and [`Prober::probe_host`].
    pub fn probe(&self) -> Result<NodeHardware> {
        Ok(NodeHardware {
            gpus: self.probe_gpus()?,
            host: self.probe_host()?,
        })
    }
}

/// Probe this machine with the default configuration (`/sys`, NVML on).
///
/// # Errors
/// As [`Prober::probe`].
pub fn probe() -> Result<NodeHardware> {
    Prober::default().probe()
}

/// Merge backend reports `(priority, devices)`.
///
/// For each PCI bus id, only the devices from the highest-priority report that saw
/// it are kept (all of them, so MIG instances sharing their parent's bus id
/// survive); on a priority tie the earlier report wins. Devices without a bus id are
/// always kept. The result is sorted by bus id (stable, unknown last) and each
/// vendor's devices are indexed from 0.
pub(crate) fn merge_devices(reports: Vec<(u8, Vec<GpuDevice>)>) -> Vec<GpuDevice> {
    // bus id → (priority, report number) of the winning report
    let mut owner: HashMap<String, (u8, usize)> = HashMap::new();
    for (n, (priority, devices)) in reports.iter().enumerate() {
        for bus in devices.iter().filter_map(|d| d.pci_bus_id.as_ref()) {
            let better = match owner.get(bus) {
                None => true,
                Some(&(p, owner_n)) => *priority > p && owner_n != n,
            };
            if better {
                owner.insert(bus.clone(), (*priority, n));
            }
        }
    }
    let mut merged: Vec<GpuDevice> = Vec::new();
    for (n, (_, devices)) in reports.into_iter().enumerate() {
        for device in devices {
            let keep = match &device.pci_bus_id {
                None => true,
                Some(bus) => owner.get(bus).is_some_and(|&(_, owner_n)| owner_n == n),
            };
            if keep {
                merged.push(device);
            } else {
                debug!(pci_bus_id = ?device.pci_bus_id, driver = %device.driver, "duplicate of a richer backend's device: dropped");
            }
        }
    }
    merged.sort_by(|a, b| match (&a.pci_bus_id, &b.pci_bus_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let mut next: HashMap<Vendor, u32> = HashMap::new();
    for device in &mut merged {
        let slot = next.entry(device.vendor).or_insert(0);
        device.index = *slot;
        *slot += 1;
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemoryKind;

    fn dev(vendor: Vendor, bus: Option<&str>, driver: &str, name: &str) -> GpuDevice {
        GpuDevice {
            vendor,
            index: 99,
            name: name.into(),
            uuid: None,
            pci_bus_id: bus.map(str::to_owned),
            memory_total_mib: Some(1024),
            memory_used_mib: None,
            memory_free_mib: None,
            utilization_percent: None,
            temperature_celsius: None,
            power_watts: None,
            memory_kind: MemoryKind::Dedicated,
            driver: driver.into(),
        }
    }

    #[test]
    fn library_beats_sysfs_for_the_same_bus_id_regardless_of_order() {
        let sysfs = (
            10,
            vec![dev(Vendor::Amd, Some("0000:03:00.0"), "amdgpu", "sysfs")],
        );
        let rocm = (
            20,
            vec![dev(Vendor::Amd, Some("0000:03:00.0"), "amdgpu", "rocm")],
        );
        let a = merge_devices(vec![sysfs.clone(), rocm.clone()]);
        let b = merge_devices(vec![rocm, sysfs]);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].name, "rocm");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].name, "rocm");
    }

    #[test]
    fn mig_instances_sharing_a_bus_id_all_survive() {
        let nvml = (
            20,
            vec![
                dev(Vendor::Nvidia, Some("0000:07:00.0"), "nvidia", "mig0"),
                dev(Vendor::Nvidia, Some("0000:07:00.0"), "nvidia", "mig1"),
            ],
        );
        let merged = merge_devices(vec![nvml]);
        let names: Vec<_> = merged.iter().map(|d| (d.name.as_str(), d.index)).collect();
        assert_eq!(names, [("mig0", 0), ("mig1", 1)]);
    }

    #[test]
    fn ordered_by_bus_and_indexed_per_vendor() {
        let amd = (
            10,
            vec![
                dev(Vendor::Amd, Some("0000:0a:00.0"), "amdgpu", "amd-b"),
                dev(Vendor::Amd, None, "amdgpu", "amd-nobus"),
                dev(Vendor::Amd, Some("0000:03:00.0"), "amdgpu", "amd-a"),
            ],
        );
        let intel = (
            10,
            vec![dev(Vendor::Intel, Some("0000:00:02.0"), "i915", "igpu")],
        );
        let nvidia = (
            20,
            vec![dev(Vendor::Nvidia, Some("0000:01:00.0"), "nvidia", "nv")],
        );
        let merged = merge_devices(vec![nvidia, amd, intel]);
        let got: Vec<_> = merged.iter().map(|d| (d.name.as_str(), d.index)).collect();
        assert_eq!(
            got,
            [
                ("igpu", 0),
                ("nv", 0),
                ("amd-a", 0),
                ("amd-b", 1),
                ("amd-nobus", 2)
            ]
        );
    }

    #[test]
    fn equal_priority_keeps_the_first_report() {
        let first = (
            10,
            vec![dev(Vendor::Amd, Some("0000:03:00.0"), "amdgpu", "first")],
        );
        let second = (
            10,
            vec![dev(Vendor::Amd, Some("0000:03:00.0"), "amdgpu", "second")],
        );
        let merged = merge_devices(vec![first, second]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].name, "first");
    }
}
