//! Ollama's replies as literal JSON text, field for field and in the order Ollama's
//! encoder writes them (its Go structs: `api.GenerateResponse`, `api.ChatResponse`,
//! `api.EmbedResponse`, `openai.ChatCompletionChunk`, ...), so a client that misreads a
//! field fails its test. Nothing here serialises our own types.
//!
//! Values that real Ollama varies (timestamps, durations, ids) are fixed so that tests can
//! compare replies byte for byte.

use serde_json::Value;

/// `created_at` of every reply (Ollama: RFC 3339 with nanoseconds).
pub(super) const CREATED_AT: &str = "2026-11-23T08:52:19.385406455Z";
/// `created` of every OpenAI-compatible reply (Unix seconds; the same instant).
pub(super) const CREATED_UNIX: u64 = 1_795_423_939;
/// `prompt_eval_count` / `prompt_tokens` of every reply.
pub(super) const PROMPT_EVAL_COUNT: usize = 26;
/// `system_fingerprint` Ollama sends on its OpenAI-compatible endpoints.
const SYSTEM_FINGERPRINT: &str = "fp_ollama";
/// One embedding vector (every input gets this one).
const VECTOR: &str = "[0.010071029,-0.0017594862,0.05007221,0.04692972]";

/// The text of streamed chunk `i`: `"tok{i} "`.
pub fn token(i: usize) -> String {
    format!("tok{i} ")
}

/// The whole text of a reply of `chunks` chunks: `"tok0 tok1 ... "`.
pub fn tokens(chunks: usize) -> String {
    (0..chunks).map(token).collect()
}

/// A JSON string literal (quoted and escaped).
fn s(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// The statistics of a final reply, from `total_duration` on (nanoseconds).
fn metrics(eval_count: usize) -> String {
    let eval_duration = eval_count as u64 * 16_000_000;
    let prompt_eval_duration = 130_079_000;
    let load_duration = 6_338_219;
    let total = eval_duration + prompt_eval_duration + load_duration + 1_000_000;
    format!(
        r#""total_duration":{total},"load_duration":{load_duration},"prompt_eval_count":{PROMPT_EVAL_COUNT},"prompt_eval_duration":{prompt_eval_duration},"eval_count":{eval_count},"eval_duration":{eval_duration}"#
    )
}

/// One streamed `/api/generate` object.
pub(super) fn generate_chunk(model: &str, text: &str) -> String {
    format!(
        r#"{{"model":{},"created_at":{},"response":{},"done":false}}"#,
        s(model),
        s(CREATED_AT),
        s(text)
    )
}

/// The last (or only) `/api/generate` object; `response` is empty when streamed.
pub(super) fn generate_done(model: &str, response: &str, eval_count: usize) -> String {
    format!(
        r#"{{"model":{},"created_at":{},"response":{},"done":true,"done_reason":"stop","context":[1,2,3],{}}}"#,
        s(model),
        s(CREATED_AT),
        s(response),
        metrics(eval_count)
    )
}

/// `/api/generate` with no prompt: a load (`reason` `"load"`) or unload (`"unload"`).
pub(super) fn generate_load(model: &str, reason: &str) -> String {
    format!(
        r#"{{"model":{},"created_at":{},"response":"","done":true,"done_reason":{}}}"#,
        s(model),
        s(CREATED_AT),
        s(reason)
    )
}

/// One streamed `/api/chat` object.
pub(super) fn chat_chunk(model: &str, text: &str) -> String {
    format!(
        r#"{{"model":{},"created_at":{},"message":{{"role":"assistant","content":{}}},"done":false}}"#,
        s(model),
        s(CREATED_AT),
        s(text)
    )
}

/// The last (or only) `/api/chat` object; `content` is empty when streamed.
pub(super) fn chat_done(model: &str, content: &str, eval_count: usize) -> String {
    format!(
        r#"{{"model":{},"created_at":{},"message":{{"role":"assistant","content":{}}},"done_reason":"stop","done":true,{}}}"#,
        s(model),
        s(CREATED_AT),
        s(content),
        metrics(eval_count)
    )
}

/// `/api/chat` with no messages: a load or unload.
pub(super) fn chat_load(model: &str, reason: &str) -> String {
    format!(
        r#"{{"model":{},"created_at":{},"message":{{"role":"assistant","content":""}},"done_reason":{},"done":true}}"#,
        s(model),
        s(CREATED_AT),
        s(reason)
    )
}

/// `/api/embed`: one vector per input.
pub(super) fn embed(model: &str, inputs: usize) -> String {
    let vectors = vec![VECTOR; inputs].join(",");
    format!(
        r#"{{"model":{},"embeddings":[{vectors}],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":{}}}"#,
        s(model),
        PROMPT_EVAL_COUNT * inputs
    )
}

/// `/api/embeddings` (the older, single-prompt endpoint).
pub(super) fn embeddings() -> String {
    format!(r#"{{"embedding":{VECTOR}}}"#)
}

/// `/api/version`.
pub(super) fn version(version: &str) -> String {
    format!(r#"{{"version":{}}}"#, s(version))
}

/// An error on Ollama's own API: `{"error":"..."}`.
pub(super) fn ollama_error(message: &str) -> String {
    format!(r#"{{"error":{}}}"#, s(message))
}

/// An error on the OpenAI-compatible API, with the `type` Ollama derives from `status`.
pub(super) fn openai_error(status: u16, message: &str) -> String {
    let kind = match status {
        400 => "invalid_request_error",
        404 => "not_found_error",
        _ => "api_error",
    };
    format!(
        r#"{{"error":{{"message":{},"type":"{kind}","param":null,"code":null}}}}"#,
        s(message)
    )
}

/// A finish reason as JSON: `"stop"` or `null`.
fn finish(last: bool) -> &'static str {
    if last {
        r#""stop""#
    } else {
        "null"
    }
}

/// One `chat.completion.chunk` (the JSON only; [`sse`] frames it). The last one has
/// empty content and `finish_reason` `"stop"`.
pub(super) fn openai_chat_chunk(id: &str, model: &str, text: &str, last: bool) -> String {
    format!(
        r#"{{"id":{},"object":"chat.completion.chunk","created":{CREATED_UNIX},"model":{},"system_fingerprint":"{SYSTEM_FINGERPRINT}","choices":[{{"index":0,"delta":{{"role":"assistant","content":{}}},"finish_reason":{}}}]}}"#,
        s(id),
        s(model),
        s(text),
        finish(last)
    )
}

/// `usage` of a non-streamed OpenAI-compatible reply.
fn usage(completion_tokens: usize) -> String {
    format!(
        r#""usage":{{"prompt_tokens":{PROMPT_EVAL_COUNT},"completion_tokens":{completion_tokens},"total_tokens":{}}}"#,
        PROMPT_EVAL_COUNT + completion_tokens
    )
}

/// A non-streamed `chat.completion`.
pub(super) fn openai_chat(
    id: &str,
    model: &str,
    content: &str,
    completion_tokens: usize,
) -> String {
    format!(
        r#"{{"id":{},"object":"chat.completion","created":{CREATED_UNIX},"model":{},"system_fingerprint":"{SYSTEM_FINGERPRINT}","choices":[{{"index":0,"message":{{"role":"assistant","content":{}}},"finish_reason":"stop"}}],{}}}"#,
        s(id),
        s(model),
        s(content),
        usage(completion_tokens)
    )
}

/// One streamed `text_completion` object (the JSON only).
pub(super) fn openai_completion_chunk(id: &str, model: &str, text: &str, last: bool) -> String {
    format!(
        r#"{{"id":{},"object":"text_completion","created":{CREATED_UNIX},"model":{},"system_fingerprint":"{SYSTEM_FINGERPRINT}","choices":[{{"text":{},"index":0,"finish_reason":{}}}]}}"#,
        s(id),
        s(model),
        s(text),
        finish(last)
    )
}

/// A non-streamed `text_completion`.
pub(super) fn openai_completion(
    id: &str,
    model: &str,
    text: &str,
    completion_tokens: usize,
) -> String {
    format!(
        r#"{{"id":{},"object":"text_completion","created":{CREATED_UNIX},"model":{},"system_fingerprint":"{SYSTEM_FINGERPRINT}","choices":[{{"text":{},"index":0,"finish_reason":"stop"}}],{}}}"#,
        s(id),
        s(model),
        s(text),
        usage(completion_tokens)
    )
}

/// `/v1/embeddings`: one vector per input.
pub(super) fn openai_embeddings(model: &str, inputs: usize) -> String {
    let data: Vec<String> = (0..inputs)
        .map(|i| format!(r#"{{"object":"embedding","embedding":{VECTOR},"index":{i}}}"#))
        .collect();
    let tokens = PROMPT_EVAL_COUNT * inputs;
    format!(
        r#"{{"object":"list","data":[{}],"model":{},"usage":{{"prompt_tokens":{tokens},"total_tokens":{tokens}}}}}"#,
        data.join(","),
        s(model)
    )
}

/// `/v1/models`.
pub(super) fn openai_models<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let data: Vec<String> = names
        .map(|n| {
            format!(
                r#"{{"id":{},"object":"model","created":{CREATED_UNIX},"owned_by":"library"}}"#,
                s(n)
            )
        })
        .collect();
    format!(r#"{{"object":"list","data":[{}]}}"#, data.join(","))
}

/// One server-sent event carrying `json`.
pub(super) fn sse(json: &str) -> String {
    format!("data: {json}\n\n")
}

/// The event that ends an OpenAI-compatible stream.
pub(super) const SSE_DONE: &str = "data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_json_with_fields_in_ollamas_order() {
        let done: Value = serde_json::from_str(&generate_done("m", "", 3)).expect("json");
        assert_eq!(done["eval_count"], 3);
        assert_eq!(done["done_reason"], "stop");
        let chunk = openai_chat_chunk("chatcmpl-1", "m\"x", "tok0 ", false);
        let v: Value = serde_json::from_str(&chunk).expect("json");
        assert_eq!(v["model"], "m\"x");
        assert!(v["choices"][0]["finish_reason"].is_null());
        let keys = [
            "\"id\"",
            "\"object\"",
            "\"created\"",
            "\"model\"",
            "\"system_fingerprint\"",
            "\"choices\"",
        ];
        let at: Vec<usize> = keys.iter().map(|k| chunk.find(k).expect(k)).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{chunk}");
        for text in [
            embed("m", 2),
            embeddings(),
            openai_embeddings("m", 2),
            openai_models(["a", "b"].into_iter()),
            openai_error(404, "x"),
            chat_done("m", "c", 1),
            chat_load("m", "load"),
            openai_chat("i", "m", "c", 1),
            openai_completion("i", "m", "c", 1),
            openai_completion_chunk("i", "m", "c", true),
        ] {
            serde_json::from_str::<Value>(&text).expect(&text);
        }
    }
}
