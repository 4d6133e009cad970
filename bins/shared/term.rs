//! The one terminal-escaping renderer of both binaries. Text from records, Ollama
//! answers and sysfs (GPU names, host names, node ids, model names, notes) is outside
//! data: printed raw, an ESC sequence clears the screen or recolours it, and a newline
//! forges a line. Every control character is shown escaped instead, in Rust's own
//! notation: C0 as `\n`, `\r`, `\t`, `\x1b`, ...; DEL as `\x7f`; C1 (U+0080..U+009F,
//! which some terminals treat as 8-bit escapes) as `\u{9b}`.
//!
//! - [`Term`] escapes one value for display (log fields, error text);
//! - [`escape_strings`] escapes every string inside a serialisable answer (map keys
//!   too), so a multi-line text report built from it carries no control character
//!   that came from the data;
//! - [`text`] is the last guard on a whole report: every control character except the
//!   report's own newlines is escaped;
//! - [`json`] escapes DEL and C1 in JSON output (`serde_json` already escapes C0).
//!
//! Included by both binaries with `#[path]`.
#![allow(
    dead_code,
    reason = "shared by both binaries; the reporter prints only its own reports and needs the whole-text guard alone"
)]

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Whether `c` is shown escaped: C0, DEL or C1.
pub(crate) fn is_control(c: char) -> bool {
    c.is_control()
}

fn escape_char(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    }
}

/// One value for display, every control character escaped.
///
/// ```ignore
/// assert_eq!(Term("gpu\x1b[2J\nfake").to_string(), "gpu\\x1b[2J\\nfake");
/// ```
pub(crate) struct Term<'a>(pub(crate) &'a str);

impl fmt::Display for Term<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if is_control(c) {
                escape_char(f, c)?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// `s` with every control character escaped (borrowed when there is none).
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    if s.chars().any(is_control) {
        Cow::Owned(Term(s).to_string())
    } else {
        Cow::Borrowed(s)
    }
}

/// A whole text report: every control character except `\n` escaped.
pub(crate) fn text(report: &str) -> Cow<'_, str> {
    if !report.chars().any(|c| c != '\n' && is_control(c)) {
        return Cow::Borrowed(report);
    }
    let mut out = String::with_capacity(report.len() + 16);
    for c in report.chars() {
        if c != '\n' && is_control(c) {
            let _ = escape_char(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// JSON text with DEL and C1 characters written as `\u007f`, `\u009b`, ... (still the
/// same JSON: they can only occur inside strings).
pub(crate) fn json(text: String) -> String {
    if !text.chars().any(|c| ('\u{7f}'..='\u{9f}').contains(&c)) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// A copy of `value` with every string in it (and every map key) escaped, through its
/// serde form: nothing in a text report built from the copy can carry a control
/// character from the data, whatever fields the type grows.
///
/// # Errors
/// When the type does not round-trip through JSON (a bug, not bad data).
pub(crate) fn escape_strings<T>(value: &T) -> anyhow::Result<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let Cow::Owned(e) = escape(s) {
                    *s = e;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut item) in entries {
                    walk(&mut item);
                    map.insert(escape(&k).into_owned(), item);
                }
            }
            _ => {}
        }
    }
    let mut tree = serde_json::to_value(value)?;
    walk(&mut tree);
    Ok(serde_json::from_value(tree)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(Term("gpu\x1b[2J\nfake").to_string(), "gpu\\x1b[2J\\nfake");
        assert_eq!(
            escape("a\u{7f}b\u{9b}c\td\re\0"),
            "a\\x7fb\\u{9b}c\\td\\re\\x00"
        );
        assert!(matches!(escape("plain · ü 日本"), Cow::Borrowed(_)));
        assert_eq!(text("line 1\nGPU \x1b[2J\n"), "line 1\nGPU \\x1b[2J\n");
        assert_eq!(json("\"a\u{7f}\u{9b}\"".to_owned()), "\"a\\u007f\\u009b\"");
        let back: serde_json::Value =
            serde_json::from_str(&json(serde_json::to_string("a\u{9b}").unwrap())).unwrap();
        assert_eq!(back, "a\u{9b}", "the escaped JSON means the same string");
    }

    #[test]
    fn escape_strings_reaches_nested_values_and_keys() {
        let v = serde_json::json!({"id\n": ["x\x1b", {"name": "y\u{85}"}], "n": 3});
        let e = escape_strings(&v).unwrap();
        assert_eq!(
            e,
            serde_json::json!({"id\\n": ["x\\x1b", {"name": "y\\u{85}"}], "n": 3})
        );
    }
}
