//! Property test: whatever a client sends as a request body (arbitrary bytes, JSON
//! with hostile `model` values and fields), on every Ollama and OpenAI endpoint, the
//! gateway answers: no panic, no dropped connection, never a 500, and every error in
//! the protocol's JSON shape.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use vramroute_gateway::GatewayConfig;

use crate::support::{fake, view_with_ram, Harness, NodeDef};

const PATHS: &[&str] = &[
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
];

fn body() -> impl Strategy<Value = Vec<u8>> {
    let model = prop_oneof![
        Just(serde_json::json!("llama3.1:8b")),
        Just(serde_json::json!("mystery:7b")),
        any::<String>().prop_map(|s| serde_json::json!(s)),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        Just(serde_json::Value::Null),
        Just(serde_json::json!(["llama3.1:8b"])),
    ];
    let extra = prop_oneof![
        any::<String>().prop_map(|s| serde_json::json!(s)),
        any::<bool>().prop_map(|b| serde_json::json!(b)),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        Just(serde_json::json!([{"role": "user", "content": "hi"}])),
        Just(serde_json::json!({"num_ctx": -1})),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        (
            proptest::option::of(model),
            proptest::collection::vec(
                (
                    proptest::sample::select(
                        &[
                            "prompt",
                            "stream",
                            "messages",
                            "input",
                            "options",
                            "keep_alive"
                        ][..]
                    ),
                    extra
                ),
                0..4
            ),
        )
            .prop_map(|(model, fields)| {
                let mut map = serde_json::Map::new();
                if let Some(m) = model {
                    map.insert("model".into(), m);
                }
                for (k, v) in fields {
                    map.insert(k.into(), v);
                }
                serde_json::to_vec(&map).expect("serialisable")
            }),
    ]
}

#[test]
fn any_request_body_gets_an_answer_in_its_protocols_shape() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let node = fake(&["llama3.1:8b"], |b| b);
    let mut config = GatewayConfig::default();
    config.max_body_bytes = 4096;
    let h = runtime.block_on(Harness::start(
        view_with_ram(
            &[NodeDef {
                fake: &node,
                gpus: vec![(24_576, 20_000)],
            }],
            16_000,
        ),
        config,
    ));
    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    runner
        .run(
            &(proptest::sample::select(PATHS), body()),
            |(path, body)| {
                runtime.block_on(async {
                    let r = h
                        .client
                        .post(format!("{}{path}", h.url))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let r = match r {
                        Ok(r) => r,
                        Err(e) => {
                            prop_assert!(false, "{path}: no answer: {e}");
                            unreachable!()
                        }
                    };
                    let status = r.status().as_u16();
                    let text = r
                        .bytes()
                        .await
                        .map_err(|e| TestCaseError::fail(format!("{path}: body broke off: {e}")))?;
                    prop_assert_ne!(
                        status,
                        500,
                        "{}: {:?}",
                        path,
                        String::from_utf8_lossy(&text)
                    );
                    if status >= 400 {
                        let v: Result<serde_json::Value, _> = serde_json::from_slice(&text);
                        prop_assert!(
                            v.is_ok_and(|v| v.get("error").is_some()),
                            "{} {}: error not in JSON shape: {:?}",
                            path,
                            status,
                            String::from_utf8_lossy(&text)
                        );
                    }
                    Ok(())
                })
            },
        )
        .expect("every body gets an answer");
}
