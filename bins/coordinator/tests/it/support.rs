//! Process, Redis, HTTP and fixture helpers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "../../../shared/test_proc.rs"]
mod test_proc;
pub(crate) use test_proc::{
    fake_systemctl, path_with, signal_and_wait, test_reporter_args, unit_has, verify_unit, wait_for,
};

pub(crate) use vramroute_ollama::testing::{Behaviour, FakeModel, FakeOllama};
use vramroute_registry::testing::fixtures;
pub(crate) use vramroute_registry::testing::RedisServer;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_vramroute-coordinator");
pub(crate) const GIB: u64 = 1 << 30;

/// The reporter binary, built into the same target directory by `cargo test --workspace`.
pub(crate) fn reporter_bin() -> PathBuf {
    let path = Path::new(BIN).with_file_name("vramroute-reporter");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p vramroute-reporter` first (or `cargo test --workspace`, which builds it)",
        path.display()
    );
    path
}

pub(crate) fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/probe/tests/data")
        .join(name)
        .display()
        .to_string()
}

/// Runs the coordinator to completion (bounded to 30 s), without inheriting
/// `SOLLOL_REDIS_URL` / `VRAMROUTE_CONFIG`.
pub(crate) fn coord(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("SOLLOL_REDIS_URL")
        .env_remove("REDIS_PASSWORD")
        .env_remove("VRAMROUTE_CONFIG")
        .env_remove("VRAMROUTE_LOG")
        .env("OLLAMA_URL", "http://127.0.0.1:9")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("coordinator did not finish: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the coordinator, asserts success, parses its stdout as JSON.
pub(crate) fn coord_json(args: &[&str]) -> serde_json::Value {
    let o = coord(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}\n{}",
        stderr(&o),
        stdout(&o)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stdout(&o)))
}

/// A child process (reporter or daemon), killed on drop; stderr goes to a file.
pub(crate) struct Proc {
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

impl Proc {
    pub(crate) fn spawn(bin: &Path, args: &[&str]) -> Proc {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(bin)
            .args(args)
            .env_remove("SOLLOL_REDIS_URL")
            .env_remove("VRAMROUTE_CONFIG")
            .env("OLLAMA_URL", "http://127.0.0.1:9")
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Proc {
            child: Some(child),
            log,
        }
    }

    /// `vramroute-reporter run` publishing every second.
    pub(crate) fn reporter(redis: &str, tree: &str, ip: &str, extra: &[&str]) -> Proc {
        let tree = fixture(tree);
        let mut args = test_proc::test_reporter_args(redis, &tree, ip);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::spawn(&reporter_bin(), &args)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// SIGTERM, then wait (at most 5 s) for the exit.
    pub(crate) fn terminate(&mut self) -> Option<i32> {
        signal_and_wait(self.child.as_mut().unwrap(), "TERM", Duration::from_secs(5))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A loopback port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port != 6379 {
            return port;
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`; `None` when nothing answers.
/// Bounded by 10 s.
pub(crate) fn http(
    method: &str,
    port: u16,
    path: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    http_with(method, port, path, "", body).map(|(st, _, b)| (st, b))
}

/// [`http`] with extra header lines (`"Name: value\r\n"` each); also returns the
/// response head.
pub(crate) fn http_with(
    method: &str,
    port: u16,
    path: &str,
    extra_headers: &str,
    body: Option<&str>,
) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, rest) = out.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Some((status, head.to_owned(), body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path` as JSON, asserting the status.
pub(crate) fn get_json(port: u16, path: &str, status: u16) -> serde_json::Value {
    let (got, body) =
        http("GET", port, path, None).unwrap_or_else(|| panic!("GET {path}: no answer"));
    assert_eq!(got, status, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

/// Writes the NVIDIA stats record and its registration exactly as SOLLOL's tools do
/// (`SETEX`, Python `json.dumps` spacing), for node `127.0.0.1:{ollama_port}`.
pub(crate) fn write_sollol_node(
    redis: &RedisServer,
    ollama_port: u16,
    rpc_port: u16,
    timestamp: f64,
) -> String {
    let node_id = format!("127.0.0.1:{ollama_port}");
    let stats = fixtures::GPU_STATS_NVIDIA
        .replace("10.1.2.3:11434", &node_id)
        .replace("1795441356.3269339", &format!("{timestamp}"));
    redis
        .cli(&[
            "SETEX",
            &vramroute_registry::keys::gpu_stats_key(&node_id),
            "120",
            &stats,
        ])
        .unwrap();
    redis
        .cli(&[
            "SETEX",
            &vramroute_registry::keys::rpc_node_key("127.0.0.1", rpc_port),
            "3600",
            fixtures::RPC_NODE_GPU,
        ])
        .unwrap();
    node_id
}

pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A fake Ollama with the two priority models installed.
pub(crate) fn ollama() -> FakeOllama {
    let o = FakeOllama::start().unwrap();
    o.install(FakeModel::new("llama3.1:8b", 4 * GIB + GIB / 2));
    o.install(FakeModel::new("codellama:13b", 6 * GIB + GIB / 2));
    o
}

pub(crate) fn node<'a>(view: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    view["nodes"].as_array()?.iter().find(|n| n["id"] == id)
}

pub(crate) fn write_config(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}
