//! `run --rpc-server`: the reporter runs, restarts and stops a stand-in `ggml-rpc-server`
//! (a shell script on a private `PATH` that records each start and sleeps or exits).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vramroute_registry::keys;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);

/// A directory holding a stand-in rpc-server; it kills whatever starts of it are left.
struct StandIn {
    dir: tempfile::TempDir,
    record: PathBuf,
}

impl StandIn {
    /// `ggml-rpc-server` (or `name`) that appends `PID ARGS...` to a record file, then
    /// runs `then` (`exec sleep 20`, `sleep 0.2; exit 3`).
    fn new(name: &str, then: &str) -> StandIn {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("starts.txt");
        let script = dir.path().join(name);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$$ $*\" >> '{}'\necho \"stand-in up on $*\" >&2\n{then}\n",
                record.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        StandIn { dir, record }
    }

    /// A `PATH` with only this directory and the system's.
    fn path_var(&self) -> String {
        format!("{}:/usr/bin:/bin", self.dir.path().display())
    }

    /// One `(pid, args)` per start so far.
    fn starts(&self) -> Vec<(u32, String)> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (pid, args) = l.split_once(' ')?;
                Some((pid.parse().ok()?, args.to_string()))
            })
            .collect()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        // A failed test may leave a stand-in sleeping: kill it (only if that pid is
        // still our `sleep`, never a reused pid of something else).
        for (pid, _) in self.starts() {
            if is_our_sleep(pid) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

fn is_our_sleep(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.starts_with(b"sleep\0") || c.starts_with(b"/bin/sh\0"))
}

/// Running (not a zombie) and still our stand-in.
fn alive(pid: u32) -> bool {
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = state
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z'));
    running && is_our_sleep(pid)
}

fn stats_key(ip: &str) -> String {
    keys::gpu_stats_key(&format!("{ip}:11434"))
}

fn start(
    redis: &RedisServer,
    tree: &Path,
    ip: &str,
    rpc_port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Reporter {
    let url = redis.url();
    let port = rpc_port.to_string();
    let mut args = vec![
        "--redis-url",
        url.as_str(),
        "--advertise-ip",
        ip,
        "--rpc-port",
        &port,
        "--sysfs-root",
        tree.to_str().unwrap(),
        "--no-nvml",
        "--no-ollama",
        "--interval",
        "0.3",
    ];
    args.extend_from_slice(extra);
    Reporter::start_with_env(&args, env)
}

/// The published `rpc_server` field, once `pred` holds for it.
fn rpc_field(
    redis: &RedisServer,
    ip: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    wait_for(WAIT, || {
        get_json(redis, &stats_key(ip))
            .map(|v| v["rpc_server"].clone())
            .filter(|v| pred(v))
    })
}

#[test]
fn starts_the_offers_command_and_stops_it_before_deregistering() {
    let redis = RedisServer::start().unwrap();
    let stand_in = StandIn::new("ggml-rpc-server", "exec sleep 20");
    let path = stand_in.path_var();
    let port = free_port();
    let ip = "127.0.0.31";
    // `auto` from the environment variable.
    let mut r = start(
        &redis,
        &fixture("amd-discrete"),
        ip,
        port,
        &[],
        &[("PATH", &path), ("VRAMROUTE_RPC_SERVER", "auto")],
    );
    let starts = wait_for(WAIT, || Some(stand_in.starts()).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| panic!("stand-in never started: {}", r.log()));
    let (pid, args) = &starts[0];
    // The offer's command: the advertise IP, the rpc port, CPU plus the HIP device.
    assert_eq!(
        args,
        &format!("--host {ip} --port {port} --device CPU,ROCm0"),
        "{}",
        r.log()
    );
    let field = rpc_field(&redis, ip, |v| v["state"] == "running")
        .unwrap_or_else(|| panic!("no running state published: {}", r.log()));
    assert_eq!(field["pid"], serde_json::json!(pid));
    assert_eq!(field["restarts"], 0);
    let binary = field["binary"].as_str().unwrap();
    assert!(binary.ends_with("/ggml-rpc-server"), "{field}");
    // Its output reaches the reporter's log, prefixed.
    wait_for(WAIT, || {
        r.log().contains("rpc-server: stand-in up on").then_some(())
    })
    .unwrap_or_else(|| panic!("output not logged: {}", r.log()));
    assert!(alive(*pid));

    let code = r.signal_and_wait("TERM", Duration::from_secs(8));
    assert_eq!(code, Some(0), "exit 0 after SIGTERM: {}", r.log());
    assert!(!alive(*pid), "the rpc-server outlived the reporter");
    let log = r.log();
    let stopped = log.find("rpc-server stopped").expect(&log);
    let deregistered = log.find("deregistered").expect(&log);
    assert!(stopped < deregistered, "stop before deregistering: {log}");
    assert!(get_json(&redis, &stats_key(ip)).is_none(), "stats deleted");
    assert_eq!(stand_in.starts().len(), 1, "no restart on shutdown: {log}");
}

#[test]
fn an_rpc_server_ignoring_sigterm_still_lets_the_reporter_deregister_within_two_seconds() {
    let redis = RedisServer::start().unwrap();
    // Ignored signals stay ignored across exec: this `sleep` ignores SIGTERM.
    let stand_in = StandIn::new("ggml-rpc-server", "trap '' TERM\nexec sleep 20");
    let path = stand_in.path_var();
    let port = free_port();
    let ip = "127.0.0.32";
    let mut r = start(
        &redis,
        &fixture("amd-discrete"),
        ip,
        port,
        &[],
        &[("PATH", &path), ("VRAMROUTE_RPC_SERVER", "auto")],
    );
    rpc_field(&redis, ip, |v| v["state"] == "running")
        .unwrap_or_else(|| panic!("no running state published: {}", r.log()));
    let pid = stand_in.starts()[0].0;
    let start = std::time::Instant::now();
    let code = r.signal_and_wait("TERM", Duration::from_secs(2));
    let took = start.elapsed();
    assert_eq!(code, Some(0), "exit within 2 s: {}", r.log());
    eprintln!("figure: SIGTERM to exit with an rpc-server ignoring SIGTERM: {took:.2?}");
    let log = r.log();
    assert!(log.contains("SIGKILL"), "{log}");
    assert!(log.contains("deregistered"), "{log}");
    assert!(!alive(pid), "the rpc-server outlived the reporter");
    assert!(get_json(&redis, &stats_key(ip)).is_none(), "stats deleted");
}

#[test]
fn an_exiting_rpc_server_is_restarted_with_backoff() {
    let redis = RedisServer::start().unwrap();
    let stand_in = StandIn::new("my-rpc-server", "sleep 0.2; exit 3");
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("r.yaml");
    // An explicit path, from the config file.
    let binary = stand_in.dir.path().join("my-rpc-server");
    std::fs::write(&cfg, format!("rpc_server: {}\n", binary.display())).unwrap();
    let ip = "127.0.0.32";
    let mut r = start(
        &redis,
        &fixture("empty"),
        ip,
        free_port(),
        &["--config", cfg.to_str().unwrap()],
        &[],
    );
    // Starts at ~0 s, ~1.2 s, ~3.4 s (backoff 1 s, 2 s).
    let starts = wait_for(WAIT, || Some(stand_in.starts()).filter(|s| s.len() >= 3))
        .unwrap_or_else(|| panic!("not restarted twice: {}", r.log()));
    assert!(starts.iter().all(|(_, a)| a.ends_with("--device CPU")));
    let field = rpc_field(&redis, ip, |v| v["restarts"].as_u64() >= Some(2))
        .unwrap_or_else(|| panic!("restarts not published: {}", r.log()));
    assert_eq!(field["binary"], binary.display().to_string());
    assert!(
        field["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains("exit status: 3")),
        "{field}"
    );
    let log = r.log();
    assert!(log.contains("rpc-server exited (exit status: 3)"), "{log}");
    assert!(log.contains("restarting in 1 s"), "{log}");
    assert!(log.contains("restarting in 2 s"), "{log}");
    assert!(log.contains("restarted rpc-server"), "{log}");
    let code = r.signal_and_wait("TERM", Duration::from_secs(8));
    assert_eq!(code, Some(0), "{}", r.log());
    for (pid, _) in stand_in.starts() {
        assert!(!alive(pid), "stand-in {pid} left running");
    }
}

#[test]
fn off_starts_nothing() {
    let redis = RedisServer::start().unwrap();
    let stand_in = StandIn::new("ggml-rpc-server", "exec sleep 20");
    let path = stand_in.path_var();
    let ip = "127.0.0.33";
    // The flag beats the environment.
    let mut r = start(
        &redis,
        &fixture("empty"),
        ip,
        free_port(),
        &["--rpc-server", "off"],
        &[("PATH", &path), ("VRAMROUTE_RPC_SERVER", "auto")],
    );
    let field = rpc_field(&redis, ip, |_| true).unwrap_or_else(|| panic!("{}", r.log()));
    assert_eq!(field, serde_json::json!({"state": "off", "restarts": 0}));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        stand_in.starts().is_empty(),
        "started with off: {}",
        r.log()
    );
    assert_eq!(r.signal_and_wait("TERM", Duration::from_secs(5)), Some(0));
    assert!(!r.log().contains("rpc-server"), "{}", r.log());
}

#[test]
fn auto_without_a_binary_says_so_and_keeps_reporting() {
    let redis = RedisServer::start().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let path = format!("{}:/usr/bin:/bin", empty.path().display());
    let ip = "127.0.0.34";
    let mut r = start(
        &redis,
        &fixture("amd-discrete"),
        ip,
        free_port(),
        &["--rpc-server", "auto"],
        &[("PATH", &path)],
    );
    let field = rpc_field(&redis, ip, |v| v["state"] == "missing")
        .unwrap_or_else(|| panic!("missing not published: {}", r.log()));
    assert!(field.get("pid").is_none(), "{field}");
    let first = get_json(&redis, &stats_key(ip)).unwrap()["timestamp"]
        .as_f64()
        .unwrap();
    // Still publishing.
    wait_for(WAIT, || {
        get_json(&redis, &stats_key(ip))
            .filter(|v| v["timestamp"].as_f64().is_some_and(|t| t > first))
    })
    .unwrap_or_else(|| panic!("stopped reporting: {}", r.log()));
    assert!(r.is_running());
    let log = r.log();
    assert_eq!(
        log.matches("neither ggml-rpc-server nor rpc-server is on PATH")
            .count(),
        1,
        "one clear message: {log}"
    );
    assert_eq!(r.signal_and_wait("TERM", Duration::from_secs(5)), Some(0));
}
