//! A loopback server that speaks llama.cpp rpc-server's bytes, for tests.
//!
//! Like the real server it listens with a backlog of 1 and serves **one connection at a
//! time**: while a client is attached, a new connection is accepted by the kernel and
//! waits unanswered. It answers HELLO (28-byte reply with the configured version and zero
//! capabilities; the 3-byte reply for a version below 4), `DEVICE_COUNT` and
//! `GET_DEVICE_MEMORY`, and closes the connection where the real server does (first
//! command not HELLO, a HELLO of the wrong size, an unknown command, a device index out of
//! range). Its replies are written byte by byte here (`u64::to_le_bytes`), independently
//! of [`crate::wire`], so a mistake in one does not hide in the other.
//!
//! It runs on its own thread and Tokio runtime; dropping it stops it.
//!
//! ```
//! use vramroute_rpc::testing::{ServerBehaviour, FakeRpcServer};
//! let fake = FakeRpcServer::builder()
//!     .version(7, 0, 0)
//!     .devices(&[(20 << 30, 24 << 30), (64 << 30, 64 << 30)])
//!     .start()
//!     .unwrap();
//! assert!(fake.addr().starts_with("127.0.0.1:"));
//! fake.set_behaviour(ServerBehaviour::NeverAnswer);
//! assert_eq!(fake.connections(), 0);
//! ```

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;

const HELLO: u8 = 14;
const DEVICE_COUNT: u8 = 15;
const GET_DEVICE_MEMORY: u8 = 11;

/// How the server answers; set at build time or while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerBehaviour {
    /// Like rpc-server.
    Normal,
    /// Another client is attached: nothing is accepted (the kernel's backlog completes
    /// connections, which then wait unanswered) until the behaviour changes.
    Busy,
    /// The listener is closed: connections are refused (it is bound again on the same
    /// port when the behaviour changes).
    Refuse,
    /// Answers HELLO with an HTTP error page, as another service on the port would.
    Garbage,
    /// Announces a 28-byte HELLO reply, sends 10 bytes of it and closes the connection.
    CloseMidReply,
    /// Announces a HELLO reply of 2^60 bytes, sends a few and keeps the connection open.
    HugeSize,
    /// Reads requests and never answers (keeps the connection open).
    NeverAnswer,
    /// Closes the connection as soon as the first request has arrived, without a byte.
    CloseOnHello,
}

/// Settings of a [`FakeRpcServer`] before it starts; from [`FakeRpcServer::builder`].
#[derive(Debug, Clone)]
pub struct FakeRpcServerBuilder {
    version: (u8, u8, u8),
    devices: Vec<(u64, u64)>,
    behaviour: ServerBehaviour,
    hello_extra: usize,
    ip: std::net::Ipv4Addr,
}

impl FakeRpcServerBuilder {
    /// Append `n` bytes (0xAB) to the 28-byte HELLO reply, as forks of llama.cpp that
    /// extend it do (default 0).
    pub fn hello_extra(mut self, n: usize) -> Self {
        self.hello_extra = n;
        self
    }

    /// The protocol version HELLO reports (default 7.0.0). A major below 4 makes it a
    /// server from before the capability exchange: HELLO with an empty request, 3-byte
    /// reply.
    pub fn version(mut self, major: u8, minor: u8, patch: u8) -> Self {
        self.version = (major, minor, patch);
        self
    }

    /// The devices as `(free_bytes, total_bytes)`, by index (default one CPU device of
    /// 64 GiB, free = total).
    pub fn devices(mut self, devices: &[(u64, u64)]) -> Self {
        self.devices = devices.to_vec();
        self
    }

    /// How it answers (default [`ServerBehaviour::Normal`]).
    pub fn behaviour(mut self, behaviour: ServerBehaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    /// Listen on another loopback address (`127.0.0.2`, …: a second "host" on this
    /// machine); anything outside 127.0.0.0/8 is refused by [`start`](Self::start).
    pub fn ip(mut self, ip: std::net::Ipv4Addr) -> Self {
        self.ip = ip;
        self
    }

    /// Bind `127.0.0.1:0` (or the [`ip`](Self::ip) given) with a backlog of 1 and start
    /// serving on a new thread.
    pub fn start(self) -> std::io::Result<FakeRpcServer> {
        if !self.ip.is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the fake rpc-server listens on loopback only",
            ));
        }
        let ip = self.ip;
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(self.behaviour),
            changed: Notify::new(),
            shutdown: Notify::new(),
            connections: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            per_command: std::array::from_fn(|_| AtomicU64::new(0)),
            version: self.version,
            devices: self.devices,
            hello_extra: self.hello_extra,
        });
        // Bind and serve on the server's own thread and runtime (the caller may be inside
        // a runtime of its own), and hand the bound address back.
        let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<SocketAddr>>();
        let state = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("fake-rpc-server".to_string())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let bound =
                        bind(SocketAddr::from((ip, 0))).and_then(|l| Ok((l.local_addr()?, l)));
                    match bound {
                        Ok((addr, listener)) => {
                            serve(listener, addr, state, Some(tx)).await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })?;
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| std::io::Error::other("the fake rpc-server thread did not start"))??;
        Ok(FakeRpcServer {
            addr,
            shared,
            thread: Some(thread),
        })
    }
}

/// A running fake rpc-server on loopback; see the module docs.
#[derive(Debug)]
pub struct FakeRpcServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    behaviour: Mutex<ServerBehaviour>,
    changed: Notify,
    shutdown: Notify,
    connections: AtomicU64,
    commands: AtomicU64,
    per_command: [AtomicU64; 256],
    version: (u8, u8, u8),
    devices: Vec<(u64, u64)>,
    hello_extra: usize,
}

impl Shared {
    fn behaviour(&self) -> ServerBehaviour {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl FakeRpcServer {
    /// Defaults: version 7.0.0, one 64 GiB CPU device, [`ServerBehaviour::Normal`].
    pub fn builder() -> FakeRpcServerBuilder {
        FakeRpcServerBuilder {
            version: (7, 0, 0),
            devices: vec![(64 << 30, 64 << 30)],
            behaviour: ServerBehaviour::Normal,
            hello_extra: 0,
            ip: std::net::Ipv4Addr::LOCALHOST,
        }
    }

    /// `127.0.0.1:port`, what [`crate::probe`] takes.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Change how it answers (connections being served keep their behaviour until their
    /// next request).
    pub fn set_behaviour(&self, behaviour: ServerBehaviour) {
        *self
            .shared
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = behaviour;
        self.shared.changed.notify_one();
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Requests (command bytes) read so far, any command.
    pub fn commands(&self) -> u64 {
        self.shared.commands.load(Ordering::SeqCst)
    }

    /// Requests of command `cmd` read so far (e.g. 14 for HELLO).
    pub fn commands_of(&self, cmd: u8) -> u64 {
        self.shared.per_command[usize::from(cmd)].load(Ordering::SeqCst)
    }

    /// Attach a client the way llama-server does (connect, HELLO, read the reply) and
    /// keep it connected until the returned value is dropped: the server is then busy.
    /// Blocking, bounded by `timeout` per step.
    pub fn attach(&self, timeout: Duration) -> std::io::Result<AttachedClient> {
        let mut stream = std::net::TcpStream::connect_timeout(&self.addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut hello = vec![HELLO];
        hello.extend_from_slice(&24u64.to_le_bytes());
        hello.extend_from_slice(&[0; 24]);
        stream.write_all(&hello)?;
        let mut reply = [0u8; 8 + 28];
        stream.read_exact(&mut reply)?;
        Ok(AttachedClient { _stream: stream })
    }
}

impl Drop for FakeRpcServer {
    fn drop(&mut self) {
        self.shared.shutdown.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A client attached with [`FakeRpcServer::attach`]; dropping it disconnects.
#[derive(Debug)]
pub struct AttachedClient {
    _stream: std::net::TcpStream,
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // rpc-server calls listen(fd, 1).
    socket.listen(1)
}

/// Releases the held (non-listening) port, then listens on it again.
fn bind_after(held: &mut Option<TcpSocket>, addr: SocketAddr) -> std::io::Result<TcpListener> {
    drop(held.take());
    bind(addr)
}

/// `addr` bound but not listening.
fn bind_without_listening(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Accept and serve one connection at a time until shut down.
/// `ready` gets the address once the starting behaviour is in place (a fake that starts
/// refusing never accepts a connection).
async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut ready: Option<std::sync::mpsc::Sender<std::io::Result<SocketAddr>>>,
) {
    let mut listener = Some(listener);
    // While refusing, the port stays bound without listening: connections are refused
    // (RST) and no other socket (another test's fake) can take the port meanwhile.
    let mut held: Option<TcpSocket> = None;
    loop {
        let behaviour = shared.behaviour();
        match (behaviour, listener.is_some()) {
            (ServerBehaviour::Refuse, true) => {
                listener = None;
                held = bind_without_listening(addr).ok();
            }
            (ServerBehaviour::Refuse, false) | (ServerBehaviour::Busy, _) => {}
            (_, false) => match bind_after(&mut held, addr) {
                Ok(l) => listener = Some(l),
                Err(_) => {
                    // The port is briefly unavailable: retry after a short wait.
                    tokio::select! {
                        () = shared.shutdown.notified() => return,
                        () = tokio::time::sleep(Duration::from_millis(20)) => continue,
                    }
                }
            },
            (_, true) => {}
        }
        if let Some(tx) = ready.take() {
            let _ = tx.send(Ok(addr));
        }
        let accepting = match (&listener, behaviour) {
            (Some(l), b) if b != ServerBehaviour::Busy && b != ServerBehaviour::Refuse => Some(l),
            _ => None,
        };
        let Some(l) = accepting else {
            tokio::select! {
                () = shared.shutdown.notified() => return,
                () = shared.changed.notified() => continue,
            }
        };
        let stream = tokio::select! {
            () = shared.shutdown.notified() => return,
            () = shared.changed.notified() => continue,
            accepted = l.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        tokio::select! {
            () = shared.shutdown.notified() => return,
            () = serve_client(stream, &shared) => {}
        }
    }
}

/// Read one request: the command byte, the size, the payload (at most 4 KiB kept; a
/// larger request closes the connection, as the probe never sends one).
async fn read_request(stream: &mut TcpStream, shared: &Shared) -> Option<(u8, Vec<u8>)> {
    let cmd = stream.read_u8().await.ok()?;
    shared.commands.fetch_add(1, Ordering::SeqCst);
    shared.per_command[usize::from(cmd)].fetch_add(1, Ordering::SeqCst);
    let mut size = [0u8; 8];
    stream.read_exact(&mut size).await.ok()?;
    let size = u64::from_le_bytes(size);
    if size > 4096 {
        return None;
    }
    let mut payload = vec![0u8; size as usize];
    stream.read_exact(&mut payload).await.ok()?;
    Some((cmd, payload))
}

async fn reply(stream: &mut TcpStream, payload: &[u8]) -> Option<()> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    stream.write_all(&out).await.ok()
}

/// Keep the connection open, reading and discarding, until the client goes away.
async fn hold(stream: &mut TcpStream) {
    let mut sink = [0u8; 256];
    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
}

async fn serve_client(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let Some((cmd, payload)) = read_request(&mut stream, shared).await else {
        return;
    };
    let (major, minor, patch) = shared.version;
    match shared.behaviour() {
        ServerBehaviour::NeverAnswer => return hold(&mut stream).await,
        ServerBehaviour::CloseOnHello => return,
        ServerBehaviour::Garbage => {
            let page = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
            let _ = stream.write_all(page).await;
            return hold(&mut stream).await;
        }
        ServerBehaviour::CloseMidReply => {
            let mut out = 28u64.to_le_bytes().to_vec();
            out.extend_from_slice(&[major, minor]);
            let _ = stream.write_all(&out).await;
            return;
        }
        ServerBehaviour::HugeSize => {
            let mut out = (1u64 << 60).to_le_bytes().to_vec();
            out.extend_from_slice(&[major, minor, patch, 0]);
            let _ = stream.write_all(&out).await;
            return hold(&mut stream).await;
        }
        ServerBehaviour::Normal | ServerBehaviour::Busy | ServerBehaviour::Refuse => {}
    }
    // The first command must be HELLO of the right size, else the server hangs up.
    let legacy = major < 4;
    if cmd != HELLO || payload.len() != if legacy { 0 } else { 24 } {
        return;
    }
    let hello = if legacy {
        vec![major, minor, patch]
    } else {
        let mut r = vec![major, minor, patch, 0];
        r.extend_from_slice(&[0; 24]);
        r.extend(std::iter::repeat_n(0xAB, shared.hello_extra));
        r
    };
    if reply(&mut stream, &hello).await.is_none() {
        return;
    }
    loop {
        let Some((cmd, payload)) = read_request(&mut stream, shared).await else {
            return;
        };
        let answer = match cmd {
            DEVICE_COUNT if payload.is_empty() => {
                (shared.devices.len() as u32).to_le_bytes().to_vec()
            }
            GET_DEVICE_MEMORY if payload.len() == 4 => {
                let index = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
                let Some((free, total)) = shared.devices.get(index as usize) else {
                    return;
                };
                let mut r = free.to_le_bytes().to_vec();
                r.extend_from_slice(&total.to_le_bytes());
                r
            }
            // Any other command (or a wrong size): the real server would act on it or
            // hang up (an unknown command, a second HELLO); a probe never sends one.
            _ => return,
        };
        if reply(&mut stream, &answer).await.is_none() {
            return;
        }
    }
}
