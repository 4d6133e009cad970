use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::record::{GpuOffload, GpuStat, GpuStatsRecord, LoadedModel, RpcNodeRecord, SmolStr};
use crate::validate::{parse_rpc_serde, parse_stats_serde};

/// The property: whatever this reader takes, serde takes too and reads the same
/// (`Debug` too, so `-0.0` and `0.0` differ). A `None` is always fine (serde decides).
/// Answers whether the fast path took it.
fn same_stats(text: &str) -> bool {
    let fast = stats(text);
    if let Some(f) = &fast {
        let s = parse_stats_serde(text)
            .unwrap_or_else(|e| panic!("fast path took what serde refuses ({e}): {text}"));
        assert_eq!(f, &s, "{text}");
        assert_eq!(format!("{f:?}"), format!("{s:?}"), "{text}");
    }
    fast.is_some()
}

fn same_rpc(text: &str) -> bool {
    let fast = rpc(text);
    if let Some(f) = &fast {
        let s = parse_rpc_serde(text)
            .unwrap_or_else(|e| panic!("fast path took what serde refuses ({e}): {text}"));
        assert_eq!(f, &s, "{text}");
        assert_eq!(format!("{f:?}"), format!("{s:?}"), "{text}");
    }
    fast.is_some()
}

// --- generated records -------------------------------------------------------

fn text() -> impl Strategy<Value = SmolStr> {
    prop_oneof![
        3 => "[ -~]{0,30}",
        1 => ".{0,12}",
        1 => prop::sample::select(vec!["", "nvidia", "NVIDIA GeForce RTX 3090", "cuda:0", "é\"\\/\u{1F600}\n\t\u{1}"])
            .prop_map(str::to_owned),
    ]
    .prop_map(SmolStr::from)
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_map(|f| if f.is_finite() { f } else { 0.5 }),
        (0u64..5_000_000_000, 0u32..10_000_000).prop_map(|(s, f)| s as f64 + f64::from(f) / 1e7),
        prop::sample::select(vec![0.0, -0.0, 1e16, 1e-5, 12.5, 215.5, 5e-324, f64::MAX]),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float().prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn extra() -> impl Strategy<Value = BTreeMap<String, Value>> {
    prop::collection::btree_map("x_[a-z\u{e9}]{0,6}", json_value(), 0..3)
}

fn gpu() -> impl Strategy<Value = GpuStat> {
    (
        (
            0u32..600,
            text(),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u64>()),
        ),
        (
            prop::option::of(any::<u32>()),
            prop::option::of(any::<i32>()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(float()),
        ),
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
        ),
    )
        .prop_map(
            |(
                (index, name, total, free, used),
                (util, temp, uuid, pci, power),
                (kind, driver, ggml),
            )| {
                let mut g = GpuStat::new(index, name);
                g.memory_total_mb = total;
                g.memory_free_mb = free;
                g.memory_used_mb = used;
                g.utilization_percent = util;
                g.temperature_c = temp;
                g.uuid = uuid;
                g.pci_bus_id = pci;
                g.power_w = power;
                g.memory_kind = kind;
                g.driver = driver;
                g.ggml_device = ggml;
                g
            },
        )
}

fn stats_record() -> impl Strategy<Value = GpuStatsRecord> {
    let offload = prop::sample::select(vec![GpuOffload::On, GpuOffload::Off, GpuOffload::Unknown]);
    let model = (
        text(),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(n, s, v)| LoadedModel::new(n, s, v));
    (
        (text(), text(), float(), prop::collection::vec(gpu(), 0..4)),
        (
            prop::option::of(any::<u32>()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(offload),
            prop::option::of(text()),
            prop::option::of(text()),
        ),
        (
            prop::option::of(prop::collection::vec(model, 0..3)),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u32>()),
            prop::option::of(float()),
        ),
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(any::<u16>()),
            extra(),
        ),
    )
        .prop_map(
            |(
                (node, vendor, ts, gpus),
                (sv, rv, host, off, reason, note),
                (models, rt, rf, cc, load),
                (url, rh, rp, extra),
            )| {
                let mut r = GpuStatsRecord::new(node, vendor, ts);
                r.gpus = gpus;
                r.schema_version = sv;
                r.reporter_version = rv;
                r.hostname = host;
                r.gpu_offload = off;
                r.gpu_offload_reason = reason;
                r.note = note;
                r.loaded_models = models;
                r.cpu_ram_total_mb = rt;
                r.cpu_ram_free_mb = rf;
                r.cpu_count = cc;
                r.cpu_load_percent = load;
                r.ollama_url = url;
                r.rpc_host = rh;
                r.rpc_port = rp;
                r.extra = extra;
                r
            },
        )
}

fn rpc_record() -> impl Strategy<Value = RpcNodeRecord> {
    let strs = || prop::collection::vec(text(), 0..4);
    let nums = || prop::collection::vec(any::<u64>(), 0..4);
    (
        (
            any::<bool>(),
            strs(),
            nums(),
            strs(),
            any::<u64>(),
            text(),
            text(),
            any::<u32>(),
        ),
        (
            prop::option::of(any::<u32>()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(strs()),
            prop::option::of(strs()),
            prop::option::of(strs()),
            prop::option::of(nums()),
        ),
        (
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u32>()),
            prop::option::of(float()),
            extra(),
        ),
    )
        .prop_map(
            |(
                (has, dev, vram, names, ram, dc, mc, workers),
                (sv, rv, host, ggml, uuids, pci, total),
                (rt, cc, rf, extra),
            )| {
                let mut r = RpcNodeRecord::cpu_only(ram);
                r.has_gpu = has;
                r.gpu_devices = dev;
                r.gpu_vram_mb = vram;
                r.gpu_names = names;
                r.device_config = dc;
                r.memory_config = mc;
                r.total_parallel_workers = workers;
                r.schema_version = sv;
                r.reporter_version = rv;
                r.hostname = host;
                r.ggml_devices = ggml;
                r.gpu_uuids = uuids;
                r.gpu_pci_bus_ids = pci;
                r.gpu_vram_total_mb = total;
                r.cpu_ram_total_mb = rt;
                r.cpu_count = cc;
                r.reserve_fraction = rf;
                r.extra = extra;
                r
            },
        )
}

// --- mutations ---------------------------------------------------------------

/// JSON as written, keys in any order and possibly repeated; `Raw` is verbatim text
/// (numbers in any form, and deliberately broken tokens).
#[derive(Clone, Debug)]
enum J {
    Raw(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

fn from_value(v: &Value) -> J {
    match v {
        Value::String(s) => J::Str(s.clone()),
        Value::Array(a) => J::Arr(a.iter().map(from_value).collect()),
        Value::Object(m) => J::Obj(m.iter().map(|(k, v)| (k.clone(), from_value(v))).collect()),
        other => J::Raw(other.to_string()),
    }
}

/// Values a mutation puts in: unusual numbers, other types, broken tokens.
const ODD: [&str; 34] = [
    "null",
    "-0",
    "0",
    "-1",
    "1.0",
    "1e2",
    "1E+2",
    "-1.5e-3",
    "4294967296",
    "65536",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "1e400",
    "-1e400",
    "1e-400",
    "0.1",
    "123456789012345678901234567890",
    "true",
    "false",
    "\"s\"",
    "\"on\"",
    "\"off\"",
    "[]",
    "{}",
    "[1,[2,{\"a\":null}]]",
    "01",
    "1.",
    "-",
    "\"\\ud800\"",
    "\"a\u{1}b\"",
    "\"\\x\"",
    "nul",
];

/// How many objects `j` holds (itself included).
fn count_objects(j: &J) -> usize {
    match j {
        J::Obj(entries) => 1 + entries.iter().map(|(_, v)| count_objects(v)).sum::<usize>(),
        J::Arr(items) => items.iter().map(count_objects).sum(),
        J::Raw(_) | J::Str(_) => 0,
    }
}

/// The `n`th object of `j`, depth first (the root is the 0th).
fn nth_object<'a>(j: &'a mut J, n: &mut usize) -> Option<&'a mut Vec<(String, J)>> {
    match j {
        J::Obj(entries) => {
            if *n == 0 {
                return Some(entries);
            }
            *n -= 1;
            entries.iter_mut().find_map(|(_, v)| nth_object(v, n))
        }
        J::Arr(items) => items.iter_mut().find_map(|v| nth_object(v, n)),
        J::Raw(_) | J::Str(_) => None,
    }
}

fn mutate(j: &mut J, ops: &[(u8, u32, u32)]) {
    for &(op, which, arg) in ops {
        // One object per op, found afresh (ops change the tree).
        let count = count_objects(j);
        if count == 0 {
            return;
        }
        let Some(entries) = nth_object(j, &mut (which as usize % count)) else {
            return;
        };
        let arg = arg as usize;
        let odd = || J::Raw(ODD[arg % ODD.len()].to_owned());
        match op % 7 {
            0 => {
                let n = entries.len();
                if n > 1 {
                    entries.rotate_left(arg % n);
                    entries.swap(0, arg % n);
                }
            }
            1 => entries.insert(arg % (entries.len() + 1), (format!("zz{arg}"), odd())),
            2 | 4 if !entries.is_empty() => {
                let n = entries.len();
                entries[arg % n].1 = if op % 7 == 2 {
                    J::Raw("null".into())
                } else {
                    odd()
                };
            }
            3 if !entries.is_empty() => {
                let n = entries.len();
                let (k, v) = entries[arg % n].clone();
                let first = if arg.is_multiple_of(2) {
                    v.clone()
                } else {
                    odd()
                };
                entries.insert(arg % n, (k, first));
            }
            5 if !entries.is_empty() => {
                let n = entries.len();
                entries.remove(arg % n);
            }
            6 if !entries.is_empty() => {
                // A key spelt differently (escapes come from the printer) or cased.
                let n = entries.len();
                let k = &mut entries[arg % n].0;
                if arg.is_multiple_of(3) {
                    *k = k.to_uppercase();
                }
            }
            _ => {}
        }
    }
}

/// How a mutated value is printed.
#[derive(Clone, Copy, Debug)]
struct Style {
    /// Whitespace after `,` and `:` and around brackets.
    space: u8,
    /// Bits choosing which characters of strings are written as `\u` escapes.
    escapes: u64,
    /// Upper-case hex digits in `\u` escapes.
    upper: bool,
}

fn print(j: &J, st: &Style, counter: &mut u32, out: &mut String) {
    let ws = match st.space % 4 {
        0 => "",
        1 => " ",
        2 => "\n  ",
        _ => " \t\r\n",
    };
    match j {
        J::Raw(s) => out.push_str(s),
        J::Str(s) => print_str(s, st, counter, out),
        J::Arr(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws);
                print(v, st, counter, out);
            }
            out.push_str(ws);
            out.push(']');
        }
        J::Obj(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws);
                print_str(k, st, counter, out);
                out.push_str(ws);
                out.push(':');
                out.push_str(ws);
                print(v, st, counter, out);
            }
            out.push_str(ws);
            out.push('}');
        }
    }
}

fn print_str(s: &str, st: &Style, counter: &mut u32, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        *counter += 1;
        let escape = st.escapes >> (*counter % 64) & 1 == 1;
        let mut buf = [0u16; 2];
        match c {
            '"' if !escape => out.push_str("\\\""),
            '\\' if !escape => out.push_str("\\\\"),
            '/' if escape && counter.is_multiple_of(2) => out.push_str("\\/"),
            '\n' if !escape => out.push_str("\\n"),
            '\t' if !escape => out.push_str("\\t"),
            c if escape || c < ' ' || c == '"' || c == '\\' => {
                for unit in c.encode_utf16(&mut buf) {
                    if st.upper {
                        out.push_str(&format!("\\u{unit:04X}"));
                    } else {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn style() -> impl Strategy<Value = Style> {
    (
        any::<u8>(),
        prop_oneof![Just(0u64), any::<u64>()],
        any::<bool>(),
    )
        .prop_map(|(space, escapes, upper)| Style {
            space,
            escapes,
            upper,
        })
}

fn ops() -> impl Strategy<Value = Vec<(u8, u32, u32)>> {
    prop::collection::vec((any::<u8>(), any::<u32>(), any::<u32>()), 0..5)
}

fn mutated(json: &str, ops: &[(u8, u32, u32)], st: &Style) -> String {
    let v: Value = serde_json::from_str(json).expect("our writer writes JSON");
    let mut j = from_value(&v);
    mutate(&mut j, ops);
    let mut out = String::new();
    print(&j, st, &mut 0, &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// What our writer (Python-style and compact) writes, the fast path takes, and
    /// reads as serde does.
    #[test]
    fn stats_as_written(r in stats_record()) {
        let py = r.to_json();
        prop_assert!(same_stats(&py), "fast path refused our own record: {py}");
        let compact = serde_json::to_string(&r).expect("serialises");
        prop_assert!(same_stats(&compact), "fast path refused our own record: {compact}");
    }

    #[test]
    fn rpc_as_written(r in rpc_record()) {
        let py = r.to_json();
        prop_assert!(same_rpc(&py), "fast path refused our own record: {py}");
        let compact = serde_json::to_string(&r).expect("serialises");
        prop_assert!(same_rpc(&compact), "fast path refused our own record: {compact}");
    }

    /// Reordered keys, whitespace, escapes, unknown keys, nulls, repeated keys, odd
    /// numbers, broken tokens: the fast path either reads exactly what serde reads or
    /// leaves the value to serde.
    #[test]
    fn stats_mutated(r in stats_record(), ops in ops(), st in style()) {
        same_stats(&mutated(&r.to_json(), &ops, &st));
    }

    #[test]
    fn rpc_mutated(r in rpc_record(), ops in ops(), st in style()) {
        same_rpc(&mutated(&r.to_json(), &ops, &st));
    }

    /// Floats in any decimal form read as serde_json's `float_roundtrip` reads them.
    #[test]
    fn floats_read_as_serde(
        int in "-?(0|[1-9][0-9]{0,24})",
        frac in prop::option::of("[0-9]{1,30}"),
        exp in prop::option::of("[eE][+-]?[0-9]{1,3}"),
    ) {
        let num = format!("{int}{}{}", frac.map_or(String::new(), |f| format!(".{f}")), exp.unwrap_or_default());
        same_stats(&format!(r#"{{"vendor":"none","gpus":[],"timestamp":{num},"cpu_load_percent":{num}}}"#));
    }
}

proptest! {
    // Each case reads every prefix of two records (a thousand reads or so).
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Hostile bytes: every prefix of a written record, and the record with bytes
    /// overwritten, never panic, and whatever the fast path takes serde reads alike.
    #[test]
    fn truncated_and_garbled_never_panic(
        r in stats_record(),
        q in rpc_record(),
        noise in prop::collection::vec((any::<u32>(), any::<u8>()), 1..4),
    ) {
        for json in [r.to_json(), q.to_json()] {
            let stats_kind = json.contains("\"vendor\"");
            let check = |t: &str| if stats_kind { same_stats(t) } else { same_rpc(t) };
            for end in (0..json.len()).filter(|&i| json.is_char_boundary(i)) {
                prop_assert!(!check(&json[..end]), "a prefix was taken: {}", &json[..end]);
            }
            let mut bytes = json.clone().into_bytes();
            for &(at, b) in &noise {
                let i = at as usize % bytes.len();
                bytes[i] = b;
            }
            if let Ok(t) = std::str::from_utf8(&bytes) {
                check(t);
            }
        }
    }
}

/// Hand-picked cases: each must give the same as serde, and the first ones must be
/// taken by the fast path.
#[test]
fn edge_cases_match_serde() {
    let taken = [
        r#"{"vendor":"none","gpus":[],"timestamp":1}"#,
        r#"{"vendor":"none","gpus":[],"timestamp":-0}"#,
        r#"{"vendor":"none","gpus":[],"timestamp":-0.0,"node_id":"a"}"#,
        r#"{"vendor":"none","gpus":[],"timestamp":1,"vendor":"amd"}"#,
        r#"{"vend\u006fr":"none","gpus":[],"timestamp":1e3}"#,
        r#" {"vendor":"none","gpus":[{"index":0,"name":"x","zz":[1,{"a":"b"}],"temperature_c":-5}],"timestamp":1} "#,
        r#"{"vendor":"none","gpus":[],"timestamp":1,"x":{"a":[1,2.5,-3,1e300]}}"#,
        r#"{"vendor":"none","gpus":[],"timestamp":1,"gpu_offload":"maybe","note":null}"#,
        r#"{"vendor":"\ud83d\ude00","gpus":[],"timestamp":1}"#,
    ];
    for t in taken {
        assert!(same_stats(t), "fast path should take {t}");
    }
    let left = [
        r#"{"vendor":"none","gpus":[{"index":0,"name":"x","temperature_c":-0}],"timestamp":1}"#,
        r#"{"vendor":"none","gpus":[{"index":0,"name":"x","index":1}],"timestamp":1}"#,
        r#"{"vendor":"none","gpus":[{"name":"x"}],"timestamp":1}"#,
        r#"{"vendor":"none","gpus":[],"timestamp":1e400}"#,
        r#"{"vendor":"none","gpus":[],"timestamp":1,"cpu_count":4294967296}"#,
        r#"{"vendor":"none","gpus":[],"timestamp":1,"cpu_count":1.0}"#,
        r#"{"vendor":"none","gpus":[],"timestamp":1,}"#,
        r#"{"vendor":"\ud800","gpus":[],"timestamp":1}"#,
        r#"{"vendor":"none","gpus":[],"timestamp":1} x"#,
        r#"{"vendor":"none","gpus":[],"timestamp":01}"#,
        r#"{"vendor":null,"gpus":[],"timestamp":1}"#,
        r#"{"vendor":"none","gpus":[],"timestamp":1,"gpu_offload":{"on":null}}"#,
        r#"[]"#,
        "",
    ];
    for t in left {
        assert!(!same_stats(t), "fast path should leave {t} to serde");
    }
    // Deep unknown values go to serde (whose recursion limit then decides).
    let deep = format!(
        r#"{{"vendor":"none","gpus":[],"timestamp":1,"x":{}{}}}"#,
        "[".repeat(127),
        "]".repeat(127)
    );
    assert!(!same_stats(&deep));
    assert!(parse_stats_serde(&deep).is_err(), "serde's recursion limit");
    assert!(same_rpc(
        r#"{"has_gpu":false,"gpu_devices":[],"gpu_vram_mb":[],"gpu_names":[],"cpu_ram_mb":1,"device_config":"cpu","memory_config":"1","total_parallel_workers":1,"ggml_devices":null,"x":[]}"#
    ));
    assert!(!same_rpc(
        r#"{"has_gpu":0,"gpu_devices":[],"gpu_vram_mb":[],"gpu_names":[],"cpu_ram_mb":1,"device_config":"cpu","memory_config":"1","total_parallel_workers":1}"#
    ));
    assert!(!same_rpc(
        r#"{"gpu_devices":[],"gpu_vram_mb":[],"gpu_names":[],"cpu_ram_mb":1,"device_config":"cpu","memory_config":"1","total_parallel_workers":1}"#
    ));
}
