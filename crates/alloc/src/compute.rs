//! llama.cpp's compute buffers: how much memory a device needs beyond its weights and KV
//! cache, as a function of the model's dimensions, the context and the batch sizes.
//!
//! llama.cpp reserves, on every device that holds layers, one compute buffer sized for the
//! worst-case graph of one micro-batch (`n_ubatch` tokens, llama-server's default 512),
//! and the ggml allocator reuses that buffer from layer to layer: the buffer does not grow
//! with the number of layers on the device, only with the width of one layer's graph and
//! with the context the attention looks at. Two terms, per device holding ≥ 1 layer:
//!
//! - **activations**, `n_ubatch × 4 B × (3·n_ff + 7·n_embd)`: the f32 tensors alive at the
//!   peak of one layer — the feed-forward block's gate, up and gated product (`n_ff` wide
//!   each) and about seven `n_embd`-wide tensors (residual stream, norm, Q, attention
//!   output, FFN input and output, the copy of the layer input from the previous device);
//! - **attention over the context**, `n_ctx × n_ubatch × s`: with flash attention (what
//!   llama.cpp's default `-fa auto` picks on CPU, CUDA, ROCm and Vulkan) the scores are
//!   never materialised as a full f32 `n_head` tensor; what remains grows as one f16 plane
//!   per KV head, `s = 2 B × n_head_kv`. Without flash attention llama.cpp materialises
//!   the scores, `s = 4 B × n_head` (8× more for a 16/4-head model).
//!
//! For the measured model (24 layers, n_embd 1024, 16/4 heads, n_ff 4096) this gives
//! 38 MiB + 4096 B per context token: 54, 102, 294 and 550 MiB at ctx 4096, 16384, 65536
//! and 131072 — the measured figures exactly — and for the 4-layer n_embd 256 model
//! (measured 10 MiB at ctx 4096) 10.5 to 13.5 MiB depending on its KV heads (1 to 4).
//!
//! The `llama-server` host (which keeps the input embeddings, and computes the token
//! look-up and the attention mask for every device) allocates its own compute buffer and
//! an output buffer: `n_ubatch × 4 B × 5·n_embd + n_vocab × 4 B × n_seq_max +
//! n_ctx × n_ubatch × 8 B` (the f32 KQ mask and its converted copy), i.e. 26.5, 74.5,
//! 266.5 and 522.5 MiB for the measured model (rounded up to whole MiB).
//!
//! Where the dimensions are unknown (SOLLOL's table, a `/api/tags` size) the planner uses
//! [`FALLBACK_COMPUTE_MIB`] per device and for the host instead.

use serde::{Deserialize, Serialize};

/// Compute allowance per device (and for the `llama-server` host) when the model's
/// dimensions are unknown, MiB. Conservative: it covers the formula above for a 70B-class
/// model (n_embd 8192, n_ff 28672, 8 KV heads) up to ctx 16384.
pub const FALLBACK_COMPUTE_MIB: u64 = 512;

/// llama-server's default logical batch (`-b`).
pub const DEFAULT_N_BATCH: u32 = 2048;
/// llama-server's default physical (micro-)batch (`-ub`).
pub const DEFAULT_N_UBATCH: u32 = 512;
/// Output rows the host's output buffer is reserved for (llama-server's default of 4
/// parallel sequences).
pub const DEFAULT_N_SEQ_MAX: u32 = 4;

/// llama.cpp pads the context to a multiple of this many tokens.
const CTX_PAD: u64 = 256;
const F32: u64 = 4;
const F16: u64 = 2;

/// The dimensions of a model that size llama.cpp's compute graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelDims {
    /// `embedding_length`.
    pub n_embd: u64,
    /// `attention.head_count` (the largest, when it varies by layer).
    pub n_head: u64,
    /// `attention.head_count_kv` (the largest, when it varies by layer).
    pub n_head_kv: u64,
    /// `feed_forward_length` (the largest, when it varies by layer).
    pub n_ff: u64,
    /// Vocabulary size (rows of `token_embd`).
    pub n_vocab: u64,
}

/// The batch settings `llama-server` runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchSizes {
    /// Logical batch, `-b` (default 2048). The graph is reserved for one micro-batch, so it
    /// matters only through `n_ubatch ≤ n_batch`.
    pub n_batch: u32,
    /// Physical batch, `-ub` (default 512).
    pub n_ubatch: u32,
    /// Parallel sequences the host's output buffer holds rows for (default 4).
    pub n_seq_max: u32,
    /// Whether flash attention is on (llama.cpp's `-fa auto` turns it on for CPU, CUDA,
    /// ROCm and Vulkan devices). Default true.
    pub flash_attention: bool,
}

impl Default for BatchSizes {
    fn default() -> Self {
        BatchSizes {
            n_batch: DEFAULT_N_BATCH,
            n_ubatch: DEFAULT_N_UBATCH,
            n_seq_max: DEFAULT_N_SEQ_MAX,
            flash_attention: true,
        }
    }
}

impl BatchSizes {
    /// The micro-batch the graph is reserved for: `min(n_ubatch, n_batch, ctx)`, at least 1.
    fn tokens(&self, ctx: u32) -> u64 {
        u64::from(self.n_ubatch.min(self.n_batch).min(ctx).max(1))
    }
}

/// `ctx` padded the way llama.cpp pads it.
fn padded_ctx(ctx: u32) -> u64 {
    u64::from(ctx).div_ceil(CTX_PAD) * CTX_PAD
}

/// Compute buffer of one device that holds `layers` layers, bytes (0 for no layers: a
/// device without layers gets no graph).
pub fn device_compute_bytes(dims: &ModelDims, ctx: u32, layers: u32, batch: &BatchSizes) -> u64 {
    if layers == 0 {
        return 0;
    }
    let t = batch.tokens(ctx);
    let activations = t.saturating_mul(F32).saturating_mul(
        dims.n_ff
            .saturating_mul(3)
            .saturating_add(dims.n_embd.saturating_mul(7)),
    );
    let per_cell = if batch.flash_attention {
        F16.saturating_mul(dims.n_head_kv.max(1))
    } else {
        F32.saturating_mul(dims.n_head.max(1))
    };
    let attention = padded_ctx(ctx).saturating_mul(t).saturating_mul(per_cell);
    activations.saturating_add(attention)
}

/// The `llama-server` host's compute and output buffers, bytes (always allocated, whatever
/// the host holds).
pub fn host_compute_bytes(dims: &ModelDims, ctx: u32, batch: &BatchSizes) -> u64 {
    let t = batch.tokens(ctx);
    let inputs = t
        .saturating_mul(F32)
        .saturating_mul(dims.n_embd.saturating_mul(5));
    let outputs = dims
        .n_vocab
        .saturating_mul(F32)
        .saturating_mul(u64::from(batch.n_seq_max.max(1)));
    let mask = padded_ctx(ctx).saturating_mul(t).saturating_mul(2 * F32);
    inputs.saturating_add(outputs).saturating_add(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1_048_576.0;

    fn measured_model() -> ModelDims {
        ModelDims {
            n_embd: 1024,
            n_head: 16,
            n_head_kv: 4,
            n_ff: 4096,
            n_vocab: 32000,
        }
    }

    #[test]
    fn formula_reproduces_the_measured_figures() {
        let b = BatchSizes::default();
        for (ctx, device, host) in [
            (4096, 54.0, 26.5),
            (16384, 102.0, 74.5),
            (65536, 294.0, 266.5),
            (131_072, 550.0, 522.5),
        ] {
            #[allow(clippy::cast_precision_loss, reason = "small test figures")]
            let d = device_compute_bytes(&measured_model(), ctx, 8, &b) as f64 / MIB;
            #[allow(clippy::cast_precision_loss, reason = "small test figures")]
            let h = host_compute_bytes(&measured_model(), ctx, &b) as f64 / MIB;
            assert!((d - device).abs() < 0.01, "ctx {ctx}: device {d}");
            assert!((h - host).abs() < 0.02, "ctx {ctx}: host {h}");
        }
    }

    #[test]
    fn no_layers_no_buffer_and_flash_attention_matters() {
        let b = BatchSizes::default();
        assert_eq!(device_compute_bytes(&measured_model(), 4096, 0, &b), 0);
        let no_fa = BatchSizes {
            flash_attention: false,
            ..b
        };
        // 16 f32 score planes instead of 4 f16 ones: 8× the context term.
        let with = device_compute_bytes(&measured_model(), 65536, 1, &b);
        let without = device_compute_bytes(&measured_model(), 65536, 1, &no_fa);
        assert_eq!(without - with, 7 * 65536 * 512 * 8);
        // A smaller micro-batch shrinks everything but the host's output rows.
        let small = BatchSizes { n_ubatch: 128, ..b };
        assert_eq!(
            device_compute_bytes(&measured_model(), 4096, 1, &small) * 4,
            device_compute_bytes(&measured_model(), 4096, 1, &b)
        );
    }
}
