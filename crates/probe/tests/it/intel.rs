//! i915 and xe sysfs fixtures.

use vramroute_probe::{GpuDevice, MemoryKind, Vendor};

use crate::gpus;

fn intel(index: u32, name: &str, bus: &str, driver: &str) -> GpuDevice {
    GpuDevice {
        vendor: Vendor::Intel,
        index,
        name: name.into(),
        uuid: None,
        pci_bus_id: Some(bus.into()),
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

#[test]
fn xe_sums_tiles_and_leaves_used_unknown() {
    let b580 = GpuDevice {
        memory_total_mib: Some(12_288),
        temperature_celsius: Some(46.0),
        ..intel(0, "Intel Arc B580", "0000:03:00.0", "xe")
    };
    let max_1550 = GpuDevice {
        // two tiles of 68719476736 bytes
        memory_total_mib: Some(131_072),
        temperature_celsius: Some(37.0),
        ..intel(1, "Intel Data Center GPU Max 1550", "0000:3a:00.0", "xe")
    };
    assert_eq!(gpus("intel-xe"), [b580, max_1550]);
}

#[test]
fn i915_discrete_lmem_and_integrated_unified() {
    let igpu = GpuDevice {
        memory_kind: MemoryKind::Unified,
        ..intel(0, "Intel UHD Graphics 770", "0000:00:02.0", "i915")
    };
    let a770 = GpuDevice {
        memory_total_mib: Some(16_384),
        temperature_celsius: Some(45.0),
        ..intel(1, "Intel Arc A770", "0000:03:00.0", "i915")
    };
    assert_eq!(gpus("intel-i915"), [igpu, a770]);
}
