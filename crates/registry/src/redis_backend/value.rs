//! Decoding of Redis replies (`Value`) into plain data, and the clock and TTL arithmetic
//! of our writes. Pure functions: no connection, no registry state.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A key expiry in milliseconds (`SET … PX`), at least 1 and at most 2^53 (285,000
/// years: Redis refuses larger ones, and index scores stay exact); the index deadline
/// of the record is the write time plus the same amount.
pub(super) fn ttl_ms(ttl: Duration) -> u64 {
    const MAX: u64 = 1 << 53;
    u64::try_from(ttl.as_millis()).unwrap_or(MAX).clamp(1, MAX)
}

/// The bytes of a string reply; `None` for nil and other kinds.
pub(super) fn bytes_of(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

/// The UTF-8 strings of an array or set reply (others dropped).
pub(super) fn strings_of(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) | Value::Set(items) => items
            .into_iter()
            .filter_map(bytes_of)
            .filter_map(|b| String::from_utf8(b).ok())
            .collect(),
        _ => Vec::new(),
    }
}

/// A sorted-set score (`ZSCORE`), `None` for a missing member.
pub(super) fn score_of(v: &Value) -> Option<f64> {
    match v {
        Value::Double(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// The entries of an `XRANGE`/`XREVRANGE` reply: `(entry id, [(field, value)])`.
pub(super) fn stream_entries(v: Value) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for entry in array_of(v) {
        let mut parts = array_of(entry).into_iter();
        let id = parts
            .next()
            .and_then(bytes_of)
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        // Lossy, so a value that is not UTF-8 cannot shift the pairs.
        let flat: Vec<String> = parts
            .next()
            .map(array_of)
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                bytes_of(v).map_or_else(String::new, |b| String::from_utf8_lossy(&b).into_owned())
            })
            .collect();
        let mut fields = Vec::with_capacity(flat.len() / 2);
        let mut flat = flat.into_iter();
        while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
            fields.push((k, v));
        }
        if let Some(id) = id {
            out.push((id, fields));
        }
    }
    out
}

/// The items of an array or set reply; empty for other kinds.
pub(super) fn array_of(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        _ => Vec::new(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any reply a server (or something posing as one) may send, nested 3 deep.
    pub(crate) fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            Just(Value::Okay),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Double),
            any::<bool>().prop_map(Value::Boolean),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::BulkString),
            ".{0,20}".prop_map(Value::SimpleString),
        ];
        leaf.prop_recursive(3, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec(inner, 0..6).prop_map(Value::Set),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Stream entries (`XRANGE` replies of our change log and SOLLOL's history
        /// stream), id lists and scores decode from any reply without panicking, and
        /// never yield more than the reply holds.
        #[test]
        fn replies_of_any_shape_decode(v in any_value()) {
            let entries = stream_entries(v.clone());
            let top = array_of(v.clone()).len();
            prop_assert!(entries.len() <= top);
            prop_assert!(strings_of(v.clone()).len() <= top);
            let _ = score_of(&v);
            let _ = bytes_of(v);
        }
    }

    #[test]
    fn ttl_is_clamped() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::MAX), 1 << 53);
    }
}
