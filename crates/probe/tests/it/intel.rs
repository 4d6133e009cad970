//! i915 and xe sysfs fixtures.

use vramroute_probe::{GpuDevice, MemoryKind, Vendor};

use crate::gpus;

fn intel(index: u32, name: &str, bus: &str, driver: &str) -> GpuDevice {
    let mut gpu_device = GpuDevice::new(Vendor::Intel, index, name, driver);
    gpu_device.pci_bus_id = Some(bus.into());
    gpu_device.memory_kind = MemoryKind::Dedicated;
    gpu_device
}

#[test]
fn xe_sums_tiles_and_leaves_used_unknown() {
    let b580 = {
        let mut gpu_device = intel(0, "Intel Arc B580", "0000:03:00.0", "xe");
        gpu_device.memory_total_mib = Some(12_288);
        gpu_device.temperature_celsius = Some(46.0);
        gpu_device
    };
    let max_1550 = {
        let mut gpu_device = intel(1, "Intel Data Center GPU Max 1550", "0000:3a:00.0", "xe");
        // two tiles of 68719476736 bytes
        gpu_device.memory_total_mib = Some(131_072);
        gpu_device.temperature_celsius = Some(37.0);
        gpu_device
    };
    assert_eq!(gpus("intel-xe"), [b580, max_1550]);
}

#[test]
fn i915_discrete_lmem_and_integrated_unified() {
    let igpu = {
        let mut gpu_device = intel(0, "Intel UHD Graphics 770", "0000:00:02.0", "i915");
        gpu_device.memory_kind = MemoryKind::Unified;
        gpu_device
    };
    let a770 = {
        let mut gpu_device = intel(1, "Intel Arc A770", "0000:03:00.0", "i915");
        gpu_device.memory_total_mib = Some(16_384);
        gpu_device.temperature_celsius = Some(45.0);
        gpu_device
    };
    assert_eq!(gpus("intel-i915"), [igpu, a770]);
}
