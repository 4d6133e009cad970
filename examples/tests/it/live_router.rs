//! Runs the `live-router` example against a real redis-server and real reporter
//! processes (on sysfs fixture trees): it must route to the node that is there, and
//! follow when nodes come and go.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vramroute_registry::testing::RedisServer;

use crate::test_proc;

const EXAMPLE: &str = env!("CARGO_BIN_EXE_live-router");

fn reporter_bin() -> PathBuf {
    let path = Path::new(EXAMPLE).with_file_name("vramroute-reporter");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p vramroute-reporter` first (or `cargo test --workspace`, which builds it)",
        path.display()
    );
    path
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/probe/tests/data")
        .join(name)
        .display()
        .to_string()
}

/// A child killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn reporter(redis: &str, tree: &str, ip: &str) -> Proc {
    let child = Command::new(reporter_bin())
        .args(test_proc::test_reporter_args(redis, &fixture(tree), ip))
        .env_remove("SOLLOL_REDIS_URL")
        .env("OLLAMA_URL", "http://127.0.0.1:9")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("reporter starts");
    Proc(child)
}

/// Waits (bounded) for a stdout line containing `needle`; returns every line seen.
fn wait_line(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    if seen.iter().any(|l| l.contains(needle)) {
        return true;
    }
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn follows_reporters_as_they_come_and_go() {
    let redis = RedisServer::start().expect("redis-server starts");
    let url = redis.url();
    let mut a = reporter(&url, "amd-discrete", "127.0.0.31");
    let mut example = Proc(
        Command::new(EXAMPLE)
            .args([
                "--redis-url",
                &url,
                "--model",
                "llama3.2:3b",
                "--every-ms",
                "100",
                "--duration-s",
                "40",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("live-router starts"),
    );
    let stdout = example.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    assert!(
        wait_line(&rx, &mut seen, "route llama3.2:3b -> 127.0.0.31:11434 GPU"),
        "never routed to the first reporter's node: {seen:#?}"
    );

    // A second node joins; the first leaves with SIGTERM (it deletes its keys).
    let _b = reporter(&url, "amd-two-cards", "127.0.0.32");
    assert!(
        wait_line(&rx, &mut seen, "127.0.0.32:11434"),
        "the second node never appeared: {seen:#?}"
    );
    test_proc::signal_and_wait(&mut a.0, "TERM", Duration::from_secs(5));
    assert!(
        wait_line(&rx, &mut seen, "route llama3.2:3b -> 127.0.0.32:11434 GPU"),
        "never moved to the second node after the first left: {seen:#?}"
    );
    assert!(
        wait_line(&rx, &mut seen, "nodes: 1 [127.0.0.32:11434]"),
        "the first node did not leave the view: {seen:#?}"
    );
}
