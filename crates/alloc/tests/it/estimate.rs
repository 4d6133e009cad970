//! Model memory estimates from every source, and the resolver's order.

use expect_test::expect;
use vramroute_alloc::{
    estimate_from_gguf, estimate_from_ollama_show, estimate_from_ollama_tags, sollol_size_table,
    sollol_table_estimate, Error, EstimateSource, GgmlType, GgufInfo, GgufValue, ModelDims,
    ModelEstimate, ModelSizer, OllamaShowInfo, OllamaTagsInfo, TensorInfo, COMPUTE_ALLOWANCE_MIB,
};

use crate::gguf::data;

pub(crate) const MIB: f64 = 1_048_576.0;

#[test]
fn gguf_estimate_counts_weights_kv_for_the_requested_ctx_and_biggest_layer() {
    let info = GgufInfo::from_path(data("tiny-llama.gguf")).unwrap();
    let e = estimate_from_gguf(&info, 2048).unwrap();
    assert_eq!(e.source, EstimateSource::Gguf);
    assert_eq!(e.name, "tiny-llama");
    assert_eq!(e.layer_count, Some(2));
    assert_eq!(e.context_length, Some(2048));
    // KV per token: 2 layers × 2 KV heads × (16 + 16) head dims × 2 bytes = 256 bytes.
    assert_eq!(e.kv_bytes_per_token, Some(256));
    // 256 × 2048 = 512 KiB → rounded up to 1 MiB.
    assert_eq!(e.kv_cache_mib, 1);
    // 72192 bytes of weights → 1 MiB.
    assert_eq!(e.weights_mib, 1);
    // Compute buffers from the dimensions (n_embd 64, 4/2 heads, n_ff 128, 32 tokens):
    // device 512 × 4 × (3·128 + 7·64) B + 2048 × 512 × 2 × 2 B = 5.6 MiB → 6;
    // host 512 × 4 × 5·64 B + 32 × 4 × 4 B + 2048 × 512 × 8 B = 8.6 MiB → 9.
    assert_eq!(
        e.dims,
        Some(ModelDims {
            n_embd: 64,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 128,
            n_vocab: 32
        })
    );
    assert_eq!((e.overhead_mib, e.host_overhead_mib), (6, 9));
    assert_eq!(e.total_mib, 1 + 1 + 6 + 9);
    // Largest layer: blk.0 = 35840 bytes of weights + 128 B/token × 2048 of KV.
    let expected = (35840.0 + 128.0 * 2048.0) / MIB;
    assert!((e.per_layer_mib.unwrap() - expected).abs() < 1e-12);
    // token_embd stays on the host; output + output_norm go with the output layer.
    assert_eq!((e.host_mib, e.output_mib), (1, 1));
    assert!(e.notes.is_empty(), "{:?}", e.notes);

    // Twice the context, twice the KV per layer.
    let e2 = estimate_from_gguf(&info, 4096).unwrap();
    assert_eq!(e2.kv_bytes_per_token, Some(256));
    let expected = (35840.0 + 128.0 * 4096.0) / MIB;
    assert!((e2.per_layer_mib.unwrap() - expected).abs() < 1e-12);
    assert_eq!(
        e2.notes,
        ["ctx 4096 is above the model's trained context length 2048"]
    );
}

#[test]
fn gguf_tied_embeddings_and_per_layer_kv_heads() {
    let info = GgufInfo::from_path(data("tiny-tied-kquant.gguf")).unwrap();
    let e = estimate_from_gguf(&info, 1024).unwrap();
    // (2 + 4) KV heads × (32 + 32) × 2 bytes.
    assert_eq!(e.kv_bytes_per_token, Some(768));
    // Layer 1 has 4 KV heads: 2336 bytes of weights + 4 × 64 × 2 × 1024 bytes of KV.
    let expected = (2336.0 + 512.0 * 1024.0) / MIB;
    assert!((e.per_layer_mib.unwrap() - expected).abs() < 1e-12);
    expect![[r#"
        tiny-tied: 1026 MiB = weights 1 + KV cache 1 (ctx 1024) + compute 512/device + host 512; 2 layers × 0.5 MiB [source: GGUF header]
          note: tied embeddings: the output head is a copy of token_embd on the output device
          note: model dimensions incomplete: compute buffers taken as 512 MiB per device and for the llama-server host"#]]
    .assert_eq(&e.to_string());
}

#[test]
fn gguf_estimate_rejects_zero_ctx() {
    let info = GgufInfo::from_path(data("tiny-llama.gguf")).unwrap();
    let err = estimate_from_gguf(&info, 0).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)));
    assert!(
        err.to_string().contains("context length you will run with"),
        "{err}"
    );
    assert!(!err.to_string().contains("--"), "names a CLI flag: {err}");
}

fn llama31_8b_show() -> OllamaShowInfo {
    let mut ollama_show_info = OllamaShowInfo::new("llama", 32);
    ollama_show_info.context_length = Some(131_072);
    ollama_show_info.embedding_length = 4096;
    ollama_show_info.head_count = 32;
    ollama_show_info.head_count_kv = Some(8);
    ollama_show_info.parameter_count = Some(8_030_261_248);
    ollama_show_info.quantization_level = Some("Q4_K_M".to_owned());
    ollama_show_info.size_bytes = Some(4_920_753_328);
    ollama_show_info
}

#[test]
fn ollama_show_estimate_uses_the_kv_formula() {
    let e = estimate_from_ollama_show("llama3.1:8b", &llama31_8b_show(), 8192).unwrap();
    // KV = 2 × 32 layers × 8192 × 8 heads × 128 dims × 2 bytes = 1 GiB.
    assert_eq!(e.kv_bytes_per_token, Some(2 * 32 * 8 * 128 * 2));
    assert_eq!(e.kv_cache_mib, 1024);
    // 4,920,753,328 bytes → 4693 MiB (4692.8 rounded up).
    assert_eq!(e.weights_mib, 4693);
    // No feed_forward_length from /api/show here: the fallback allowance, with a note.
    assert_eq!(e.total_mib, 4693 + 1024 + 2 * COMPUTE_ALLOWANCE_MIB);
    assert!(e
        .notes
        .iter()
        .any(|n| n.contains("compute buffers taken as 512 MiB")));
    let mut with_ff = llama31_8b_show();
    with_ff.feed_forward_length = Some(14336);
    with_ff.vocab_size = Some(128_256);
    let e2 = estimate_from_ollama_show("llama3.1:8b", &with_ff, 8192).unwrap();
    // 512 × 4 × (3·14336 + 7·4096) B + 8192 × 512 × 2 × 8 B = 140 + 64 MiB.
    assert_eq!(e2.overhead_mib, 204);
    assert_eq!(e.layer_count, Some(32));
    expect![[r#"
        llama3.1:8b: 6741 MiB = weights 4693 + KV cache 1024 (ctx 8192) + compute 512/device + host 512; 32 layers × 178.7 MiB [source: Ollama /api/show metadata]
          note: model dimensions incomplete: compute buffers taken as 512 MiB per device and for the llama-server host
          note: 32 layers of equal size assumed (weights and KV cache spread evenly)"#]]
    .assert_eq(&e.to_string());
}

#[test]
fn ollama_show_without_size_uses_parameters_times_bits_or_asks() {
    let mut show = llama31_8b_show();
    show.size_bytes = None;
    let e = estimate_from_ollama_show("llama3.1:8b", &show, 2048).unwrap();
    // 8,030,261,248 × 4.89 / 8 bytes = 4,908,497,188 bytes → 4682 MiB.
    assert_eq!(e.weights_mib, 4682);
    assert!(e.notes[0].contains("approximated"), "{:?}", e.notes);

    show.quantization_level = None;
    let err = estimate_from_ollama_show("llama3.1:8b", &show, 2048).unwrap_err();
    expect!["model `llama3.1:8b` lacks `size`: pass the model's /api/tags size (or general.parameter_count and quantization_level)"]
        .assert_eq(&err.to_string());
}

#[test]
fn ollama_tags_gives_weights_only() {
    let e = estimate_from_ollama_tags(&OllamaTagsInfo::new("phi3:mini", 2_176_178_913));
    assert_eq!(e.weights_mib, 2076);
    assert_eq!(e.layer_count, None);
    assert_eq!(e.source, EstimateSource::OllamaTags);
    assert!(e.to_string().contains("KV cache not included"));
}

#[test]
fn sollol_table_has_specs_exact_figures() {
    let table: Vec<String> = sollol_size_table()
        .iter()
        .map(|e| format!("{} {} {}", e.name, e.size_mib, e.layers))
        .collect();
    expect![[r#"
        [
            "all-minilm:latest 45 6",
            "nomic-embed-text:latest 274 12",
            "qwen2.5-coder:0.5b 500 24",
            "mxbai-embed-large:latest 705 24",
            "qwen2.5-coder:1.5b 900 28",
            "llama3.2:1b 1300 16",
            "qwen2.5-coder:3b 1800 36",
            "llama3.2:3b 1900 28",
            "codellama:7b 3600 32",
            "qwen2.5-coder:7b 4400 28",
            "llama3.1:latest 4700 32",
            "llama3.1:8b 4700 32",
            "mistral:7b 4100 32",
            "codellama:13b 6900 40",
            "llama3.1:70b 40000 80",
            "mixtral:8x7b 26000 32",
        ]
    "#]]
    .assert_debug_eq(&table);
    let e = sollol_table_estimate("llama3.1").unwrap();
    assert_eq!(e.name, "llama3.1:latest");
    assert_eq!(e.weights_mib, 4700);
    let e = sollol_table_estimate("LLAMA3.1:70B").unwrap();
    assert_eq!(
        (e.weights_mib, e.layer_count, e.per_layer_mib),
        (40000, Some(80), Some(500.0))
    );
    assert!(sollol_table_estimate("llama3.2").is_none());
}

#[test]
fn sizer_tries_sources_in_order() {
    let info = GgufInfo::from_path(data("tiny-llama.gguf")).unwrap();
    let show = llama31_8b_show();
    let tags = OllamaTagsInfo::new("llama3.1:8b", 1 << 30);
    let src = |s: ModelSizer<'_>| s.estimate("llama3.1:8b", 4096).unwrap().source;
    // One order: explicit, GGUF, /api/show, /api/tags, SOLLOL's table, a loaded copy.
    let all = ModelSizer::new()
        .gguf(&info)
        .ollama_show(&show)
        .ollama_tags(&tags)
        .loaded_mib(999)
        .explicit_mib(1234);
    assert_eq!(src(all), EstimateSource::Explicit);
    let no_explicit = ModelSizer::new()
        .gguf(&info)
        .ollama_show(&show)
        .ollama_tags(&tags)
        .loaded_mib(999);
    assert_eq!(src(no_explicit), EstimateSource::Gguf);
    let no_gguf = ModelSizer::new()
        .ollama_show(&show)
        .ollama_tags(&tags)
        .loaded_mib(999);
    assert_eq!(src(no_gguf), EstimateSource::OllamaShow);
    assert_eq!(
        src(ModelSizer::new().ollama_tags(&tags).loaded_mib(999)),
        EstimateSource::OllamaTags
    );
    assert_eq!(
        src(ModelSizer::new().loaded_mib(999)),
        EstimateSource::SollolTable
    );
    let loaded = ModelSizer::new()
        .without_sollol_table()
        .loaded_mib(999)
        .estimate("llama3.1:8b", 4096)
        .unwrap();
    assert_eq!(
        (loaded.source, loaded.routing_mib()),
        (EstimateSource::LoadedCopy, 999)
    );
    assert!(ModelSizer::new()
        .without_sollol_table()
        .estimate("llama3.1:8b", 4096)
        .is_err());
    // The GGUF estimate carries the caller's name.
    let e = ModelSizer::new()
        .gguf(&info)
        .estimate("my-model", 512)
        .unwrap();
    assert_eq!(e.name, "my-model");

    // /api/show without a size borrows /api/tags' size.
    let mut bare = show.clone();
    bare.size_bytes = None;
    let e = ModelSizer::new()
        .ollama_show(&bare)
        .ollama_tags(&tags)
        .estimate("llama3.1:8b", 4096)
        .unwrap();
    assert_eq!(e.weights_mib, 1024);
}

#[test]
fn unknown_model_says_what_to_provide() {
    let err = ModelSizer::new().estimate("mystery:13b", 4096).unwrap_err();
    assert!(matches!(err, Error::UnknownModel { .. }));
    expect!["unknown model `mystery:13b`: no source knows its size, and none is guessed: give it explicitly, point at its GGUF file, or ask an Ollama node that has it pulled (/api/show, /api/tags)"]
        .assert_eq(&err.to_string());
}

#[test]
fn explicit_and_with_layers() {
    let e = ModelEstimate::explicit("big", 40000);
    assert_eq!(
        (e.total_mib, e.overhead_mib, e.layer_count),
        (40000, 0, None)
    );
    let e = e.with_layers(80).unwrap();
    assert_eq!(e.per_layer_mib, Some(500.0));
    assert!(ModelEstimate::explicit("x", 1).with_layers(0).is_err());
    assert_eq!(EstimateSource::Explicit.to_string(), "explicit size");
    assert_eq!(EstimateSource::SollolTable.to_string(), "SOLLOL size table");
}

#[test]
fn absurd_explicit_sizes_do_not_overflow() {
    let e = ModelEstimate::explicit("x", u64::MAX)
        .with_layers(80)
        .unwrap();
    assert!(e.per_layer_mib.unwrap() > 1e17);
}

/// The GGUF header of the model SPEC.md's figures were measured with: a 24-layer Q8_0
/// llama, n_embd 1024, 16 query / 4 KV heads, n_ff 4096, vocab 32000 (436 MiB). Built
/// through `GgufInfo`'s public fields; `tied` drops `output.weight`.
pub(crate) fn measured_model_header(tied: bool) -> GgufInfo {
    let q8 = |name: String, ne0: u64, ne1: u64| {
        TensorInfo::new(name, vec![ne0, ne1], GgmlType(8), 0, ne0 * ne1 / 32 * 34)
    };
    let f32 = |name: String, n: u64| TensorInfo::new(name, vec![n], GgmlType(0), 0, n * 4);
    let (embd, ff, kv, vocab) = (1024, 4096, 256, 32000);
    let mut tensors = vec![q8("token_embd.weight".into(), embd, vocab)];
    for l in 0..24 {
        let p = |s: &str| format!("blk.{l}.{s}");
        tensors.extend([
            f32(p("attn_norm.weight"), embd),
            q8(p("attn_q.weight"), embd, embd),
            q8(p("attn_k.weight"), embd, kv),
            q8(p("attn_v.weight"), embd, kv),
            q8(p("attn_output.weight"), embd, embd),
            f32(p("ffn_norm.weight"), embd),
            q8(p("ffn_gate.weight"), embd, ff),
            q8(p("ffn_up.weight"), embd, ff),
            q8(p("ffn_down.weight"), ff, embd),
        ]);
    }
    tensors.push(f32("output_norm.weight".into(), embd));
    if !tied {
        tensors.push(q8("output.weight".into(), embd, vocab));
    }
    let metadata = [
        ("general.architecture", GgufValue::Str("llama".into())),
        ("general.name", GgufValue::Str("measured-24l".into())),
        ("llama.block_count", GgufValue::Uint(24)),
        ("llama.context_length", GgufValue::Uint(131_072)),
        ("llama.embedding_length", GgufValue::Uint(embd)),
        ("llama.feed_forward_length", GgufValue::Uint(ff)),
        ("llama.attention.head_count", GgufValue::Uint(16)),
        ("llama.attention.head_count_kv", GgufValue::Uint(4)),
        (
            "tokenizer.ggml.tokens",
            GgufValue::Array {
                elem_type: 8,
                len: vocab,
            },
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    GgufInfo::new(3, metadata, tensors, 0)
}

/// SPEC.md's measurements: (ctx, compute buffer per RPC device, llama-server host's
/// compute + output buffers), MiB.
pub(crate) const MEASURED: [(u32, f64, f64); 4] = [
    (4096, 54.0, 26.5),
    (16384, 102.0, 74.5),
    (65536, 294.0, 266.5),
    (131_072, 550.0, 522.5),
];

#[test]
fn compute_buffers_cover_the_measured_figures_within_a_quarter() {
    let info = measured_model_header(false);
    for (ctx, device, host) in MEASURED {
        let e = estimate_from_gguf(&info, ctx).unwrap();
        assert_eq!(e.weights_mib, 437, "436.7 MiB of weights");
        for (what, planned, measured) in [
            ("device", e.overhead_mib, device),
            ("host", e.host_overhead_mib, host),
        ] {
            #[allow(clippy::cast_precision_loss, reason = "small figures")]
            let planned = planned as f64;
            assert!(
                planned >= measured && planned <= 1.25 * measured + 64.0,
                "ctx {ctx} {what}: planned {planned} MiB, measured {measured} MiB"
            );
        }
    }
    // The 4-layer n_embd 256 model (measured 10 MiB at ctx 4096); its other dimensions
    // are not recorded, so every plausible shape must stay within the same bounds.
    for n_head_kv in [1, 2, 4] {
        for n_ff in [512, 688, 1024] {
            let dims = ModelDims {
                n_embd: 256,
                n_head: 4,
                n_head_kv,
                n_ff,
                n_vocab: 32000,
            };
            let b = vramroute_alloc::BatchSizes::default();
            let mib = vramroute_alloc::device_compute_bytes(&dims, 4096, 4, &b) as f64 / MIB;
            assert!(
                (10.0..=1.25 * 10.0 + 64.0).contains(&mib),
                "{dims:?}: {mib}"
            );
        }
    }
}

#[test]
fn tied_embeddings_copy_token_embd_to_the_output_device() {
    let untied = estimate_from_gguf(&measured_model_header(false), 4096).unwrap();
    let tied = estimate_from_gguf(&measured_model_header(true), 4096).unwrap();
    // output.weight (33.2 MiB) is gone from the file, but the output device still holds
    // a copy of token_embd of the same size.
    assert_eq!(tied.weights_mib, untied.weights_mib - 33);
    assert_eq!(tied.output_mib, untied.output_mib);
    assert_eq!(tied.host_mib, untied.host_mib);
    assert!(tied.notes.iter().any(|n| n.contains("tied embeddings")));
}
