//! The client against a real HTTP server speaking Ollama's shapes.

use std::time::{Duration, Instant};

use vramroute_ollama::testing::{Behaviour, FakeModel, FakeOllama};
use vramroute_ollama::{Error, OffloadVerdict, OllamaClient};

fn client(url: &str, timeout_ms: u64) -> OllamaClient {
    OllamaClient::new(url, Duration::from_millis(timeout_ms)).expect("valid url")
}

#[tokio::test]
async fn ps_tags_show_load_unload() {
    let fake = FakeOllama::start().unwrap();
    let mut m = FakeModel::new("llama3.1:8b", 4_920_000_000);
    m.model_info
        .insert("general.architecture".into(), "llama".into());
    m.model_info.insert("llama.block_count".into(), 32.into());
    fake.install(m);
    let c = client(&fake.url(), 2000);

    assert!(c.ps().await.unwrap().models.is_empty());
    assert_eq!(OffloadVerdict::from_ps(&c.ps().await), OffloadVerdict::Idle);

    let tags = c.tags().await.unwrap();
    assert_eq!(tags.models.len(), 1);
    assert_eq!(tags.models[0].size, 4_920_000_000);

    let show = c.show("llama3.1:8b").await.unwrap();
    assert_eq!(show.architecture(), Some("llama"));
    assert_eq!(show.arch_u64("block_count"), Some(32));

    c.load("llama3.1:8b", "1h").await.unwrap();
    let ps = c.ps().await.unwrap();
    assert_eq!(ps.models[0].size_vram, 4_920_000_000);
    assert_eq!(OffloadVerdict::from_ps(&Ok(ps)), OffloadVerdict::On);
    let calls = fake.generate_calls();
    assert_eq!(calls[0]["keep_alive"], "1h");
    assert!(calls[0].get("prompt").is_none(), "a load carries no prompt");

    c.unload("llama3.1:8b").await.unwrap();
    assert!(c.ps().await.unwrap().models.is_empty());
    assert_eq!(fake.generate_calls()[1]["keep_alive"], 0);
}

#[tokio::test]
async fn unknown_model_is_a_status_error() {
    let fake = FakeOllama::start().unwrap();
    let c = client(&fake.url(), 2000);
    match c.show("nope").await {
        Err(Error::Status { status: 404, .. }) => {}
        other => panic!("expected 404, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_error_and_hang_are_clean_errors() {
    let fake = FakeOllama::start().unwrap();
    let c = client(&fake.url(), 300);

    fake.set_behaviour(Behaviour::Garbage);
    assert!(matches!(c.ps().await, Err(Error::BadResponse { .. })));

    fake.set_behaviour(Behaviour::Error);
    assert!(matches!(
        c.ps().await,
        Err(Error::Status { status: 500, .. })
    ));

    fake.set_behaviour(Behaviour::Hang);
    let start = Instant::now();
    let err = c.ps().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(OffloadVerdict::from_ps(&Err(err)), OffloadVerdict::Unknown);
}

#[tokio::test]
async fn unreachable_server_says_what_to_check() {
    // Bind then drop a listener to get a loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = client(&format!("http://127.0.0.1:{port}"), 500);
    let err = c.ps().await.unwrap_err();
    assert!(
        err.to_string().contains("is `ollama serve` running"),
        "{err}"
    );
}

#[test]
fn bad_urls_are_refused() {
    for url in ["", "ftp://x", "http://", "https://example"] {
        assert!(
            OllamaClient::new(url, Duration::from_secs(1)).is_err(),
            "{url:?} accepted"
        );
    }
    let c = OllamaClient::new("http://127.0.0.1:11434/", Duration::from_secs(1)).unwrap();
    assert_eq!(c.base_url(), "http://127.0.0.1:11434");
}
