//! The forwarding client: HTTP/1 connections to the nodes, each driven inside the task
//! of the request that uses it (no connection task of its own), kept in a small pool
//! per node between requests.
//!
//! hyper's pooled client runs every connection on a task of its own: each chunk of a
//! streamed answer then crosses from that task to the task answering the client (a
//! wake-up, often of another worker thread: an eventfd write and an `epoll_wait`), and
//! each chunk is written to the client on its own. Here the request's own task polls
//! the connection before the answer's body, so a chunk read from the node is handed on
//! in the same poll, and chunks that arrive together go out together.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Conn = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// Most idle connections kept per node.
const IDLE_PER_NODE: usize = 128;
/// Most polls of one wake-up that keep finding work before yielding to other tasks.
const SPINS: usize = 32;

/// One connection: the handle requests are sent on, and the connection itself, polled
/// by whoever uses it.
struct Pooled {
    sender: http1::SendRequest<Full<Bytes>>,
    conn: Conn,
    waker: Arc<Filter>,
}

/// Idle connections by node (`host:port`), each with the time it went idle, oldest first.
type IdleByNode = HashMap<String, Vec<(Pooled, Instant)>>;

/// The connections to the nodes.
pub(crate) struct Upstream {
    idle: Arc<Mutex<IdleByNode>>,
    idle_timeout: Duration,
    connect_timeout: Duration,
    sweeping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a request could not be sent.
pub(crate) enum SendError {
    /// No connection could be made.
    Connect(String),
    /// The request failed on an open connection.
    Request(String),
}

impl Upstream {
    pub(crate) fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Upstream {
            idle: Arc::default(),
            idle_timeout,
            connect_timeout,
            sweeping: AtomicBool::new(false),
        }
    }

    /// An idle connection to `authority` that is still open, newest first.
    fn checkout(&self, authority: &str) -> Option<Pooled> {
        let mut idle = lock(&self.idle);
        let list = idle.get_mut(authority)?;
        let now = Instant::now();
        while let Some((mut p, since)) = list.pop() {
            if now.duration_since(since) >= self.idle_timeout {
                // The rest are older still.
                list.clear();
                break;
            }
            // Anything the node sent while idle (a close) is read now; not woken later.
            let waker = Waker::noop();
            let mut cx = Context::from_waker(waker);
            if Pin::new(&mut p.conn).poll(&mut cx).is_ready() {
                continue;
            }
            if matches!(p.sender.poll_ready(&mut cx), Poll::Ready(Ok(()))) {
                return Some(p);
            }
        }
        None
    }

    fn checkin(self: &Arc<Self>, p: Checked) {
        // Wake-ups of an idle connection go nowhere (a close is seen at checkout).
        p.pooled.waker.clear();
        let authority = p.authority;
        let now = Instant::now();
        {
            let mut idle = lock(&self.idle);
            let list = idle.entry(authority).or_default();
            if list.len() >= IDLE_PER_NODE {
                list.remove(0);
            }
            list.push((p.pooled, now));
        }
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            // Closes connections left idle past the timeout, for nodes no longer used.
            let weak = Arc::downgrade(self);
            let every = (self.idle_timeout / 2).max(Duration::from_millis(10));
            tokio::spawn(sweep(weak, every));
        }
    }

    async fn connect(&self, authority: &str) -> Result<Pooled, SendError> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(authority)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(SendError::Connect(format!("{authority}: {e}"))),
                Err(_) => {
                    return Err(SendError::Connect(format!(
                        "{authority}: no connection within {:?}",
                        self.connect_timeout
                    )))
                }
            };
        // Small streamed chunks go out at once.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(format!("{authority}: {e}")))?;
        Ok(Pooled {
            sender,
            conn,
            waker: Filter::new(),
        })
    }

    /// Sends `req` to `authority` (`host:port`) on an idle connection or a new one, and
    /// drives the connection until the answer's head arrives. The answer's body drives
    /// it on and returns it to the pool when the answer is complete.
    pub(crate) async fn request(
        self: &Arc<Self>,
        authority: &str,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<UpstreamBody>, SendError> {
        let mut req = req;
        // A reused connection the node closed meanwhile fails before sending: once more
        // on a new one (as hyper's pooled client does).
        let mut reused = self.checkout(authority);
        loop {
            let was_reused = reused.is_some();
            let mut p = match reused.take() {
                Some(p) => p,
                None => self.connect(authority).await?,
            };
            let sent = p.sender.try_send_request(req);
            let mut sent = std::pin::pin!(sent);
            let mut conn = Some(p);
            let head = std::future::poll_fn(|cx| {
                let Some(c) = conn.as_mut() else {
                    return sent.as_mut().poll(cx);
                };
                let filter = c.waker.clone();
                drive(&filter, cx, &mut conn, |icx| sent.as_mut().poll(icx))
            })
            .await;
            match head {
                Ok(resp) => {
                    let (parts, incoming) = resp.into_parts();
                    let body = UpstreamBody {
                        incoming,
                        conn: conn.map(|pooled| Checked {
                            pooled,
                            authority: authority.to_owned(),
                        }),
                        pool: Arc::downgrade(self),
                    };
                    return Ok(hyper::Response::from_parts(parts, body));
                }
                Err(mut e) => {
                    let unsent = e.take_message();
                    match unsent {
                        Some(r) if was_reused => {
                            req = r;
                            continue;
                        }
                        _ => {
                            return Err(SendError::Request(crate::forward::error_chain(e.error())))
                        }
                    }
                }
            }
        }
    }
}

async fn sweep(pool: Weak<Upstream>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        let now = Instant::now();
        let mut idle = lock(&pool.idle);
        idle.retain(|_, list| {
            list.retain(|(_, since)| now.duration_since(*since) < pool.idle_timeout);
            !list.is_empty()
        });
    }
}

/// A connection in use, to go back to the pool of `authority`.
struct Checked {
    pooled: Pooled,
    authority: String,
}

/// Polls `conn` (dropped once it ends) and then `f`, with a waker that does not
/// reschedule this task for wake-ups it gives itself during the poll (hyper's
/// connection handing a chunk to the body, the body asking for more): those are polled
/// again at once instead. Wake-ups from elsewhere (the socket, timers) go through.
fn drive<T>(
    filter: &Arc<Filter>,
    cx: &mut Context<'_>,
    conn: &mut Option<Pooled>,
    mut f: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Poll<T> {
    filter.set(cx.waker());
    let waker = Waker::from(filter.clone());
    let mut icx = Context::from_waker(&waker);
    for _ in 0..SPINS {
        filter.begin();
        if let Some(c) = conn.as_mut() {
            // Ends when the node closes the connection (or it fails): what is in
            // flight then sees the error.
            if Pin::new(&mut c.conn).poll(&mut icx).is_ready() {
                *conn = None;
            }
        }
        let r = f(&mut icx);
        let again = filter.end();
        if r.is_ready() {
            return r;
        }
        if !again {
            return Poll::Pending;
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// A waker that records wake-ups while its task polls through it, and passes on the
/// others to the task's own waker.
struct Filter {
    polling: AtomicBool,
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Filter {
    fn new() -> Arc<Self> {
        Arc::new(Filter {
            polling: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            task: Mutex::new(None),
        })
    }

    fn set(&self, w: &Waker) {
        let mut task = lock(&self.task);
        match task.as_ref() {
            Some(t) if t.will_wake(w) => {}
            _ => *task = Some(w.clone()),
        }
    }

    fn clear(&self) {
        lock(&self.task).take();
    }

    fn begin(&self) {
        self.woken.store(false, Ordering::SeqCst);
        self.polling.store(true, Ordering::SeqCst);
    }

    /// Whether a wake-up came during the poll.
    fn end(&self) -> bool {
        self.polling.store(false, Ordering::SeqCst);
        self.woken.swap(false, Ordering::SeqCst)
    }
}

impl Wake for Filter {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            let task = lock(&self.task).clone();
            if let Some(t) = task {
                t.wake();
            }
        }
    }
}

/// A node's answer body; polling it drives the connection, which goes back to the
/// pool once the answer is read to its end (dropped earlier, the connection closes:
/// the node sees the request cancelled).
pub(crate) struct UpstreamBody {
    incoming: Incoming,
    conn: Option<Checked>,
    pool: Weak<Upstream>,
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(checked) = this.conn.as_mut() else {
            return Pin::new(&mut this.incoming).poll_frame(cx);
        };
        let filter = checked.pooled.waker.clone();
        let authority = std::mem::take(&mut checked.authority);
        let mut conn = this.conn.take().map(|c| c.pooled);
        let incoming = &mut this.incoming;
        let r = drive(&filter, cx, &mut conn, |icx| {
            Pin::new(&mut *incoming).poll_frame(icx)
        });
        let finished = matches!(r, Poll::Ready(None));
        match (conn, finished, this.pool.upgrade()) {
            (Some(mut p), true, Some(pool)) => {
                // Lets the connection see the answer complete before it is idle.
                let waker = Waker::noop();
                let mut icx = Context::from_waker(waker);
                if Pin::new(&mut p.conn).poll(&mut icx).is_pending() {
                    pool.checkin(Checked {
                        pooled: p,
                        authority,
                    });
                }
            }
            (Some(p), false, _) => {
                this.conn = Some(Checked {
                    pooled: p,
                    authority,
                })
            }
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.incoming)
    }

    fn size_hint(&self) -> SizeHint {
        http_body::Body::size_hint(&self.incoming)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A node on loopback answering `ok` to every request on a connection; counts the
    /// connections, and closes each after `per_conn` answers (without saying so).
    async fn node(per_conn: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let conns = Arc::new(AtomicUsize::new(0));
        let counted = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    for _ in 0..per_conn {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.clear();
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, conns)
    }

    async fn get(up: &Arc<Upstream>, authority: &str) -> Bytes {
        let mut req = hyper::Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = axum::http::Uri::from_static("/");
        let resp = match up.request(authority, req).await {
            Ok(r) => r,
            Err(SendError::Connect(e) | SendError::Request(e)) => panic!("request failed: {e}"),
        };
        resp.into_body().collect().await.expect("body").to_bytes()
    }

    #[tokio::test]
    async fn one_connection_serves_consecutive_requests() {
        let (addr, conns) = node(usize::MAX).await;
        let up = Arc::new(Upstream::new(
            Duration::from_secs(2),
            Duration::from_secs(60),
        ));
        for _ in 0..5 {
            assert_eq!(get(&up, &addr).await, "ok");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let (addr, conns) = node(usize::MAX).await;
        let up = Arc::new(Upstream::new(
            Duration::from_secs(2),
            Duration::from_millis(50),
        ));
        assert_eq!(get(&up, &addr).await, "ok");
        tokio::time::sleep(Duration::from_millis(150)).await;
        // The sweeper has closed it.
        assert!(lock(&up.idle).get(&addr).is_none_or(Vec::is_empty));
        assert_eq!(get(&up, &addr).await, "ok");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_node_closed_is_not_reused() {
        let (addr, conns) = node(1).await;
        let up = Arc::new(Upstream::new(
            Duration::from_secs(2),
            Duration::from_secs(60),
        ));
        for _ in 0..3 {
            assert_eq!(get(&up, &addr).await, "ok");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(conns.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let up = Arc::new(Upstream::new(
            Duration::from_secs(2),
            Duration::from_secs(60),
        ));
        let req = hyper::Request::new(Full::new(Bytes::new()));
        assert!(matches!(
            up.request(&addr, req).await,
            Err(SendError::Connect(_))
        ));
    }
}
