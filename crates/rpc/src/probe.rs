//! The probe: connect, HELLO, `DEVICE_COUNT`, `GET_DEVICE_MEMORY` per device, each step
//! bounded in time and size, and the rule that turns what happened into an [`RpcState`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::wire::{self, Hello};
use crate::Error;

/// Time and size bounds of one [`probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Bound on resolving the address and establishing the TCP connection (default 500 ms).
    pub connect_timeout: Duration,
    /// Bound on each command: sending it and reading its whole reply (default 1 s). A
    /// HELLO unanswered for this long means "busy".
    pub io_timeout: Duration,
    /// At most this many devices are queried (default 16, llama.cpp's
    /// `GGML_RPC_MAX_SERVERS`); the reported count is kept in [`Probe::device_count`].
    pub max_devices: u32,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            io_timeout: Duration::from_secs(1),
            max_devices: 16,
        }
    }
}

impl ProbeOptions {
    /// The longest a whole probe may take: `connect_timeout + 3 × io_timeout` (3.5 s by
    /// default). Every step after the connect shares this deadline.
    pub fn max_total(&self) -> Duration {
        self.connect_timeout + self.io_timeout * 3
    }
}

/// What a probe concluded about the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcState {
    /// It answered HELLO with a known protocol major and every memory query.
    Reachable,
    /// Connected, but HELLO got no reply in time. rpc-server serves one client at a time:
    /// while llama-server is attached, a new connection waits in the kernel's accept
    /// queue, unanswered. Alive, not usable now.
    Busy,
    /// Connection refused, timed out or the address did not resolve.
    Unreachable,
    /// It answered HELLO with a protocol major this crate does not know (see
    /// [`crate::wire::KNOWN_MAJORS`]), or with the pre-2026 HELLO. Alive; its memory was
    /// not queried.
    UnknownProtocol,
    /// It answered something that is not this protocol: garbage, an absurd size, a
    /// connection closed mid-reply, a reply that stalled. The reason says which.
    BadReply(String),
}

impl RpcState {
    /// A short, stable name: `reachable`, `busy`, `unreachable`, `unknown_protocol`,
    /// `bad_reply`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Reachable => "reachable",
            Self::Busy => "busy",
            Self::Unreachable => "unreachable",
            Self::UnknownProtocol => "unknown_protocol",
            Self::BadReply(_) => "bad_reply",
        }
    }

    /// True when something answered the TCP connection (reachable, busy, unknown
    /// protocol): the process is alive, even if it cannot be used now.
    pub fn is_alive(&self) -> bool {
        matches!(self, Self::Reachable | Self::Busy | Self::UnknownProtocol)
    }
}

/// One device's memory as the server reports it (`ggml_backend_dev_memory`): the CPU
/// backend reports free = total (physical RAM), GPU backends the real free memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMemory {
    /// The device's index on that server (what `GET_DEVICE_MEMORY` takes).
    pub index: u32,
    /// Free bytes.
    pub free_bytes: u64,
    /// Total bytes.
    pub total_bytes: u64,
}

impl DeviceMemory {
    /// Free memory in MiB (rounded down).
    pub fn free_mib(&self) -> u64 {
        self.free_bytes / (1024 * 1024)
    }

    /// Total memory in MiB (rounded down).
    pub fn total_mib(&self) -> u64 {
        self.total_bytes / (1024 * 1024)
    }
}

/// The serialisable result of one [`probe`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The address probed, as given.
    pub addr: String,
    /// What the probe concluded.
    pub state: RpcState,
    /// The protocol version from HELLO, when one was read.
    pub version: Option<(u8, u8, u8)>,
    /// The device count the server reported (may exceed `devices.len()`, see
    /// [`ProbeOptions::max_devices`]).
    pub device_count: Option<u32>,
    /// Memory of each queried device, by index; empty unless `state` is reachable.
    pub devices: Vec<DeviceMemory>,
    /// Wall time of the probe.
    pub elapsed_ms: u64,
    /// One line for a human: what was found, or what went wrong and what to check.
    pub detail: String,
}

impl Probe {
    /// The version as `"7.0.0"`.
    pub fn version_string(&self) -> Option<String> {
        self.version
            .map(|(major, minor, patch)| format!("{major}.{minor}.{patch}"))
    }

    /// Free bytes over the queried devices.
    pub fn free_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.free_bytes).sum()
    }

    /// Total bytes over the queried devices.
    pub fn total_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.total_bytes).sum()
    }

    /// Free MiB over the queried devices (rounded down).
    pub fn free_mib(&self) -> u64 {
        self.free_bytes() / (1024 * 1024)
    }

    /// Total MiB over the queried devices (rounded down).
    pub fn total_mib(&self) -> u64 {
        self.total_bytes() / (1024 * 1024)
    }
}

/// Probe the rpc-server at `addr` (`host:port`): connect, HELLO, `DEVICE_COUNT`, then
/// `GET_DEVICE_MEMORY` for each device (at most `opts.max_devices`). Never fails: every
/// outcome is a [`Probe`], in at most [`ProbeOptions::max_total`].
///
/// A probe holds the server for its few round trips (rpc-server serves one client at a
/// time), so callers should cache the answer rather than probe in a loop; probing a busy
/// server often fills its one-slot accept queue (see the crate's ARCHITECTURE section).
pub async fn probe(addr: &str, opts: &ProbeOptions) -> Probe {
    let start = Instant::now();
    let deadline = start + opts.max_total();
    let (state, found, detail) = run(addr, opts, start, deadline).await;
    Probe {
        addr: addr.to_string(),
        state,
        version: found.version,
        device_count: found.device_count,
        devices: found.devices,
        elapsed_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        detail,
    }
}

/// Probe every address concurrently; the answers in the order of `addrs`, in at most
/// [`ProbeOptions::max_total`] (plus scheduling). An address listed twice is probed once
/// (two concurrent probes of one rpc-server would make the second wait behind the first,
/// i.e. look busy) and its answer repeated.
pub async fn probe_all(addrs: &[String], opts: &ProbeOptions) -> Vec<Probe> {
    let mut unique: Vec<&str> = Vec::new();
    for addr in addrs {
        if !unique.contains(&addr.as_str()) {
            unique.push(addr);
        }
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, addr) in unique.iter().enumerate() {
        let addr = (*addr).to_string();
        let opts = opts.clone();
        set.spawn(async move { (i, probe(&addr, &opts).await) });
    }
    let mut answers: Vec<Option<Probe>> = vec![None; unique.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, p)) = joined {
            answers[i] = Some(p);
        }
    }
    addrs
        .iter()
        .map(|addr| {
            let i = unique.iter().position(|u| *u == addr.as_str()).unwrap_or(0);
            answers[i].clone().unwrap_or_else(|| Probe {
                addr: addr.clone(),
                state: RpcState::BadReply("the probe task failed".to_string()),
                version: None,
                device_count: None,
                devices: Vec::new(),
                elapsed_ms: 0,
                detail: format!("the probe of {addr} panicked or was cancelled"),
            })
        })
        .collect()
}

/// What was learned before the probe ended.
#[derive(Default)]
struct Found {
    version: Option<(u8, u8, u8)>,
    device_count: Option<u32>,
    devices: Vec<DeviceMemory>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn run(
    addr: &str,
    opts: &ProbeOptions,
    start: Instant,
    deadline: Instant,
) -> (RpcState, Found, String) {
    let mut found = Found::default();
    let mut conn = match Conn::connect(addr, opts.connect_timeout, opts.io_timeout, deadline).await
    {
        Ok(conn) => conn,
        Err(detail) => return (RpcState::Unreachable, found, detail),
    };

    let hello = match conn.call("HELLO", &wire::hello_request(), None).await {
        Ok(payload) => wire::parse_hello(&payload),
        Err(e) => Err(e),
    };
    let hello = match hello {
        Ok(hello) => hello,
        Err(Error::Timeout {
            got: 0, after_ms, ..
        }) => {
            let detail = format!(
                "connected to {addr}, but HELLO got no reply within {after_ms} ms: rpc-server \
                 serves one client at a time, so another client (llama-server) is probably \
                 attached; probe again later"
            );
            return (RpcState::Busy, found, detail);
        }
        Err(e) if closed_before_reply(&e) => {
            drop(conn);
            return legacy(addr, opts, deadline, found).await;
        }
        Err(e) => {
            let detail = format!("{addr} is not answering as an rpc-server: {e}");
            return (RpcState::BadReply(e.to_string()), found, detail);
        }
    };
    found.version = Some(hello.version);
    let (major, minor, patch) = hello.version;
    if hello.legacy || !wire::KNOWN_MAJORS.contains(&major) {
        let detail = unknown_protocol_detail(addr, hello);
        return (RpcState::UnknownProtocol, found, detail);
    }

    let after_hello = |e: Error| {
        let detail =
            format!("rpc-server v{major}.{minor}.{patch} at {addr} answered HELLO, then: {e}");
        (RpcState::BadReply(e.to_string()), detail)
    };
    let count = match conn
        .call(
            "DEVICE_COUNT",
            &wire::device_count_request(),
            Some(wire::DEVICE_COUNT_REPLY_BYTES),
        )
        .await
        .and_then(|p| wire::parse_device_count(&p))
    {
        Ok(count) => count,
        Err(e) => {
            let (state, detail) = after_hello(e);
            return (state, found, detail);
        }
    };
    found.device_count = Some(count);
    let queried = count.min(opts.max_devices);
    for index in 0..queried {
        match conn
            .call(
                "GET_DEVICE_MEMORY",
                &wire::device_memory_request(index),
                Some(wire::DEVICE_MEMORY_REPLY_BYTES),
            )
            .await
            .and_then(|p| wire::parse_device_memory(&p))
        {
            Ok((free_bytes, total_bytes)) => found.devices.push(DeviceMemory {
                index,
                free_bytes,
                total_bytes,
            }),
            Err(e) => {
                let (state, detail) = after_hello(e);
                found.devices.clear();
                return (state, found, detail);
            }
        }
    }
    drop(conn);

    let gib = |bytes: u64| bytes as f64 / (1u64 << 30) as f64;
    let free: u64 = found.devices.iter().map(|d| d.free_bytes).sum();
    let total: u64 = found.devices.iter().map(|d| d.total_bytes).sum();
    let mut detail = format!(
        "rpc-server v{major}.{minor}.{patch} at {addr}: {count} device{}, {:.1} GiB free of {:.1} GiB \
         ({} ms)",
        if count == 1 { "" } else { "s" },
        gib(free),
        gib(total),
        ms(start.elapsed())
    );
    if queried < count {
        detail.push_str(&format!("; only the first {queried} devices were queried"));
    }
    if hello.extra_bytes > 0 {
        detail.push_str(&format!(
            "; its HELLO reply has {} bytes more than upstream's (a fork of llama.cpp?)",
            hello.extra_bytes
        ));
    }
    (RpcState::Reachable, found, detail)
}

/// True when the server closed (or reset) the connection before sending any reply byte:
/// what a server from before the capability exchange does with our 24-byte HELLO.
fn closed_before_reply(e: &Error) -> bool {
    match e {
        Error::Closed { got: 0, .. } => true,
        Error::Io { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

fn unknown_protocol_detail(addr: &str, hello: Hello) -> String {
    let (major, minor, patch) = hello.version;
    let known = wire::KNOWN_MAJORS
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if hello.legacy {
        format!(
            "rpc-server v{major}.{minor}.{patch} at {addr} speaks the protocol from before April \
             2026 (3-byte HELLO); this probe knows majors {known}: upgrade llama.cpp on that node \
             (its memory was not queried; the server is alive)"
        )
    } else {
        format!(
            "rpc-server at {addr} speaks protocol v{major}.{minor}.{patch}; this probe knows \
             majors {known} (its memory was not queried; the server is alive)"
        )
    }
}

/// The server closed the connection on our HELLO without a byte: try once more with the
/// empty HELLO of servers from before the capability exchange, within the same deadline.
async fn legacy(
    addr: &str,
    opts: &ProbeOptions,
    deadline: Instant,
    mut found: Found,
) -> (RpcState, Found, String) {
    let closed = "the server closed the connection after HELLO without a reply";
    let bad = |why: String| {
        let detail = format!(
            "{addr} closed the connection on HELLO ({why}): not an rpc-server, or one from \
             before April 2025 (no HELLO); check the port and the llama.cpp version there"
        );
        (RpcState::BadReply(closed.to_string()), detail)
    };
    let mut conn = match Conn::connect(addr, opts.connect_timeout, opts.io_timeout, deadline).await
    {
        Ok(conn) => conn,
        Err(detail) => {
            let (state, _) = bad(detail.clone());
            return (state, found, detail);
        }
    };
    let reply = conn
        .call("HELLO", &wire::legacy_hello_request(), None)
        .await
        .and_then(|p| wire::parse_hello(&p));
    match reply {
        Ok(hello) if hello.legacy || !wire::KNOWN_MAJORS.contains(&hello.version.0) => {
            found.version = Some(hello.version);
            let detail = unknown_protocol_detail(addr, hello);
            (RpcState::UnknownProtocol, found, detail)
        }
        Ok(hello) => {
            let (a, b, c) = hello.version;
            let (state, detail) = bad(format!(
                "yet it answered an empty HELLO with v{a}.{b}.{c} and a 28-byte reply"
            ));
            (state, found, detail)
        }
        Err(e) => {
            let (state, detail) = bad(format!("an empty HELLO too: {e}"));
            (state, found, detail)
        }
    }
}

/// A connection with the probe's bounds.
struct Conn {
    stream: TcpStream,
    io_timeout: Duration,
    deadline: Instant,
}

impl Conn {
    /// Connect within `connect_timeout` (and the probe's deadline); the error is the
    /// detail line of an unreachable server.
    async fn connect(
        addr: &str,
        connect_timeout: Duration,
        io_timeout: Duration,
        deadline: Instant,
    ) -> std::result::Result<Self, String> {
        let until = deadline.min(Instant::now() + connect_timeout);
        match timeout_at(until, TcpStream::connect(addr)).await {
            Err(_) => Err(format!(
                "no TCP connection to {addr} within {} ms: host down, port filtered, or an \
                 rpc-server whose one-slot accept queue is full (busy with other clients)",
                ms(connect_timeout)
            )),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(format!(
                "connection to {addr} refused: is rpc-server (ggml-rpc-server) running there \
                 and listening on this interface (its -H defaults to 127.0.0.1)?"
            )),
            Ok(Err(e)) => Err(format!("cannot connect to {addr}: {e}")),
            Ok(Ok(stream)) => {
                // Small request/reply exchanges: do not wait for Nagle.
                let _ = stream.set_nodelay(true);
                Ok(Self {
                    stream,
                    io_timeout,
                    deadline,
                })
            }
        }
    }

    /// Send one request and read its reply, bounded by `io_timeout` and the probe's
    /// deadline. The reply size is checked before the payload is read.
    async fn call(
        &mut self,
        what: &'static str,
        request: &[u8],
        expected: Option<usize>,
    ) -> crate::Result<Vec<u8>> {
        let op_start = Instant::now();
        let until = self.deadline.min(op_start + self.io_timeout);
        let after_ms = ms(until.saturating_duration_since(op_start));
        match timeout_at(until, self.stream.write_all(request)).await {
            Err(_) => {
                return Err(Error::Timeout {
                    what,
                    after_ms,
                    got: 0,
                })
            }
            Ok(Err(source)) => return Err(Error::Io { what, source }),
            Ok(Ok(())) => {}
        }
        let mut header = [0u8; 8];
        self.read_exact(what, &mut header, 0, 8, until, after_ms)
            .await?;
        let announced = u64::from_le_bytes(header);
        let size = match wire::check_reply_size(what, announced, expected) {
            Ok(size) => size,
            Err(Error::TooLarge { .. }) if wire::printable_prefix(&header).is_some() => {
                let text = wire::printable_prefix(&header).unwrap_or_default();
                return Err(Error::Malformed {
                    what,
                    reason: format!(
                        "the reply starts with the text {text:?}: another service listens on \
                         this port"
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        let mut payload = vec![0u8; size];
        self.read_exact(what, &mut payload, 8, 8 + size, until, after_ms)
            .await?;
        Ok(payload)
    }

    /// Fill `buf` before `until`; `offset` bytes of this reply came before it (for
    /// the counts in errors), `expected` is the reply's whole length.
    async fn read_exact(
        &mut self,
        what: &'static str,
        buf: &mut [u8],
        offset: usize,
        expected: usize,
        until: Instant,
        after_ms: u64,
    ) -> crate::Result<()> {
        let mut got = 0;
        while got < buf.len() {
            match timeout_at(until, self.stream.read(&mut buf[got..])).await {
                Err(_) => {
                    return Err(Error::Timeout {
                        what,
                        after_ms,
                        got: offset + got,
                    })
                }
                Ok(Ok(0)) => {
                    return Err(Error::Closed {
                        what,
                        got: offset + got,
                        expected,
                    })
                }
                Ok(Ok(n)) => got += n,
                // A reset after part of the reply: closed mid-reply.
                Ok(Err(_)) if offset + got > 0 => {
                    return Err(Error::Closed {
                        what,
                        got: offset + got,
                        expected,
                    });
                }
                Ok(Err(source)) => return Err(Error::Io { what, source }),
            }
        }
        Ok(())
    }
}
