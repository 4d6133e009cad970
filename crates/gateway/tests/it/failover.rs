//! Failures: before the first byte the gateway fails over (and keeps the node out for a
//! while); after it, it never retries and ends the stream with an error in the
//! protocol's shape; a client that leaves cancels the upstream request.

use std::time::Duration;

use futures_util::StreamExt;
use vramroute_gateway::{GatewayConfig, NODE_HEADER, REASON_HEADER};
use vramroute_ollama::testing::{FakeOllama, Fault};

use crate::support::{fake, header, node_id, view, Harness, NodeDef};

const GEN: &str = r#"{"model":"llama3.1:8b","prompt":"hi"}"#;

/// Node `a` is preferred (more free VRAM), `b` is the fallback.
async fn pair(a: &FakeOllama, b: &FakeOllama) -> Harness {
    Harness::start(
        view(&[
            NodeDef {
                fake: a,
                gpus: vec![(24576, 20000)],
            },
            NodeDef {
                fake: b,
                gpus: vec![(24576, 6000)],
            },
        ]),
        GatewayConfig::default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_before_the_first_byte_fail_over_and_back_off() {
    for fault in [Fault::InternalError, Fault::Busy, Fault::CloseWithoutReply] {
        let a = fake(&["llama3.1:8b"], |b| b.fault(fault));
        let b = fake(&["llama3.1:8b"], |b| b);
        let h = pair(&a, &b).await;
        let r = h.post("/api/generate", GEN).send().await.expect("answer");
        assert_eq!(r.status(), 200, "{fault:?}");
        assert_eq!(header(&r, NODE_HEADER), node_id(&b), "{fault:?}");
        assert!(
            header(&r, REASON_HEADER).contains("failover attempt 2"),
            "{}",
            header(&r, REASON_HEADER)
        );
        assert!(r.text().await.expect("body").contains("\"done\":true"));
        assert_eq!(a.stats("/api/generate").received, 1, "{fault:?}");
        // The failed node backs off: the next request goes straight to b.
        let r = h.post("/api/generate", GEN).send().await.expect("answer");
        assert_eq!(header(&r, NODE_HEADER), node_id(&b));
        let _ = r.bytes().await;
        assert_eq!(
            a.stats("/api/generate").received,
            1,
            "{fault:?}: retried a backing-off node"
        );
        assert_eq!(b.stats("/api/generate").received, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_down_is_skipped() {
    let gone = fake(&["llama3.1:8b"], |b| b);
    let b = fake(&["llama3.1:8b"], |b| b);
    let h = pair(&gone, &b).await;
    drop(gone); // its port now refuses connections
    let r = h
        .post("/api/chat", r#"{"model":"llama3.1:8b","messages":[]}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, NODE_HEADER), node_id(&b));
    // Every node down: 502 in Ollama's shape, naming what failed.
    drop(b);
    let r = h
        .post("/api/chat", r#"{"model":"llama3.1:8b","messages":[]}"#)
        .send()
        .await
        .expect("answer");
    assert!(r.status() == 502 || r.status() == 503, "{}", r.status());
    let e: serde_json::Value = r.json().await.expect("json error");
    assert!(e["error"].is_string(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retry_after_the_first_byte_the_stream_ends_with_an_error() {
    let a = fake(&["llama3.1:8b"], |b| {
        b.chunks(5).fault(Fault::AbortAfterChunks(2))
    });
    let b = fake(&["llama3.1:8b"], |b| b);
    let h = pair(&a, &b).await;
    // NDJSON: the two chunks, then Ollama's error line.
    let r = h.post("/api/generate", GEN).send().await.expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, NODE_HEADER), node_id(&a));
    let text = r.text().await.expect("the gateway ends the stream cleanly");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("tok0 ") && lines[1].contains("tok1 "),
        "{text}"
    );
    let last: serde_json::Value = serde_json::from_str(lines[2]).expect("a JSON error line");
    assert!(
        last["error"].as_str().unwrap_or("").contains("mid-stream"),
        "{last}"
    );
    // SSE: the error as a final event in OpenAI's shape.
    let r = h
        .post(
            "/v1/chat/completions",
            r#"{"model":"llama3.1:8b","stream":true,"messages":[]}"#,
        )
        .send()
        .await
        .expect("answer");
    let text = r.text().await.expect("body");
    let last = text.trim_end().rsplit("\n\n").next().unwrap_or("");
    let ev: serde_json::Value =
        serde_json::from_str(last.trim_start_matches("data: ")).expect("an SSE error event");
    assert!(ev["error"]["message"].is_string(), "{text}");
    assert_eq!(
        b.stats("/api/generate").received + b.stats("/v1/chat/completions").received,
        0,
        "retried after bytes were sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_cancels_the_upstream_request() {
    let a = fake(&["llama3.1:8b"], |b| {
        b.chunks(50).chunk_delay(Duration::from_millis(100))
    });
    let h = Harness::start(
        view(&[NodeDef {
            fake: &a,
            gpus: vec![(24576, 20000)],
        }]),
        GatewayConfig::default(),
    )
    .await;
    let r = h.post("/api/generate", GEN).send().await.expect("answer");
    let mut s = r.bytes_stream();
    let first = s.next().await.expect("a chunk").expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains("tok0"));
    drop(s);
    let seen = a
        .wait_for("/api/generate", Duration::from_secs(5), |st| {
            st.cancelled >= 1
        })
        .await;
    assert!(
        seen.is_some(),
        "the node kept streaming to nobody: {:?}",
        a.stats("/api/generate")
    );
    assert_eq!(a.stats("/api/generate").completed, 0);
    // Its in-flight count went back to zero.
    let gone = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if h.live
                .signals()
                .get(&node_id(&a))
                .is_some_and(|l| l.in_flight == 0)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "{:?}", h.live.signals().get(&node_id(&a)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_model_passes_it_on() {
    // The preferred node has not pulled it (Ollama's 404); the other has.
    let a = fake(&[], |b| b);
    let b = fake(&["llama3.1:8b"], |b| b);
    let h = pair(&a, &b).await;
    let r = h.post("/api/generate", GEN).send().await.expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, NODE_HEADER), node_id(&b));
    let _ = r.bytes().await;
    assert_eq!(a.stats("/api/generate").received, 1);
    // Pulled nowhere: Ollama's own 404 comes back.
    let r = h
        .post("/api/generate", r#"{"model":"llama3.2:1b","prompt":"hi"}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 404);
    let e: serde_json::Value = r.json().await.expect("json");
    assert!(
        e["error"].as_str().unwrap_or("").contains("not found"),
        "{e}"
    );
}
