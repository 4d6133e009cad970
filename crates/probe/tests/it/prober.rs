//! The composing prober: backend failures, bad roots, serialisation.

use vramroute_probe::{
    AmdSysfsBackend, Error, GpuBackend, GpuDevice, IntelSysfsBackend, MemoryKind, Prober,
    ProberConfig, Vendor, PRIORITY_LIBRARY,
};

use crate::{fixture, prober};

struct Broken;

impl GpuBackend for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn probe(&self) -> vramroute_probe::Result<Vec<GpuDevice>> {
        Err(Error::Nvml {
            operation: "device_count",
            message: "GPU is lost".into(),
        })
    }
}

/// Stands in for ROCm SMI: reports the XTX of `amd-discrete` with a richer name.
struct Library;

impl GpuBackend for Library {
    fn name(&self) -> &'static str {
        "library"
    }
    fn priority(&self) -> u8 {
        PRIORITY_LIBRARY
    }
    fn probe(&self) -> vramroute_probe::Result<Vec<GpuDevice>> {
        Ok(vec![{
            let mut gpu_device = GpuDevice::new(Vendor::Amd, 7, "from the library", "amdgpu");
            gpu_device.pci_bus_id = Some("0000:03:00.0".into());
            gpu_device.memory_total_mib = Some(24_560);
            gpu_device.memory_used_mib = Some(1);
            gpu_device.memory_free_mib = Some(24_559);
            gpu_device.memory_kind = MemoryKind::Dedicated;
            gpu_device
        }])
    }
}

fn config(name: &str) -> ProberConfig {
    ProberConfig::with_sysfs_root(fixture(name)).with_nvml(false)
}

#[test]
fn a_failing_backend_does_not_hide_the_others() {
    let root = fixture("amd-two-cards");
    let p = Prober::with_backends(
        config("amd-two-cards"),
        vec![Box::new(Broken), Box::new(AmdSysfsBackend::new(root))],
    );
    let got = p.probe_gpus().expect("root is readable");
    assert_eq!(got.len(), 2);
}

#[test]
fn library_backend_replaces_the_sysfs_device() {
    let root = fixture("amd-discrete");
    let p = Prober::with_backends(
        config("amd-discrete"),
        vec![
            Box::new(AmdSysfsBackend::new(root.clone())),
            Box::new(IntelSysfsBackend::new(root)),
            Box::new(Library),
        ],
    );
    let got = p.probe_gpus().expect("root is readable");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "from the library");
    assert_eq!(got[0].index, 0);
}

#[test]
fn unreadable_root_is_an_error_that_names_it() {
    let p = prober("no-such-fixture");
    let err = p.probe_gpus().expect_err("missing root");
    assert!(matches!(err, Error::SysfsRoot { .. }));
    assert!(err.to_string().contains("no-such-fixture"), "{err}");
}

#[test]
fn default_prober_runs_every_backend() {
    let p = Prober::new(ProberConfig::default());
    assert_eq!(p.config().sysfs_root, std::path::Path::new("/sys"));
    let names = p.backend_names();
    assert_eq!(names.first(), Some(&"nvml"));
    assert!(names.contains(&"amdgpu-sysfs"));
    assert!(names.contains(&"intel-sysfs"));
    let without = Prober::new(config("empty"));
    assert!(!without.backend_names().contains(&"nvml"));
}

#[test]
fn node_hardware_serialises_with_units_in_names() {
    let hw = prober("amd-discrete").probe().expect("probe works");
    let json = serde_json::to_value(&hw).expect("serialisable");
    let gpu = &json["gpus"][0];
    assert_eq!(gpu["vendor"], "amd");
    assert_eq!(gpu["memory_total_mib"], 24_560);
    assert_eq!(gpu["memory_kind"], "dedicated");
    assert_eq!(gpu["pci_bus_id"], "0000:03:00.0");
    assert!(json["host"]["total_ram_mib"]
        .as_u64()
        .is_some_and(|m| m > 0));
    let back: vramroute_probe::NodeHardware = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, hw);
}

#[test]
fn this_machine_probes_without_error() {
    // No GPU here: whatever the real /sys holds, probing must succeed.
    let hw = vramroute_probe::probe().expect("probing the real machine");
    assert!(hw.host.total_ram_mib > 0);
}
