//! A small table of common PCI device ids → readable names, and which of them are
//! integrated parts (APUs / iGPUs) whose memory is shared with the host.
//!
//! Not meant to be complete: an unknown id is named `"AMD GPU 0x744c"` and its memory
//! kind is decided from what sysfs publishes (see `docs/probe.md`).

/// PCI vendor id of AMD/ATI.
pub(crate) const PCI_VENDOR_AMD: u16 = 0x1002;
/// PCI vendor id of Intel.
pub(crate) const PCI_VENDOR_INTEL: u16 = 0x8086;

/// What the table knows about one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KnownGpu {
    /// Marketing name.
    pub(crate) name: &'static str,
    /// Integrated part: memory shared with the host.
    pub(crate) integrated: bool,
}

const fn d(name: &'static str) -> KnownGpu {
    KnownGpu {
        name,
        integrated: false,
    }
}

const fn i(name: &'static str) -> KnownGpu {
    KnownGpu {
        name,
        integrated: true,
    }
}

/// Look up an AMD device id (and PCI revision, which tells Navi 31 boards apart).
pub(crate) fn amd(device_id: u16, revision: Option<u8>) -> Option<KnownGpu> {
    Some(match (device_id, revision) {
        (0x744c, Some(0xc8)) => d("AMD Radeon RX 7900 XTX"),
        (0x744c, Some(0xcc)) => d("AMD Radeon RX 7900 XT"),
        (0x744c, Some(0xce)) => d("AMD Radeon RX 7900 GRE"),
        (0x744c, _) => d("AMD Radeon RX 7900 series"),
        (0x7448, _) => d("AMD Radeon PRO W7900"),
        (0x7480, _) => d("AMD Radeon RX 7600 series"),
        (0x7550, _) => d("AMD Radeon RX 9070 series"),
        (0x73bf, _) => d("AMD Radeon RX 6800/6900 series"),
        (0x73df, _) => d("AMD Radeon RX 6700 series"),
        (0x73ff, _) => d("AMD Radeon RX 6600 series"),
        (0x731f, _) => d("AMD Radeon RX 5700 series"),
        (0x66af, _) => d("AMD Radeon VII"),
        (0x687f, _) => d("AMD Radeon RX Vega 56/64"),
        (0x67df, _) => d("AMD Radeon RX 470/480/570/580"),
        (0x738c, _) => d("AMD Instinct MI100"),
        (0x740c, _) => d("AMD Instinct MI250X/MI250"),
        (0x740f, _) => d("AMD Instinct MI210"),
        (0x74a1, _) => d("AMD Instinct MI300X"),
        (0x15dd, _) => i("AMD Radeon Vega Graphics (Raven Ridge)"),
        (0x15d8, _) => i("AMD Radeon Vega Graphics (Picasso)"),
        (0x1636, _) => i("AMD Radeon Graphics (Renoir)"),
        (0x1638, _) => i("AMD Radeon Graphics (Cezanne)"),
        (0x164c, _) => i("AMD Radeon Graphics (Lucienne)"),
        (0x163f, _) => i("AMD Custom GPU 0405 (Van Gogh)"),
        (0x1681, _) => i("AMD Radeon 680M"),
        (0x15bf, _) => i("AMD Radeon 780M"),
        (0x15c8, _) => i("AMD Radeon 740M"),
        (0x164e, _) => i("AMD Radeon Graphics (Raphael)"),
        (0x13c0, _) => i("AMD Radeon Graphics (Granite Ridge)"),
        (0x1506, _) => i("AMD Radeon 610M"),
        (0x150e, _) => i("AMD Radeon 890M"),
        (0x1586, _) => i("AMD Radeon 8060S"),
        _ => return None,
    })
}

/// Look up an Intel device id.
pub(crate) fn intel(device_id: u16) -> Option<KnownGpu> {
    Some(match device_id {
        0x56a0 => d("Intel Arc A770"),
        0x56a1 => d("Intel Arc A750"),
        0x56a2 => d("Intel Arc A580"),
        0x56a5 => d("Intel Arc A380"),
        0x56a6 => d("Intel Arc A310"),
        0x5690 => d("Intel Arc A770M"),
        0x56c0 => d("Intel Data Center GPU Flex 170"),
        0x56c1 => d("Intel Data Center GPU Flex 140"),
        0x0bd5 => d("Intel Data Center GPU Max 1550"),
        0x0bda => d("Intel Data Center GPU Max 1100"),
        0x4905 => d("Intel Iris Xe MAX"),
        0xe20b => d("Intel Arc B580"),
        0xe20c => d("Intel Arc B570"),
        0xe211 => d("Intel Arc Pro B60"),
        0xa780 => i("Intel UHD Graphics 770"),
        0x4680 => i("Intel UHD Graphics 770"),
        0x46a6 => i("Intel Iris Xe Graphics"),
        0xa7a0 => i("Intel Iris Xe Graphics"),
        0x9a49 => i("Intel Iris Xe Graphics"),
        0x3e92 => i("Intel UHD Graphics 630"),
        0x3e9b => i("Intel UHD Graphics 630"),
        0x9bc5 => i("Intel UHD Graphics 630"),
        0x7d55 => i("Intel Arc Graphics (Meteor Lake)"),
        0x64a0 => i("Intel Arc 140V"),
        _ => return None,
    })
}

/// Whether an Intel id belongs to a discrete family (DG1, DG2/Alchemist, Ponte
/// Vecchio, Battlemage), for ids the table does not list.
pub(crate) fn intel_is_discrete_family(device_id: u16) -> bool {
    matches!(device_id >> 8, 0x56 | 0xe2)
        || (0x0bd0..=0x0bdb).contains(&device_id)
        || (0x4905..=0x4909).contains(&device_id)
}

/// `"AMD GPU 0x744c"`: the name of a device the table does not know.
pub(crate) fn generic(vendor: &str, device_id: Option<u16>) -> String {
    match device_id {
        Some(id) => format!("{vendor} GPU {id:#06x}"),
        None => format!("{vendor} GPU"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn navi31_boards_are_told_apart_by_revision() {
        assert_eq!(
            amd(0x744c, Some(0xc8)).map(|k| k.name),
            Some("AMD Radeon RX 7900 XTX")
        );
        assert_eq!(
            amd(0x744c, Some(0xcc)).map(|k| k.name),
            Some("AMD Radeon RX 7900 XT")
        );
        assert_eq!(
            amd(0x744c, None).map(|k| k.name),
            Some("AMD Radeon RX 7900 series")
        );
    }

    #[test]
    fn apus_are_integrated() {
        assert_eq!(amd(0x15bf, None).map(|k| k.integrated), Some(true));
        assert_eq!(amd(0x740f, None).map(|k| k.integrated), Some(false));
        assert_eq!(amd(0x1234, None), None);
    }

    #[test]
    fn intel_families() {
        assert_eq!(intel(0x56a0).map(|k| k.integrated), Some(false));
        assert_eq!(intel(0x46a6).map(|k| k.integrated), Some(true));
        assert!(intel_is_discrete_family(0x56b0));
        assert!(intel_is_discrete_family(0xe202));
        assert!(!intel_is_discrete_family(0x46a6));
    }

    #[test]
    fn generic_names() {
        assert_eq!(generic("AMD", Some(0x744c)), "AMD GPU 0x744c");
        assert_eq!(generic("Intel", Some(0x0bd5)), "Intel GPU 0x0bd5");
        assert_eq!(generic("AMD", None), "AMD GPU");
    }
}
