//! Property test: whatever an Ollama peer answers on `/api/ps`, `/api/tags` and
//! `/api/show` (arbitrary bytes, JSON of the right shape with hostile values, any
//! status), the client returns a value or an error: no panic, and each answer within
//! its timeout. The peer is a real loopback HTTP/1.1 server writing the bytes raw.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use vramroute_ollama::{OffloadVerdict, OllamaClient};

/// What the raw server answers next: status and body.
type Answer = Arc<Mutex<(u16, Vec<u8>)>>;

/// A loopback server answering every request with the current [`Answer`], then
/// closing the connection.
fn raw_server() -> (String, Answer) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let answer: Answer = Arc::new(Mutex::new((200, Vec::new())));
    let shared = answer.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (status, body) = shared.lock().expect("lock").clone();
            let _ = serve(stream, status, &body);
        }
    });
    (url, answer)
}

fn serve(mut stream: TcpStream, status: u16, body: &[u8]) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    // Read the request head and its body (Content-Length), then answer.
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}

/// JSON with Ollama's field names and hostile values.
fn hostile_json() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|v| serde_json::json!(v)),
        any::<u64>().prop_map(|v| serde_json::json!(v)),
        any::<f64>().prop_map(|v| serde_json::json!(v)),
        any::<String>().prop_map(|v| serde_json::json!(v)),
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(|v| serde_json::json!(v)),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::vec(
                (
                    proptest::sample::select(
                        &[
                            "name",
                            "model",
                            "size",
                            "size_vram",
                            "details",
                            "model_info",
                            "general.architecture",
                            "llama.block_count",
                            "capabilities",
                            "parameter_size",
                            "context_length",
                            "expires_at",
                            "digest",
                        ][..]
                    ),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| serde_json::Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    });
    proptest::collection::vec(value, 0..4).prop_map(|models| {
        serde_json::to_vec(&serde_json::json!({ "models": models, "model_info": models.first() }))
            .expect("serialisable")
    })
}

#[test]
fn any_answer_is_a_value_or_an_error() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (url, answer) = raw_server();
    let client = OllamaClient::new(&url, Duration::from_secs(5)).expect("valid url");
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        hostile_json(),
    ];
    let status = prop_oneof![Just(200u16), Just(200), Just(404), Just(500), 100u16..600];
    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    runner
        .run(&(status, body), |(status, body)| {
            *answer.lock().expect("lock") = (status, body);
            runtime.block_on(async {
                let ps = client.ps().await;
                // The offload rule decides on any answer, error included.
                let _ = OffloadVerdict::from_ps(&ps);
                if let Ok(tags) = client.tags().await {
                    prop_assert!(status / 100 == 2, "{status} accepted as success");
                    let _ = tags.models.len();
                }
                if let Ok(show) = client.show("m").await {
                    let _ = (
                        show.architecture(),
                        show.arch_u64("block_count"),
                        show.parameter_count(),
                    );
                }
                Ok(())
            })
        })
        .expect("no answer may panic the client");
}
