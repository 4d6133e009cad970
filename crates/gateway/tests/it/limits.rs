//! The gateway's client connections are served under its `http` limits: an idle client
//! is closed by the header-read timeout, while an answer slower than the idle timeout
//! (a cold load before the first byte, slow chunks) is never cut.

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use vramroute_gateway::{GatewayConfig, ServeLimits};

use crate::support::{fake, view, Harness, NodeDef};

const CHAT: &str = r#"{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_are_closed_and_slow_answers_are_not_cut() {
    let node = fake(&["llama3.1:8b"], |b| {
        b.chunks(3)
            .first_byte_delay(Duration::from_millis(900))
            .chunk_delay(Duration::from_millis(400))
    });
    let mut cfg = GatewayConfig::default();
    cfg.http = ServeLimits::new(8)
        .with_header_read_timeout(Duration::from_millis(300))
        .with_idle_timeout(Duration::from_millis(300));
    let h = Harness::start(
        view(&[NodeDef {
            fake: &node,
            gpus: vec![(24576, 20000)],
        }]),
        cfg,
    )
    .await;

    // A connection that sends nothing is closed by the gateway (bounded wait: 20 s).
    let addr = h.url.trim_start_matches("http://").to_owned();
    let mut idle = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), idle.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "an idle client was kept: {read:?}"
    );

    // An answer whose first byte takes 3 idle timeouts, then chunks 400 ms apart.
    let start = Instant::now();
    let r = h.post("/api/chat", CHAT).send().await.expect("answer");
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("the whole body");
    assert!(start.elapsed() >= Duration::from_millis(900));
    for i in 0..3 {
        assert!(body.contains(&format!("tok{i} ")), "{body}");
    }
    assert!(body.contains("\"done\":true"), "{body}");
}
