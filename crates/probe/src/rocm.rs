//! AMD GPUs through ROCm SMI (`rocm_smi_lib`). Only with the `rocm` cargo feature:
//! building it links `librocm_smi64` and runs bindgen, so ROCm (and libclang) must be
//! installed on the build machine. The default build never references this module.

use std::sync::{Mutex, OnceLock};

use rocm_smi_lib::{RocmSmi, RsmiTemperatureMetric, RsmiTemperatureType};
use tracing::debug;

use crate::amd::{amd_device, AmdReadings};
use crate::backend::{GpuBackend, PRIORITY_LIBRARY};
use crate::device::GpuDevice;
use crate::error::{Error, Result};
use crate::parse::{self, MAX_MEMORY_BYTES};

/// ROCm SMI backend. Initialised once on first use and reused; a machine where ROCm
/// SMI cannot initialise (no library, no amdgpu) has no devices from this backend
/// (the amdgpu sysfs backend still sees them).
#[derive(Default)]
pub struct RocmBackend {
    smi: OnceLock<Option<Mutex<RocmSmi>>>,
}

impl std::fmt::Debug for RocmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocmBackend").finish_non_exhaustive()
    }
}

impl RocmBackend {
    /// A backend that will initialise ROCm SMI on first use.
    pub fn new() -> Self {
        Self::default()
    }
}

impl GpuBackend for RocmBackend {
    fn name(&self) -> &'static str {
        "rocm-smi"
    }

    fn priority(&self) -> u8 {
        PRIORITY_LIBRARY
    }

    fn probe(&self) -> Result<Vec<GpuDevice>> {
        let smi = self.smi.get_or_init(|| match RocmSmi::init() {
            Ok(smi) => Some(Mutex::new(smi)),
            Err(e) => {
                debug!(error = ?e, "ROCm SMI not available: no devices from it");
                None
            }
        });
        let Some(smi) = smi else {
            return Ok(Vec::new());
        };
        let mut smi = smi.lock().map_err(|_| Error::Rocm {
            operation: "lock",
            message: "an earlier probe panicked while holding ROCm SMI".to_owned(),
        })?;
        let count = smi.get_device_count();
        let mut devices = Vec::with_capacity(count as usize);
        for i in 0..count {
            let ids = smi.get_device_identifiers(i).ok();
            let memory = smi.get_device_memory_data(i).ok();
            let mem = |v: Option<u64>| v.filter(|&b| b <= MAX_MEMORY_BYTES);
            let readings = AmdReadings {
                device_id: ids.as_ref().and_then(|i| i.id.ok()),
                revision: ids
                    .as_ref()
                    .and_then(|i| i.revision.ok())
                    .and_then(|r| u8::try_from(r).ok()),
                product_name: ids
                    .as_ref()
                    .and_then(|i| i.name.clone().ok())
                    .and_then(|n| parse::parse_label(&n, 128)),
                unique_id: ids
                    .as_ref()
                    .and_then(|i| i.unique_id.ok())
                    .map(|u| format!("{u:016x}")),
                pci_bus_id: smi
                    .get_device_pcie_data(i)
                    .ok()
                    .and_then(|p| parse::bdfid_to_pci_bus_id(p.id)),
                driver: Some("amdgpu".to_owned()),
                vram_total_bytes: mem(memory.map(|m| m.vram_total)),
                vram_used_bytes: mem(memory.map(|m| m.vram_used)),
                gtt_total_bytes: mem(memory.map(|m| m.gtt_total)),
                gtt_used_bytes: mem(memory.map(|m| m.gtt_used)),
                busy_percent: smi.get_device_busy_percent(i).ok().filter(|&b| b <= 100),
                temperature_celsius: smi
                    .get_device_temperature_metric(
                        i,
                        RsmiTemperatureType::Edge,
                        RsmiTemperatureMetric::Current,
                    )
                    .ok()
                    .filter(|&t| t > 0.0 && t <= parse::MAX_TEMPERATURE_CELSIUS),
                power_watts: smi
                    .get_device_power_data(i)
                    .ok()
                    .map(|p| p.current_power as f64 / 1_000_000.0)
                    .filter(|&w| w <= parse::MAX_POWER_WATTS),
            };
            devices.push(amd_device(&readings));
        }
        Ok(devices)
    }
}
