//! Local inputs that would block forever or never end (a FIFO, `/dev/zero`), deeply
//! nested configs and out-of-range numbers: refused at once, exit status 2, with a
//! message naming the path or setting. No Redis is needed: settings are checked first.

use std::path::{Path, PathBuf};

use crate::support::*;

fn mkfifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo (coreutils) must be installed to run this test");
    assert!(status.success(), "mkfifo failed");
    path
}

/// Runs the reporter (bounded by `run_to_end`'s 20 s) and expects a usage error whose
/// message contains every one of `wants`.
fn refused(args: &[&str], wants: &[&str]) {
    let o = run_to_end(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    for want in wants {
        assert!(err.contains(want), "{args:?}: missing {want:?} in: {err}");
    }
}

fn config(dir: &Path, text: &str) -> String {
    let path = dir.join("reporter.yaml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

const NO_REDIS: &str = "redis://127.0.0.1:1";

#[test]
fn fifos_and_devices_as_inputs_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = mkfifo(dir.path(), "input");
    let fifo = fifo.to_str().unwrap();
    refused(
        &["run", "--redis-url", NO_REDIS, "--config", fifo],
        &[fifo, "is a FIFO (named pipe), not a regular file"],
    );
    refused(
        &["run", "--redis-url", NO_REDIS, "--config", "/dev/zero"],
        &["/dev/zero is a character device, not a regular file"],
    );
    refused(
        &["probe", "--no-nvml", "--sysfs-root", fifo],
        &[
            "--sysfs-root",
            fifo,
            "is a FIFO (named pipe), not a directory",
        ],
    );
}

#[test]
fn nested_configs_and_out_of_range_numbers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixture("amd-discrete");
    let root = root.to_str().unwrap();
    for (text, wants) in [
        (
            format!("node_id: {}\n", "[".repeat(100_000)),
            &["nested deeper than 64 levels"][..],
        ),
        ("interval: 1e-300\n".to_owned(), &["--interval"][..]),
        ("interval: .nan\n".to_owned(), &["--interval"][..]),
        ("stats_ttl: 0\n".to_owned(), &["--stats-ttl"][..]),
        ("reserve: .nan\n".to_owned(), &["--reserve"][..]),
        (
            "change_threshold_mb: 18446744073709551615\n".to_owned(),
            &["--change-threshold-mb"][..],
        ),
        ("rpc_port: 0\n".to_owned(), &["--rpc-port 0"][..]),
    ] {
        let path = config(dir.path(), &text);
        let mut args = vec![
            "run",
            "--redis-url",
            NO_REDIS,
            "--no-nvml",
            "--sysfs-root",
            root,
        ];
        args.extend(["--config", &path]);
        refused(&args, wants);
    }
}
