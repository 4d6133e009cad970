//! `vramroute-serve`: the one HTTP serving loop of vramroute's servers (the
//! coordinator's API, its Ollama/OpenAI gateway, the reporter's `/metrics`), so a slow
//! or idle client cannot hold a server's connections or file descriptors.
//!
//! **Owns:** accepting connections and serving an [`axum::Router`] on each (HTTP/1.1,
//! `TCP_NODELAY`) under [`ServeLimits`]:
//! - **header-read timeout** — a request head must be complete within
//!   `header_read_timeout` of the connection opening, and of its first byte on a kept-alive
//!   connection (a client sending one byte every few seconds is dropped);
//! - **idle timeout** — a kept-alive connection with no request for `idle_timeout` is
//!   closed; a request in progress (a long or silent streamed answer included) is never
//!   cut by it;
//! - **connection cap** — at `max_connections`, a new connection closes the connection
//!   that has waited longest for a request (idle or still sending its head), so a server
//!   full of idle connections still answers; when every connection is busy with a request
//!   the new one gets `503` and is closed at once, never queued.
//!
//! hyper's own `header_read_timeout` starts when a connection starts waiting for a
//! request, so it cannot tell a kept-alive wait from a slow head; this loop keeps the two
//! apart by following each connection's requests (a request is in progress from its head
//! until its answer's body is done).
//!
//! **Must not know:** what is served (routes, metrics, Redis): it takes a router.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use vramroute_serve::{serve, ServeLimits};
//! let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await?;
//! serve(listener, app, ServeLimits::new(256), std::future::pending()).await
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Default [`ServeLimits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServeLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`ServeLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// The largest [`ServeLimits::max_connections`] accepted.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;

/// What a served connection may take.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeLimits {
    /// Longest time from a connection opening (or from the first byte of a later request
    /// on it) to the end of the request head.
    pub header_read_timeout: Duration,
    /// Longest time a kept-alive connection waits for its next request.
    pub idle_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ServeLimits {
    /// The default timeouts with this connection cap.
    pub fn new(max_connections: usize) -> ServeLimits {
        ServeLimits {
            max_connections,
            ..ServeLimits::default()
        }
    }

    /// With this header-read timeout.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> ServeLimits {
        self.header_read_timeout = timeout;
        self
    }

    /// With this idle (keep-alive) timeout.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> ServeLimits {
        self.idle_timeout = timeout;
        self
    }

    /// Checks that every value is usable: timeouts above 0 and at most a day, a cap of 1
    /// to [`MAX_CONNECTIONS_LIMIT`].
    pub fn validate(&self) -> Result<()> {
        for (name, d) in [
            ("header-read timeout", self.header_read_timeout),
            ("idle timeout", self.idle_timeout),
        ] {
            if d.is_zero() || d > Duration::from_secs(24 * 3600) {
                return Err(Error::Limits(format!(
                    "the {name} must be above 0 and at most a day, got {d:?}"
                )));
            }
        }
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&self.max_connections) {
            return Err(Error::Limits(format!(
                "the connection cap must be 1 to {MAX_CONNECTIONS_LIMIT}, got {}",
                self.max_connections
            )));
        }
        Ok(())
    }

    /// How often each connection's deadlines are checked: a quarter of the shorter
    /// timeout, between 50 ms and 1 s.
    fn tick(&self) -> Duration {
        (self.header_read_timeout.min(self.idle_timeout) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// What can be wrong with serving settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A limit is out of range.
    #[error("invalid HTTP serving limit: {0}")]
    Limits(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Serves `router` on `listener` under `limits` until `shutdown` completes; then stops
/// accepting, closes every connection without a request in progress (idle ones, and
/// those still sending a head), lets requests in progress finish and returns when every
/// connection is closed. Fails only when `limits` are invalid;
/// accept errors (such as running out of file descriptors) are logged and retried.
pub async fn serve<F>(
    listener: TcpListener,
    router: axum::Router,
    limits: ServeLimits,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    limits
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let table = Arc::new(Table::default());
    let epoch = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut next_id: u64 = 0;
    loop {
        let tcp = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: back off, the cap and the
                    // timeouts free some.
                    table.warn(&format!("cannot accept a connection: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        if let Err(e) = tcp.set_nodelay(true) {
            debug!("cannot set TCP_NODELAY on a connection: {e}");
        }
        next_id += 1;
        let state = Arc::new(ConnState::new(epoch));
        if !table.admit(next_id, &state, limits.max_connections) {
            shed(&tcp);
            continue;
        }
        tasks.spawn(connection(
            next_id,
            tcp,
            state,
            router.clone(),
            limits.clone(),
            stop_rx.clone(),
            table.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Errors of one connection attempt, not of the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Refuses a connection over the cap: a `503` if the socket takes it now, then close.
fn shed(tcp: &TcpStream) {
    let _ = tcp.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n",
    );
}

/// "No time": a [`ConnState`] field that is unset.
const NONE: u64 = u64::MAX;

/// What the accept loop and a connection's watchdog know about one connection.
/// Times are milliseconds since the server's `epoch`.
#[derive(Debug)]
struct ConnState {
    epoch: Instant,
    /// Requests whose answer is not finished.
    in_flight: AtomicUsize,
    /// Requests begun on this connection.
    requests: AtomicU64,
    /// Since when it has waited for a request: when it opened, or when the last answer
    /// ended.
    waiting_since_ms: AtomicU64,
    /// The first byte of the next request head, when one came while none was in flight.
    head_started_ms: AtomicU64,
    /// Told to close (the cap needed its place).
    close: Notify,
}

impl ConnState {
    fn new(epoch: Instant) -> ConnState {
        let now = millis_since(epoch);
        ConnState {
            epoch,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            waiting_since_ms: AtomicU64::new(now),
            head_started_ms: AtomicU64::new(NONE),
            close: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        millis_since(self.epoch)
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            let _ = self.head_started_ms.compare_exchange(
                NONE,
                self.now_ms(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    /// Whether the connection is over one of its timeouts now.
    fn verdict(&self, limits: &ServeLimits) -> Verdict {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Verdict::Keep;
        }
        let now = self.now_ms();
        let header_ms = millis(limits.header_read_timeout);
        let since = |at: u64| now.saturating_sub(at);
        if self.requests.load(Ordering::SeqCst) == 0 {
            // The first request head is due within the header timeout of connecting.
            if since(self.waiting_since_ms.load(Ordering::SeqCst)) >= header_ms {
                return Verdict::HeaderTimeout;
            }
            return Verdict::Keep;
        }
        match self.head_started_ms.load(Ordering::SeqCst) {
            NONE if since(self.waiting_since_ms.load(Ordering::SeqCst))
                >= millis(limits.idle_timeout) =>
            {
                Verdict::Idle
            }
            NONE => Verdict::Keep,
            started if since(started) >= header_ms => Verdict::HeaderTimeout,
            _ => Verdict::Keep,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(NONE - 1)
}

fn millis_since(epoch: Instant) -> u64 {
    millis(epoch.elapsed())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    HeaderTimeout,
    Idle,
}

/// The open connections, for the cap.
#[derive(Default)]
struct Table {
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    /// When a warning was last logged (warnings are at most one per 10 s).
    last_warn: Mutex<Option<Instant>>,
    evicted: AtomicU64,
    refused: AtomicU64,
}

impl Table {
    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a new connection in; at the cap, closes the connection that has waited
    /// longest for a request, or refuses the new one when all are busy.
    fn admit(&self, id: u64, state: &Arc<ConnState>, max: usize) -> bool {
        let mut conns = self.conns();
        if conns.len() >= max {
            let victim = conns
                .iter()
                .filter(|(_, c)| c.in_flight.load(Ordering::SeqCst) == 0)
                .min_by_key(|(_, c)| c.waiting_since_ms.load(Ordering::SeqCst))
                .map(|(id, _)| *id);
            match victim.and_then(|v| conns.remove(&v)) {
                Some(c) => {
                    c.close.notify_one();
                    let n = self.evicted.fetch_add(1, Ordering::Relaxed) + 1;
                    drop(conns);
                    self.warn(&format!(
                        "connection cap ({max}) reached: closed the connection idle longest to take a new one ({n} so far)"
                    ));
                    return self.admit(id, state, max);
                }
                None => {
                    let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                    drop(conns);
                    self.warn(&format!(
                        "connection cap ({max}) reached with every connection busy: refused a connection with 503 ({n} so far)"
                    ));
                    return false;
                }
            }
        }
        conns.insert(id, state.clone());
        true
    }

    fn remove(&self, id: u64) {
        self.conns().remove(&id);
    }

    fn warn(&self, msg: &str) {
        let mut last = self.last_warn.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            warn!("{msg}");
        } else {
            debug!("{msg}");
        }
    }
}

/// Serves one connection until it ends, times out, is evicted or the server drains.
async fn connection(
    id: u64,
    tcp: TcpStream,
    state: Arc<ConnState>,
    router: axum::Router,
    limits: ServeLimits,
    mut stop: watch::Receiver<bool>,
    table: Arc<Table>,
) {
    let io = TokioIo::new(Tracked {
        io: tcp,
        state: state.clone(),
    });
    let svc_state = state.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = InFlight::begin(svc_state.clone());
        let mut router = router.clone();
        async move {
            // A Router is always ready: no poll_ready needed.
            let answer = tower_service::Service::call(&mut router, req.map(Body::new)).await;
            answer.map(|r| {
                r.map(|inner| Guarded {
                    inner,
                    _guard: guard,
                })
            })
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut draining = *stop.borrow();
    if draining {
        return table.remove(id);
    }
    let tick = limits.tick();
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    debug!("connection ended: {e}");
                }
                break;
            }
            () = tokio::time::sleep(tick) => match state.verdict(&limits) {
                // Draining: only requests in progress may finish.
                _ if draining && state.in_flight.load(Ordering::SeqCst) == 0 => break,
                Verdict::Keep => {}
                Verdict::HeaderTimeout => {
                    debug!("closing a connection: no complete request head within {:?}", limits.header_read_timeout);
                    break;
                }
                Verdict::Idle => {
                    debug!("closing a connection idle for {:?}", limits.idle_timeout);
                    break;
                }
            },
            () = state.close.notified() => {
                if state.in_flight.load(Ordering::SeqCst) == 0 {
                    break;
                }
                // A request began since it was picked: finish it, then close.
                conn.as_mut().graceful_shutdown();
            }
            _ = stop.changed(), if !draining => {
                draining = true;
                if state.in_flight.load(Ordering::SeqCst) == 0 {
                    break;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    table.remove(id);
}

/// The connection's socket, noting when bytes of a request head arrive.
struct Tracked {
    io: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// One request in progress, from its head until its answer's body is done or dropped.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn begin(state: Arc<ConnState>) -> InFlight {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        state.requests.fetch_add(1, Ordering::SeqCst);
        state.head_started_ms.store(NONE, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The wait starts before the count drops, so no check sees an old wait.
        self.0
            .waiting_since_ms
            .store(self.0.now_ms(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An answer's body that ends its request when it is done (or dropped).
struct Guarded {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServeLimits {
        ServeLimits::new(4)
            .with_header_read_timeout(Duration::from_secs(10))
            .with_idle_timeout(Duration::from_secs(60))
    }

    #[test]
    fn limits_out_of_range_are_refused_with_the_limit_named() {
        assert!(ServeLimits::default().validate().is_ok());
        let e = ServeLimits::new(0).validate().unwrap_err().to_string();
        assert!(e.contains("connection cap"), "{e}");
        let e = limits()
            .with_idle_timeout(Duration::ZERO)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("idle timeout"), "{e}");
        let e = limits()
            .with_header_read_timeout(Duration::from_secs(90_000))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("header-read timeout"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_request_is_due_within_the_header_timeout_of_connecting() {
        let s = ConnState::new(Instant::now());
        assert_eq!(s.verdict(&limits()), Verdict::Keep);
        tokio::time::advance(Duration::from_secs(9)).await;
        s.bytes_read();
        assert_eq!(s.verdict(&limits()), Verdict::Keep);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(s.verdict(&limits()), Verdict::HeaderTimeout);
    }

    #[tokio::test(start_paused = true)]
    async fn kept_alive_waits_are_idle_not_header_timeouts_and_requests_never_time_out() {
        let s = Arc::new(ConnState::new(Instant::now()));
        let guard = InFlight::begin(s.clone());
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(s.verdict(&limits()), Verdict::Keep, "a request in progress");
        drop(guard);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(s.verdict(&limits()), Verdict::Keep);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(s.verdict(&limits()), Verdict::Idle);

        // The next head's first byte starts the header timeout.
        let s = Arc::new(ConnState::new(Instant::now()));
        drop(InFlight::begin(s.clone()));
        tokio::time::advance(Duration::from_secs(5)).await;
        s.bytes_read();
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(s.verdict(&limits()), Verdict::Keep);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(s.verdict(&limits()), Verdict::HeaderTimeout);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_waiting_idle_connection_makes_room() {
        let table = Table::default();
        let epoch = Instant::now();
        let mut states: Vec<Arc<ConnState>> = Vec::new();
        for i in 0..3 {
            let s = Arc::new(ConnState::new(epoch));
            assert!(table.admit(i, &s, 3));
            states.push(s);
            // Opened at distinct times.
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        let busy = InFlight::begin(states[0].clone());
        let new = Arc::new(ConnState::new(epoch));
        assert!(table.admit(10, &new, 3));
        // states[0] is the oldest but busy: states[1] went.
        let ids: std::collections::BTreeSet<u64> = table.conns().keys().copied().collect();
        assert_eq!(ids, [0, 2, 10].into_iter().collect());
        let _b1 = InFlight::begin(states[2].clone());
        let _b2 = InFlight::begin(new.clone());
        // Everyone busy: refused.
        assert!(!table.admit(11, &Arc::new(ConnState::new(epoch)), 3));
        drop(busy);
        assert!(table.admit(12, &Arc::new(ConnState::new(epoch)), 3));
        assert!(!table.conns().contains_key(&0));
    }
}
