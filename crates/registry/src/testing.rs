//! Private `redis-server` processes for tests (feature `testing`).
//!
//! [`RedisServer`] starts one server on a free loopback port (never 6379) or on a Unix
//! socket, with persistence off (`--save "" --appendonly no`) and its files in a temporary
//! directory; it waits (at most 10 s) until the server is ready, can stop and restart it
//! on the same port, and kills it when dropped. [`RedisCluster`] starts three (or more)
//! such servers with `--cluster-enabled yes`, joins them with `redis-cli --cluster
//! create … --cluster-replicas 0 --cluster-yes` and waits for `cluster_state:ok`.
//!
//! Both need `redis-server` and `redis-cli` on `PATH` (Debian/Ubuntu: `apt-get install
//! redis-server`). Every wait is bounded; failures carry the server log's last lines.
//!
//! [`fixtures`] holds SOLLOL's own records (captured from its Python writers), the one
//! copy every crate's tests compare against.
//!
//! ```no_run
//! # fn main() -> vramroute_registry::Result<()> {
//! use vramroute_registry::testing::RedisServer;
//! let server = RedisServer::builder().password("s3cret").start()?;
//! let url = server.url(); // redis://:s3cret@127.0.0.1:PORT/0
//! # let _ = url; Ok(()) }
//! ```

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

pub mod fixtures;

/// How long a server may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cluster may take to reach `cluster_state:ok`.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

fn err(msg: impl Into<String>) -> Error {
    Error::TestServer(msg.into())
}

/// Certificate files for a TLS server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TlsFiles {
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA certificate that signed `cert` (PEM).
    pub ca: PathBuf,
}

impl TlsFiles {
    /// The server certificate `cert`, its key `key` and the CA `ca` that signed it.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>, ca: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
        }
    }
}

/// Options of a [`RedisServer`].
#[derive(Debug, Clone, Default)]
pub struct RedisServerBuilder {
    args: Vec<String>,
    password: Option<String>,
    unix_socket: bool,
    tls: Option<TlsFiles>,
    cluster: bool,
    need_bus_port: bool,
}

impl RedisServerBuilder {
    /// Adds raw `redis-server` arguments (e.g. `["--maxmemory", "10mb"]`).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Requires this password (`--requirepass`) for the `default` user; [`RedisServer::url`]
    /// includes it.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Listens on a Unix socket in the temporary directory instead of TCP.
    pub fn unix_socket(mut self) -> Self {
        self.unix_socket = true;
        self
    }

    /// Serves TLS only (`--port 0 --tls-port P`), clients not required to present a cert.
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// Starts the server as a cluster node (`--cluster-enabled yes`).
    pub fn cluster_node(mut self) -> Self {
        self.cluster = true;
        self.need_bus_port = true;
        self
    }

    /// Starts it.
    pub fn start(self) -> Result<RedisServer> {
        let dir = tempfile::Builder::new()
            .prefix("vramroute-redis-")
            .tempdir()
            .map_err(|e| err(format!("cannot create a temporary directory: {e}")))?;
        let mut server = RedisServer {
            opts: self,
            dir,
            port: None,
            child: None,
        };
        let mut last = None;
        for _ in 0..8 {
            if !server.opts.unix_socket {
                server.port = Some(free_port(server.opts.need_bus_port)?);
            }
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| err("could not start redis-server")))
    }
}

/// A private `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    opts: RedisServerBuilder,
    dir: tempfile::TempDir,
    port: Option<u16>,
    child: Option<Child>,
}

/// A loopback port that is free now (never 6379); with `bus`, `port + 10000` is free too.
fn free_port(bus: bool) -> Result<u16> {
    for _ in 0..200 {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| err(format!("cannot bind a loopback port: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| err(e.to_string()))?
            .port();
        if port == 6379 || port == 16379 {
            continue;
        }
        if bus {
            if port > 55_000 {
                continue;
            }
            if TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
                continue;
            }
        }
        return Ok(port);
    }
    Err(err("no free loopback port found"))
}

impl RedisServer {
    /// A plain server on a free loopback port.
    pub fn start() -> Result<Self> {
        Self::builder().start()
    }

    /// Options for a server.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// The URL to reach it: `redis://[:PASSWORD@]127.0.0.1:PORT/0`,
    /// `rediss://localhost:PORT/0` with TLS, `redis+unix:///…/redis.sock?db=0[&pass=…]`
    /// on a socket.
    pub fn url(&self) -> String {
        if self.opts.unix_socket {
            let mut url = format!("redis+unix://{}?db=0", self.socket_path().display());
            if let Some(pw) = &self.opts.password {
                url.push_str("&pass=");
                url.push_str(pw);
            }
            return url;
        }
        let auth = self
            .opts
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        let port = self.port.unwrap_or_default();
        if self.opts.tls.is_some() {
            format!("rediss://{auth}localhost:{port}/0")
        } else {
            format!("redis://{auth}127.0.0.1:{port}/0")
        }
    }

    /// The TCP (or TLS) port; `None` on a Unix socket.
    pub fn port(&self) -> Option<u16> {
        if self.opts.unix_socket {
            None
        } else {
            self.port
        }
    }

    /// The socket path (meaningful with [`RedisServerBuilder::unix_socket`]).
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The server's temporary directory (log file `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server and waits for it to exit. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts it again on the same port (or socket), with an empty dataset.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                // The old socket may linger for a moment.
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "restart attempt failed; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Adds `n` members `bogus-{i}` scored `score` to the sorted set `key`, written by
    /// the server itself (a Lua loop) in chunks of 100,000, each well within
    /// [`cli`](Self::cli)'s time bound: an index flood for hostile-input tests.
    pub fn add_bogus_members(&self, key: &str, n: u64, score: &str) -> Result<()> {
        let fill = "for i = tonumber(ARGV[1]) + 1, tonumber(ARGV[2]) do \
                    redis.call('ZADD', KEYS[1], ARGV[3], 'bogus-' .. i) end return 1";
        for from in (0..n).step_by(100_000) {
            let to = (from + 100_000).min(n);
            self.cli(&[
                "EVAL",
                fill,
                "1",
                key,
                &from.to_string(),
                &to.to_string(),
                score,
            ])?;
        }
        Ok(())
    }

    /// Runs `redis-cli` against this server with `args` (as SOLLOL's tools would write
    /// raw keys) and returns its standard output. Bounded to 10 s.
    pub fn cli<S: AsRef<str>>(&self, args: &[S]) -> Result<String> {
        let mut cmd = Command::new("redis-cli");
        if self.opts.unix_socket {
            cmd.arg("-s").arg(self.socket_path());
        } else {
            cmd.arg("-h")
                .arg("127.0.0.1")
                .arg("-p")
                .arg(self.port.unwrap_or_default().to_string());
        }
        if let Some(pw) = &self.opts.password {
            cmd.arg("--no-auth-warning").arg("-a").arg(pw);
        }
        if let Some(tls) = &self.opts.tls {
            cmd.arg("--tls")
                .arg("--cacert")
                .arg(&tls.ca)
                .arg("--sni")
                .arg("localhost");
        }
        cmd.args(args.iter().map(AsRef::as_ref));
        run_bounded(cmd, Duration::from_secs(10))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    fn spawn(&mut self) -> Result<()> {
        let dir = self.dir.path();
        let log = dir.join("redis.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new("redis-server");
        cmd.arg("--bind").arg("127.0.0.1");
        cmd.args(["--save", "", "--appendonly", "no", "--daemonize", "no"]);
        cmd.arg("--dir").arg(dir);
        cmd.arg("--logfile").arg(&log);
        let port = self.port.unwrap_or_default().to_string();
        if self.opts.unix_socket {
            cmd.args(["--port", "0"]);
            cmd.arg("--unixsocket").arg(self.socket_path());
            cmd.args(["--unixsocketperm", "700"]);
        } else if let Some(tls) = &self.opts.tls {
            cmd.args(["--port", "0", "--tls-port", &port]);
            cmd.arg("--tls-cert-file").arg(&tls.cert);
            cmd.arg("--tls-key-file").arg(&tls.key);
            cmd.arg("--tls-ca-cert-file").arg(&tls.ca);
            cmd.args(["--tls-auth-clients", "no"]);
        } else {
            cmd.args(["--port", &port]);
        }
        if let Some(pw) = &self.opts.password {
            cmd.args(["--requirepass", pw]);
        }
        if self.opts.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]);
            cmd.arg("--cluster-config-file").arg(dir.join("nodes.conf"));
        }
        cmd.args(&self.opts.args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            err(format!(
                "cannot run redis-server ({e}): install it (Debian/Ubuntu: apt-get install redis-server)"
            ))
        })?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut s) = child.stderr.take() {
                    use std::io::Read;
                    let _ = s.read_to_string(&mut stderr);
                }
                return Err(err(format!(
                    "redis-server exited with {status} on port {port}: {} {}",
                    stderr.trim(),
                    self.log_tail()
                )));
            }
            let log_ready = std::fs::read_to_string(&log).is_ok_and(|l| {
                l.to_ascii_lowercase()
                    .contains("ready to accept connections")
            });
            let port_open = self.opts.unix_socket
                || TcpStream::connect_timeout(
                    &([127, 0, 0, 1], self.port.unwrap_or_default()).into(),
                    Duration::from_millis(200),
                )
                .is_ok();
            if log_ready && port_open {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(format!(
                    "redis-server on port {port} not ready within {START_TIMEOUT:?}: {}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd` with a deadline; returns stdout, or an error with stderr. (Outputs are
/// small, so reading the pipes after exit cannot block the child.)
fn run_bounded(mut cmd: Command, limit: Duration) -> Result<String> {
    use std::io::Read;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| err(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(format!(
                    "{:?} did not finish within {limit:?}",
                    cmd.get_program()
                )));
            }
            Err(e) => return Err(err(e.to_string())),
        }
    };
    let (mut out, mut errs) = (String::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut errs);
    }
    if status.success() {
        Ok(out)
    } else {
        Err(err(format!(
            "{:?} failed ({status}): {out}{errs}",
            cmd.get_program()
        )))
    }
}

/// A private Redis Cluster of N masters and no replicas, killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Three masters.
    pub fn start() -> Result<Self> {
        Self::with_masters(3)
    }

    /// `masters` masters (at least 3, as `redis-cli --cluster create` requires).
    pub fn with_masters(masters: usize) -> Result<Self> {
        let masters = masters.max(3);
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            nodes.push(RedisServer::builder().cluster_node().start()?);
        }
        let cluster = Self { nodes };
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for addr in cluster.addrs() {
            cmd.arg(addr);
        }
        cmd.args(["--cluster-replicas", "0", "--cluster-yes"]);
        run_bounded(cmd, CLUSTER_TIMEOUT)?;
        cluster.wait_ok()?;
        Ok(cluster)
    }

    fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port.unwrap_or_default()))
            .collect()
    }

    fn wait_ok(&self) -> Result<()> {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let mut all_ok = true;
            for n in &self.nodes {
                let info = n.cli(&["CLUSTER", "INFO"]).unwrap_or_default();
                let slots = n.cli(&["CLUSTER", "SLOTS"]).unwrap_or_default();
                if !info.contains("cluster_state:ok")
                    || !info.contains("cluster_slots_ok:16384")
                    || slots.trim().is_empty()
                {
                    all_ok = false;
                }
            }
            if all_ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(err(format!("cluster not ok within {CLUSTER_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis-cluster://127.0.0.1:P1,127.0.0.1:P2,…`.
    pub fn url(&self) -> String {
        format!("redis-cluster://{}", self.addrs().join(","))
    }

    /// One `redis://127.0.0.1:P` URL per node.
    pub fn seed_urls(&self) -> Vec<String> {
        self.addrs()
            .into_iter()
            .map(|a| format!("redis://{a}"))
            .collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Moves `slots` hash slots, with their keys, from master `from` to master `to`
    /// (`redis-cli --cluster reshard`). Bounded to 60 s.
    pub fn reshard(&self, from: usize, to: usize, slots: u32) -> Result<()> {
        let id = |i: usize| -> Result<String> {
            let node = self
                .nodes
                .get(i)
                .ok_or_else(|| err(format!("no node {i}")))?;
            Ok(node.cli(&["CLUSTER", "MYID"])?.trim().to_owned())
        };
        let (from_id, to_id) = (id(from)?, id(to)?);
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster")
            .arg("reshard")
            .arg(&self.addrs()[0])
            .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"]);
        run_bounded(cmd, Duration::from_secs(60)).map(drop)
    }

    /// Runs `redis-cli -c` (cluster mode, follows redirects) against the first node.
    pub fn cli<S: AsRef<str>>(&self, args: &[S]) -> Result<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.arg("-c").arg("-h").arg("127.0.0.1");
        cmd.arg("-p")
            .arg(self.nodes[0].port.unwrap_or_default().to_string());
        cmd.args(args.iter().map(AsRef::as_ref));
        run_bounded(cmd, Duration::from_secs(10))
    }
}

/// Reads the cluster the way SOLLOL's `GPURedisSubscriber.poll_gpu_stats` does — `KEYS
/// sollol:gpu:*`, then one `GET` per key, each parsed as JSON — and returns how many
/// records parsed. A same-run baseline for benchmarks; never use it in production (`KEYS`
/// blocks Redis).
pub async fn sollol_style_poll(url: &str) -> Result<usize> {
    let redis_err = |e: redis::RedisError| err(e.to_string());
    let client = redis::Client::open(url).map_err(redis_err)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(redis_err)?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("sollol:gpu:*")
        .query_async(&mut conn)
        .await
        .map_err(redis_err)?;
    let mut parsed = 0;
    for key in keys {
        if key == crate::keys::GPU_STATS_STREAM {
            continue;
        }
        let data: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if let Some(data) = data {
            if serde_json::from_str::<serde_json::Value>(&data).is_ok() {
                parsed += 1;
            }
        }
    }
    Ok(parsed)
}
