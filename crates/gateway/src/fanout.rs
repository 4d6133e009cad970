//! Answers made from every live node's: `GET /api/tags` and `/api/ps` (the union, each
//! entry naming its node), `GET /v1/models` (the union by model id) and `/api/version`
//! (the first node that answers).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::forward::Shared;
use crate::shape::Protocol;

/// Most nodes asked at once.
const FANOUT_CONCURRENCY: usize = 32;
/// The field each union entry gets: the node it came from.
pub const NODE_FIELD: &str = "vramroute_node";

/// Fresh nodes with an Ollama, as `(node id, base URL)`.
fn targets(shared: &Shared) -> Vec<(String, String)> {
    let open = shared.breaker_open();
    shared
        .live
        .view()
        .nodes
        .iter()
        .filter(|n| n.in_registry && !n.stale && !open.iter().any(|o| *o == n.id))
        .filter_map(|n| Some((n.id.to_string(), n.ollama_url.as_ref()?.to_string())))
        .collect()
}

/// `GET path` on every target; the JSON answers, by node id, and how many failed.
async fn ask_all(shared: &Shared, path: &str) -> (Vec<(String, Value)>, usize) {
    let targets = targets(shared);
    let asked = targets.len();
    let answers: Vec<(String, Value)> = stream::iter(targets)
        .map(|(id, base)| async move {
            let url = format!("{}{path}", base.trim_end_matches('/'));
            let fut = shared.client.get(&url).send();
            let resp = tokio::time::timeout(shared.config.fanout_timeout, fut)
                .await
                .ok()?
                .ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body = tokio::time::timeout(shared.config.fanout_timeout, resp.bytes())
                .await
                .ok()?
                .ok()?;
            Some((id, serde_json::from_slice::<Value>(&body).ok()?))
        })
        .buffer_unordered(FANOUT_CONCURRENCY)
        .filter_map(|a| async move { a })
        .collect()
        .await;
    let failed = asked - answers.len();
    (answers, failed)
}

fn with_failures(body: Value, failed: usize) -> Response {
    let mut r = Json(body).into_response();
    if let Ok(v) = failed.to_string().parse() {
        r.headers_mut().insert("x-vramroute-unreachable-nodes", v);
    }
    r
}

/// `/api/tags` or `/api/ps`: every node's `models`, each entry with its node.
pub(crate) async fn union_models(shared: &Shared, path: &str) -> Response {
    let (answers, failed) = ask_all(shared, path).await;
    let mut models = Vec::new();
    let mut sorted = answers;
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (node, v) in sorted {
        let Some(list) = v.get("models").and_then(Value::as_array) else {
            continue;
        };
        for m in list {
            if let Value::Object(obj) = m {
                let mut obj = obj.clone();
                obj.insert(NODE_FIELD.to_owned(), Value::String(node.clone()));
                models.push(Value::Object(obj));
            }
        }
    }
    with_failures(json!({ "models": models }), failed)
}

/// `/v1/models`: the union of every node's models by id.
pub(crate) async fn union_openai_models(shared: &Shared) -> Response {
    let (answers, failed) = ask_all(shared, "/v1/models").await;
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for (_, v) in answers {
        for m in v
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(id) = m.get("id").and_then(Value::as_str) {
                by_id.entry(id.to_owned()).or_insert_with(|| m.clone());
            }
        }
    }
    let data: Vec<Value> = by_id.into_values().collect();
    with_failures(json!({ "object": "list", "data": data }), failed)
}

/// `/api/version`: the first node's answer.
pub(crate) async fn version(shared: &Shared) -> Response {
    for (id, base) in targets(shared).into_iter().take(4) {
        let url = format!("{}/api/version", base.trim_end_matches('/'));
        let Ok(Ok(resp)) =
            tokio::time::timeout(shared.config.fanout_timeout, shared.client.get(&url).send())
                .await
        else {
            continue;
        };
        if let Ok(v) = resp.json::<Value>().await {
            let mut r = Json(v).into_response();
            if let Ok(h) = id.parse() {
                r.headers_mut().insert(crate::forward::NODE_HEADER, h);
            }
            return r;
        }
    }
    Protocol::Ollama.error(
        StatusCode::SERVICE_UNAVAILABLE,
        "no Ollama node is reachable through this gateway",
    )
}
