//! Byte-exact emulation of the Python serialisations SOLLOL's writers use:
//! `json.dumps(value)` (separators `", "` / `": "`, `ensure_ascii=True`, floats as
//! `repr(float)`) and `str(value)` for the stream's scalar fields.

use std::io;

use serde::Serialize;

/// Formats a float exactly as Python's `repr(float)` / `str(float)` does: the shortest
/// string that round-trips, with `.0` for integral values and an exponent (`1e+16`,
/// `1e-05`) outside `1e-4 <= |x| < 1e16`. Non-finite values give `nan`, `inf`, `-inf`.
///
/// ```
/// use vramroute_registry::pyjson::py_float_repr;
/// assert_eq!(py_float_repr(1795440966.6442626), "1795440966.6442626");
/// assert_eq!(py_float_repr(3.0), "3.0");
/// assert_eq!(py_float_repr(1e16), "1e+16");
/// assert_eq!(py_float_repr(0.00001), "1e-05");
/// ```
pub fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exp + 1; // value = 0.DIGITS × 10^decpt
    let mut out = String::with_capacity(24);
    if x.is_sign_negative() {
        out.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        out.push_str(mantissa);
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let abs = exp.unsigned_abs();
        if abs < 10 {
            out.push('0');
        }
        out.push_str(&abs.to_string());
    } else if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..(-decpt) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let decpt = decpt as usize;
        if decpt >= digits.len() {
            out.push_str(&digits);
            for _ in digits.len()..decpt {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt]);
            out.push('.');
            out.push_str(&digits[decpt..]);
        }
    }
    out
}

/// A `serde_json` formatter producing Python's `json.dumps` default output.
#[derive(Debug, Default, Clone, Copy)]
pub struct PyFormatter;

impl serde_json::ser::Formatter for PyFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        let text = if value.is_nan() {
            "NaN".to_owned()
        } else if value.is_infinite() {
            if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
        } else {
            py_float_repr(value)
        };
        writer.write_all(text.as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // ensure_ascii=True: everything outside ' '..='~' is escaped as \uXXXX.
        let bytes = fragment.as_bytes();
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if (' '..='~').contains(&c) {
                continue;
            }
            writer.write_all(&bytes[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&bytes[start..])
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

/// Serialises `value` as Python's `json.dumps(value)` would.
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut buf = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, PyFormatter);
    value.serialize(&mut ser)?;
    // The formatter only writes ASCII.
    String::from_utf8(buf).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

/// Splits a JSON object produced by [`to_python_json`] into the stream fields SOLLOL's
/// reporter writes: one per top-level key, lists and objects as their `json.dumps`,
/// everything else as Python's `str()` (`True`/`False`/`None`, strings unquoted,
/// numbers as written).
pub fn stream_fields(object_json: &str) -> Result<Vec<(String, String)>, String> {
    let bytes = object_json.as_bytes();
    let mut fields = Vec::new();
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'{') {
        return Err("not a JSON object".to_owned());
    }
    i = skip_ws(bytes, i + 1);
    if bytes.get(i) == Some(&b'}') {
        return Ok(fields);
    }
    loop {
        let key_end = scan_value(bytes, i)?;
        let key: String =
            serde_json::from_str(&object_json[i..key_end]).map_err(|e| e.to_string())?;
        i = skip_ws(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return Err(format!("expected ':' at byte {i}"));
        }
        i = skip_ws(bytes, i + 1);
        let value_end = scan_value(bytes, i)?;
        let raw = &object_json[i..value_end];
        let value = match raw.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<String>(raw).map_err(|e| e.to_string())?,
            _ => match raw {
                "true" => "True".to_owned(),
                "false" => "False".to_owned(),
                "null" => "None".to_owned(),
                _ => raw.to_owned(),
            },
        };
        fields.push((key, value));
        i = skip_ws(bytes, value_end);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            Some(b'}') => return Ok(fields),
            _ => return Err(format!("expected ',' or '}}' at byte {i}")),
        }
    }
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// Returns the end (exclusive) of the JSON value starting at `start`.
fn scan_value(bytes: &[u8], start: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut i = start;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => {
                    in_string = false;
                    if depth == 0 {
                        return Ok(i + 1);
                    }
                }
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' if depth > 0 => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(i + 1);
                    }
                }
                b',' | b']' | b'}' | b':' | b' ' if depth == 0 => return Ok(i),
                _ => {}
            }
        }
        i += 1;
    }
    if depth == 0 && !in_string && i > start {
        Ok(i)
    } else {
        Err("unterminated JSON value".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        // Expected strings are Python 3's repr() of the same doubles.
        let cases = [
            (1795441356.3269339, "1795441356.3269339"),
            (1795441356.3281927, "1795441356.3281927"),
            (1795440966.6442626, "1795440966.6442626"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1234567890123456.0, "1234567890123456.0"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (1e22, "1e+22"),
            (123.456, "123.456"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
        ];
        for (x, want) in cases {
            assert_eq!(py_float_repr(x), want, "repr({x:?})");
        }
    }

    #[test]
    fn dumps_matches_python_separators_and_ascii() {
        let v = serde_json::json!({"a": [1, 2.0, "é€😀\u{7f}"], "b": {"c": null, "d": true}});
        // serde_json::Value sorts keys; Python would keep insertion order, which is the
        // same here.
        assert_eq!(
            to_python_json(&v).expect("serialise"),
            r#"{"a": [1, 2.0, "\u00e9\u20ac\ud83d\ude00\u007f"], "b": {"c": null, "d": true}}"#
        );
        assert_eq!(
            to_python_json("a\"\\\n\u{1}").expect("serialise"),
            r#""a\"\\\n\u0001""#
        );
    }

    #[test]
    fn stream_fields_follow_python_str() {
        let json = r#"{"vendor": "nvidia", "timestamp": 1.5, "gpus": [{"a": "x, }"}], "ok": true, "no": false, "n": null, "i": -3, "s": "caf\u00e9"}"#;
        let fields = stream_fields(json).expect("split");
        let want = [
            ("vendor", "nvidia"),
            ("timestamp", "1.5"),
            ("gpus", r#"[{"a": "x, }"}]"#),
            ("ok", "True"),
            ("no", "False"),
            ("n", "None"),
            ("i", "-3"),
            ("s", "café"),
        ];
        let got: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(stream_fields("{}").expect("empty"), vec![]);
        assert!(stream_fields("[1]").is_err());
    }
}
