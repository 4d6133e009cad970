//! The fake Ollama server against real HTTP clients: reqwest, and raw TCP where the
//! exact bytes (or their absence) matter. Every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use vramroute_ollama::testing::{token, tokens, FakeModel, FakeOllama, Fault, Knobs};

const MODEL: &str = "llama3.1:8b";
const WAIT: Duration = Duration::from_secs(5);

fn fake(chunks: usize) -> FakeOllama {
    FakeOllama::builder()
        .model(FakeModel::new(MODEL, 4_920_000_000))
        .chunks(chunks)
        .start()
        .expect("fake ollama starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("client")
}

async fn post(fake: &FakeOllama, path: &str, body: &str) -> reqwest::Response {
    http()
        .post(format!("{}{path}", fake.url()))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request sent")
}

fn content_type(r: &reqwest::Response) -> String {
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Reads a response body chunk by chunk; the bytes received and whether it ended in an
/// error (an aborted connection) rather than cleanly.
async fn read_all(mut r: reqwest::Response) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    for _ in 0..10_000 {
        match r.chunk().await {
            Ok(Some(c)) => bytes.extend_from_slice(&c),
            Ok(None) => return (bytes, false),
            Err(_) => return (bytes, true),
        }
    }
    panic!("body never ended");
}

/// Sends `request` on a raw connection and reads until the server closes it (or
/// `WAIT` passes): everything the server sent.
fn raw_exchange(addr: SocketAddr, request: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn raw_post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn generate_streams_ndjson_chunks_in_order() {
    let fake = fake(4);
    let r = post(
        &fake,
        "/api/generate",
        r#"{"model":"llama3.1:8b","prompt":"hi"}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(content_type(&r), "application/x-ndjson");
    let (bytes, aborted) = read_all(r).await;
    assert!(!aborted);
    let text = String::from_utf8(bytes).expect("utf-8");
    assert!(text.ends_with('\n'), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(
        lines[0],
        r#"{"model":"llama3.1:8b","created_at":"2026-11-23T08:52:19.385406455Z","response":"tok0 ","done":false}"#
    );
    for (i, line) in lines[..4].iter().enumerate() {
        let v: Value = serde_json::from_str(line).expect(line);
        assert_eq!(v["response"], token(i).as_str());
        assert_eq!(v["done"], false);
    }
    let last: Value = serde_json::from_str(lines[4]).expect("json");
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["response"], "");
    assert_eq!(last["eval_count"], 4);
    assert!(last["total_duration"].as_u64().is_some_and(|d| d > 0));
    let keys = [
        "\"done\"",
        "\"done_reason\"",
        "\"context\"",
        "\"total_duration\"",
    ];
    let at: Vec<usize> = keys.iter().map(|k| lines[4].find(k).expect(k)).collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "Ollama's order: {}",
        lines[4]
    );

    let s = fake.stats("/api/generate");
    assert_eq!(
        (s.received, s.completed, s.cancelled, s.failed),
        (1, 1, 0, 0)
    );
}

#[tokio::test]
async fn chat_streams_messages_and_answers_whole_when_not_streamed() {
    let fake = fake(3);
    let body = r#"{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}"#;
    let (bytes, _) = read_all(post(&fake, "/api/chat", body).await).await;
    let text = String::from_utf8(bytes).expect("utf-8");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert_eq!(lines.len(), 4);
    for (i, v) in lines[..3].iter().enumerate() {
        assert_eq!(v["message"]["role"], "assistant");
        assert_eq!(v["message"]["content"], token(i).as_str());
    }
    assert_eq!(lines[3]["done"], true);
    assert_eq!(lines[3]["done_reason"], "stop");

    let body =
        r#"{"model":"llama3.1:8b","stream":false,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(&fake, "/api/chat", body).await;
    assert_eq!(content_type(&r), "application/json; charset=utf-8");
    let v: Value = r.json().await.expect("one JSON object");
    assert_eq!(v["message"]["content"], tokens(3).as_str());
    assert_eq!(v["message"]["content"], "tok0 tok1 tok2 ");
    assert_eq!(v["eval_count"], 3);
    assert_eq!(fake.stats("/api/chat").completed, 2);
}

#[tokio::test]
async fn openai_chat_streams_server_sent_events_ending_in_done() {
    let fake = fake(3);
    let body =
        r#"{"model":"llama3.1:8b","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(&fake, "/v1/chat/completions", body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(content_type(&r), "text/event-stream");
    let (bytes, aborted) = read_all(r).await;
    assert!(!aborted);
    let text = String::from_utf8(bytes).expect("utf-8");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(
        events.len(),
        5,
        "3 chunks, the finish chunk, [DONE]: {text}"
    );
    assert_eq!(
        events[0],
        r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1795423939,"model":"llama3.1:8b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"tok0 "},"finish_reason":null}]}"#
    );
    for (i, e) in events[..4].iter().enumerate() {
        let json = e.strip_prefix("data: ").expect(e);
        let v: Value = serde_json::from_str(json).expect(json);
        assert_eq!(v["object"], "chat.completion.chunk");
        let choice = &v["choices"][0];
        if i < 3 {
            assert_eq!(choice["delta"]["content"], token(i).as_str());
            assert!(choice["finish_reason"].is_null());
        } else {
            assert_eq!(choice["delta"]["content"], "");
            assert_eq!(choice["finish_reason"], "stop");
        }
    }
    assert_eq!(events[4], "data: [DONE]");

    // Not streamed unless asked: one chat.completion with usage.
    let body = r#"{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(&fake, "/v1/chat/completions", body).await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["id"], "chatcmpl-2");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "tok0 tok1 tok2 ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 29);
}

#[tokio::test]
async fn openai_completions_embeddings_and_models() {
    let fake = fake(2);
    let r = post(
        &fake,
        "/v1/completions",
        r#"{"model":"llama3.1:8b","prompt":"hi","stream":true}"#,
    )
    .await;
    let (bytes, _) = read_all(r).await;
    let text = String::from_utf8(bytes).expect("utf-8");
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(events.len(), 4, "{text}");
    let first: Value = serde_json::from_str(&events[0][6..]).expect("json");
    assert_eq!(first["object"], "text_completion");
    assert_eq!(first["choices"][0]["text"], "tok0 ");
    assert_eq!(events[3], "data: [DONE]");

    let r = post(
        &fake,
        "/v1/embeddings",
        r#"{"model":"llama3.1:8b","input":["a","b"]}"#,
    )
    .await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["data"][1]["index"], 1);

    let r = post(
        &fake,
        "/api/embed",
        r#"{"model":"llama3.1:8b","input":"a"}"#,
    )
    .await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["embeddings"].as_array().map(Vec::len), Some(1));
    let r = post(
        &fake,
        "/api/embeddings",
        r#"{"model":"llama3.1:8b","prompt":"a"}"#,
    )
    .await;
    let v: Value = r.json().await.expect("json");
    assert!(v["embedding"].as_array().is_some_and(|e| !e.is_empty()));

    let r = http()
        .get(format!("{}/v1/models", fake.url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        r.text().await.expect("text"),
        r#"{"object":"list","data":[{"id":"llama3.1:8b","object":"model","created":1795423939,"owned_by":"library"}]}"#
    );
}

#[tokio::test]
async fn unknown_models_get_ollamas_404_shapes() {
    let fake = fake(2);
    let r = post(
        &fake,
        "/api/chat",
        r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#,
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.text().await.expect("text"),
        r#"{"error":"model \"nope\" not found, try pulling it first"}"#
    );
    let r = post(&fake, "/api/generate", r#"{"model":"nope","prompt":"x"}"#).await;
    assert_eq!(r.status(), 404);
    let r = post(
        &fake,
        "/v1/chat/completions",
        r#"{"model":"nope","messages":[]}"#,
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.text().await.expect("text"),
        r#"{"error":{"message":"model \"nope\" not found, try pulling it first","type":"not_found_error","param":null,"code":null}}"#
    );
    // A name without a tag finds `:latest`, as in Ollama.
    fake.install(FakeModel::new("qwen3:latest", 1));
    let r = post(&fake, "/api/embed", r#"{"model":"qwen3","input":"x"}"#).await;
    assert_eq!(r.status(), 200);
    // Removing a model makes it unknown.
    fake.uninstall("qwen3:latest");
    let r = post(&fake, "/api/embed", r#"{"model":"qwen3","input":"x"}"#).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn version_root_and_head() {
    let fake = FakeOllama::builder()
        .version("0.9.1")
        .start()
        .expect("starts");
    let r = http()
        .get(format!("{}/api/version", fake.url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.text().await.expect("text"), r#"{"version":"0.9.1"}"#);
    let r = http().get(fake.url()).send().await.expect("sent");
    assert_eq!(r.text().await.expect("text"), "Ollama is running");
    let r = http().head(fake.url()).send().await.expect("sent");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("text"), "");
    let r = http()
        .get(format!("{}/api/nothing", fake.url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn failures_before_the_first_byte() {
    let fake = fake(3);
    let chat = r#"{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}"#;

    fake.set_fault(Fault::InternalError);
    let r = post(&fake, "/api/chat", chat).await;
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.text().await.expect("text"),
        r#"{"error":"llama runner process has terminated: exit status 2"}"#
    );
    let r = post(&fake, "/v1/chat/completions", chat).await;
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["type"], "api_error");
    assert!(v["error"]["param"].is_null() && v["error"]["code"].is_null());

    fake.set_fault(Fault::Busy);
    let r = post(&fake, "/api/chat", chat).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.expect("json");
    assert!(v["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("server busy")));

    fake.set_fault(Fault::CloseWithoutReply);
    let got = raw_exchange(fake.addr(), &raw_post("/api/chat", chat));
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(post_may_fail(&fake, "/api/chat", chat).await.is_err());

    let s = fake.stats("/api/chat");
    assert_eq!(
        (s.received, s.failed, s.completed, s.cancelled),
        (4, 4, 0, 0)
    );

    // Changed back at run time through a handle, from another thread.
    let handle = fake.handle();
    std::thread::spawn(move || handle.set_fault(Fault::None))
        .join()
        .expect("thread");
    assert_eq!(post(&fake, "/api/chat", chat).await.status(), 200);
}

async fn post_may_fail(
    fake: &FakeOllama,
    path: &str,
    body: &str,
) -> reqwest::Result<reqwest::Response> {
    http()
        .post(format!("{}{path}", fake.url()))
        .body(body.to_owned())
        .send()
        .await
}

#[tokio::test]
async fn abort_after_n_chunks_leaves_an_incomplete_body() {
    let fake = fake(5);
    fake.set_fault(Fault::AbortAfterChunks(2));
    let r = post(
        &fake,
        "/api/generate",
        r#"{"model":"llama3.1:8b","prompt":"hi"}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    let (bytes, aborted) = read_all(r).await;
    assert!(aborted, "the client must see an error, not a clean end");
    let text = String::from_utf8(bytes).expect("utf-8");
    let responses: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect(l)["response"].to_string())
        .collect();
    assert_eq!(responses, ["\"tok0 \"", "\"tok1 \""]);

    // SSE: every chunk but no [DONE] when N is the number of chunks.
    fake.set_fault(Fault::AbortAfterChunks(5));
    let body =
        r#"{"model":"llama3.1:8b","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (bytes, aborted) = read_all(post(&fake, "/v1/chat/completions", body).await).await;
    assert!(aborted);
    let text = String::from_utf8(bytes).expect("utf-8");
    assert_eq!(text.matches("data: ").count(), 5, "{text}");
    assert!(!text.contains("[DONE]"));

    // Not streamed: half a body under the full Content-Length.
    let body = r#"{"model":"llama3.1:8b","prompt":"hi","stream":false}"#;
    let r = post(&fake, "/api/generate", body).await;
    let (bytes, aborted) = read_all(r).await;
    assert!(aborted);
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());
    assert_eq!(fake.stats("/api/generate").failed, 2);
}

#[tokio::test]
async fn a_client_that_goes_away_mid_stream_is_counted_as_cancelled() {
    let fake = FakeOllama::builder()
        .model_named(MODEL)
        .chunks(200)
        .chunk_delay(Duration::from_millis(20))
        .start()
        .expect("starts");
    let chat = r#"{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}"#;
    let mut s = TcpStream::connect(fake.addr()).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(raw_post("/api/chat", chat).as_bytes())
        .expect("write");
    // Read until the first chunk has arrived, then hang up.
    let mut got = Vec::new();
    let start = Instant::now();
    while !String::from_utf8_lossy(&got).contains("tok1 ") {
        assert!(
            start.elapsed() < WAIT,
            "no chunk: {:?}",
            String::from_utf8_lossy(&got)
        );
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    drop(s);
    let stats = fake
        .wait_for("/api/chat", WAIT, |s| s.cancelled == 1)
        .await
        .expect("the dropped stream is counted as cancelled");
    assert_eq!((stats.received, stats.completed, stats.failed), (1, 0, 0));
}

#[tokio::test]
async fn delays_hold_back_the_first_byte_and_space_the_chunks() {
    let fake = fake(4);
    let mut knobs = Knobs::default();
    knobs.chunks = 4;
    knobs.chunk_delay = Duration::from_millis(40);
    knobs.first_byte_delay = Duration::from_millis(150);
    fake.set_knobs(knobs.clone());
    assert_eq!(fake.knobs(), knobs);
    let start = Instant::now();
    let r = post(
        &fake,
        "/api/generate",
        r#"{"model":"llama3.1:8b","prompt":"hi"}"#,
    )
    .await;
    let headers_after = start.elapsed();
    let (bytes, _) = read_all(r).await;
    assert!(
        headers_after >= Duration::from_millis(150),
        "{headers_after:?}"
    );
    // Four chunks and the final object: four gaps.
    assert!(
        start.elapsed() >= Duration::from_millis(150 + 4 * 40),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(String::from_utf8(bytes).expect("utf-8").lines().count(), 5);
}

#[tokio::test]
async fn the_last_request_body_is_kept_byte_for_byte() {
    let fake = fake(1);
    let body =
        "{ \"model\" : \"llama3.1:8b\",\n  \"prompt\":\"h\u{e9}\", \"options\":{\"seed\":7} }";
    let r = post(&fake, "/api/generate", body).await;
    assert_eq!(r.status(), 200);
    let _ = read_all(r).await;
    assert_eq!(
        fake.last_body("/api/generate").as_deref(),
        Some(body.as_bytes())
    );
    assert_eq!(fake.last_body("/api/chat"), None);
    // Bad JSON is a 400 in Ollama's shape, and still counted and kept.
    let r = post(&fake, "/api/chat", "{not json").await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert!(v["error"].is_string());
    assert_eq!(
        fake.last_body("/api/chat").as_deref(),
        Some(&b"{not json"[..])
    );
}

#[tokio::test]
async fn error_after_n_chunks_is_sent_in_band_as_ollama_does() {
    let fake = fake(4);
    fake.set_fault(Fault::ErrorAfterChunks(1));
    let chat = r#"{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(&fake, "/api/chat", chat).await;
    assert_eq!(r.status(), 200, "the status went out before the failure");
    let (bytes, aborted) = read_all(r).await;
    assert!(!aborted);
    let text = String::from_utf8(bytes).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains(r#""content":"tok0 ""#), "{text}");
    assert_eq!(
        lines[1],
        r#"{"error":"an error was encountered while running the model"}"#
    );

    let body =
        r#"{"model":"llama3.1:8b","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (bytes, aborted) = read_all(post(&fake, "/v1/chat/completions", body).await).await;
    assert!(!aborted);
    let text = String::from_utf8(bytes).expect("utf-8");
    assert!(text.starts_with("data: {"), "{text}");
    assert!(
        text.ends_with(
            "\n\n{\"error\":{\"message\":\"an error was encountered while running the model\",\"type\":\"api_error\",\"param\":null,\"code\":null}}\n"
        ),
        "raw JSON after one event, no [DONE]: {text}"
    );

    let body =
        r#"{"model":"llama3.1:8b","stream":false,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(post(&fake, "/api/chat", body).await.status(), 500);
    let s = fake.stats("/api/chat");
    assert_eq!((s.failed, s.completed), (2, 0));
}

#[tokio::test]
async fn a_client_that_goes_away_before_the_first_byte_is_counted_as_cancelled() {
    let fake = FakeOllama::builder()
        .model_named(MODEL)
        .first_byte_delay(Duration::from_secs(3))
        .start()
        .expect("starts");
    let body = r#"{"model":"llama3.1:8b","input":"x"}"#;
    let mut s = TcpStream::connect(fake.addr()).expect("connect");
    s.write_all(raw_post("/api/embed", body).as_bytes())
        .expect("write");
    fake.wait_for("/api/embed", WAIT, |s| s.received == 1)
        .await
        .expect("received");
    drop(s);
    let stats = fake
        .wait_for("/api/embed", Duration::from_secs(2), |s| s.cancelled == 1)
        .await
        .expect("cancelled while waiting, well before the 3 s delay ends");
    assert_eq!(stats.completed, 0);
}
