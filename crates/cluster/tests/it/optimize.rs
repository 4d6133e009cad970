//! `optimize_tracked` against a real Ollama-shaped HTTP server whose `/api/ps` lags a
//! load: one load per model while it is in flight.

use vramroute_cluster::{optimize_tracked, OptimizeOptions, PendingLoads, StatusView};
use vramroute_ollama::testing::{FakeModel, FakeOllama};
use vramroute_registry::LoadedModel;
use vramroute_router::{Policy, Snapshot, SnapshotConfig};

use crate::common::{cluster, gpu, stats, NOW};

const MODEL: &str = "llama3.1:8b";

/// One 24 GiB GPU node whose Ollama is `ollama`; `loaded` as its report lists it.
fn view_of(ollama: &FakeOllama, loaded: bool) -> StatusView {
    let id = ollama.url().trim_start_matches("http://").to_owned();
    let models = if loaded {
        vec![LoadedModel::new(MODEL, Some(4700), Some(4700))]
    } else {
        Vec::new()
    };
    let node = stats(
        &id,
        vec![gpu(0, Some(24_576), Some(24_000))],
        Some((64_000, Some(50_000))),
        models,
        0.0,
    );
    StatusView::from_cluster(
        &cluster(vec![node], Vec::new()),
        "test".into(),
        NOW,
        30.0,
        0.8,
    )
}

/// One daemon pass: a fresh snapshot of `view`, the same `pending` every time.
async fn pass(view: &StatusView, pending: &PendingLoads) -> (&'static str, String) {
    let cfg = SnapshotConfig::default();
    let snap = Snapshot::build(view.node_specs(&cfg), &cfg).expect("snapshot");
    let opts = OptimizeOptions::new(
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(5),
    );
    let out = optimize_tracked(
        view,
        &snap,
        &Policy::default(),
        &[MODEL.to_owned()],
        &opts,
        pending,
    )
    .await;
    assert_eq!(out.len(), 1);
    (out[0].action, out[0].reason.clone())
}

#[tokio::test]
async fn a_load_in_flight_is_sent_once_while_api_ps_lags() {
    let ollama = FakeOllama::builder()
        .model(FakeModel::new(MODEL, 4700 << 20))
        .start()
        .expect("fake ollama");
    // /api/ps leaves the new model out of its next 3 answers.
    ollama.set_ps_lag(3);
    let pending = PendingLoads::new();
    let stale = view_of(&ollama, false);
    let mut actions = Vec::new();
    for _ in 0..5 {
        actions.push(pass(&stale, &pending).await);
    }
    let names: Vec<&str> = actions.iter().map(|a| a.0).collect();
    // Sent, then waited on while /api/ps lags, then confirmed by /api/ps while the
    // node's report still lags: never sent again.
    assert_eq!(
        names,
        [
            "loading",
            "loading",
            "loading",
            "already_loaded",
            "already_loaded"
        ],
        "{actions:#?}"
    );
    assert!(actions[1].1.contains("not sending another"), "{actions:#?}");
    assert!(actions[3].1.contains("has not caught up"), "{actions:#?}");
    assert_eq!(ollama.generate_calls().len(), 1, "{actions:#?}");
    assert_eq!(ollama.stats("/api/generate").received, 1);
    assert_eq!(pending.len(), 1);

    // The report catches up: nothing is in flight any more.
    let fresh = view_of(&ollama, true);
    assert_eq!(pass(&fresh, &pending).await.0, "already_loaded");
    assert!(pending.is_empty());
    assert_eq!(ollama.generate_calls().len(), 1);
}

#[tokio::test]
async fn a_failed_load_is_not_in_flight_and_is_tried_again() {
    // Nothing installed: every load gets Ollama's 404.
    let ollama = FakeOllama::start().expect("fake ollama");
    let pending = PendingLoads::new();
    let view = view_of(&ollama, false);
    for _ in 0..2 {
        let (action, reason) = pass(&view, &pending).await;
        assert_eq!(action, "failed", "{reason}");
        assert!(pending.is_empty());
    }
    assert_eq!(ollama.stats("/api/generate").received, 2);
}

/// `ask_ollama_nodes` asks every node at once over real HTTP and answers in the order
/// asked: a node that answers with its `/api/ps` and `/api/tags`, one that refuses the
/// connection and a URL that cannot be used, each with why.
#[tokio::test]
async fn ollama_nodes_are_asked_at_once_and_answer_in_order() {
    use vramroute_ollama::testing::{FakeModel, FakeOllama};
    let fake = FakeOllama::start().unwrap();
    fake.install(FakeModel::new("llama3.1:8b", 4_920_000_000));
    fake.set_loaded("llama3.1:8b", 4_920_000_000, 4_920_000_000);
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let urls = vec![fake.url(), refused.clone(), "not a url".to_owned()];
    let got = vramroute_cluster::ask_ollama_nodes(&urls, std::time::Duration::from_secs(2)).await;
    let asked: Vec<&str> = got.iter().map(|n| n.url.as_str()).collect();
    assert_eq!(asked, [fake.url().as_str(), refused.as_str(), "not a url"]);
    let ps = got[0].ps.as_ref().expect("the fake's /api/ps");
    assert_eq!(ps.models.len(), 1);
    assert_eq!(ps.models[0].name, "llama3.1:8b");
    let tags = got[0].tags.as_ref().expect("the fake's /api/tags");
    assert!(tags.models.iter().any(|m| m.name == "llama3.1:8b"));
    for node in &got[1..] {
        assert!(
            node.ps.is_err() && node.tags.is_err(),
            "{}: {:?}",
            node.url,
            node.ps
        );
    }
}
