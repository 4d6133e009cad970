//! Every error answer, in the protocol's own shape; API keys.

use vramroute_gateway::{ApiKeys, GatewayConfig};

use crate::support::{fake, view, view_with_ram, Harness, NodeDef};

async fn status_and_json(r: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let r = r.send().await.expect("an answer");
    let st = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        st,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_errors_in_each_protocols_shape() {
    let a = fake(&["llama3.1:8b"], |b| b);
    let mut cfg = GatewayConfig::default();
    cfg.max_body_bytes = 4096;
    let h = Harness::start(
        view_with_ram(
            &[NodeDef {
                fake: &a,
                gpus: vec![(8192, 8000)],
            }],
            16_000,
        ),
        cfg,
    )
    .await;
    for (body, status, needle) in [
        ("{\"model\":", 400, "invalid JSON"),
        ("[1,2]", 400, "invalid JSON"),
        ("", 400, "missing request body"),
        ("{\"prompt\":\"hi\"}", 400, "model is required"),
        (
            "{\"model\":\"mystery:7b\"}",
            404,
            "model \"mystery:7b\" not found",
        ),
        (
            "{\"model\":\"llama3.1:70b\"}",
            503,
            "no node can take llama3.1:70b",
        ),
    ] {
        let (st, e) = status_and_json(h.post("/api/chat", body)).await;
        assert_eq!(st, status, "{body}: {e}");
        assert!(
            e["error"].as_str().unwrap_or("").contains(needle),
            "{body}: {e}"
        );
        let (st, e) = status_and_json(h.post("/v1/chat/completions", body)).await;
        assert_eq!(st, status, "{body}: {e}");
        let msg = e["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(needle), "{body}: {e}");
        assert!(
            e["error"]["type"].is_string() && e["error"]["code"].is_null(),
            "{e}"
        );
    }
    // The router's reason comes with "nothing fits".
    let (_, e) = status_and_json(h.post("/api/generate", "{\"model\":\"llama3.1:70b\"}")).await;
    assert!(e["error"].as_str().unwrap_or("").contains("40000"), "{e}");
    // Body size cap.
    let big = format!(
        "{{\"model\":\"llama3.1:8b\",\"prompt\":\"{}\"}}",
        "x".repeat(5000)
    );
    let (st, e) = status_and_json(h.post("/api/generate", &big)).await;
    assert_eq!(st, 413, "{e}");
    let (st, _) = status_and_json(h.client.get(format!("{}/api/nope", h.url))).await;
    assert_eq!(st, 404);
    assert_eq!(
        a.stats("/api/chat").received,
        0,
        "a bad request reached a node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_required_when_configured() {
    let a = fake(&["llama3.1:8b"], |b| b);
    let mut cfg = GatewayConfig::default();
    cfg.keys = ApiKeys::parse("k-one\nk-two\n");
    let h = Harness::start(
        view(&[NodeDef {
            fake: &a,
            gpus: vec![(24576, 20000)],
        }]),
        cfg,
    )
    .await;
    let body = r#"{"model":"llama3.1:8b","prompt":"hi","stream":false}"#;
    let (st, e) = status_and_json(h.post("/api/generate", body)).await;
    assert_eq!(st, 401);
    assert!(e["error"].as_str().unwrap_or("").contains("API key"), "{e}");
    let (st, e) = status_and_json(h.post("/v1/completions", body).bearer_auth("wrong")).await;
    assert_eq!(st, 401);
    assert_eq!(e["error"]["type"], "authentication_error", "{e}");
    let (st, _) = status_and_json(h.client.get(format!("{}/api/tags", h.url))).await;
    assert_eq!(st, 401);
    let r = h
        .post("/api/generate", body)
        .bearer_auth("k-two")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    // Liveness stays open, like Ollama's.
    let r = h
        .client
        .get(format!("{}/", h.url))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(a.stats("/api/generate").received, 1);
}
