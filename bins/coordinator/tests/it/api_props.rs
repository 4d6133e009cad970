//! Property test: the daemon's HTTP API decodes whatever a client sends (arbitrary
//! text, JSON of the route body's shape with hostile values, hostile query strings):
//! every request gets an answer, never a 500, always JSON, and the daemon stays up.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::support::*;

fn route_body() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        any::<String>().prop_map(|s| serde_json::json!(s)),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        any::<bool>().prop_map(|b| serde_json::json!(b)),
        Just(serde_json::Value::Null),
        Just(serde_json::json!("llama3.1:8b")),
        Just(serde_json::json!([1, 2])),
    ];
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            (
                proptest::sample::select(
                    &[
                        "model",
                        "size_mb",
                        "needs_gpu",
                        "allow_cpu",
                        "priority",
                        "policy",
                        "explain",
                    ][..]
                ),
                value
            ),
            0..7
        )
        .prop_map(|fields| {
            let map: serde_json::Map<String, serde_json::Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            serde_json::Value::Object(map).to_string()
        }),
    ]
}

/// A query string of the route/check/plan parameters with hostile, percent-encoded
/// values.
fn query() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (
            proptest::sample::select(
                &[
                    "model",
                    "size_mb",
                    "priority",
                    "policy",
                    "explain",
                    "ctx",
                    "needs_gpu",
                ][..],
            ),
            any::<String>(),
        ),
        0..4,
    )
    .prop_map(|kv| {
        kv.into_iter()
            .map(|(k, v)| {
                let enc: String = v.bytes().map(|b| format!("%{b:02X}")).collect();
                format!("{k}={enc}")
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

#[test]
fn the_api_answers_any_request_with_json_and_never_a_500() {
    let redis = RedisServer::start().unwrap();
    write_sollol_node(&redis, 11434, 50052, now());
    let port = free_port();
    let cfg = write_config(&format!(
        "redis_url: {}\ngateway_listen: off\nlisten: 127.0.0.1:{port}\n",
        redis.url()
    ));
    let daemon = Proc::spawn(
        Path::new(BIN),
        &["--config", cfg.path().to_str().unwrap(), "daemon"],
    );
    let up = wait_for(Duration::from_secs(15), || {
        http("GET", port, "/healthz", None)
    });
    assert!(up.is_some(), "daemon did not start: {}", daemon.log());

    let request = prop_oneof![
        route_body().prop_map(|b| ("POST", "/v1/route".to_owned(), Some(b))),
        query().prop_map(|q| ("GET", format!("/v1/route?{q}"), None)),
        query().prop_map(|q| ("GET", format!("/v1/check?{q}"), None)),
        query().prop_map(|q| ("GET", format!("/v1/plan?{q}"), None)),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    let result = runner.run(&request, |(method, path, body)| {
        let Some((status, text)) = http(method, port, &path, body.as_deref()) else {
            return Err(TestCaseError::fail(format!("{method} {path}: no answer")));
        };
        prop_assert_ne!(status, 500, "{} {}: {}", method, path, text);
        prop_assert!(
            serde_json::from_str::<serde_json::Value>(&text).is_ok(),
            "{} {} {}: not JSON: {}",
            method,
            path,
            status,
            text
        );
        Ok(())
    });
    result.unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{}", daemon.log()));
    let (status, _) = http("GET", port, "/healthz", None).expect("still up");
    assert_eq!(status, 200);
}
