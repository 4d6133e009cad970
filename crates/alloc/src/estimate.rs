//! How much memory a model needs, and where that figure came from.
//!
//! Need = weights + KV cache + compute buffers (per device, and for the `llama-server`
//! host; see `compute.rs`). The KV cache is sized for the context actually requested, not
//! the model's maximum:
//!
//! `kv_bytes = ctx × Σ_layers n_head_kv(layer) × (key_length + value_length) × 2`
//!
//! i.e. the familiar `2 (K and V) × n_layers × ctx × n_head_kv × head_dim × 2 bytes`
//! when K and V have the same head size (`head_dim = embedding_length / head_count`
//! unless the model says otherwise) and the cache is f16, llama.cpp's default.

use std::fmt;

use serde::{Deserialize, Serialize};
use vramroute_router::normalize_model_name;

use crate::compute::{
    device_compute_bytes, host_compute_bytes, BatchSizes, ModelDims, FALLBACK_COMPUTE_MIB,
};
use crate::error::{Error, Result};
use crate::gguf::{GgufInfo, MAX_LAYERS};

/// Bytes per MiB.
pub const MIB: u64 = 1 << 20;

/// The compute allowance per device (and for the `llama-server` host) of an estimate
/// without model dimensions (SOLLOL's table, `/api/tags`), MiB: [`FALLBACK_COMPUTE_MIB`].
/// Estimates with dimensions (GGUF, `/api/show`) size the buffers from them instead.
pub const COMPUTE_ALLOWANCE_MIB: u64 = FALLBACK_COMPUTE_MIB;

/// Context length used when the caller has no preference (llama-server's default).
pub const DEFAULT_CTX: u32 = 4096;

/// Bytes per KV-cache element (f16, llama.cpp's default cache type).
const KV_BYTES_PER_ELEMENT: u64 = 2;

/// Where an estimate came from, in the order [`ModelSizer`] tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EstimateSource {
    /// A size the user gave: it overrides every other source.
    Explicit,
    /// A size the operator configured once (the coordinator's `model_sizes`): it
    /// overrides every source but an explicit size.
    Config,
    /// The model's GGUF header (tensor sizes and attention metadata).
    Gguf,
    /// Ollama's `/api/show` metadata (plus the `/api/tags` size when available).
    OllamaShow,
    /// Ollama's `/api/tags` file size only.
    OllamaTags,
    /// SOLLOL's built-in size table.
    SollolTable,
    /// The size Ollama's `/api/ps` reports for a copy loaded somewhere.
    LoadedCopy,
}

impl fmt::Display for EstimateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EstimateSource::Gguf => "GGUF header",
            EstimateSource::OllamaShow => "Ollama /api/show metadata",
            EstimateSource::OllamaTags => "Ollama /api/tags size",
            EstimateSource::SollolTable => "SOLLOL size table",
            EstimateSource::Explicit => "explicit size",
            EstimateSource::Config => "config model_sizes",
            EstimateSource::LoadedCopy => "Ollama /api/ps size of a loaded copy",
        })
    }
}

/// A model's memory need. All sizes MiB, rounded up.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ModelEstimate {
    /// The model's name.
    pub name: String,
    /// `weights_mib + kv_cache_mib + overhead_mib + host_overhead_mib`: the need of a run
    /// on one device.
    pub total_mib: u64,
    /// All weights.
    pub weights_mib: u64,
    /// KV cache at `context_length` (0 when the source cannot tell; see `notes`).
    pub kv_cache_mib: u64,
    /// llama.cpp's compute buffer on each device that holds layers: from `dims` at
    /// `context_length` and llama-server's default batch sizes when known, else
    /// [`COMPUTE_ALLOWANCE_MIB`] (0 for an explicit size, which is the whole need).
    pub overhead_mib: u64,
    /// The `llama-server` host's own compute and output buffers (from `dims`, else
    /// [`COMPUTE_ALLOWANCE_MIB`]; 0 for an explicit size).
    pub host_overhead_mib: u64,
    /// The dimensions that size the compute buffers, when the source has them.
    pub dims: Option<ModelDims>,
    /// Number of repeating layers, when known.
    pub layer_count: Option<u32>,
    /// Memory of one repeating layer (weights + its KV cache). From a GGUF header this is
    /// the largest layer, so plans built on it are never optimistic.
    pub per_layer_mib: Option<f64>,
    /// Non-repeating weights that go with the output layer (output head and norm).
    pub output_mib: u64,
    /// Input weights llama.cpp always keeps on the `llama-server` host (token embeddings).
    pub host_mib: u64,
    /// The context length the KV cache was sized for.
    pub context_length: Option<u32>,
    /// KV cache bytes per token of context, when known (for "smaller context" advice).
    pub kv_bytes_per_token: Option<u64>,
    /// Where the figures came from.
    pub source: EstimateSource,
    /// Caveats a reader should see (what is approximate or missing).
    pub notes: Vec<String>,
}

fn mib_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

/// `(per-device, host)` compute buffers, MiB rounded up, for `dims` at `ctx`.
fn compute_mib(dims: &ModelDims, ctx: u32, batch: &BatchSizes) -> (u64, u64) {
    (
        mib_ceil(device_compute_bytes(dims, ctx, 1, batch)),
        mib_ceil(host_compute_bytes(dims, ctx, batch)),
    )
}

/// The compute figures of an estimate: from `dims` when known, else the fallback with a
/// note saying so.
fn compute_or_fallback(dims: Option<&ModelDims>, ctx: u32, notes: &mut Vec<String>) -> (u64, u64) {
    match dims {
        Some(d) => compute_mib(d, ctx, &BatchSizes::default()),
        None => {
            notes.push(format!(
                "model dimensions incomplete: compute buffers taken as {COMPUTE_ALLOWANCE_MIB} MiB \
                 per device and for the llama-server host"
            ));
            (COMPUTE_ALLOWANCE_MIB, COMPUTE_ALLOWANCE_MIB)
        }
    }
}

#[allow(
    clippy::cast_precision_loss,
    reason = "sizes far below 2^53 bytes; the per-layer figure is informational"
)]
fn bytes_to_mib_f64(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

impl ModelEstimate {
    /// A size the user gave, taken as the whole need (no KV or overhead added).
    pub fn explicit(name: impl Into<String>, mib: u64) -> ModelEstimate {
        ModelEstimate {
            name: name.into(),
            total_mib: mib,
            weights_mib: mib,
            kv_cache_mib: 0,
            overhead_mib: 0,
            host_overhead_mib: 0,
            dims: None,
            layer_count: None,
            per_layer_mib: None,
            output_mib: 0,
            host_mib: 0,
            context_length: None,
            kv_bytes_per_token: None,
            source: EstimateSource::Explicit,
            notes: vec!["the size given is taken as the whole need".to_owned()],
        }
    }

    /// The figure routing compares with free VRAM or RAM: weights plus KV cache (SOLLOL's
    /// convention: its table's figure is the model's whole need; the per-device compute
    /// allowance is a planning matter).
    pub fn routing_mib(&self) -> u64 {
        self.weights_mib.saturating_add(self.kv_cache_mib)
    }

    /// Re-sizes the compute buffers for `batch` (the estimate functions assume
    /// llama-server's defaults, [`BatchSizes::default`]). No effect on an estimate without
    /// dimensions or context.
    pub fn with_batch(mut self, batch: &BatchSizes) -> ModelEstimate {
        if let (Some(dims), Some(ctx)) = (self.dims, self.context_length) {
            let (device, host) = compute_mib(&dims, ctx, batch);
            self.total_mib = self
                .total_mib
                .saturating_sub(self.overhead_mib + self.host_overhead_mib)
                .saturating_add(device + host);
            self.overhead_mib = device;
            self.host_overhead_mib = host;
        }
        self
    }

    /// Attaches a layer count to an estimate that has none (SOLLOL table, `/api/tags`,
    /// explicit): every layer is taken to hold an equal share of weights and KV cache.
    pub fn with_layers(mut self, layers: u32) -> Result<ModelEstimate> {
        if layers == 0 || u64::from(layers) > MAX_LAYERS {
            return Err(Error::InvalidInput(format!(
                "a layer count of {layers} is not plausible (1 to {MAX_LAYERS})"
            )));
        }
        self.layer_count = Some(layers);
        #[allow(
            clippy::cast_precision_loss,
            reason = "MiB figures far below 2^53; the per-layer figure is a float anyway"
        )]
        let mib = self.weights_mib.saturating_add(self.kv_cache_mib) as f64;
        self.per_layer_mib = Some(mib / f64::from(layers));
        self.output_mib = 0;
        self.host_mib = 0;
        self.notes.push(format!(
            "{layers} layers of equal size assumed (weights and KV cache spread evenly)"
        ));
        Ok(self)
    }
}

impl fmt::Display for ModelEstimate {
    /// `NAME: T MiB = weights W + KV K (ctx C) + overhead O; L layers × P MiB [source: S]`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} MiB = weights {} + KV cache {}",
            self.name, self.total_mib, self.weights_mib, self.kv_cache_mib
        )?;
        if let Some(ctx) = self.context_length {
            write!(f, " (ctx {ctx})")?;
        }
        write!(
            f,
            " + compute {}/device + host {}",
            self.overhead_mib, self.host_overhead_mib
        )?;
        if let (Some(layers), Some(per_layer)) = (self.layer_count, self.per_layer_mib) {
            write!(f, "; {layers} layers × {per_layer:.1} MiB")?;
        }
        write!(f, " [source: {}]", self.source)?;
        for note in &self.notes {
            write!(f, "\n  note: {note}")?;
        }
        Ok(())
    }
}

/// Architecture numbers of a model as Ollama's `POST /api/show` reports them in
/// `model_info` (`general.architecture`, `<arch>.block_count`, ...), plus the file size
/// from `GET /api/tags`. The caller does the HTTP; this crate only does arithmetic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OllamaShowInfo {
    /// `general.architecture`.
    pub architecture: String,
    /// `<arch>.block_count`.
    pub block_count: u32,
    /// `<arch>.context_length` (the trained maximum).
    pub context_length: Option<u32>,
    /// `<arch>.embedding_length`.
    pub embedding_length: u32,
    /// `<arch>.attention.head_count`.
    pub head_count: u32,
    /// `<arch>.attention.head_count_kv` (defaults to `head_count`).
    pub head_count_kv: Option<u32>,
    /// `<arch>.attention.key_length` (defaults to `embedding_length / head_count`).
    pub key_length: Option<u32>,
    /// `<arch>.attention.value_length` (defaults to `key_length`'s default).
    pub value_length: Option<u32>,
    /// `<arch>.feed_forward_length` (sizes the compute buffers; without it they get
    /// [`COMPUTE_ALLOWANCE_MIB`]).
    #[serde(default)]
    pub feed_forward_length: Option<u32>,
    /// Vocabulary size (`<arch>.vocab_size`, or the tokenizer's token count).
    #[serde(default)]
    pub vocab_size: Option<u32>,
    /// `general.parameter_count`.
    pub parameter_count: Option<u64>,
    /// `details.quantization_level` (`Q4_K_M`, ...).
    pub quantization_level: Option<String>,
    /// The model's size in bytes from `/api/tags` (`size`).
    pub size_bytes: Option<u64>,
}

impl OllamaShowInfo {
    /// A model of `architecture` with `block_count` layers; every other number unknown
    /// (0 or `None`) until set.
    pub fn new(architecture: impl Into<String>, block_count: u32) -> Self {
        Self {
            architecture: architecture.into(),
            block_count,
            ..Self::default()
        }
    }
}

/// One model as `GET /api/tags` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OllamaTagsInfo {
    /// `name` (`llama3.1:8b`).
    pub name: String,
    /// `size`, bytes.
    pub size_bytes: u64,
}

impl OllamaTagsInfo {
    /// The `/api/tags` entry of `name`, a file of `size_bytes`.
    pub fn new(name: impl Into<String>, size_bytes: u64) -> Self {
        Self {
            name: name.into(),
            size_bytes,
        }
    }
}

/// One row of SOLLOL's size table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SollolTableEntry {
    /// Normalised name (`name:tag`).
    pub name: &'static str,
    /// SOLLOL's figure, MiB.
    pub size_mib: u64,
    /// Repeating layers of the architecture (public model facts, not in SOLLOL's table).
    pub layers: u32,
}

const fn entry(name: &'static str, size_mib: u64, layers: u32) -> SollolTableEntry {
    SollolTableEntry {
        name,
        size_mib,
        layers,
    }
}

static SOLLOL_TABLE: [SollolTableEntry; 16] = [
    entry("all-minilm:latest", 45, 6),
    entry("nomic-embed-text:latest", 274, 12),
    entry("qwen2.5-coder:0.5b", 500, 24),
    entry("mxbai-embed-large:latest", 705, 24),
    entry("qwen2.5-coder:1.5b", 900, 28),
    entry("llama3.2:1b", 1300, 16),
    entry("qwen2.5-coder:3b", 1800, 36),
    entry("llama3.2:3b", 1900, 28),
    entry("codellama:7b", 3600, 32),
    entry("qwen2.5-coder:7b", 4400, 28),
    entry("llama3.1:latest", 4700, 32),
    entry("llama3.1:8b", 4700, 32),
    entry("mistral:7b", 4100, 32),
    entry("codellama:13b", 6900, 40),
    entry("llama3.1:70b", 40000, 80),
    entry("mixtral:8x7b", 26000, 32),
];

/// SOLLOL's model size table (SPEC.md), names normalised to `name:tag`.
pub fn sollol_size_table() -> &'static [SollolTableEntry] {
    &SOLLOL_TABLE
}

/// The SOLLOL-table estimate for `name` (with the architecture's layer count), if the
/// table has it. KV cache is not included (SOLLOL's figure is the whole need).
pub fn sollol_table_estimate(name: &str) -> Option<ModelEstimate> {
    let key = normalize_model_name(name);
    let row = SOLLOL_TABLE.iter().find(|e| e.name == key)?;
    let base = ModelEstimate {
        name: row.name.to_owned(),
        total_mib: row.size_mib + 2 * COMPUTE_ALLOWANCE_MIB,
        weights_mib: row.size_mib,
        kv_cache_mib: 0,
        overhead_mib: COMPUTE_ALLOWANCE_MIB,
        host_overhead_mib: COMPUTE_ALLOWANCE_MIB,
        dims: None,
        layer_count: None,
        per_layer_mib: None,
        output_mib: 0,
        host_mib: 0,
        context_length: None,
        kv_bytes_per_token: None,
        source: EstimateSource::SollolTable,
        notes: vec![
            "SOLLOL's figure is the model's size; KV cache for long contexts is not included"
                .to_owned(),
        ],
    };
    base.with_layers(row.layers).ok()
}

/// Estimate from a parsed GGUF header for a context of `ctx` tokens.
pub fn estimate_from_gguf(info: &GgufInfo, ctx: u32) -> Result<ModelEstimate> {
    let name = info
        .model_name()
        .or(info.architecture())
        .unwrap_or("GGUF model")
        .to_owned();
    check_ctx(&name, ctx)?;
    let missing = |key: &str| Error::MissingMetadata {
        model: name.clone(),
        key: key.to_owned(),
        hint: "the GGUF header is incomplete; give the model's size explicitly instead".to_owned(),
    };
    let arch = info
        .architecture()
        .ok_or_else(|| missing("general.architecture"))?;
    let blocks = info
        .arch_u64("block_count")
        .ok_or_else(|| missing(&format!("{arch}.block_count")))?;
    if blocks == 0 || blocks > MAX_LAYERS {
        return Err(Error::InvalidInput(format!(
            "GGUF `{name}` declares {blocks} blocks (1 to {MAX_LAYERS} allowed)"
        )));
    }
    let layers = usize::try_from(blocks).map_err(|_| missing("block_count"))?;

    // Weights, by where llama.cpp puts them.
    let mut layer_bytes = vec![0u64; layers];
    let (mut host_bytes, mut output_bytes, mut token_embd_bytes) = (0u64, 0u64, 0u64);
    let mut has_output_weight = false;
    for t in &info.tensors {
        if let Some(l) = t.layer() {
            let slot = usize::try_from(l)
                .ok()
                .and_then(|l| layer_bytes.get_mut(l))
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "GGUF `{name}`: tensor `{}` is beyond block_count {blocks}",
                        t.name
                    ))
                })?;
            *slot = slot.saturating_add(t.size_bytes);
        } else if t.name.starts_with("token_embd.")
            || t.name.starts_with("position_embd.")
            || t.name.starts_with("token_types.")
        {
            host_bytes = host_bytes.saturating_add(t.size_bytes);
            if t.name == "token_embd.weight" {
                token_embd_bytes = t.size_bytes;
            }
        } else {
            has_output_weight |= t.name == "output.weight";
            output_bytes = output_bytes.saturating_add(t.size_bytes);
        }
    }
    let mut notes = Vec::new();
    if !has_output_weight && token_embd_bytes > 0 {
        // Tied embeddings: llama.cpp loads a copy of token_embd as the output head.
        output_bytes = output_bytes.saturating_add(token_embd_bytes);
        notes.push(
            "tied embeddings: the output head is a copy of token_embd on the output device"
                .to_owned(),
        );
    }

    // KV cache per token, per layer.
    let head_count = info.arch_per_layer("attention.head_count", layers);
    let mut kv_layer_per_token = vec![0u64; layers];
    match head_count.clone() {
        None => notes.push(format!(
            "no `{arch}.attention.head_count`: KV cache not estimated (non-attention model?)"
        )),
        Some(heads) => {
            let heads_kv = info
                .arch_per_layer("attention.head_count_kv", layers)
                .unwrap_or_else(|| heads.clone());
            let embd = info.arch_u64("embedding_length");
            let key_len = info.arch_u64("attention.key_length");
            let value_len = info.arch_u64("attention.value_length");
            for (l, slot) in kv_layer_per_token.iter_mut().enumerate() {
                let (h, hkv) = (heads[l], heads_kv[l]);
                if h == 0 || hkv == 0 {
                    continue; // a layer without attention (recurrent / SSM block)
                }
                let default_dim = embd.map(|e| e / h);
                let k = key_len
                    .or(default_dim)
                    .ok_or_else(|| missing(&format!("{arch}.embedding_length")))?;
                let v = value_len.or(default_dim).unwrap_or(k);
                *slot = hkv
                    .checked_mul(k.saturating_add(v))
                    .and_then(|x| x.checked_mul(KV_BYTES_PER_ELEMENT))
                    .ok_or_else(|| {
                        Error::InvalidInput(format!("GGUF `{name}`: attention sizes overflow"))
                    })?;
            }
        }
    }
    let kv_per_token = kv_layer_per_token
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b));
    let kv_bytes = kv_per_token.saturating_mul(u64::from(ctx));
    if let Some(trained) = info.arch_u64("context_length") {
        if u64::from(ctx) > trained {
            notes.push(format!(
                "ctx {ctx} is above the model's trained context length {trained}"
            ));
        }
    }

    let max_of = |v: Option<Vec<u64>>| v.and_then(|v| v.into_iter().max()).filter(|&x| x > 0);
    let n_head = max_of(head_count);
    let dims = (|| {
        let n_embd = info.arch_u64("embedding_length").filter(|&x| x > 0)?;
        let n_head = n_head?;
        let n_head_kv =
            max_of(info.arch_per_layer("attention.head_count_kv", layers)).unwrap_or(n_head);
        let n_ff = max_of(info.arch_per_layer("feed_forward_length", layers))?;
        let n_vocab = info
            .arch_u64("vocab_size")
            .or_else(|| match info.get("tokenizer.ggml.tokens") {
                Some(crate::gguf::GgufValue::Array { len, .. }) => Some(*len),
                _ => None,
            })
            .or_else(|| {
                info.tensors
                    .iter()
                    .find(|t| t.name == "token_embd.weight")
                    .and_then(|t| t.dims.get(1).copied())
            })?;
        Some(ModelDims {
            n_embd,
            n_head,
            n_head_kv,
            n_ff,
            n_vocab,
        })
    })();
    let (overhead_mib, host_overhead_mib) = compute_or_fallback(dims.as_ref(), ctx, &mut notes);

    let biggest_layer = layer_bytes
        .iter()
        .zip(&kv_layer_per_token)
        .map(|(w, kv)| w.saturating_add(kv.saturating_mul(u64::from(ctx))))
        .max()
        .unwrap_or(0);
    let weights_mib = mib_ceil(info.weights_bytes());
    let kv_cache_mib = mib_ceil(kv_bytes);
    Ok(ModelEstimate {
        name,
        total_mib: weights_mib + kv_cache_mib + overhead_mib + host_overhead_mib,
        weights_mib,
        kv_cache_mib,
        overhead_mib,
        host_overhead_mib,
        dims,
        layer_count: u32::try_from(blocks).ok(),
        per_layer_mib: Some(bytes_to_mib_f64(biggest_layer)),
        output_mib: mib_ceil(output_bytes),
        host_mib: mib_ceil(host_bytes),
        context_length: Some(ctx),
        kv_bytes_per_token: Some(kv_per_token),
        source: EstimateSource::Gguf,
        notes,
    })
}

fn check_ctx(name: &str, ctx: u32) -> Result<()> {
    if ctx == 0 {
        return Err(Error::InvalidInput(format!(
            "context length 0 for `{name}`: give the context length you will run with (e.g. {DEFAULT_CTX})"
        )));
    }
    Ok(())
}

/// Approximate bits per weight of a whole model at an Ollama quantization level.
fn bits_per_weight(level: &str) -> Option<f64> {
    Some(match level.to_ascii_uppercase().as_str() {
        "F32" => 32.0,
        "F16" | "BF16" => 16.0,
        "Q8_0" => 8.5,
        "Q6_K" => 6.56,
        "Q5_K_M" => 5.69,
        "Q5_K_S" => 5.54,
        "Q5_1" => 6.0,
        "Q5_0" => 5.5,
        "Q4_K_M" => 4.89,
        "Q4_K_S" => 4.58,
        "Q4_1" => 5.0,
        "Q4_0" | "IQ4_NL" => 4.5,
        "IQ4_XS" => 4.25,
        "Q3_K_L" => 4.27,
        "Q3_K_M" => 3.91,
        "Q3_K_S" => 3.5,
        "Q2_K" => 3.35,
        _ => return None,
    })
}

/// Estimate from Ollama's `/api/show` numbers for a context of `ctx` tokens. Weights
/// come from `size_bytes` (the `/api/tags` size) or, failing that, parameter count ×
/// the quantization's approximate bits per weight.
pub fn estimate_from_ollama_show(
    name: &str,
    info: &OllamaShowInfo,
    ctx: u32,
) -> Result<ModelEstimate> {
    check_ctx(name, ctx)?;
    let missing = |key: &str, hint: &str| Error::MissingMetadata {
        model: name.to_owned(),
        key: key.to_owned(),
        hint: hint.to_owned(),
    };
    if info.block_count == 0 || u64::from(info.block_count) > MAX_LAYERS {
        return Err(missing(
            &format!("{}.block_count", info.architecture),
            "Ollama's /api/show reported no usable block_count; give the model's size explicitly",
        ));
    }
    let mut notes = Vec::new();
    let weights_bytes = match (
        info.size_bytes,
        info.parameter_count,
        &info.quantization_level,
    ) {
        (Some(size), _, _) => size,
        (None, Some(params), Some(level)) => {
            let bits = bits_per_weight(level).ok_or_else(|| {
                missing("size", &format!("quantization `{level}` is not in the bits-per-weight table; pass the /api/tags size"))
            })?;
            notes.push(format!(
                "weights approximated as {params} parameters × {bits} bits ({level})"
            ));
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "an approximation by construction; far below 2^53"
            )]
            let bytes = (params as f64 * bits / 8.0).ceil() as u64;
            bytes
        }
        _ => return Err(missing(
            "size",
            "pass the model's /api/tags size (or general.parameter_count and quantization_level)",
        )),
    };
    let mut kv_per_token = 0u64;
    if info.head_count == 0 {
        notes.push("no attention.head_count: KV cache not estimated".to_owned());
    } else {
        let hkv = u64::from(info.head_count_kv.unwrap_or(info.head_count));
        let default_dim = u64::from(info.embedding_length / info.head_count);
        let k = info.key_length.map_or(default_dim, u64::from);
        let v = info.value_length.map_or(default_dim, u64::from);
        kv_per_token = u64::from(info.block_count)
            .saturating_mul(hkv)
            .saturating_mul(k.saturating_add(v))
            .saturating_mul(KV_BYTES_PER_ELEMENT);
    }
    if let Some(trained) = info.context_length {
        if ctx > trained {
            notes.push(format!(
                "ctx {ctx} is above the model's trained context length {trained}"
            ));
        }
    }
    let weights_mib = mib_ceil(weights_bytes);
    let kv_cache_mib = mib_ceil(kv_per_token.saturating_mul(u64::from(ctx)));
    let dims = match (info.feed_forward_length, info.vocab_size) {
        (Some(n_ff), vocab) if info.embedding_length > 0 && info.head_count > 0 && n_ff > 0 => {
            // Without the vocabulary size, assume a large one (it only sizes the host's
            // output rows: 4 MiB at 262144 tokens).
            let n_vocab = vocab.unwrap_or(262_144);
            Some(ModelDims {
                n_embd: u64::from(info.embedding_length),
                n_head: u64::from(info.head_count),
                n_head_kv: u64::from(info.head_count_kv.unwrap_or(info.head_count)),
                n_ff: u64::from(n_ff),
                n_vocab: u64::from(n_vocab),
            })
        }
        _ => None,
    };
    let (overhead_mib, host_overhead_mib) = compute_or_fallback(dims.as_ref(), ctx, &mut notes);
    let estimate = ModelEstimate {
        name: name.to_owned(),
        total_mib: weights_mib + kv_cache_mib + overhead_mib + host_overhead_mib,
        weights_mib,
        kv_cache_mib,
        overhead_mib,
        host_overhead_mib,
        dims,
        layer_count: None,
        per_layer_mib: None,
        output_mib: 0,
        host_mib: 0,
        context_length: Some(ctx),
        kv_bytes_per_token: Some(kv_per_token),
        source: EstimateSource::OllamaShow,
        notes,
    };
    estimate.with_layers(info.block_count)
}

/// Estimate from `/api/tags`' file size alone: weights only, no layer count.
pub fn estimate_from_ollama_tags(info: &OllamaTagsInfo) -> ModelEstimate {
    let weights_mib = mib_ceil(info.size_bytes);
    ModelEstimate {
        name: info.name.clone(),
        total_mib: weights_mib + 2 * COMPUTE_ALLOWANCE_MIB,
        weights_mib,
        kv_cache_mib: 0,
        overhead_mib: COMPUTE_ALLOWANCE_MIB,
        host_overhead_mib: COMPUTE_ALLOWANCE_MIB,
        dims: None,
        layer_count: None,
        per_layer_mib: None,
        output_mib: 0,
        host_mib: 0,
        context_length: None,
        kv_bytes_per_token: None,
        source: EstimateSource::OllamaTags,
        notes: vec![
            "/api/tags gives only the file size: KV cache not included, layer count unknown"
                .to_owned(),
        ],
    }
}

/// The one model-size resolver. It tries the sources a caller has, in this order:
///
/// 1. an explicit size (the user's word overrides everything),
/// 2. a configured size (the operator's word, given once: FlockParser's custom sizes),
/// 3. the model's GGUF header,
/// 4. Ollama's `/api/show` metadata (with the `/api/tags` size),
/// 5. Ollama's `/api/tags` file size,
/// 6. SOLLOL's size table,
/// 7. the `/api/ps` size of a copy loaded somewhere.
///
/// Measured sources come before tabulated ones, and the table before a loaded copy
/// (whose size includes that instance's context). The first source that knows the model
/// wins; none → [`Error::UnknownModel`]: a size is never guessed.
#[derive(Debug, Clone, Copy)]
pub struct ModelSizer<'a> {
    explicit_mib: Option<u64>,
    config_mib: Option<u64>,
    gguf: Option<&'a GgufInfo>,
    ollama_show: Option<&'a OllamaShowInfo>,
    ollama_tags: Option<&'a OllamaTagsInfo>,
    sollol_table: bool,
    loaded_mib: Option<u64>,
}

impl Default for ModelSizer<'_> {
    fn default() -> Self {
        ModelSizer::new()
    }
}

impl<'a> ModelSizer<'a> {
    /// A sizer with only SOLLOL's table as a source.
    pub fn new() -> Self {
        ModelSizer {
            explicit_mib: None,
            config_mib: None,
            gguf: None,
            ollama_show: None,
            ollama_tags: None,
            sollol_table: true,
            loaded_mib: None,
        }
    }

    /// Adds an explicit size, MiB (it wins over every other source).
    pub fn explicit_mib(mut self, mib: u64) -> Self {
        self.explicit_mib = Some(mib);
        self
    }

    /// Adds a configured size, MiB (it wins over every source but an explicit size).
    pub fn config_mib(mut self, mib: u64) -> Self {
        self.config_mib = Some(mib);
        self
    }

    /// Adds a parsed GGUF header.
    pub fn gguf(mut self, info: &'a GgufInfo) -> Self {
        self.gguf = Some(info);
        self
    }

    /// Adds Ollama's `/api/show` numbers.
    pub fn ollama_show(mut self, info: &'a OllamaShowInfo) -> Self {
        self.ollama_show = Some(info);
        self
    }

    /// Adds Ollama's `/api/tags` entry.
    pub fn ollama_tags(mut self, info: &'a OllamaTagsInfo) -> Self {
        self.ollama_tags = Some(info);
        self
    }

    /// Does not consult SOLLOL's table.
    pub fn without_sollol_table(mut self) -> Self {
        self.sollol_table = false;
        self
    }

    /// Adds the `/api/ps` size of a loaded copy, MiB (the last resort).
    pub fn loaded_mib(mut self, mib: u64) -> Self {
        self.loaded_mib = Some(mib);
        self
    }

    /// The estimate for `name` at `ctx` tokens from the first source that has it.
    pub fn estimate(&self, name: &str, ctx: u32) -> Result<ModelEstimate> {
        if let Some(mib) = self.explicit_mib {
            return Ok(ModelEstimate::explicit(name, mib));
        }
        if let Some(mib) = self.config_mib {
            let mut estimate = ModelEstimate::explicit(name, mib);
            estimate.source = EstimateSource::Config;
            return Ok(estimate);
        }
        if let Some(info) = self.gguf {
            let mut estimate = estimate_from_gguf(info, ctx)?;
            estimate.name = name.to_owned();
            return Ok(estimate);
        }
        if let Some(show) = self.ollama_show {
            let mut show = show.clone();
            if show.size_bytes.is_none() {
                show.size_bytes = self.ollama_tags.map(|t| t.size_bytes);
            }
            return estimate_from_ollama_show(name, &show, ctx);
        }
        if let Some(tags) = self.ollama_tags {
            let mut estimate = estimate_from_ollama_tags(tags);
            estimate.name = name.to_owned();
            return Ok(estimate);
        }
        if self.sollol_table {
            if let Some(estimate) = sollol_table_estimate(name) {
                return Ok(estimate);
            }
        }
        if let Some(mib) = self.loaded_mib {
            let mut estimate = ModelEstimate::explicit(name, mib);
            estimate.source = EstimateSource::LoadedCopy;
            estimate.notes =
                vec!["the size Ollama reports for a loaded copy (includes its context)".to_owned()];
            return Ok(estimate);
        }
        Err(Error::UnknownModel {
            name: name.to_owned(),
            hint: "no source knows its size, and none is guessed: give it explicitly, \
                   point at its GGUF file, or ask an Ollama node that has it pulled \
                   (/api/show, /api/tags)"
                .to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_table_is_case_insensitive() {
        assert_eq!(bits_per_weight("q4_k_m"), Some(4.89));
        assert_eq!(bits_per_weight("Q9_X"), None);
    }
}
