//! NVIDIA GPUs through NVML (`nvml-wrapper`, which loads `libnvidia-ml.so.1` at run
//! time, so this builds and runs on machines without the driver).

use std::sync::OnceLock;

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use tracing::{debug, warn};

use crate::backend::{GpuBackend, PRIORITY_LIBRARY};
use crate::device::{GpuDevice, MemoryKind, Vendor};
use crate::error::{Error, Result};
use crate::parse::{self, bytes_to_mib, MAX_MEMORY_BYTES, MAX_POWER_WATTS};

/// `nvmlDeviceGetMigMode` reports this when MIG is enabled.
const MIG_ENABLED: u32 = 1;

/// NVML backend. The library is loaded and initialised on the first probe, once,
/// and the handle is reused for every later probe. A machine without the library or
/// the driver has no NVIDIA devices (a debug line, not an error).
#[derive(Default)]
pub struct NvmlBackend {
    nvml: OnceLock<Option<Nvml>>,
    /// The library to load instead of the system's `libnvidia-ml.so.1`.
    library: Option<std::ffi::OsString>,
}

impl std::fmt::Debug for NvmlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.nvml.get() {
            None => "not initialised",
            Some(None) => "unavailable",
            Some(Some(_)) => "loaded",
        };
        f.debug_struct("NvmlBackend").field("nvml", &state).finish()
    }
}

impl NvmlBackend {
    /// A backend that will load NVML on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend that loads NVML from `path` (a driver installed outside the loader's
    /// search path) instead of the system's `libnvidia-ml.so.1`.
    ///
    /// ```
    /// use vramroute_probe::{GpuBackend, NvmlBackend};
    /// let none = NvmlBackend::with_library("/nonexistent/libnvidia-ml.so.1");
    /// assert!(none.probe()?.is_empty());
    /// # Ok::<(), vramroute_probe::Error>(())
    /// ```
    pub fn with_library(path: impl Into<std::ffi::OsString>) -> Self {
        Self {
            nvml: OnceLock::new(),
            library: Some(path.into()),
        }
    }

    fn init(&self) -> std::result::Result<Nvml, NvmlError> {
        match &self.library {
            Some(path) => Nvml::builder().lib_path(path).init(),
            None => Nvml::init(),
        }
    }

    fn nvml(&self) -> Option<&Nvml> {
        self.nvml
            .get_or_init(|| match self.init() {
                Ok(nvml) => Some(nvml),
                Err(
                    e @ (NvmlError::LibloadingError(_)
                    | NvmlError::LibraryNotFound
                    | NvmlError::DriverNotLoaded
                    | NvmlError::FailedToLoadSymbol(_)),
                ) => {
                    debug!(error = %e, "NVML not available: no NVIDIA devices");
                    None
                }
                Err(e) => {
                    warn!(error = %e, "NVML failed to initialise: NVIDIA devices will not be reported");
                    None
                }
            })
            .as_ref()
    }
}

impl GpuBackend for NvmlBackend {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn priority(&self) -> u8 {
        PRIORITY_LIBRARY
    }

    fn probe(&self) -> Result<Vec<GpuDevice>> {
        let Some(nvml) = self.nvml() else {
            return Ok(Vec::new());
        };
        let count = nvml.device_count().map_err(|e| Error::Nvml {
            operation: "device_count",
            message: e.to_string(),
        })?;
        let mut devices = Vec::new();
        for i in 0..count {
            let device = match nvml.device_by_index(i) {
                Ok(d) => d,
                Err(e) => {
                    warn!(index = i, error = %e, "NVML cannot open this GPU: skipping it");
                    continue;
                }
            };
            let parent = read_nvml(&device, None);
            let mig_on = device.mig_mode().is_ok_and(|m| m.current == MIG_ENABLED);
            if !mig_on {
                devices.push(nvml_device(&parent));
                continue;
            }
            let slots = device.mig_device_count().unwrap_or(0);
            let mut instances: Vec<GpuDevice> = (0..slots)
                .filter_map(|slot| device.mig_device_by_index(slot).ok())
                .map(|mig| nvml_device(&read_nvml(&mig, Some(&parent))))
                .collect();
            if instances.is_empty() {
                debug!(
                    index = i,
                    "MIG is on but no instances exist: reporting the whole GPU"
                );
                devices.push(nvml_device(&parent));
            } else {
                devices.append(&mut instances);
            }
        }
        Ok(devices)
    }
}

/// What NVML said about a device's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NvmlMemory {
    /// `nvmlDeviceGetMemoryInfo` answered (bytes).
    Known {
        total_bytes: u64,
        used_bytes: u64,
        free_bytes: u64,
    },
    /// `NOT_SUPPORTED`: a unified-memory part (the GPU uses host RAM).
    NotSupported,
    /// Any other failure.
    Unreadable,
}

/// Raw NVML answers for one device (physical GPU or MIG instance).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NvmlReadings {
    pub(crate) name: Option<String>,
    pub(crate) uuid: Option<String>,
    /// As NVML prints it (`00000000:01:00.0`).
    pub(crate) pci_bus_id: Option<String>,
    pub(crate) memory: NvmlMemory,
    pub(crate) utilization_percent: Option<u32>,
    pub(crate) temperature_celsius: Option<u32>,
    pub(crate) power_milliwatts: Option<u32>,
}

fn read_nvml(device: &Device<'_>, parent: Option<&NvmlReadings>) -> NvmlReadings {
    fn ok<T>(what: &str, r: std::result::Result<T, NvmlError>) -> Option<T> {
        r.map_err(|e| debug!(query = what, error = %e, "NVML value unavailable: unknown"))
            .ok()
    }
    let memory = match device.memory_info() {
        Ok(m) => NvmlMemory::Known {
            total_bytes: m.total,
            used_bytes: m.used,
            free_bytes: m.free,
        },
        Err(NvmlError::NotSupported) => NvmlMemory::NotSupported,
        Err(e) => {
            debug!(error = %e, "NVML memory info unavailable: unknown");
            NvmlMemory::Unreadable
        }
    };
    let pci = ok("pci_info", device.pci_info()).map(|p| p.bus_id);
    NvmlReadings {
        name: ok("name", device.name()),
        uuid: ok("uuid", device.uuid()),
        // MIG handles may not answer PCI queries: they sit on their parent's bus id.
        pci_bus_id: pci.or_else(|| parent.and_then(|p| p.pci_bus_id.clone())),
        memory,
        utilization_percent: ok("utilization_rates", device.utilization_rates()).map(|u| u.gpu),
        temperature_celsius: ok("temperature", device.temperature(TemperatureSensor::Gpu)),
        power_milliwatts: ok("power_usage", device.power_usage()),
    }
}

/// Map raw NVML answers to a device (index 0; the prober assigns it).
///
/// Memory total 0 or `NOT_SUPPORTED` → Unified with unknown figures (the device uses
/// host RAM). Implausible values (over 1 PiB, utilisation over 100 %, temperature 0 or
/// over 200 °C, power over 5 kW) become unknown.
pub(crate) fn nvml_device(r: &NvmlReadings) -> GpuDevice {
    let (kind, total, used, free) = match r.memory {
        NvmlMemory::Known { total_bytes: 0, .. } | NvmlMemory::NotSupported => {
            (MemoryKind::Unified, None, None, None)
        }
        NvmlMemory::Known {
            total_bytes,
            used_bytes,
            free_bytes,
        } if total_bytes <= MAX_MEMORY_BYTES => (
            MemoryKind::Dedicated,
            Some(total_bytes),
            Some(used_bytes).filter(|&u| u <= total_bytes),
            Some(free_bytes).filter(|&f| f <= total_bytes),
        ),
        NvmlMemory::Known { total_bytes, .. } => {
            debug!(total_bytes, "NVML memory total implausible: unknown");
            (MemoryKind::Dedicated, None, None, None)
        }
        NvmlMemory::Unreadable => (MemoryKind::Dedicated, None, None, None),
    };
    let temperature = r
        .temperature_celsius
        .map(f64::from)
        .filter(|&t| t > 0.0 && t <= parse::MAX_TEMPERATURE_CELSIUS);
    let power = r
        .power_milliwatts
        .map(|mw| f64::from(mw) / 1000.0)
        .filter(|&w| w <= MAX_POWER_WATTS);
    GpuDevice {
        vendor: Vendor::Nvidia,
        index: 0,
        name: r
            .name
            .as_deref()
            .and_then(|n| parse::parse_label(n, 128))
            .unwrap_or_else(|| "NVIDIA GPU".to_owned()),
        uuid: r.uuid.as_deref().and_then(|u| parse::parse_label(u, 96)),
        pci_bus_id: r.pci_bus_id.as_deref().and_then(parse::parse_pci_bus_id),
        memory_total_mib: total.map(bytes_to_mib),
        memory_used_mib: used.map(bytes_to_mib),
        memory_free_mib: free.map(bytes_to_mib),
        utilization_percent: r.utilization_percent.filter(|&u| u <= 100),
        temperature_celsius: temperature,
        power_watts: power,
        memory_kind: kind,
        driver: "nvidia".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from `nvmlDeviceGet*` on an RTX 3090 (driver 550.54).
    fn rtx_3090() -> NvmlReadings {
        NvmlReadings {
            name: Some("NVIDIA GeForce RTX 3090".into()),
            uuid: Some("GPU-5f3b1c7e-8a2d-4e6f-9b0a-1c2d3e4f5a6b".into()),
            pci_bus_id: Some("00000000:01:00.0".into()),
            memory: NvmlMemory::Known {
                total_bytes: 25_769_803_776,
                used_bytes: 1_478_492_160,
                free_bytes: 24_291_311_616,
            },
            utilization_percent: Some(12),
            temperature_celsius: Some(47),
            power_milliwatts: Some(112_345),
        }
    }

    #[test]
    fn maps_a_discrete_gpu() {
        let d = nvml_device(&rtx_3090());
        assert_eq!(d.vendor, Vendor::Nvidia);
        assert_eq!(d.name, "NVIDIA GeForce RTX 3090");
        assert_eq!(
            d.uuid.as_deref(),
            Some("GPU-5f3b1c7e-8a2d-4e6f-9b0a-1c2d3e4f5a6b")
        );
        assert_eq!(d.pci_bus_id.as_deref(), Some("0000:01:00.0"));
        assert_eq!(d.memory_total_mib, Some(24_576));
        assert_eq!(d.memory_used_mib, Some(1410));
        assert_eq!(d.memory_free_mib, Some(23_166));
        assert_eq!(d.utilization_percent, Some(12));
        assert_eq!(d.temperature_celsius, Some(47.0));
        assert_eq!(d.power_watts, Some(112.345));
        assert_eq!(d.memory_kind, MemoryKind::Dedicated);
        assert_eq!(d.driver, "nvidia");
    }

    #[test]
    fn zero_total_is_unified() {
        // Captured on a GB10 (DGX Spark): memory info reports 0 / NOT_SUPPORTED.
        let mut r = rtx_3090();
        r.memory = NvmlMemory::Known {
            total_bytes: 0,
            used_bytes: 0,
            free_bytes: 0,
        };
        let d = nvml_device(&r);
        assert_eq!(d.memory_kind, MemoryKind::Unified);
        assert_eq!(d.memory_total_mib, None);
        assert_eq!(d.memory_used_mib, None);
        r.memory = NvmlMemory::NotSupported;
        assert_eq!(nvml_device(&r).memory_kind, MemoryKind::Unified);
    }

    #[test]
    fn unreadable_memory_is_unknown_but_listed() {
        let mut r = rtx_3090();
        r.memory = NvmlMemory::Unreadable;
        let d = nvml_device(&r);
        assert_eq!(d.memory_kind, MemoryKind::Dedicated);
        assert_eq!(d.memory_total_mib, None);
        assert_eq!(d.name, "NVIDIA GeForce RTX 3090");
    }

    #[test]
    fn mig_instance_keeps_its_own_uuid_and_memory() {
        // A100 80GB, MIG 3g.40gb instance.
        let r = NvmlReadings {
            name: Some("NVIDIA A100-SXM4-80GB MIG 3g.40gb".into()),
            uuid: Some("MIG-0b4b2c1e-7d0f-5a4e-9c3b-2f1e0d9c8b7a".into()),
            pci_bus_id: Some("00000000:07:00.0".into()),
            memory: NvmlMemory::Known {
                total_bytes: 42_346_610_688,
                used_bytes: 39_845_888,
                free_bytes: 42_306_764_800,
            },
            utilization_percent: None,
            temperature_celsius: None,
            power_milliwatts: None,
        };
        let d = nvml_device(&r);
        assert_eq!(d.memory_total_mib, Some(40_384));
        assert_eq!(d.memory_used_mib, Some(38));
        assert_eq!(d.memory_free_mib, Some(40_346));
        assert_eq!(d.pci_bus_id.as_deref(), Some("0000:07:00.0"));
        assert_eq!(d.utilization_percent, None);
    }

    #[test]
    fn implausible_values_become_unknown() {
        let mut r = rtx_3090();
        r.utilization_percent = Some(255);
        r.temperature_celsius = Some(0);
        r.power_milliwatts = Some(u32::MAX);
        r.name = Some("  ".into());
        r.pci_bus_id = Some("garbage".into());
        r.memory = NvmlMemory::Known {
            total_bytes: u64::MAX,
            used_bytes: 1,
            free_bytes: 1,
        };
        let d = nvml_device(&r);
        assert_eq!(d.utilization_percent, None);
        assert_eq!(d.temperature_celsius, None);
        assert_eq!(d.power_watts, None);
        assert_eq!(d.name, "NVIDIA GPU");
        assert_eq!(d.pci_bus_id, None);
        assert_eq!(d.memory_total_mib, None);
    }

    #[test]
    fn used_above_total_is_unknown() {
        let mut r = rtx_3090();
        r.memory = NvmlMemory::Known {
            total_bytes: 1 << 30,
            used_bytes: 1 << 31,
            free_bytes: 0,
        };
        let d = nvml_device(&r);
        assert_eq!(d.memory_total_mib, Some(1024));
        assert_eq!(d.memory_used_mib, None);
        assert_eq!(d.memory_free_mib, Some(0));
    }

    #[test]
    fn no_library_means_no_devices() {
        // A library that cannot exist, on any machine (with or without a driver):
        // probing succeeds with nothing, and the load is not retried on the next call.
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = NvmlBackend::with_library(dir.path().join("libnvidia-ml.so.1"));
        assert_eq!(
            format!("{backend:?}"),
            "NvmlBackend { nvml: \"not initialised\" }"
        );
        assert!(backend.nvml().is_none());
        assert_eq!(backend.probe().map(|v| v.len()).ok(), Some(0));
        assert_eq!(
            format!("{backend:?}"),
            "NvmlBackend { nvml: \"unavailable\" }"
        );
        assert_eq!(backend.probe().map(|v| v.len()).ok(), Some(0));
    }
}
