//! The GGUF header reader on files written by llama.cpp's gguf-py, and on corrupt ones.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use expect_test::expect;
use vramroute_alloc::{parse_gguf, Error, GgmlType, GgufInfo, GgufValue};

pub(crate) fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn err_of(name: &str) -> String {
    match GgufInfo::from_path(data(name)) {
        Ok(info) => panic!("{name} parsed: {info:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn reads_a_file_written_by_gguf_py() {
    let info = GgufInfo::from_path(data("tiny-llama.gguf")).unwrap();
    assert_eq!(info.version, 3);
    assert_eq!(info.architecture(), Some("llama"));
    assert_eq!(info.model_name(), Some("tiny-llama"));
    assert_eq!(info.arch_u64("block_count"), Some(2));
    assert_eq!(info.arch_u64("context_length"), Some(2048));
    assert_eq!(info.arch_u64("attention.head_count_kv"), Some(2));
    // Large values are summarised, not stored.
    assert!(matches!(
        info.get("tokenizer.chat_template"),
        Some(GgufValue::LongStr { len: 5006 })
    ));
    assert!(matches!(
        info.get("tokenizer.ggml.tokens"),
        Some(GgufValue::Array {
            elem_type: 8,
            len: 32
        })
    ));
    assert_eq!(
        info.get("tiny.int_array"),
        Some(&GgufValue::Ints(vec![1, 2, 3]))
    );
    let summary: String = info
        .tensors
        .iter()
        .map(|t| {
            format!(
                "{} {} {:?} {}\n",
                t.name,
                t.ggml_type.name().unwrap(),
                t.dims,
                t.size_bytes
            )
        })
        .collect();
    expect![[r#"
        token_embd.weight Q8_0 [64, 32] 2176
        blk.0.attn_norm.weight F32 [64] 256
        blk.0.attn_q.weight Q8_0 [64, 64] 4352
        blk.0.attn_k.weight Q8_0 [64, 32] 2176
        blk.0.attn_v.weight Q4_0 [64, 32] 1152
        blk.0.attn_output.weight F16 [64, 64] 8192
        blk.0.ffn_norm.weight F32 [64] 256
        blk.0.ffn_gate.weight Q4_1 [64, 128] 5120
        blk.0.ffn_up.weight Q5_0 [64, 128] 5632
        blk.0.ffn_down.weight Q8_0 [128, 64] 8704
        blk.1.attn_norm.weight F32 [64] 256
        blk.1.attn_q.weight Q8_0 [64, 64] 4352
        blk.1.attn_k.weight Q8_0 [64, 32] 2176
        blk.1.attn_v.weight Q4_0 [64, 32] 1152
        blk.1.attn_output.weight F16 [64, 64] 8192
        blk.1.ffn_norm.weight F32 [64] 256
        blk.1.ffn_gate.weight Q4_1 [64, 128] 5120
        blk.1.ffn_up.weight Q5_0 [64, 128] 5632
        blk.1.ffn_down.weight Q4_0 [128, 64] 4608
        output_norm.weight F32 [64] 256
        output.weight Q8_0 [64, 32] 2176
    "#]]
    .assert_eq(&summary);
    assert_eq!(info.weights_bytes(), 72192);
    // The data section follows the header, aligned to 32 bytes.
    assert!(
        info.header_bytes > 6200 && info.header_bytes <= 7168,
        "{}",
        info.header_bytes
    );
    // The last tensor's offset + size is the data section's length (gguf-py's layout).
    let last = info.tensors.last().unwrap();
    let file_len = std::fs::metadata(data("tiny-llama.gguf")).unwrap().len();
    assert_eq!(7168 + last.offset + last.size_bytes, file_len);
}

#[test]
fn k_quants_bf16_and_per_layer_arrays() {
    let info = GgufInfo::from_path(data("tiny-tied-kquant.gguf")).unwrap();
    let sizes: Vec<(String, u64)> = info
        .tensors
        .iter()
        .map(|t| (t.ggml_type.name().unwrap().to_owned(), t.size_bytes))
        .collect();
    let sizes: Vec<(&str, u64)> = sizes.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    assert_eq!(
        &sizes[..5],
        &[
            ("Q6_K", 3360),
            ("Q4_K", 576),
            ("Q5_K", 704),
            ("IQ4_XS", 544),
            ("BF16", 512)
        ]
    );
    assert_eq!(
        info.arch_per_layer("attention.head_count_kv", 2),
        Some(vec![2, 4])
    );
    assert_eq!(
        info.arch_per_layer("attention.head_count", 2),
        Some(vec![8, 8])
    );
    // Wrong length: not a per-layer array for this layer count.
    assert_eq!(info.arch_per_layer("attention.head_count_kv", 3), None);
}

#[test]
fn slice_reader_and_file_reader_agree() {
    let bytes = std::fs::read(data("tiny-llama.gguf")).unwrap();
    let from_slice = parse_gguf(&bytes).unwrap();
    let from_file = GgufInfo::from_path(data("tiny-llama.gguf")).unwrap();
    assert_eq!(from_slice, from_file);
    // Only the header is needed.
    let header_only =
        parse_gguf(&bytes[..usize::try_from(from_file.header_bytes).unwrap()]).unwrap();
    assert_eq!(header_only, from_file);
}

#[test]
fn corrupt_files_fail_with_a_reason() {
    let all: String = [
        "truncated.gguf",
        "bad-magic.gguf",
        "version-1.gguf",
        "big-endian.gguf",
        "absurd-tensor-count.gguf",
        "absurd-kv-count.gguf",
        "huge-key.gguf",
        "huge-string.gguf",
        "truncated-string.gguf",
        "huge-array.gguf",
        "overflowing-dims.gguf",
        "too-many-dims.gguf",
        "unknown-type.gguf",
    ]
    .iter()
    .map(|name| format!("{name}: {}\n", err_of(name)))
    .collect();
    expect![[r#"
        truncated.gguf: not a usable GGUF header (at byte 6099): a tensor name needs 8 bytes but only 1 are left in the file (truncated or hostile file)
        bad-magic.gguf: not a usable GGUF header (at byte 0): bad magic [47, 47, 4d, 4c], expected "GGUF": not a GGUF model file (an Ollama blob, safetensors or GGML file?)
        version-1.gguf: not a usable GGUF header (at byte 8): GGUF version 1 is not supported: re-convert the model with a current llama.cpp
        big-endian.gguf: not a usable GGUF header (at byte 8): big-endian GGUF files are not supported
        absurd-tensor-count.gguf: not a usable GGUF header (at byte 16): tensor_count is 1099511627776, more than the 65536 limit (corrupt or hostile file)
        absurd-kv-count.gguf: not a usable GGUF header (at byte 24): metadata kv_count is 4611686018427387904, more than the 65536 limit (corrupt or hostile file)
        huge-key.gguf: not a usable GGUF header (at byte 32): a metadata key claims 4611686018427387904 bytes, more than the 65536-byte limit (corrupt or hostile file)
        huge-string.gguf: not a usable GGUF header (at byte 56): metadata `general.name` claims 1099511627776 bytes, more than the 16777216-byte limit (corrupt or hostile file)
        truncated-string.gguf: not a usable GGUF header (at byte 56): metadata `general.name` needs 8388608 bytes but only 16 are left in the file (truncated or hostile file)
        huge-array.gguf: not a usable GGUF header (at byte 69): metadata `tokenizer.ggml.scores`: array claims 1152921504606846976 elements, more than the 16777216 limit
        overflowing-dims.gguf: not a usable GGUF header (at byte 91): tensor `blk.0.attn_q.weight` dimensions [4294967296, 4294967296, 4294967296] overflow
        too-many-dims.gguf: not a usable GGUF header (at byte 37): tensor `t` has 5 dimensions (1 to 4 allowed)
        unknown-type.gguf: not a usable GGUF header (at byte 57): tensor `t` has ggml type 4242 which this version cannot size
    "#]]
    .assert_eq(&all);
    assert!(matches!(
        GgufInfo::from_path(data("truncated.gguf")),
        Err(Error::Gguf { offset: 6099, .. })
    ));
}

#[test]
fn missing_file_names_the_path() {
    let err = GgufInfo::from_path(data("no-such-file.gguf")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("no-such-file.gguf"), "{err}");
}

#[test]
fn every_prefix_of_a_good_header_fails_cleanly() {
    let bytes = std::fs::read(data("tiny-llama.gguf")).unwrap();
    let header = usize::try_from(parse_gguf(&bytes).unwrap().header_bytes).unwrap();
    for cut in 0..header {
        let err = parse_gguf(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, Error::Gguf { offset, .. } if offset <= cut as u64),
            "cut {cut}: {err}"
        );
    }
}

#[test]
fn mutated_headers_never_panic_and_fail_fast() {
    // Deterministic single-byte mutations across the header (a tiny fuzz pass).
    let bytes = std::fs::read(data("tiny-llama.gguf")).unwrap();
    let header = usize::try_from(parse_gguf(&bytes).unwrap().header_bytes).unwrap();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let started = Instant::now();
    let mut failures = 0;
    for _ in 0..3000 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let at = usize::try_from(state >> 33).unwrap() % header;
        let mut mutated = bytes[..header].to_vec();
        mutated[at] ^= u8::try_from(state >> 56).unwrap() | 1;
        if parse_gguf(&mutated).is_err() {
            failures += 1;
        }
    }
    assert!(failures > 100, "only {failures} mutations were detected");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn type_table_matches_gguf_py_for_common_types() {
    // (id, name, block elements, block bytes) from gguf-py's GGML_QUANT_SIZES.
    for (id, name, elems, bytes) in [
        (0, "F32", 1, 4),
        (1, "F16", 1, 2),
        (2, "Q4_0", 32, 18),
        (3, "Q4_1", 32, 20),
        (6, "Q5_0", 32, 22),
        (7, "Q5_1", 32, 24),
        (8, "Q8_0", 32, 34),
        (10, "Q2_K", 256, 84),
        (11, "Q3_K", 256, 110),
        (12, "Q4_K", 256, 144),
        (13, "Q5_K", 256, 176),
        (14, "Q6_K", 256, 210),
        (15, "Q8_K", 256, 292),
        (16, "IQ2_XXS", 256, 66),
        (17, "IQ2_XS", 256, 74),
        (18, "IQ3_XXS", 256, 98),
        (19, "IQ1_S", 256, 50),
        (20, "IQ4_NL", 32, 18),
        (21, "IQ3_S", 256, 110),
        (22, "IQ2_S", 256, 82),
        (23, "IQ4_XS", 256, 136),
        (29, "IQ1_M", 256, 56),
        (30, "BF16", 1, 2),
        (34, "TQ1_0", 256, 54),
        (35, "TQ2_0", 256, 66),
        (39, "MXFP4", 32, 17),
    ] {
        assert_eq!(GgmlType(id).name(), Some(name));
        assert_eq!(GgmlType(id).block(), Some((elems, bytes)), "{name}");
    }
}
