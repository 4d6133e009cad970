//! `vramroute-reporter run` against a real redis-server and a real Ollama-shaped server.

use std::time::Duration;

use vramroute_ollama::testing::{Behaviour, FakeOllama};
use vramroute_registry::keys;

use crate::support::*;

/// The stats key of the node these tests run (SOLLOL's `sollol:gpu:{node_id}`).
fn stats_key() -> String {
    keys::gpu_stats_key("127.0.0.1:11434")
}

/// The registration key of the node these tests run (`sollol:rpc:node:{ip}:{port}`).
fn rpc_key() -> String {
    keys::rpc_node_key("127.0.0.1", 50052)
}
const WAIT: Duration = Duration::from_secs(10);

fn start(redis: &RedisServer, tree: &std::path::Path, extra: &[&str]) -> Reporter {
    let url = redis.url();
    let mut args = vec![
        "--redis-url",
        url.as_str(),
        "--advertise-ip",
        "127.0.0.1",
        "--sysfs-root",
        tree.to_str().unwrap(),
        "--no-nvml",
        "--interval",
        "0.3",
    ];
    args.extend_from_slice(extra);
    Reporter::start(&args)
}

fn stats_where(
    redis: &RedisServer,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    wait_for(WAIT, || get_json(redis, &stats_key()).filter(|v| pred(v)))
}

#[test]
fn publishes_both_keys_with_expiries_and_deregisters_on_sigterm() {
    let redis = RedisServer::start().unwrap();
    let mut r = start(&redis, &fixture("amd-discrete"), &["--no-ollama"]);
    let stats = stats_where(&redis, |_| true).unwrap_or_else(|| panic!("no stats: {}", r.log()));
    assert_eq!(stats["vendor"], "amd");
    assert_eq!(stats["node_id"], "127.0.0.1:11434");
    assert_eq!(stats["gpus"][0]["memory_total_mb"], 24560);
    assert_eq!(stats["gpus"][0]["memory_free_mb"], 23382);
    assert!(stats["timestamp"].is_f64());
    let reg = wait_for(WAIT, || get_json(&redis, &rpc_key())).expect("registration");
    assert_eq!(reg["device_config"], "cpu,rocm:0");
    assert_eq!(reg["gpu_vram_mb"], serde_json::json!([19648]));
    let t = ttl(&redis, &stats_key());
    assert!((100..=120).contains(&t), "stats ttl {t}");
    let t = ttl(&redis, &rpc_key());
    assert!((3500..=3600).contains(&t), "registration ttl {t}");
    // The stream got entries with SOLLOL's field encoding.
    let len: u64 = redis
        .cli(&["XLEN", keys::GPU_STATS_STREAM])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(len >= 1);

    let code = r.signal_and_wait("TERM", Duration::from_secs(2));
    assert_eq!(code, Some(0), "exit within 2 s with status 0: {}", r.log());
    assert!(get_json(&redis, &stats_key()).is_none(), "stats deleted");
    assert!(
        get_json(&redis, &rpc_key()).is_none(),
        "registration deleted"
    );
    assert!(r.log().contains("deregistered"), "{}", r.log());
}

#[test]
fn custom_ttls_are_honoured() {
    let redis = RedisServer::start().unwrap();
    let _r = start(
        &redis,
        &fixture("empty"),
        &[
            "--no-ollama",
            "--stats-ttl",
            "30",
            "--registration-ttl",
            "600",
        ],
    );
    let stats = stats_where(&redis, |_| true).expect("stats");
    assert_eq!(stats["vendor"], "none");
    assert_eq!(stats["gpus"], serde_json::json!([]));
    let t = ttl(&redis, &stats_key());
    assert!((20..=30).contains(&t), "stats ttl {t}");
    wait_for(WAIT, || get_json(&redis, &rpc_key())).expect("registration");
    let t = ttl(&redis, &rpc_key());
    assert!((590..=600).contains(&t), "registration ttl {t}");
}

#[test]
fn ollama_cpu_only_idle_and_unreachable() {
    let redis = RedisServer::start().unwrap();
    let ollama = FakeOllama::start().unwrap();
    let url = ollama.url();
    let mut r = start(&redis, &fixture("amd-discrete"), &["--ollama-url", &url]);

    // Idle Ollama: GPUs reported as probed.
    let s = stats_where(&redis, |v| {
        v["gpus"].as_array().is_some_and(|g| g.len() == 1)
    })
    .unwrap_or_else(|| panic!("{}", r.log()));
    assert_eq!(s["vendor"], "amd");

    // Models loaded, all on the CPU: legacy fields say CPU-only, hardware kept.
    ollama.set_loaded("llama3.1:8b", 5 << 30, 0);
    let s =
        stats_where(&redis, |v| v["gpu_offload"] == "off").unwrap_or_else(|| panic!("{}", r.log()));
    assert_eq!(s["vendor"], "none");
    assert_eq!(s["gpus"], serde_json::json!([]));
    assert_eq!(s["detected_gpus"][0]["memory_total_mb"], 24560);
    assert_eq!(s["loaded_models"][0]["name"], "llama3.1:8b");
    assert_eq!(s["loaded_models"][0]["size_vram_mb"], 0);
    let warnings = r.log().matches("GPU offload off").count();
    assert_eq!(warnings, 1, "one warning per state change: {}", r.log());

    // Partly on the GPU: on.
    ollama.set_loaded("qwen2.5-coder:7b", 4 << 30, 4 << 30);
    stats_where(&redis, |v| {
        v["gpu_offload"] == "on" && v["gpus"].as_array().is_some_and(|g| g.len() == 1)
    })
    .unwrap_or_else(|| panic!("{}", r.log()));

    // Garbage from Ollama: GPUs still reported.
    ollama.set_behaviour(Behaviour::Garbage);
    stats_where(&redis, |v| {
        v["gpu_offload"] == "unknown" && v["gpus"].as_array().is_some_and(|g| g.len() == 1)
    })
    .unwrap_or_else(|| panic!("{}", r.log()));

    // Unreachable: GPUs still reported, and the reporter keeps running.
    drop(ollama);
    stats_where(&redis, |v| {
        v["gpu_offload_reason"]
            .as_str()
            .is_some_and(|s| s.contains("not readable"))
            && v["gpus"].as_array().is_some_and(|g| g.len() == 1)
    })
    .unwrap_or_else(|| panic!("{}", r.log()));
    assert!(r.is_running());
}

#[test]
fn hanging_ollama_is_bounded_by_a_timeout() {
    let redis = RedisServer::start().unwrap();
    let ollama = FakeOllama::start().unwrap();
    ollama.set_behaviour(Behaviour::Hang);
    let url = ollama.url();
    let r = start(&redis, &fixture("amd-discrete"), &["--ollama-url", &url]);
    let s = stats_where(&redis, |_| true).unwrap_or_else(|| panic!("{}", r.log()));
    assert_eq!(s["gpus"].as_array().unwrap().len(), 1);
    assert!(
        s["gpu_offload_reason"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{s}"
    );
}

#[test]
fn vram_change_publishes_before_the_interval() {
    let redis = RedisServer::start().unwrap();
    let tree = fixture_copy("amd-discrete");
    let url = redis.url();
    let r = Reporter::start(&[
        "--redis-url",
        &url,
        "--advertise-ip",
        "127.0.0.1",
        "--sysfs-root",
        tree.path().to_str().unwrap(),
        "--no-nvml",
        "--no-ollama",
        "--interval",
        "60",
    ]);
    stats_where(&redis, |v| v["gpus"][0]["memory_free_mb"] == 23382)
        .unwrap_or_else(|| panic!("{}", r.log()));
    // A model of ~8 GiB lands on the GPU: used goes from 1177 MiB to 9369 MiB.
    let used = tree
        .path()
        .join("class/drm/card0/device/mem_info_vram_used");
    std::fs::write(&used, format!("{}\n", 9369u64 << 20)).unwrap();
    let s = wait_for(Duration::from_secs(5), || {
        get_json(&redis, &stats_key()).filter(|v| v["gpus"][0]["memory_free_mb"] == 15191)
    });
    assert!(s.is_some(), "no early publish: {}", r.log());
    assert!(r.log().contains("publishing now"), "{}", r.log());

    // A garbage value mid-run: that value becomes unknown, nothing else is lost.
    std::fs::write(&used, "garbage\n").unwrap();
    let s = stats_where(&redis, |v| {
        v["gpus"][0]
            .get("memory_used_mb")
            .is_none_or(|u| u.is_null())
    })
    .unwrap_or_else(|| panic!("{}", r.log()));
    assert_eq!(s["gpus"][0]["memory_total_mb"], 24560);
}

#[test]
fn survives_redis_restart_and_logs_once_per_outage() {
    let mut redis = RedisServer::start().unwrap();
    let mut r = start(&redis, &fixture("amd-discrete"), &["--no-ollama"]);
    stats_where(&redis, |_| true).unwrap_or_else(|| panic!("{}", r.log()));
    redis.stop();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(r.is_running(), "must not exit while Redis is down");
    redis.restart().unwrap();
    // Re-published (stats and registration) within an interval or two of Redis returning.
    let back = wait_for(WAIT, || {
        get_json(&redis, &stats_key()).and(get_json(&redis, &rpc_key()))
    });
    assert!(back.is_some(), "not re-published: {}", r.log());
    let log = r.log();
    assert_eq!(log.matches("cannot publish").count(), 1, "{log}");
    assert!(log.contains("Redis reachable again"), "{log}");
    assert!(r.is_running());
}

#[test]
fn wrong_password_is_a_clear_error_without_the_password() {
    let redis = RedisServer::builder()
        .password("right-one")
        .start()
        .unwrap();
    let url = redis.url().replace("right-one", "wrong-one");
    let root = fixture("empty");
    let out = run_to_end(&[
        "run",
        "--once",
        "--redis-url",
        &url,
        "--no-ollama",
        "--no-nvml",
        "--sysfs-root",
        root.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused access"), "{err}");
    assert!(!err.contains("wrong-one"), "password leaked: {err}");

    // The right password works, and --once prints the report.
    let out = run_to_end(&[
        "run",
        "--once",
        "--redis-url",
        &redis.url(),
        "--no-ollama",
        "--no-nvml",
        "--advertise-ip",
        "127.0.0.1",
        "--sysfs-root",
        root.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ggml-rpc-server --host 127.0.0.1 --port 50052 --device CPU"),
        "{text}"
    );
    assert!(get_json(&redis, &stats_key()).is_some());
}

#[test]
fn the_password_can_come_from_a_file_or_redis_password_not_the_url() {
    let redis = RedisServer::builder()
        .password("file-pass:/@1")
        .start()
        .unwrap();
    let url = format!("redis://127.0.0.1:{}", redis.port().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pass");
    std::fs::write(&file, "file-pass:/@1\n").unwrap();
    let root = fixture("empty");
    let base = [
        "run",
        "--once",
        "--redis-url",
        &url,
        "--no-ollama",
        "--no-nvml",
        "--advertise-ip",
        "127.0.0.1",
        "--sysfs-root",
        root.to_str().unwrap(),
    ];
    let file = file.to_str().unwrap();
    let mut args: Vec<&str> = base.to_vec();
    args.extend(["--redis-password-file", file]);
    let out = run_to_end(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(get_json(&redis, &stats_key()).is_some());
    let out = run_to_end_with_env(&base, &[("REDIS_PASSWORD", "file-pass:/@1")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A password in the URL and in a file: refused, neither echoed.
    let twice = format!("redis://:url-pass@127.0.0.1:{}", redis.port().unwrap());
    args[3] = &twice;
    let out = run_to_end(&args);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already carries a password"), "{err}");
    assert!(
        !err.contains("url-pass") && !err.contains("file-pass"),
        "{err}"
    );
}

#[test]
fn metrics_endpoint_exports_gpu_series() {
    let redis = RedisServer::start().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let r = start(
        &redis,
        &fixture("amd-discrete"),
        &["--no-ollama", "--metrics-addr", &addr],
    );
    stats_where(&redis, |_| true).unwrap_or_else(|| panic!("{}", r.log()));
    let body = wait_for(WAIT, || {
        http_get(port, "/metrics").filter(|b| b.contains("publishes_total{result=\"ok\"}"))
    })
    .unwrap_or_else(|| panic!("{}", r.log()));
    assert!(body.contains("vramroute_gpu_memory_total_bytes{node=\"127.0.0.1:11434\",gpu=\"amd:0\",uuid=\"6a1c2f3e8b9d0a47\",pci_bus_id=\"0000:03:00.0\",vendor=\"amd\",name=\"AMD Radeon RX 7900 XTX\"} 25753026560"), "{body}");
    assert!(
        body.contains("vramroute_gpu_temperature_celsius{"),
        "{body}"
    );
    assert!(
        body.contains("vramroute_probe_duration_seconds_bucket"),
        "{body}"
    );
}

#[test]
fn bad_config_and_values_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r.yaml");
    std::fs::write(&cfg, "interval: 5\nredis_urll: redis://x\n").unwrap();
    let out = run_to_end(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("redis_urll"));
    let out = run_to_end(&[
        "run",
        "--interval",
        "-3",
        "--redis-url",
        "redis://127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn starts_while_redis_is_down_and_publishes_when_it_appears() {
    let mut redis = RedisServer::start().unwrap();
    redis.stop();
    let mut r = start(&redis, &fixture("amd-discrete"), &["--no-ollama"]);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        r.is_running(),
        "must not exit while Redis is down: {}",
        r.log()
    );
    redis.restart().unwrap();
    let back = wait_for(WAIT, || {
        get_json(&redis, &stats_key()).and(get_json(&redis, &rpc_key()))
    });
    assert!(back.is_some(), "not published: {}", r.log());
    let log = r.log();
    assert_eq!(log.matches("cannot publish").count(), 1, "{log}");
}

#[test]
fn journal_line_is_info_when_values_move_and_debug_otherwise() {
    let redis = RedisServer::start().unwrap();
    let tree = fixture_copy("amd-discrete");
    let url = redis.url();
    let r = Reporter::start(&[
        "--log-level",
        "info,vramroute_reporter=debug",
        "--redis-url",
        &url,
        "--advertise-ip",
        "127.0.0.1",
        "--sysfs-root",
        tree.path().to_str().unwrap(),
        "--no-nvml",
        "--no-ollama",
        "--interval",
        "0.3",
    ]);
    let before = "GPU 0: AMD Radeon RX 7900 XTX | VRAM: 1177/24560MB | Util: 4% | Temp: 41°C";
    let after = "GPU 0: AMD Radeon RX 7900 XTX | VRAM: 9369/24560MB | Util: 4% | Temp: 41°C";
    // (level, line) of every journal line for `text` so far.
    let lines = |text: &str| -> Vec<String> {
        r.log()
            .lines()
            .filter(|l| l.contains(text))
            .map(str::to_owned)
            .collect()
    };
    let is = |line: &str, level: &str| line.contains(level);
    // The first report at info, then unchanged intervals at debug.
    let seen = wait_for(WAIT, || {
        let l = lines(before);
        (l.len() >= 3).then_some(l)
    })
    .unwrap_or_else(|| panic!("{}", r.log()));
    assert!(is(&seen[0], "INFO"), "{seen:#?}");
    assert!(seen[1..].iter().all(|l| is(l, "DEBUG")), "{seen:#?}");

    // ~8 GiB lands on the GPU (more than the 512 MiB threshold): one info line with the
    // new values, then debug again.
    let used = tree
        .path()
        .join("class/drm/card0/device/mem_info_vram_used");
    std::fs::write(&used, format!("{}\n", 9369u64 << 20)).unwrap();
    let moved = wait_for(WAIT, || {
        let l = lines(after);
        (l.len() >= 3).then_some(l)
    })
    .unwrap_or_else(|| panic!("{}", r.log()));
    assert!(is(&moved[0], "INFO"), "{moved:#?}");
    assert!(moved[1..].iter().all(|l| is(l, "DEBUG")), "{moved:#?}");
    assert_eq!(
        moved.iter().filter(|l| is(l, "INFO")).count(),
        1,
        "{moved:#?}"
    );
}

#[test]
fn journal_line_is_quiet_at_the_default_level_until_values_move() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let tree = fixture("amd-discrete");
    let r = Reporter::start(&[
        "--redis-url",
        &url,
        "--advertise-ip",
        "127.0.0.1",
        "--sysfs-root",
        tree.to_str().unwrap(),
        "--no-nvml",
        "--no-ollama",
        "--interval",
        "0.2",
    ]);
    // Several publishes happen (the stream grows), yet the line is logged once.
    let published = wait_for(WAIT, || {
        let n: u64 = redis
            .cli(&["XLEN", keys::GPU_STATS_STREAM])
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (n >= 4).then_some(n)
    });
    assert!(published.is_some(), "{}", r.log());
    let log = r.log();
    assert_eq!(
        log.matches("GPU 0: AMD Radeon RX 7900 XTX | VRAM: 1177/24560MB | Util: 4% | Temp: 41°C")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn cpu_load_comes_from_the_proc_root_never_from_this_machine_for_a_fixture() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let tree = fixture("amd-discrete");
    let once = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--once",
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
        let out = run_to_end(&args);
        assert!(out.status.success(), "{out:?}");
        get_json(&redis, &stats_key()).unwrap()
    };
    // A fixture tree without proc/: the load is unknown (omitted), not this machine's.
    assert!(once(&[]).get("cpu_load_percent").is_none());

    // --proc-root with a loadavg: measured (1-minute load per CPU, capped at 100).
    let proc = tempfile::tempdir().unwrap();
    let proc_root = proc.path().to_str().unwrap();
    std::fs::write(proc.path().join("loadavg"), "0.00 0.10 0.20 1/345 6789\n").unwrap();
    assert_eq!(once(&["--proc-root", proc_root])["cpu_load_percent"], 0.0);
    std::fs::write(
        proc.path().join("loadavg"),
        "100000.00 0.10 0.20 1/345 6789\n",
    )
    .unwrap();
    assert_eq!(once(&["--proc-root", proc_root])["cpu_load_percent"], 100.0);
    // Garbage: unknown again, and the rest is published.
    std::fs::write(proc.path().join("loadavg"), "garbage\n").unwrap();
    let s = once(&["--proc-root", proc_root]);
    assert!(s.get("cpu_load_percent").is_none(), "{s}");
    assert_eq!(s["gpus"][0]["memory_total_mb"], 24560);
}
