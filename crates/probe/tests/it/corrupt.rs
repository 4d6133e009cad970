//! Garbage, negative, empty, huge and unreadable files: values become unknown,
//! devices stay listed, nothing panics.

use vramroute_probe::{GpuDevice, MemoryKind, Vendor};

use crate::{gpus, prober};

#[test]
fn every_attributable_device_is_listed_with_bad_values_unknown() {
    let got = gpus("corrupt");
    // device id and revision are fine, so the table still names it
    let card0 = {
        let mut gpu_device = GpuDevice::new(Vendor::Amd, 0, "AMD Radeon RX 7900 XTX", "amdgpu");
        gpu_device.pci_bus_id = Some("0000:03:00.0".into());
        gpu_device.memory_kind = MemoryKind::Dedicated;
        gpu_device
    };
    let card1 = {
        let mut gpu_device = card0.clone();
        gpu_device.index = 1;
        gpu_device.name = "AMD GPU".into();
        gpu_device.pci_bus_id = Some("0000:0b:00.0".into());
        gpu_device.driver = "unknown".into();
        gpu_device
    };
    let card2 = {
        let mut gpu_device = card0.clone();
        gpu_device.vendor = Vendor::Intel;
        gpu_device.index = 0;
        gpu_device.name = "Intel Arc B580".into();
        gpu_device.pci_bus_id = Some("0000:0c:00.0".into());
        gpu_device.driver = "xe".into();
        gpu_device
    };
    // card3's vendor file is not a PCI id: it cannot be attributed and is skipped.
    assert_eq!(got, [card0, card1, card2]);
}

#[test]
fn garbage_cgroup_limit_is_no_limit() {
    assert_eq!(prober("corrupt").cgroup_memory(), None);
}

#[test]
fn empty_machine_has_no_gpus() {
    assert_eq!(gpus("empty"), []);
}
