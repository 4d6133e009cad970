//! Control characters in records (GPU names, host names, node ids) never reach the
//! terminal raw: a record written into a real redis-server, rendered by the real
//! binary's `status`, `route`, `check` and `models`, shows them escaped.

use super::support::*;

const CLEAR: &str = "\x1b[2J";

/// Bytes that must never appear raw in text output: every C0 but `\n` (which ends our
/// own lines), DEL and the UTF-8 encoding of C1.
fn assert_no_raw_controls(what: &str, out: &str) {
    for c in out.chars() {
        assert!(
            c == '\n' || !c.is_control(),
            "{what}: raw control character U+{:04X} in: {out:?}",
            c as u32
        );
    }
    for line in out.lines() {
        assert!(
            !line.trim_start().starts_with("fake line"),
            "{what}: a record forged a line: {out}"
        );
    }
}

/// The log's own colour sequences (`ESC [ digits ; ... m`) removed.
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\x1b[") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let len = after
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(after.len());
        if after[len..].starts_with('m') {
            rest = &after[len + 1..];
        } else {
            out.push('\x1b');
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn control_characters_in_records_are_escaped_in_text_output() {
    let redis = RedisServer::start().unwrap();
    let node_id = format!("127.0.0.1:11434{CLEAR}\n fake line");
    let stats = vramroute_registry::testing::fixtures::GPU_STATS_NVIDIA
        .replace(
            "10.1.2.3:11434",
            &node_id.replace('\x1b', "\\u001b").replace('\n', "\\n"),
        )
        .replace(
            "NVIDIA GeForce RTX 3090",
            "RTX\\u001b[2J\\n fake line\\u009b31m\\u007f",
        )
        .replace("1795441356.3269339", &format!("{}", now()))
        .replace(
            "\"vendor\": \"nvidia\"",
            "\"vendor\": \"nvidia\", \"hostname\": \"host\\u001b]0;pwned\\u0007\\r\\n fake line\"",
        );
    redis
        .cli(&[
            "SETEX",
            &vramroute_registry::keys::gpu_stats_key(&node_id),
            "120",
            &stats,
        ])
        .unwrap();
    // A record that cannot be decoded, at a key with control characters: it is
    // skipped, and both the warning log line and the report name the key escaped.
    let bad_key = vramroute_registry::keys::gpu_stats_key("bad\n fake line\x1b[2J");
    let bad_key_shown = bad_key.replace('\n', "\\n").replace('\x1b', "\\x1b");
    redis.cli(&["SET", &bad_key, "junk"]).unwrap();
    let url = redis.url();

    // The record is read: JSON shows the raw strings, escaped by JSON itself.
    let view = coord_json(&["--redis-url", &url, "status", "--json"]);
    let listed = node(&view, &node_id).unwrap_or_else(|| panic!("node listed: {view}"));
    assert_eq!(
        listed["gpus"][0]["name"],
        "RTX\x1b[2J\n fake line\u{9b}31m\u{7f}"
    );
    let raw_json = stdout(&coord(&["--redis-url", &url, "status", "--json"]));
    assert_no_raw_controls("status --json", &raw_json);

    let o = coord(&["--redis-url", &url, "status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_no_raw_controls("status", &text);
    let log = strip_colours(&stderr(&o));
    assert_no_raw_controls("status log", &log);
    assert!(
        log.contains(&bad_key_shown),
        "the log names the key, escaped: {log}"
    );
    for shown in [
        bad_key_shown.as_str(),
        "127.0.0.1:11434\\x1b[2J\\n fake line",
        "RTX\\x1b[2J\\n fake line\\u{9b}31m\\x7f",
        "host\\x1b]0;pwned\\x07\\r\\n fake line",
    ] {
        assert!(text.contains(shown), "missing {shown:?} in:\n{text}");
    }

    for args in [
        &["route", "llama3.1:8b"][..],
        &["check", "llama3.1:8b"],
        &["models"],
    ] {
        let mut all = vec!["--redis-url", url.as_str()];
        all.extend_from_slice(args);
        let o = coord(&all);
        let out = format!("{}{}", stdout(&o), strip_colours(&stderr(&o)));
        assert_no_raw_controls(&format!("{args:?}"), &out);
        if args[0] != "models" {
            assert!(
                out.contains("127.0.0.1:11434\\x1b[2J\\n fake line"),
                "{args:?}: the node is named, escaped:\n{out}"
            );
        }
    }
}
