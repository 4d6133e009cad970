//! Integration tests of `vramroute-probe` on fixture sysfs trees (`tests/data/`,
//! rebuilt by `tests/data/generate.py`).

mod amd;
mod corrupt;
mod fifo;
mod host;
mod intel;
mod prober;

use std::path::PathBuf;

use vramroute_probe::{GpuDevice, Prober, ProberConfig};

/// The fixture tree `tests/data/<name>`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join(name)
}

/// A prober over a fixture with NVML off (deterministic on any machine).
pub(crate) fn prober(name: &str) -> Prober {
    Prober::new(
        ProberConfig::with_sysfs_root(fixture(name))
            .with_proc_root(fixture(name).join("proc"))
            .with_nvml(false)
            .with_rocm(false),
    )
}

/// The GPUs of a fixture.
pub(crate) fn gpus(name: &str) -> Vec<GpuDevice> {
    prober(name).probe_gpus().expect("fixture root is readable")
}
