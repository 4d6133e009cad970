//! Garbage, negative, empty, huge and unreadable files: values become unknown,
//! devices stay listed, nothing panics.

use vramroute_probe::{GpuDevice, MemoryKind, Vendor};

use crate::{gpus, prober};

#[test]
fn every_attributable_device_is_listed_with_bad_values_unknown() {
    let got = gpus("corrupt");
    let card0 = GpuDevice {
        vendor: Vendor::Amd,
        index: 0,
        // device id and revision are fine, so the table still names it
        name: "AMD Radeon RX 7900 XTX".into(),
        uuid: None,
        pci_bus_id: Some("0000:03:00.0".into()),
        memory_total_mib: None,
        memory_used_mib: None,
        memory_free_mib: None,
        utilization_percent: None,
        temperature_celsius: None,
        power_watts: None,
        memory_kind: MemoryKind::Dedicated,
        driver: "amdgpu".into(),
    };
    let card1 = GpuDevice {
        index: 1,
        name: "AMD GPU".into(),
        pci_bus_id: Some("0000:0b:00.0".into()),
        driver: "unknown".into(),
        ..card0.clone()
    };
    let card2 = GpuDevice {
        vendor: Vendor::Intel,
        index: 0,
        name: "Intel Arc B580".into(),
        pci_bus_id: Some("0000:0c:00.0".into()),
        driver: "xe".into(),
        ..card0.clone()
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
