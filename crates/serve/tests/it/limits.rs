use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use vramroute_serve::{serve, ServeLimits};

/// Bound of every wait here: far above any timeout under test, so a loaded machine
/// cannot fail a test, while a server that never closes does.
const BOUND: Duration = Duration::from_secs(20);

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Holds `/slow` requests until released; counts those that reached the handler.
#[derive(Default)]
struct Gate {
    entered: AtomicUsize,
    release: Notify,
}

async fn start(limits: ServeLimits, gate: Arc<Gate>) -> Server {
    let app = axum::Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/slow",
            get(move || {
                let gate = gate.clone();
                async move {
                    gate.entered.fetch_add(1, Ordering::SeqCst);
                    gate.release.notified().await;
                    "released"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app, limits, async move {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}

fn limits(max: usize, header_ms: u64, idle_ms: u64) -> ServeLimits {
    ServeLimits::new(max)
        .with_header_read_timeout(Duration::from_millis(header_ms))
        .with_idle_timeout(Duration::from_millis(idle_ms))
}

/// Reads until the server closes the connection (or BOUND passes: a failure).
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + BOUND;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open for {BOUND:?}; got {:?}",
                String::from_utf8_lossy(&all)
            ),
        }
    }
}

/// One request on `s`; the answer's head and body (read by content length).
async fn request(s: &mut TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + BOUND;
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) => return text,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("read: {e}"),
            Err(_) => panic!("no answer to {path} within {BOUND:?}"),
        }
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let srv = start(limits(8, 300, 60_000), Arc::default()).await;
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    let got = read_until_closed(&mut s).await;
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test]
async fn a_head_sent_one_byte_at_a_time_is_dropped_after_the_header_timeout() {
    let srv = start(limits(8, 500, 60_000), Arc::default()).await;
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    let head = b"GET /ok HTTP/1.1\r\nhost: t\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut dropped = false;
    for byte in head.iter().take(head.len() - 2) {
        if s.write_all(&[*byte]).await.is_err() {
            dropped = true;
            break;
        }
        let mut buf = [0u8; 64];
        // 100 ms per byte: the head would take > 5 s; the server closes within 0.5 s.
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                dropped = true;
                break;
            }
            Ok(Ok(n)) => panic!("answered a head never finished: {:?}", &buf[..n]),
            Err(_) => {}
        }
    }
    assert!(dropped, "a head trickled over 5 s was kept open");
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_when_idle_but_a_slow_answer_is_not_cut() {
    let gate = Arc::new(Gate::default());
    let srv = start(limits(8, 10_000, 300), gate.clone()).await;
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    assert!(request(&mut s, "/ok").await.starts_with("HTTP/1.1 200"));
    // Nothing more: closed after the idle timeout (not the 10 s header timeout).
    let start = Instant::now();
    assert!(read_until_closed(&mut s).await.is_empty());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );

    // An answer silent for 4 idle timeouts still arrives.
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    let pending = tokio::spawn(async move { request(&mut s, "/slow").await });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    gate.release.notify_one();
    let answer = pending.await.expect("join");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("released"), "{answer}");
}

#[tokio::test]
async fn at_the_cap_idle_connections_make_room_and_busy_ones_get_503() {
    let gate = Arc::new(Gate::default());
    let srv = start(limits(3, 60_000, 60_000), gate.clone()).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let s = TcpStream::connect(srv.addr).await.expect("connect");
        idle.push(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A fourth is served: the oldest idle one is closed for it.
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    assert!(request(&mut s, "/ok").await.starts_with("HTTP/1.1 200"));
    assert!(read_until_closed(&mut idle[0]).await.is_empty());
    drop(s);
    drop(idle);

    // Three requests in progress hold the cap: a fourth connection gets 503 at once.
    let mut busy = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        busy.push(tokio::spawn(async move { request(&mut s, "/slow").await }));
    }
    let deadline = Instant::now() + BOUND;
    while gate.entered.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "the three requests never reached the handler"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    let refused = String::from_utf8_lossy(&read_until_closed(&mut s).await).to_string();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    for b in busy {
        gate.release.notify_one();
        assert!(b.await.expect("join").ends_with("released"));
    }
}

#[tokio::test]
async fn shutdown_closes_waiting_connections_and_refuses_new_ones() {
    let mut srv = start(limits(8, 60_000, 60_000), Arc::default()).await;
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    assert!(request(&mut s, "/ok").await.starts_with("HTTP/1.1 200"));
    let _never_sent = TcpStream::connect(srv.addr).await.expect("connect");
    // Half a head, then nothing: shutdown does not wait for its 60 s header timeout.
    let mut half = TcpStream::connect(srv.addr).await.expect("connect");
    half.write_all(b"GET /ok HT").await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = srv.stop.take().expect("once").send(());
    let ended = tokio::time::timeout(BOUND, &mut srv.task).await;
    assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
    assert!(TcpStream::connect(srv.addr).await.is_err());
}

#[tokio::test]
async fn invalid_limits_are_an_error_not_a_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let e = serve(
        listener,
        axum::Router::new(),
        ServeLimits::new(0),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("connection cap"), "{e}");
}
