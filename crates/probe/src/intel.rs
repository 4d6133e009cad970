//! Intel GPUs through i915 / xe sysfs files. Needs no library and no root.

use std::path::PathBuf;

use tracing::debug;

use crate::backend::GpuBackend;
use crate::device::{GpuDevice, MemoryKind, Vendor};
use crate::error::Result;
use crate::names::{self, PCI_VENDOR_INTEL};
use crate::parse::{self, bytes_to_mib};
use crate::sysfs::{self, read_value, DrmCard};

/// Reads `<root>/class/drm/cardN/` for every card whose `vendor` is `0x8086`.
#[derive(Debug, Clone)]
pub struct IntelSysfsBackend {
    root: PathBuf,
}

impl IntelSysfsBackend {
    /// A backend reading under `sysfs_root` (normally `/sys`).
    pub fn new(sysfs_root: impl Into<PathBuf>) -> Self {
        Self {
            root: sysfs_root.into(),
        }
    }
}

impl GpuBackend for IntelSysfsBackend {
    fn name(&self) -> &'static str {
        "intel-sysfs"
    }

    fn probe(&self) -> Result<Vec<GpuDevice>> {
        Ok(sysfs::list_cards(&self.root)?
            .iter()
            .filter(|c| c.vendor_id == Some(PCI_VENDOR_INTEL))
            .map(|c| {
                let device = intel_device(&read_intel(c));
                debug!(card = %c.name, pci_bus_id = ?device.pci_bus_id, name = %device.name, "Intel GPU found");
                device
            })
            .collect())
    }
}

/// Raw values read for one Intel card.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct IntelReadings {
    pub(crate) device_id: Option<u16>,
    pub(crate) pci_bus_id: Option<String>,
    /// Driver, from the link or (when the link is unreadable) guessed from the files.
    pub(crate) driver: Option<String>,
    /// xe: one entry per `tileN/physical_vram_size_bytes` that exists (`None` when
    /// that tile's file is unreadable). Empty when no tile publishes VRAM.
    pub(crate) xe_tile_vram_bytes: Vec<Option<u64>>,
    /// i915: whether an `lmem_total_bytes` file exists.
    pub(crate) lmem_present: bool,
    /// i915: `lmem_total_bytes` (card directory, or the PCI device directory).
    pub(crate) lmem_total_bytes: Option<u64>,
    /// i915 backport driver: `lmem_avail_bytes`, when published.
    pub(crate) lmem_avail_bytes: Option<u64>,
    pub(crate) temperature_celsius: Option<f64>,
    pub(crate) power_watts: Option<f64>,
}

fn read_intel(card: &DrmCard) -> IntelReadings {
    let dev = &card.device_dir;
    let tiles: Vec<Option<u64>> = sysfs::numbered_subdirs(dev, "tile")
        .into_iter()
        .map(|t| t.join("physical_vram_size_bytes"))
        .filter(|f| f.exists())
        .map(|f| read_value(&f, parse::parse_memory_bytes))
        .collect();
    // The backport i915 registers these on the DRM minor (cardN); accept the PCI
    // device directory too, and the `prelim_` spelling.
    let first_existing = |names: &[&str]| {
        names
            .iter()
            .flat_map(|n| [card.card_dir.join(n), dev.join(n)])
            .find(|p| p.exists())
    };
    let lmem_total = first_existing(&["lmem_total_bytes", "prelim_lmem_total_bytes"]);
    let lmem_avail = first_existing(&["lmem_avail_bytes", "prelim_lmem_avail_bytes"]);
    let driver = card.driver.clone().or_else(|| {
        if !tiles.is_empty() || !sysfs::numbered_subdirs(dev, "tile").is_empty() {
            Some("xe".to_owned())
        } else {
            None
        }
    });
    let temp_file = if driver.as_deref() == Some("xe") {
        "temp2_input"
    } else {
        "temp1_input"
    };
    IntelReadings {
        device_id: card.device_id,
        pci_bus_id: card.pci_bus_id.clone(),
        driver,
        xe_tile_vram_bytes: tiles,
        lmem_present: lmem_total.is_some(),
        lmem_total_bytes: lmem_total.and_then(|p| read_value(&p, parse::parse_memory_bytes)),
        lmem_avail_bytes: lmem_avail.and_then(|p| read_value(&p, parse::parse_memory_bytes)),
        temperature_celsius: sysfs::read_hwmon(dev, temp_file, parse::parse_millicelsius),
        power_watts: sysfs::read_hwmon(dev, "power1_average", parse::parse_microwatts),
    }
}

/// Map raw Intel readings to a device (index 0; the prober assigns it).
///
/// Dedicated when any VRAM file exists (xe tiles, i915 `lmem_total_bytes`) or the
/// PCI id is a discrete part; otherwise Unified with an unknown total (the device
/// uses host RAM). xe total = sum over tiles, unknown if any tile is unreadable.
/// Used/free are unknown unless the driver publishes available local memory.
pub(crate) fn intel_device(r: &IntelReadings) -> GpuDevice {
    let known = r.device_id.and_then(names::intel);
    let discrete_id = known.map(|k| !k.integrated).unwrap_or(false)
        || r.device_id.is_some_and(names::intel_is_discrete_family);
    let dedicated = !r.xe_tile_vram_bytes.is_empty() || r.lmem_present || discrete_id;
    let total = if !r.xe_tile_vram_bytes.is_empty() {
        r.xe_tile_vram_bytes
            .iter()
            .try_fold(0u64, |sum, t| t.and_then(|t| sum.checked_add(t)))
    } else {
        r.lmem_total_bytes
    };
    let free = match (total, r.lmem_avail_bytes) {
        (Some(t), Some(a)) if a <= t => Some(a),
        _ => None,
    };
    let used = total.zip(free).map(|(t, f)| t - f);
    GpuDevice {
        vendor: Vendor::Intel,
        index: 0,
        name: known
            .map(|k| k.name.to_owned())
            .unwrap_or_else(|| names::generic("Intel", r.device_id)),
        uuid: None,
        pci_bus_id: r.pci_bus_id.clone(),
        memory_total_mib: total.map(bytes_to_mib),
        memory_used_mib: used.map(bytes_to_mib),
        memory_free_mib: free.map(bytes_to_mib),
        utilization_percent: None,
        temperature_celsius: r.temperature_celsius,
        power_watts: r.power_watts,
        memory_kind: if dedicated {
            MemoryKind::Dedicated
        } else {
            MemoryKind::Unified
        },
        driver: r.driver.clone().unwrap_or_else(|| "unknown".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xe_sums_tiles() {
        let r = IntelReadings {
            device_id: Some(0x0bd5),
            driver: Some("xe".into()),
            xe_tile_vram_bytes: vec![Some(68_719_476_736), Some(68_719_476_736)],
            ..IntelReadings::default()
        };
        let d = intel_device(&r);
        assert_eq!(d.name, "Intel Data Center GPU Max 1550");
        assert_eq!(d.memory_total_mib, Some(131_072));
        assert_eq!(d.memory_used_mib, None);
        assert_eq!(d.memory_free_mib, None);
        assert_eq!(d.memory_kind, MemoryKind::Dedicated);
    }

    #[test]
    fn one_bad_tile_makes_the_total_unknown() {
        let r = IntelReadings {
            driver: Some("xe".into()),
            xe_tile_vram_bytes: vec![Some(1 << 34), None],
            ..IntelReadings::default()
        };
        let d = intel_device(&r);
        assert_eq!(d.memory_total_mib, None);
        assert_eq!(d.memory_kind, MemoryKind::Dedicated);
        assert_eq!(d.name, "Intel GPU");
    }

    #[test]
    fn integrated_is_unified_with_unknown_total() {
        let r = IntelReadings {
            device_id: Some(0x46a6),
            driver: Some("i915".into()),
            ..IntelReadings::default()
        };
        let d = intel_device(&r);
        assert_eq!(d.memory_kind, MemoryKind::Unified);
        assert_eq!(d.memory_total_mib, None);
        assert_eq!(d.name, "Intel Iris Xe Graphics");
    }

    #[test]
    fn discrete_id_without_vram_files_is_dedicated_and_unknown() {
        let r = IntelReadings {
            device_id: Some(0x56a5),
            driver: Some("i915".into()),
            ..IntelReadings::default()
        };
        let d = intel_device(&r);
        assert_eq!(d.memory_kind, MemoryKind::Dedicated);
        assert_eq!(d.memory_total_mib, None);
    }

    #[test]
    fn i915_lmem_with_available() {
        let r = IntelReadings {
            device_id: Some(0x56a0),
            driver: Some("i915".into()),
            lmem_present: true,
            lmem_total_bytes: Some(17_179_869_184),
            lmem_avail_bytes: Some(16_106_127_360),
            ..IntelReadings::default()
        };
        let d = intel_device(&r);
        assert_eq!(d.memory_total_mib, Some(16_384));
        assert_eq!(d.memory_free_mib, Some(15_360));
        assert_eq!(d.memory_used_mib, Some(1024));
    }

    #[test]
    fn available_above_total_is_ignored() {
        let r = IntelReadings {
            lmem_present: true,
            lmem_total_bytes: Some(1 << 30),
            lmem_avail_bytes: Some(1 << 31),
            ..IntelReadings::default()
        };
        let d = intel_device(&r);
        assert_eq!(d.memory_total_mib, Some(1024));
        assert_eq!(d.memory_free_mib, None);
        assert_eq!(d.memory_used_mib, None);
    }
}
