//! Faults the reporter must ride out (#14 items 5 and 10): a FIFO in sysfs, a frozen
//! Redis at SIGTERM, Redis coming back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vramroute_registry::keys;

use crate::support::*;

const NODE: &str = "127.0.0.1:11434";
const WAIT: Duration = Duration::from_secs(15);

fn stats(redis: &RedisServer) -> Option<serde_json::Value> {
    get_json(redis, &keys::gpu_stats_key(NODE))
}

fn registration(redis: &RedisServer) -> Option<serde_json::Value> {
    get_json(redis, &keys::rpc_node_key("127.0.0.1", 50052))
}

fn start(redis: &RedisServer, tree: &Path, extra: &[&str]) -> Reporter {
    let url = redis.url();
    let mut args = vec![
        "--redis-url",
        url.as_str(),
        "--advertise-ip",
        "127.0.0.1",
        "--sysfs-root",
        tree.to_str().unwrap(),
        "--no-nvml",
        "--no-ollama",
    ];
    args.extend_from_slice(extra);
    Reporter::start(&args)
}

/// The amd-discrete fixture's GPU directory inside a copy of the tree.
fn gpu_dir(tree: &Path) -> PathBuf {
    tree.join("devices/pci0000:00/0000:00:01.1/0000:01:00.0/0000:02:00.0/0000:03:00.0")
}

/// A counter's value in the reporter's /metrics text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// The redis-server's process id (from `INFO server`).
fn redis_pid(redis: &RedisServer) -> String {
    let info = redis.cli(&["INFO", "server"]).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .expect("process_id in INFO")
        .trim()
        .to_owned()
}

fn kill(sig: &str, pid: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid)
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

#[test]
fn a_fifo_in_sysfs_does_not_stop_publishing_metrics_or_sigterm() {
    // A FIFO nobody writes would block a plain open() forever. The probe opens sysfs
    // files without blocking and reads regular files only, so the value becomes
    // unknown and the reporter carries on with fresh records. (A read that blocks
    // anyway, e.g. a wedged driver, is cut by the probe timeout: the probe worker's
    // unit test drives that with a backend that never answers.)
    let redis = RedisServer::start().unwrap();
    let tree = fixture_copy("amd-discrete");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut r = start(
        &redis,
        tree.path(),
        &[
            "--interval",
            "1",
            "--probe-timeout",
            "0.5",
            "--metrics-addr",
            &addr,
        ],
    );
    let first = wait_for(WAIT, || stats(&redis)).unwrap_or_else(|| panic!("{}", r.log()));
    assert!(first.get("probe_stale").is_none(), "{first}");
    assert!(first["gpus"][0]["utilization_percent"].is_u64(), "{first}");

    // gpu_busy_percent becomes a FIFO nobody writes.
    let busy = gpu_dir(tree.path()).join("gpu_busy_percent");
    std::fs::remove_file(&busy).unwrap();
    let made = Command::new("mkfifo").arg(&busy).status().unwrap();
    assert!(made.success(), "mkfifo");

    // Fresh records go on, with utilization unknown and everything else kept.
    let t0 = first["timestamp"].as_f64().unwrap();
    let after = wait_for(WAIT, || {
        stats(&redis).filter(|s| {
            s["timestamp"].as_f64().is_some_and(|t| t > t0)
                && s["gpus"][0]
                    .get("utilization_percent")
                    .is_none_or(|u| u.is_null())
        })
    })
    .unwrap_or_else(|| panic!("no fresh record without utilization: {}", r.log()));
    assert!(after.get("probe_stale").is_none(), "{after}");
    assert_eq!(after["gpus"][0]["memory_total_mb"], 24560, "{after}");
    let published = |text: &str| metric(text, "vramroute_publishes_total{result=\"ok\"}");
    let text = http_get(port, "/metrics").expect("/metrics answers");
    let before = published(&text).expect("publish counter");
    assert_eq!(metric(&text, "vramroute_probe_stuck"), Some(0.0), "{text}");
    let more = wait_for(WAIT, || {
        http_get(port, "/metrics")
            .and_then(|t| published(&t))
            .filter(|n| *n >= before + 2.0)
    });
    assert!(more.is_some(), "publishing stopped: {}", r.log());
    assert!(registration(&redis).is_some());

    // SIGTERM: out within 2 s, records removed.
    let start = Instant::now();
    let code = r.signal_and_wait("TERM", Duration::from_secs(2));
    assert_eq!(code, Some(0), "exit within 2 s: {}", r.log());
    eprintln!(
        "figure: SIGTERM to exit with a FIFO in sysfs: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert!(stats(&redis).is_none(), "stats removed");
    assert!(registration(&redis).is_none(), "registration removed");
}

#[test]
fn sigterm_with_redis_frozen_exits_within_two_seconds() {
    let redis = RedisServer::start().unwrap();
    let mut r = start(&redis, &fixture("amd-discrete"), &["--interval", "0.5"]);
    wait_for(WAIT, || stats(&redis)).unwrap_or_else(|| panic!("{}", r.log()));
    let pid = redis_pid(&redis);
    kill("STOP", &pid);
    // Let the reporter get stuck in a publish to the frozen server.
    std::thread::sleep(Duration::from_millis(1200));
    let start = Instant::now();
    let code = r.signal_and_wait("TERM", Duration::from_secs(2));
    let took = start.elapsed();
    kill("CONT", &pid);
    assert_eq!(
        code,
        Some(0),
        "exit within 2 s with Redis frozen: {}",
        r.log()
    );
    assert!(
        r.log().contains("deregistering timed out"),
        "a bounded attempt, then exit: {}",
        r.log()
    );
    eprintln!(
        "figure: SIGTERM to exit with Redis frozen: {:.2} s",
        took.as_secs_f64()
    );
}

#[test]
fn republishes_within_one_interval_after_redis_returns() {
    let mut redis = RedisServer::start().unwrap();
    let mut r = start(&redis, &fixture("amd-discrete"), &["--interval", "5"]);
    wait_for(WAIT, || stats(&redis)).unwrap_or_else(|| panic!("{}", r.log()));
    redis.stop();
    // Down long enough for failed publishes and the reconnect backoff to grow.
    std::thread::sleep(Duration::from_secs(7));
    assert!(r.is_running());
    redis.restart().unwrap();
    let back_at = Instant::now();
    let back = wait_for(Duration::from_secs(5), || {
        stats(&redis).and(registration(&redis))
    });
    let took = back_at.elapsed();
    assert!(
        back.is_some(),
        "not republished within one interval (5 s) of Redis returning: {}",
        r.log()
    );
    eprintln!(
        "figure: republished {:.2} s after Redis returned (interval 5 s)",
        took.as_secs_f64()
    );
}
