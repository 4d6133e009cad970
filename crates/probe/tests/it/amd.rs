//! amdgpu sysfs fixtures: discrete card, APU, two cards.

use vramroute_probe::{GpuDevice, MemoryKind, Vendor};

use crate::gpus;

fn rx_7900_xtx(index: u32, uuid: Option<&str>) -> GpuDevice {
    let mut gpu_device = GpuDevice::new(Vendor::Amd, index, "AMD Radeon RX 7900 XTX", "amdgpu");
    gpu_device.uuid = uuid.map(str::to_owned);
    gpu_device.pci_bus_id = Some("0000:03:00.0".into());
    // 25753026560 / 1234829312 bytes
    gpu_device.memory_total_mib = Some(24_560);
    gpu_device.memory_used_mib = Some(1_177);
    gpu_device.memory_free_mib = Some(23_382);
    gpu_device.utilization_percent = Some(4);
    gpu_device.temperature_celsius = Some(41.0);
    // power1_average is absent; power1_input (newer kernels) is used.
    gpu_device.power_watts = Some(28.0);
    gpu_device.memory_kind = MemoryKind::Dedicated;
    gpu_device
}

#[test]
fn discrete_card_with_connectors_and_render_node() {
    // One device: connectors and renderD128 (whose `device` link points at the same
    // PCI function) are not GPUs.
    assert_eq!(
        gpus("amd-discrete"),
        [rx_7900_xtx(0, Some("6a1c2f3e8b9d0a47"))]
    );
}

#[test]
fn apu_counts_gtt_as_shared_memory() {
    // card0 is simpledrm (platform device, no PCI vendor): skipped.
    let got = gpus("amd-apu");
    let want = {
        let mut gpu_device = GpuDevice::new(Vendor::Amd, 0, "AMD Radeon 780M", "amdgpu");
        gpu_device.pci_bus_id = Some("0000:c4:00.0".into());
        // 512 MiB carve-out + 16483926016 bytes GTT
        gpu_device.memory_total_mib = Some(16_232);
        // 151916544 + 55508992 bytes
        gpu_device.memory_used_mib = Some(197);
        gpu_device.memory_free_mib = Some(16_034);
        gpu_device.utilization_percent = Some(0);
        gpu_device.temperature_celsius = Some(39.0);
        gpu_device.power_watts = Some(7.0);
        gpu_device.memory_kind = MemoryKind::Unified;
        gpu_device
    };
    assert_eq!(got, [want]);
}

#[test]
fn two_cards_are_ordered_and_indexed_by_pci_bus_not_card_number() {
    let got = gpus("amd-two-cards");
    let rx_6800_xt = {
        let mut gpu_device = GpuDevice::new(Vendor::Amd, 1, "AMD Radeon RX 6800 XT", "amdgpu");
        gpu_device.pci_bus_id = Some("0000:0a:00.0".into());
        gpu_device.memory_total_mib = Some(16_368);
        gpu_device.memory_used_mib = Some(508);
        gpu_device.memory_free_mib = Some(15_860);
        gpu_device.utilization_percent = Some(97);
        gpu_device.temperature_celsius = Some(66.0);
        gpu_device.power_watts = Some(255.0);
        gpu_device.memory_kind = MemoryKind::Dedicated;
        gpu_device
    };
    assert_eq!(got, [rx_7900_xtx(0, None), rx_6800_xt]);
}
