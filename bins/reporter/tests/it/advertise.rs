//! The advertised address on the machine that runs Redis (the route to Redis is
//! loopback): a real redis-server, a real reporter, an injected interface list.

use std::time::Duration;

use vramroute_ollama::testing::FakeOllama;
use vramroute_registry::keys;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);

/// A reporter with a loopback Redis URL, no `--advertise-ip`, and `interfaces` as the
/// machine's interface list; its Ollama is a loopback fake.
fn start(redis: &RedisServer, ollama: &FakeOllama, interfaces: &str) -> Reporter {
    let url = redis.url();
    let tree = fixture("amd-discrete");
    let ollama_url = ollama.url();
    Reporter::start(&[
        "--redis-url",
        url.as_str(),
        "--interfaces",
        interfaces,
        "--ollama-url",
        ollama_url.as_str(),
        "--sysfs-root",
        tree.to_str().unwrap(),
        "--no-nvml",
        "--interval",
        "0.3",
    ])
}

#[test]
fn loopback_route_advertises_a_non_loopback_interface_address() {
    let redis = RedisServer::start().unwrap();
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
    let ollama = FakeOllama::start().unwrap();
    let r = start(&redis, &ollama, "lo=127.0.0.1,eth0=192.168.77.5");

    let stats = wait_for(WAIT, || {
        get_json(&redis, &keys::gpu_stats_key("192.168.77.5:11434"))
    })
    .unwrap_or_else(|| panic!("no stats under 192.168.77.5: {}", r.log()));
    assert_eq!(stats["node_id"], "192.168.77.5:11434");
    assert_eq!(stats["rpc_host"], "192.168.77.5");
    // The address is a label: the reporter still talks to its loopback Ollama only.
    assert_eq!(stats["ollama_url"], ollama.url());
    assert!(ollama.stats("/api/ps").received >= 1);
    let reg = wait_for(WAIT, || {
        get_json(&redis, &keys::rpc_node_key("192.168.77.5", 50052))
    });
    assert!(
        reg.is_some(),
        "registration under 192.168.77.5: {}",
        r.log()
    );
    assert!(
        get_json(&redis, &keys::gpu_stats_key("127.0.0.1:11434")).is_none(),
        "nothing published under loopback"
    );
    let log = r.log();
    assert!(log.contains("advertising 192.168.77.5 of eth0"), "{log}");
    assert!(!log.contains("WARN"), "{log}");
}

#[test]
fn only_loopback_is_advertised_with_a_warning() {
    let redis = RedisServer::start().unwrap();
    let ollama = FakeOllama::start().unwrap();
    let r = start(&redis, &ollama, "lo=127.0.0.1,lo=::1");

    let stats = wait_for(WAIT, || {
        get_json(&redis, &keys::gpu_stats_key("127.0.0.1:11434"))
    })
    .unwrap_or_else(|| panic!("no stats under 127.0.0.1: {}", r.log()));
    assert_eq!(stats["rpc_host"], "127.0.0.1");
    let log = r.log();
    let warning = log
        .lines()
        .find(|l| l.contains("no non-loopback address"))
        .unwrap_or_else(|| panic!("no warning: {log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("--advertise-ip"), "{warning}");
}

#[test]
fn advertise_ip_overrides_the_interfaces() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let tree = fixture("amd-discrete");
    let out = run_to_end(&[
        "run",
        "--once",
        "--redis-url",
        url.as_str(),
        "--interfaces",
        "lo=127.0.0.1,eth0=192.168.77.5",
        "--advertise-ip",
        "127.0.0.9",
        "--no-ollama",
        "--sysfs-root",
        tree.to_str().unwrap(),
        "--no-nvml",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(get_json(&redis, &keys::gpu_stats_key("127.0.0.9:11434")).is_some());
    assert!(get_json(&redis, &keys::gpu_stats_key("192.168.77.5:11434")).is_none());
}

#[test]
fn a_bad_interface_list_is_a_usage_error() {
    let tree = fixture("amd-discrete");
    let out = run_to_end(&[
        "run",
        "--once",
        "--redis-url",
        "redis://127.0.0.1:1",
        "--interfaces",
        "eth0",
        "--no-ollama",
        "--sysfs-root",
        tree.to_str().unwrap(),
        "--no-nvml",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=IP"));
}
