//! Local inputs that would block forever or never end (a FIFO, `/dev/zero`), oversized
//! or deeply nested configs, and durations that would panic a timer: each is refused
//! at once with exit status 2 and a message naming the path or key.

use std::path::{Path, PathBuf};

use super::support::*;

fn mkfifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo (coreutils) must be installed to run this test");
    assert!(status.success(), "mkfifo failed");
    path
}

/// Runs the coordinator (bounded by `coord`'s 30 s) and expects a usage error whose
/// message contains every one of `wants`.
fn refused(args: &[&str], wants: &[&str]) {
    let o = coord(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    for want in wants {
        assert!(err.contains(want), "{args:?}: missing {want:?} in: {err}");
    }
}

#[test]
fn fifos_and_devices_as_inputs_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = mkfifo(dir.path(), "input");
    let fifo = fifo.to_str().unwrap();
    let tree = fixture("amd-discrete");
    let is_fifo = "is a FIFO (named pipe), not a regular file";
    refused(&["--config", fifo, "status"], &[fifo, is_fifo]);
    refused(
        &["--snapshot", fifo, "status"],
        &["--snapshot", fifo, is_fifo],
    );
    refused(
        &["--sysfs-root", fifo, "--no-nvml", "status"],
        &["--sysfs-root", fifo, "not a directory"],
    );
    let o = coord(&[
        "--sysfs-root",
        &tree,
        "--no-nvml",
        "plan",
        "tiny",
        "--gguf",
        fifo,
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(is_fifo), "{}", stderr(&o));

    let is_device = "/dev/zero is a character device, not a regular file";
    refused(&["--config", "/dev/zero", "status"], &[is_device]);
    refused(&["--snapshot", "/dev/zero", "status"], &[is_device]);
}

#[test]
fn oversized_and_deeply_nested_configs_are_refused_before_parsing() {
    let big = write_config(&format!("# {}\n", "x".repeat(2 << 20)));
    refused(
        &["--config", big.path().to_str().unwrap(), "status"],
        &["1048576-byte limit for a config file"],
    );
    // 100,000 levels took libyaml minutes (quadratic); the pre-scan refuses them.
    let deep = write_config(&format!("nodes: {}\n", "[".repeat(100_000)));
    refused(
        &["--config", deep.path().to_str().unwrap(), "status"],
        &["bad config", "nested deeper than 64 levels"],
    );
    let deep = write_config(&format!("policy: {}\n", "{a: ".repeat(100_000)));
    refused(
        &["--config", deep.path().to_str().unwrap(), "status"],
        &["nested deeper than 64 levels"],
    );
}

#[test]
fn a_snapshot_over_its_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("view.json");
    // A sparse file: no disk space, but 65 MiB as far as its size says.
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(65 << 20).unwrap();
    refused(
        &["--snapshot", path.to_str().unwrap(), "status"],
        &["67108864-byte limit for a snapshot"],
    );
}

#[test]
fn tiny_durations_that_would_panic_the_daemon_are_refused() {
    for key in [
        "check_interval",
        "stale_after",
        "ollama_timeout",
        "gateway_connect_timeout",
        "reservation_hold",
    ] {
        let cfg = write_config(&format!("auto_optimize: true\n{key}: 1e-300\n"));
        refused(
            &["--config", cfg.path().to_str().unwrap(), "daemon"],
            &["bad config", key, "1e-300"],
        );
    }
}
