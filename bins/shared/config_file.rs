//! Reading a YAML config file, the same way in both binaries: through the one bounded
//! reader (a regular file of at most [`MAX_CONFIG_BYTES`]; a FIFO or `/dev/zero` is
//! refused at once), then a nesting pre-scan, then `serde_yaml_ng`.
//!
//! The pre-scan exists because libyaml's flow collections are quadratic in their
//! nesting (`[[[[…` 50,000 deep takes ~10 s, `{a: {a: …` ~25 s, measured with
//! serde_yaml_ng 0.10); block nesting is linear. A config file is a flat map of
//! scalars and short lists, so more than [`MAX_FLOW_DEPTH`] open flow brackets is
//! refused before the parser sees it.
//!
//! Included by both binaries with `#[path]`.

use std::path::Path;

use serde::de::DeserializeOwned;

/// The largest config file read, bytes (real ones are under a KiB).
pub(crate) const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The deepest nesting of flow collections (`[…]`, `{…}`) accepted.
pub(crate) const MAX_FLOW_DEPTH: usize = 64;

/// Reads the config file at `path` and parses it; an empty file is `T::default()`.
/// The error names the path and says what is wrong.
pub(crate) fn load<T: DeserializeOwned + Default>(path: &Path) -> Result<T, String> {
    let text =
        vramroute_probe::local_file::read_local_text(path, MAX_CONFIG_BYTES, "a config file")
            .map_err(|e| format!("cannot read config: {e}"))?;
    parse(&text).map_err(|e| format!("bad config {}: {e}", path.display()))
}

/// Parses config text; an empty (or all-whitespace) text is `T::default()`.
pub(crate) fn parse<T: DeserializeOwned + Default>(text: &str) -> Result<T, String> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    check_flow_depth(text)?;
    serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
}

/// Refuses text whose flow collections nest deeper than [`MAX_FLOW_DEPTH`]. Brackets
/// inside quoted scalars and comments are not counted; an unquoted scalar containing
/// brackets may be over-counted, which can only make the check stricter.
pub(crate) fn check_flow_depth(text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    for (n, line) in text.lines().enumerate() {
        let mut quote: Option<char> = None;
        let mut escaped = false;
        let mut prev = ' ';
        for c in line.chars() {
            match quote {
                Some('"') if escaped => escaped = false,
                Some('"') if c == '\\' => escaped = true,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    // A quote opens a quoted scalar only where a scalar can start.
                    '"' | '\''
                        if matches!(prev, ' ' | '\t' | '[' | '{' | ',' | ':' | '-' | '?') =>
                    {
                        quote = Some(c);
                    }
                    '#' if prev.is_whitespace() => break,
                    '[' | '{' => {
                        depth += 1;
                        if depth > MAX_FLOW_DEPTH {
                            return Err(format!(
                                "line {}: lists or maps nested deeper than {MAX_FLOW_DEPTH} levels (a config file holds flat settings)",
                                n + 1
                            ));
                        }
                    }
                    ']' | '}' => depth = depth.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
        }
    }
    Ok(())
}
