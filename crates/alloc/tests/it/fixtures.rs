//! Hardware fixtures shared by the tests.

use vramroute_probe::{GpuDevice, HostMemory, MemoryKind, Vendor};

/// A GPU with dedicated memory, all live values known and plausible.
pub(crate) fn gpu(vendor: Vendor, index: u32, name: &str, total_mib: Option<u64>) -> GpuDevice {
    let mut gpu_device = GpuDevice::new(
        vendor,
        index,
        name.to_owned(),
        match vendor {
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amdgpu",
            Vendor::Intel => "xe",
            other => panic!("no fixture driver for {other}"),
        }
        .to_owned(),
    );
    gpu_device.uuid = Some(format!("GPU-{vendor}-{index}"));
    gpu_device.pci_bus_id = Some(format!("0000:{:02x}:00.0", index + 1));
    gpu_device.memory_total_mib = total_mib;
    gpu_device.memory_used_mib = total_mib.map(|_| 500);
    gpu_device.memory_free_mib = total_mib.map(|t| t.saturating_sub(500));
    gpu_device.utilization_percent = Some(3);
    gpu_device.temperature_celsius = Some(41.0);
    gpu_device.power_watts = Some(30.5);
    gpu_device.memory_kind = MemoryKind::Dedicated;
    gpu_device
}

/// A host with `total_ram_mib` RAM, 16 CPUs.
pub(crate) fn host(total_ram_mib: u64) -> HostMemory {
    HostMemory::new(total_ram_mib, total_ram_mib / 2, 16)
}

/// The node behind `sollol-records/rpc-node-gpu.json`: RTX 3090 + RTX 3080, 64000 MiB RAM.
pub(crate) fn sollol_example_gpus() -> Vec<GpuDevice> {
    vec![
        gpu(Vendor::Nvidia, 0, "NVIDIA GeForce RTX 3090", Some(24576)),
        gpu(Vendor::Nvidia, 1, "NVIDIA GeForce RTX 3080", Some(10240)),
    ]
}
