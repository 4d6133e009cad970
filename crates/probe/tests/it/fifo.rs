//! FIFOs and devices planted in a sysfs tree: the probe never blocks on them; each
//! such value is unknown and every device is still listed.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use vramroute_probe::{Prober, ProberConfig};

use crate::fixture;

/// A copy of fixture `name` (symlinks kept) in a temporary directory.
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(fixture(name))
        .arg(dir.path())
        .status()
        .expect("cp (coreutils) must be installed to run this test");
    assert!(status.success(), "cp -a failed");
    let root = dir.path().join(name);
    (dir, root)
}

/// Replaces the file at `path` with a FIFO nobody writes to.
fn plant_fifo(path: &Path) {
    std::fs::remove_file(path).expect("fixture file exists");
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo (coreutils) must be installed to run this test");
    assert!(status.success(), "mkfifo failed");
}

/// Runs `f` on a thread; fails if it has not answered within a minute (a regression
/// would otherwise block the suite forever on the FIFO).
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the probe blocked on a FIFO")
}

#[test]
fn a_fifo_as_a_sysfs_value_is_unknown_and_never_blocks() {
    let (_dir, root) = copy_fixture("amd-discrete");
    let device = std::fs::canonicalize(root.join("class/drm/card0/device")).expect("device dir");
    plant_fifo(&device.join("mem_info_vram_total"));
    plant_fifo(&device.join("hwmon/hwmon2/temp1_input"));
    let config = ProberConfig::with_sysfs_root(&root)
        .with_proc_root(root.join("proc"))
        .with_nvml(false)
        .with_rocm(false);
    let gpus =
        within_a_minute(move || Prober::new(config).probe_gpus()).expect("the root is readable");
    assert_eq!(gpus.len(), 1, "the card is still listed: {gpus:?}");
    assert_eq!(gpus[0].memory_total_mib, None, "a FIFO is not a value");
    assert_eq!(gpus[0].temperature_celsius, None);
    assert_eq!(
        gpus[0].name, "AMD Radeon RX 7900 XTX",
        "the other values are read"
    );
}

#[test]
fn a_fifo_as_a_cgroup_limit_is_no_limit_and_never_blocks() {
    let (_dir, root) = copy_fixture("cgroup-v2");
    let config = ProberConfig::with_sysfs_root(root.join("sys"))
        .with_proc_root(root.join("proc"))
        .with_nvml(false)
        .with_rocm(false);
    let before = Prober::new(config.clone()).cgroup_memory();
    assert!(before.is_some(), "the fixture has a limit");
    let mut fifos = 0;
    for entry in walk(&root.join("sys/fs/cgroup")) {
        if entry.file_name().is_some_and(|n| n == "memory.max") {
            plant_fifo(&entry);
            fifos += 1;
        }
    }
    assert!(fifos > 0, "the fixture has memory.max files");
    let got = within_a_minute(move || Prober::new(config).cgroup_memory());
    assert_eq!(got, None);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("fixture dir").flatten() {
        let path = entry.path();
        let ft = entry.file_type().expect("file type");
        if ft.is_dir() {
            out.extend(walk(&path));
        } else if ft.is_file() {
            out.push(path);
        }
    }
    out
}
