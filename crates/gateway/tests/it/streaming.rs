//! Streaming through the gateway: order and bytes preserved (NDJSON and SSE), chunks
//! relayed as they come, the node and reason headers, the union endpoints.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use vramroute_gateway::{GatewayConfig, NODE_FIELD, NODE_HEADER, REASON_HEADER};
use vramroute_ollama::testing::tokens;

use crate::support::{fake, header, node_id, view, Harness, NodeDef};

const CHAT: &str = r#"{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}"#;
const OPENAI_CHAT: &str =
    r#"{"model":"llama3.1:8b","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_and_sse_pass_through_byte_for_byte() {
    let tune = |b: vramroute_ollama::testing::FakeOllamaBuilder| b.chunks(6);
    let behind = fake(&["llama3.1:8b"], tune);
    let direct = fake(&["llama3.1:8b"], tune);
    let h = Harness::start(
        view(&[NodeDef {
            fake: &behind,
            gpus: vec![(24576, 20000)],
        }]),
        GatewayConfig::default(),
    )
    .await;

    for (path, body) in [("/api/chat", CHAT), ("/v1/chat/completions", OPENAI_CHAT)] {
        let via = h.post(path, body).send().await.expect("gateway answers");
        assert_eq!(via.status(), 200);
        assert_eq!(header(&via, NODE_HEADER), node_id(&behind));
        // "fits GPU 0" for the cold load; "already loaded on GPU 0" once a republish
        // (every 50 ms here) has marked the first request's reservation as loading.
        let reason = header(&via, REASON_HEADER);
        assert!(
            reason.contains("fits GPU 0") || reason.contains("already loaded on GPU 0"),
            "{reason}"
        );
        let ctype = header(&via, "content-type");
        let via = via.bytes().await.expect("body");
        let straight = h
            .client
            .post(format!("{}{path}", direct.url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("direct")
            .bytes()
            .await
            .expect("body");
        assert_eq!(via, straight, "{path}: the gateway changed the bytes");
        let text = String::from_utf8_lossy(&via);
        // Every token, in order.
        let mut at = 0;
        for i in 0..6 {
            let t = format!("tok{i} ");
            at = text[at..]
                .find(&t)
                .map(|p| p + at)
                .unwrap_or_else(|| panic!("{path}: {t} missing or out of order: {text}"));
        }
        if path.starts_with("/v1/") {
            assert!(ctype.starts_with("text/event-stream"), "{ctype}");
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        } else {
            assert!(ctype.starts_with("application/x-ndjson"), "{ctype}");
            assert!(
                text.lines().last().unwrap_or("").contains("\"done\":true"),
                "{text}"
            );
        }
        // The body the node got is the client's, untouched.
        assert_eq!(behind.last_body(path).as_deref(), Some(body.as_bytes()));
    }
    assert_eq!(tokens(2), "tok0 tok1 ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_are_relayed_as_they_come_not_buffered() {
    let node = fake(&["llama3.1:8b"], |b| {
        b.chunks(4).chunk_delay(Duration::from_millis(300))
    });
    let h = Harness::start(
        view(&[NodeDef {
            fake: &node,
            gpus: vec![(24576, 20000)],
        }]),
        GatewayConfig::default(),
    )
    .await;
    let start = Instant::now();
    let resp = h
        .post("/api/generate", r#"{"model":"llama3.1:8b","prompt":"hi"}"#)
        .send()
        .await
        .expect("answer");
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.expect("a first chunk").expect("bytes");
    let first_at = start.elapsed();
    assert!(
        String::from_utf8_lossy(&first).contains("tok0 "),
        "{first:?}"
    );
    let mut rest = Vec::new();
    while let Some(c) = stream.next().await {
        rest.extend_from_slice(&c.expect("bytes"));
    }
    let all_at = start.elapsed();
    // The first token arrived well before the last (3 × 300 ms later).
    assert!(
        first_at + Duration::from_millis(600) < all_at,
        "first {first_at:?}, all {all_at:?}"
    );
    assert!(String::from_utf8_lossy(&rest).contains("tok3 "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_ps_and_models_are_the_union_over_nodes() {
    let a = fake(&["llama3.1:8b"], |b| b);
    let b = fake(&["llama3.2:1b", "llama3.1:8b"], |b| b);
    b.set_loaded("llama3.2:1b", 1 << 30, 1 << 30);
    let h = Harness::start(
        view(&[
            NodeDef {
                fake: &a,
                gpus: vec![(24576, 20000)],
            },
            NodeDef {
                fake: &b,
                gpus: vec![(24576, 20000)],
            },
        ]),
        GatewayConfig::default(),
    )
    .await;
    let tags: serde_json::Value = h
        .client
        .get(format!("{}/api/tags", h.url))
        .send()
        .await
        .expect("tags")
        .json()
        .await
        .expect("json");
    let models = tags["models"].as_array().expect("models");
    assert_eq!(models.len(), 3, "{tags}");
    let on_b: Vec<&str> = models
        .iter()
        .filter(|m| m[NODE_FIELD] == node_id(&b).as_str())
        .map(|m| m["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(on_b.len(), 2, "{tags}");
    let ps: serde_json::Value = h
        .client
        .get(format!("{}/api/ps", h.url))
        .send()
        .await
        .expect("ps")
        .json()
        .await
        .expect("json");
    assert_eq!(ps["models"].as_array().map(Vec::len), Some(1), "{ps}");
    assert_eq!(ps["models"][0][NODE_FIELD], node_id(&b).as_str());
    let m: serde_json::Value = h
        .client
        .get(format!("{}/v1/models", h.url))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("json");
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"].as_array().map(Vec::len), Some(2), "{m}");
    let v = h
        .client
        .get(format!("{}/api/version", h.url))
        .send()
        .await
        .expect("version");
    assert_eq!(v.status(), 200);
    let v: serde_json::Value = v.json().await.expect("json");
    assert!(v["version"].is_string(), "{v}");
    let root = h
        .client
        .get(format!("{}/", h.url))
        .send()
        .await
        .expect("root");
    assert_eq!(root.text().await.expect("text"), "Ollama is running");
    let head = h
        .client
        .head(format!("{}/", h.url))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
}
