//! AMD GPUs through amdgpu's sysfs files. Needs no library and no root.

use std::path::PathBuf;

use tracing::debug;

use crate::backend::GpuBackend;
use crate::device::{GpuDevice, MemoryKind, Vendor};
use crate::error::Result;
use crate::names::{self, PCI_VENDOR_AMD};
use crate::parse::{self, bytes_to_mib};
use crate::sysfs::{self, read_value, DrmCard};

/// An unknown AMD device with at most this much VRAM and a GTT domain is taken to
/// be an APU whose VRAM is a BIOS carve-out (1 GiB).
pub const APU_CARVE_OUT_MAX_BYTES: u64 = 1 << 30;

/// Reads `<root>/class/drm/cardN/device/` for every card whose `vendor` is `0x1002`.
#[derive(Debug, Clone)]
pub struct AmdSysfsBackend {
    root: PathBuf,
}

impl AmdSysfsBackend {
    /// A backend reading under `sysfs_root` (normally `/sys`).
    pub fn new(sysfs_root: impl Into<PathBuf>) -> Self {
        Self {
            root: sysfs_root.into(),
        }
    }
}

impl GpuBackend for AmdSysfsBackend {
    fn name(&self) -> &'static str {
        "amdgpu-sysfs"
    }

    fn probe(&self) -> Result<Vec<GpuDevice>> {
        Ok(sysfs::list_cards(&self.root)?
            .iter()
            .filter(|c| c.vendor_id == Some(PCI_VENDOR_AMD))
            .map(|c| {
                let device = amd_device(&read_amd(c));
                debug!(card = %c.name, pci_bus_id = ?device.pci_bus_id, name = %device.name, "AMD GPU found");
                device
            })
            .collect())
    }
}

/// Raw values read for one AMD card, each `None` when unreadable or implausible.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AmdReadings {
    pub(crate) device_id: Option<u16>,
    pub(crate) revision: Option<u8>,
    pub(crate) product_name: Option<String>,
    pub(crate) unique_id: Option<String>,
    pub(crate) pci_bus_id: Option<String>,
    pub(crate) driver: Option<String>,
    pub(crate) vram_total_bytes: Option<u64>,
    pub(crate) vram_used_bytes: Option<u64>,
    pub(crate) gtt_total_bytes: Option<u64>,
    pub(crate) gtt_used_bytes: Option<u64>,
    pub(crate) busy_percent: Option<u32>,
    pub(crate) temperature_celsius: Option<f64>,
    pub(crate) power_watts: Option<f64>,
}

fn read_amd(card: &DrmCard) -> AmdReadings {
    let dev = &card.device_dir;
    let label = |s: &str| parse::parse_label(s, 128);
    AmdReadings {
        device_id: card.device_id,
        revision: card.revision,
        product_name: dev
            .join("product_name")
            .exists()
            .then(|| read_value(&dev.join("product_name"), label))
            .flatten(),
        unique_id: dev
            .join("unique_id")
            .exists()
            .then(|| read_value(&dev.join("unique_id"), |s| parse::parse_label(s, 64)))
            .flatten(),
        pci_bus_id: card.pci_bus_id.clone(),
        driver: card.driver.clone(),
        vram_total_bytes: read_value(&dev.join("mem_info_vram_total"), parse::parse_memory_bytes),
        vram_used_bytes: read_value(&dev.join("mem_info_vram_used"), parse::parse_memory_bytes),
        gtt_total_bytes: read_value(&dev.join("mem_info_gtt_total"), parse::parse_memory_bytes),
        gtt_used_bytes: read_value(&dev.join("mem_info_gtt_used"), parse::parse_memory_bytes),
        busy_percent: read_value(&dev.join("gpu_busy_percent"), parse::parse_percent),
        temperature_celsius: sysfs::read_hwmon(dev, "temp1_input", parse::parse_millicelsius),
        // Newer kernels replaced power1_average with power1_input on some SMUs.
        power_watts: sysfs::read_hwmon(dev, "power1_average", parse::parse_microwatts)
            .or_else(|| sysfs::read_hwmon(dev, "power1_input", parse::parse_microwatts)),
    }
}

/// Whether this AMD device is an APU (memory shared with the host): its PCI id is
/// a known APU; or, for ids the table does not know, its VRAM is a carve-out of at
/// most [`APU_CARVE_OUT_MAX_BYTES`] and a GTT size is published.
pub(crate) fn amd_is_apu(r: &AmdReadings) -> bool {
    let known = r.device_id.and_then(|id| names::amd(id, r.revision));
    match known {
        Some(k) => k.integrated,
        None => {
            r.vram_total_bytes
                .is_some_and(|v| v <= APU_CARVE_OUT_MAX_BYTES)
                && r.gtt_total_bytes.is_some()
        }
    }
}

/// Map raw amdgpu readings to a device (index 0; the prober assigns it).
///
/// Discrete: total/used = VRAM. APU: total = VRAM carve-out + GTT, used = VRAM used +
/// GTT used, each only when both parts are known. Free = total − used.
pub(crate) fn amd_device(r: &AmdReadings) -> GpuDevice {
    let apu = amd_is_apu(r);
    let (total, used) = if apu {
        (
            r.vram_total_bytes
                .zip(r.gtt_total_bytes)
                .map(|(a, b)| a + b),
            r.vram_used_bytes.zip(r.gtt_used_bytes).map(|(a, b)| a + b),
        )
    } else {
        (r.vram_total_bytes, r.vram_used_bytes)
    };
    let free = free_bytes(total, used);
    let name = r
        .product_name
        .clone()
        .or_else(|| {
            r.device_id
                .and_then(|id| names::amd(id, r.revision))
                .map(|k| k.name.to_owned())
        })
        .unwrap_or_else(|| names::generic("AMD", r.device_id));
    GpuDevice {
        vendor: Vendor::Amd,
        index: 0,
        name,
        uuid: r.unique_id.clone(),
        pci_bus_id: r.pci_bus_id.clone(),
        memory_total_mib: total.map(bytes_to_mib),
        memory_used_mib: used.map(bytes_to_mib),
        memory_free_mib: free.map(bytes_to_mib),
        utilization_percent: r.busy_percent,
        temperature_celsius: r.temperature_celsius,
        power_watts: r.power_watts,
        memory_kind: if apu {
            MemoryKind::Unified
        } else {
            MemoryKind::Dedicated
        },
        driver: r.driver.clone().unwrap_or_else(|| "unknown".to_owned()),
    }
}

/// total − used, or `None` when either is unknown or used exceeds total.
pub(crate) fn free_bytes(total: Option<u64>, used: Option<u64>) -> Option<u64> {
    let (total, used) = (total?, used?);
    let free = total.checked_sub(used);
    if free.is_none() {
        debug!(total, used, "used memory exceeds total: free is unknown");
    }
    free
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xtx() -> AmdReadings {
        AmdReadings {
            device_id: Some(0x744c),
            revision: Some(0xc8),
            pci_bus_id: Some("0000:03:00.0".into()),
            driver: Some("amdgpu".into()),
            vram_total_bytes: Some(25_753_026_560),
            vram_used_bytes: Some(1_073_741_824),
            gtt_total_bytes: Some(33_554_432_000),
            gtt_used_bytes: Some(20_971_520),
            busy_percent: Some(3),
            temperature_celsius: Some(41.0),
            power_watts: Some(28.0),
            ..AmdReadings::default()
        }
    }

    #[test]
    fn discrete_card_counts_vram_only() {
        let d = amd_device(&xtx());
        assert_eq!(d.name, "AMD Radeon RX 7900 XTX");
        assert_eq!(d.memory_kind, MemoryKind::Dedicated);
        assert_eq!(d.memory_total_mib, Some(24_560));
        assert_eq!(d.memory_used_mib, Some(1024));
        assert_eq!(d.memory_free_mib, Some(23_536));
        assert_eq!(d.driver, "amdgpu");
    }

    #[test]
    fn unknown_small_carve_out_with_gtt_is_an_apu() {
        let r = AmdReadings {
            device_id: Some(0x1234),
            vram_total_bytes: Some(536_870_912),
            vram_used_bytes: Some(104_857_600),
            gtt_total_bytes: Some(16_777_216_000),
            gtt_used_bytes: Some(52_428_800),
            ..AmdReadings::default()
        };
        let d = amd_device(&r);
        assert_eq!(d.memory_kind, MemoryKind::Unified);
        assert_eq!(d.name, "AMD GPU 0x1234");
        assert_eq!(d.memory_total_mib, Some(512 + 16_000));
        assert_eq!(d.memory_used_mib, Some(150));
        assert_eq!(d.memory_free_mib, Some(16_362));
        assert_eq!(d.driver, "unknown");
    }

    #[test]
    fn unknown_big_card_is_discrete_and_known_apu_is_unified_at_any_size() {
        let mut r = xtx();
        r.device_id = Some(0x1234);
        assert!(!amd_is_apu(&r));
        r.device_id = Some(0x1586); // Strix Halo with a 24 GiB carve-out
        assert!(amd_is_apu(&r));
    }

    #[test]
    fn apu_with_unknown_gtt_has_unknown_total() {
        let r = AmdReadings {
            device_id: Some(0x15bf),
            vram_total_bytes: Some(536_870_912),
            ..AmdReadings::default()
        };
        let d = amd_device(&r);
        assert_eq!(d.memory_kind, MemoryKind::Unified);
        assert_eq!(d.memory_total_mib, None);
        assert_eq!(d.memory_free_mib, None);
    }

    #[test]
    fn used_above_total_leaves_free_unknown() {
        let mut r = xtx();
        r.vram_used_bytes = Some(30_000_000_000);
        let d = amd_device(&r);
        assert_eq!(d.memory_used_mib, Some(28_610));
        assert_eq!(d.memory_free_mib, None);
    }

    #[test]
    fn product_name_wins_over_the_table() {
        let mut r = xtx();
        r.product_name = Some("Radeon RX 7900 XTX Custom".into());
        assert_eq!(amd_device(&r).name, "Radeon RX 7900 XTX Custom");
    }
}
