//! Hostile registry contents against the real binary (issue #14 item 3): a huge junk value
//! beside a good SOLLOL node, and a flood of bogus index members. `status` answers with
//! the good node and stays small; the daemon starts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vramroute_registry::keys;

use super::support::*;

/// Size of the junk value: 100 MiB by default (a CI machine holds it twice: Redis and,
/// before the fix, the coordinator); `VRAMROUTE_JUNK_VALUE_MIB=400` runs the issue's
/// 400 MB.
fn junk_mib() -> u64 {
    std::env::var("VRAMROUTE_JUNK_VALUE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

/// Bogus index members: 200,000 by default; `VRAMROUTE_BOGUS_INDEX_MEMBERS=1000000` runs
/// the million (the fill alone takes about 15 s on a loaded 2-core machine).
fn bogus_members() -> u64 {
    std::env::var("VRAMROUTE_BOGUS_INDEX_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// Runs the coordinator under GNU time: its output and its peak RSS in KiB.
fn coord_with_max_rss(args: &[&str]) -> (std::process::Output, u64) {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "this test measures peak RSS with GNU time: install it (apt-get install time; \
         scripts/test.sh does)"
    );
    let out = Command::new(time)
        .arg("-f")
        .arg("vramroute-test-max-rss-kib %M")
        .arg(BIN)
        .args(args)
        .env_remove("SOLLOL_REDIS_URL")
        .env_remove("VRAMROUTE_CONFIG")
        .env_remove("VRAMROUTE_LOG")
        .env("OLLAMA_URL", "http://127.0.0.1:9")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let kib = err
        .lines()
        .find_map(|l| l.strip_prefix("vramroute-test-max-rss-kib "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from GNU time: {err}"));
    (out, kib)
}

#[test]
fn status_stays_small_beside_a_huge_junk_value() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let id = write_sollol_node(&redis, 11434, 50052, now());
    let bytes = junk_mib() << 20;
    // Made by the server (SETRANGE pads with zeros): the test never holds the value.
    let junk = keys::gpu_stats_key("junk:11434");
    for key in [&junk, &keys::rpc_node_key("10.9.9.9", 50052)] {
        redis
            .cli(&["SETRANGE", key, &(bytes - 1).to_string(), "x"])
            .unwrap();
    }
    let (out, kib) = coord_with_max_rss(&["--redis-url", &url, "status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(node(&view, &id).is_some(), "good node kept: {view}");
    assert_eq!(view["nodes"].as_array().unwrap().len(), 1, "{view}");
    // The operator is told which key was skipped and why.
    let err = stderr(&out);
    assert!(err.contains(&junk) && err.contains("not read"), "{err}");
    assert!(
        kib < 64 * 1024,
        "status peaked at {kib} KiB beside a {} MiB value",
        junk_mib()
    );
}

#[test]
fn a_flood_of_bogus_index_members_stops_neither_status_nor_the_daemon() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let id = write_sollol_node(&redis, 11434, 50052, now());
    redis
        .add_bogus_members(keys::INDEX_GPU, bogus_members(), "4102444800000")
        .unwrap();

    let view = coord_json(&["--redis-url", &url, "status", "--json"]);
    assert!(node(&view, &id).is_some(), "{view}");
    assert_eq!(view["nodes"].as_array().unwrap().len(), 1, "{view}");

    let port = free_port();
    let cfg = write_config(&format!(
        "redis_url: {url}\ngateway_listen: off\nlisten: 127.0.0.1:{port}\n"
    ));
    let daemon = Proc::spawn(
        Path::new(BIN),
        &["--config", cfg.path().to_str().unwrap(), "daemon"],
    );
    let up = wait_for(Duration::from_secs(15), || {
        http("GET", port, "/healthz", None)
    });
    assert!(up.is_some(), "daemon did not start: {}", daemon.log());
    let nodes = get_json(port, "/v1/nodes", 200);
    assert!(node(&nodes, &id).is_some(), "{nodes}");
}
