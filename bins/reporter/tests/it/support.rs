//! Process, Redis and fixture helpers for the reporter's end-to-end tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "../../../shared/test_proc.rs"]
mod test_proc;
pub(crate) use test_proc::{fake_systemctl, path_with, unit_has, verify_unit, wait_for};

pub(crate) use vramroute_registry::testing::RedisServer;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_vramroute-reporter");

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/probe/tests/data")
        .join(name)
}

/// A copy of a fixture tree (symlinks kept) that a test may change.
pub(crate) fn fixture_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", fixture(name).display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// Run the reporter to completion (bounded to 20 s).
pub(crate) fn run_to_end(args: &[&str]) -> Output {
    run_to_end_with_env(args, &[])
}

/// [`run_to_end`] with extra environment variables (`PATH`, ...).
pub(crate) fn run_to_end_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("SOLLOL_REDIS_URL")
        .env_remove("REDIS_PASSWORD")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "reporter did not finish: {args:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A running `vramroute-reporter run`, killed on drop; its stderr goes to a file.
pub(crate) struct Reporter {
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

impl Reporter {
    pub(crate) fn start(args: &[&str]) -> Reporter {
        Reporter::start_with_env(args, &[])
    }

    /// [`Reporter::start`] with extra environment variables (`PATH`, ...).
    pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Reporter {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(BIN)
            .arg("run")
            .args(args)
            .env_remove("SOLLOL_REDIS_URL")
            .env_remove("VRAMROUTE_RPC_SERVER")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Reporter {
            child: Some(child),
            log,
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().unwrap().try_wait(), Ok(None))
    }

    /// Send a signal with kill(1) and wait (at most `within`) for the exit status.
    pub(crate) fn signal_and_wait(&mut self, sig: &str, within: Duration) -> Option<i32> {
        test_proc::signal_and_wait(self.child.as_mut().unwrap(), sig, within)
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `GET key` as parsed JSON, `None` when the key is missing.
pub(crate) fn get_json(redis: &RedisServer, key: &str) -> Option<serde_json::Value> {
    let out = redis.cli(&["GET", key]).ok()?;
    let out = out.trim();
    if out.is_empty() {
        return None;
    }
    serde_json::from_str(out).ok()
}

pub(crate) fn ttl(redis: &RedisServer, key: &str) -> i64 {
    redis.cli(&["TTL", key]).unwrap().trim().parse().unwrap()
}

/// A loopback port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET on loopback; returns the body.
pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}
