//! Slow and idle HTTP clients (#14 item 4): a daemon and a reporter, each run with a
//! 1,024-file limit as systemd's default gives, are flooded with 1,100 idle connections
//! each; both shed them by themselves, `/healthz` answers, a client trickling its
//! request head is dropped after the header-read timeout, and the reporter keeps
//! publishing throughout.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vramroute_registry::keys;

use super::support::*;

/// Idle connections opened against each server.
const FLOOD: usize = 1_100;
/// The file limit both servers run with (systemd's default soft limit).
const CHILD_NOFILE: &str = "--nofile=1024:1024";

/// Raises this test process's soft file limit to its hard limit (it holds 2 × FLOOD
/// sockets), with prlimit(1) from util-linux; fails when that is not possible.
fn raise_own_file_limit() {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    let need = 2 * FLOOD + 200;
    let enough = |v: &str| v == "unlimited" || v.parse::<usize>().is_ok_and(|n| n >= need);
    if enough(soft) {
        return;
    }
    assert!(
        enough(hard),
        "this test holds {need} sockets but the hard file limit is {hard}: raise it (ulimit -Hn)"
    );
    let status = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={hard}:{hard}"))
        .status()
        .expect("prlimit(1) (util-linux) is needed to raise this test's file limit");
    assert!(status.success(), "prlimit could not raise the file limit");
}

/// Opens `n` connections to `port` and sends nothing on them.
fn flood(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("connection {i} to {port}: {e}"))
        })
        .collect()
}

/// How many of `conns` the server has closed (a read returns end-of-file or a reset).
fn closed_by_server(conns: &mut [TcpStream]) -> usize {
    let mut closed = 0;
    for c in conns.iter_mut() {
        c.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 256];
        match c.read(&mut buf) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => closed += 1,
            // A 503 from the cap, then the close.
            Ok(_) => closed += usize::from(matches!(c.read(&mut buf), Ok(0) | Err(_))),
        }
    }
    closed
}

/// Waits (at most `within`) until the server has closed every one of `conns`.
fn wait_all_closed(conns: &mut [TcpStream], within: Duration, what: &str) -> Duration {
    let start = Instant::now();
    let mut last = 0;
    while start.elapsed() < within {
        last = closed_by_server(conns);
        if last == conns.len() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{what}: only {last} of {} idle connections closed by the server within {within:?}",
        conns.len()
    );
}

/// Sends a request head one byte every `every`; returns after how long the server
/// dropped the connection, `None` if the whole head went through.
fn trickle(port: u16, every: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(every)).expect("timeout");
    let head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let start = Instant::now();
    for b in head {
        if s.write_all(&[*b]).is_err() {
            return Some(start.elapsed());
        }
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => return None,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// The reporter's stats record timestamp.
fn stats_timestamp(redis: &RedisServer, node_id: &str) -> Option<f64> {
    let text = redis.cli(&["GET", &keys::gpu_stats_key(node_id)]).ok()?;
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    v["timestamp"].as_f64()
}

#[test]
fn idle_and_slow_clients_are_shed_and_the_node_keeps_publishing() {
    raise_own_file_limit();
    let redis = RedisServer::start().unwrap();
    let url = redis.url();

    // A reporter with /metrics, limited to 1,024 files.
    let metrics_port = free_port();
    let node_id = "127.0.0.31:11434";
    let mut args: Vec<String> = vec![CHILD_NOFILE.into(), "--".into()];
    args.push(reporter_bin().display().to_string());
    args.extend(test_reporter_args(
        &url,
        &fixture("amd-discrete"),
        "127.0.0.31",
    ));
    args.extend([
        "--metrics-addr".to_string(),
        format!("127.0.0.1:{metrics_port}"),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reporter = Proc::spawn(Path::new("prlimit"), &args);
    let first = wait_for(Duration::from_secs(15), || stats_timestamp(&redis, node_id));
    assert!(
        first.is_some(),
        "reporter never published: {}",
        reporter.log()
    );

    // A daemon, limited to 1,024 files, with a 3 s header-read timeout.
    let port = free_port();
    let cfg = write_config(&format!(
        "redis_url: {url}\nlisten: 127.0.0.1:{port}\ngateway_listen: off\nhttp_header_timeout: 3\n"
    ));
    let daemon = Proc::spawn(
        Path::new("prlimit"),
        &[
            CHILD_NOFILE,
            "--",
            BIN,
            "--config",
            cfg.path().to_str().unwrap(),
            "daemon",
        ],
    );
    let up = wait_for(Duration::from_secs(15), || {
        http("GET", port, "/healthz", None)
    });
    assert!(up.is_some(), "daemon did not start: {}", daemon.log());

    // 1,100 idle connections to the daemon, held open by this test.
    let before = stats_timestamp(&redis, node_id).unwrap();
    let start = Instant::now();
    let mut at_daemon = flood(port, FLOOD);
    let daemon_flood = start.elapsed();

    // /healthz answers within 10 s while they are held.
    let start = Instant::now();
    let health = wait_for(Duration::from_secs(10), || {
        http("GET", port, "/healthz", None).filter(|(st, _)| *st == 200)
    });
    let healthz = start.elapsed();
    assert!(
        health.is_some(),
        "/healthz did not answer within 10 s under {FLOOD} idle connections: {}",
        daemon.log()
    );
    // The daemon closes every idle connection by itself (the cap closes the oldest as
    // new ones come; the header-read timeout the rest).
    let daemon_shed = wait_all_closed(&mut at_daemon, Duration::from_secs(30), "daemon");

    // The same against the reporter's /metrics.
    let start = Instant::now();
    let mut at_reporter = flood(metrics_port, FLOOD);
    let reporter_flood = start.elapsed();
    let metrics = wait_for(Duration::from_secs(10), || {
        http("GET", metrics_port, "/metrics", None).filter(|(st, _)| *st == 200)
    });
    assert!(
        metrics.is_some(),
        "reporter /metrics did not answer: {}",
        reporter.log()
    );
    assert!(
        metrics.unwrap().1.contains("vramroute_publishes_total"),
        "reporter /metrics answered without its metrics"
    );
    let reporter_shed = wait_all_closed(&mut at_reporter, Duration::from_secs(40), "reporter");

    // A client sending one header byte every 1.5 s is dropped after the 3 s timeout
    // (its head would take 100 s).
    let dropped = trickle(port, Duration::from_millis(1500));
    assert!(
        dropped.is_some_and(|d| d < Duration::from_secs(20)),
        "a trickled request head was not dropped: {dropped:?}"
    );

    // The reporter kept publishing throughout: its timestamp moved on, and it still does.
    let after = stats_timestamp(&redis, node_id).unwrap();
    assert!(
        after > before,
        "reporter stopped publishing: {before} -> {after}"
    );
    let later = wait_for(Duration::from_secs(10), || {
        stats_timestamp(&redis, node_id).filter(|t| *t > after)
    });
    assert!(
        later.is_some(),
        "reporter stopped publishing: {}",
        reporter.log()
    );
    assert!(
        !reporter.log().contains("Too many open files"),
        "{}",
        reporter.log()
    );
    eprintln!(
        "figures: opening {FLOOD} connections took {:.1} s (daemon), {:.1} s (reporter); /healthz answered in {:.2} s; all closed by the server {:.1} s (daemon) and {:.1} s (reporter) after they were open; trickling client dropped after {:.1} s",
        daemon_flood.as_secs_f64(),
        reporter_flood.as_secs_f64(),
        healthz.as_secs_f64(),
        daemon_shed.as_secs_f64(),
        reporter_shed.as_secs_f64(),
        dropped.unwrap_or_default().as_secs_f64()
    );
}
