#!/usr/bin/env python3
"""Generates the GGUF fixtures under crates/alloc/tests/data/.

The good files are written with the reference writer (PyPI `gguf`, llama.cpp's own
gguf-py) so the Rust reader is checked against it; the corrupt ones are written by hand
with `struct`. Run from this directory: `pip install gguf && python3 make_gguf_fixtures.py`.
The outputs are committed; re-running must reproduce them byte for byte.
"""
import struct

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType as Q
from gguf.constants import GGML_QUANT_SIZES

EMBD, HEADS, HEADS_KV, FFN, VOCAB = 64, 4, 2, 128, 32


def qtensor(w, name, ne0, ne1, qtype):
    """Adds a zero-filled tensor of ggml shape [ne0, ne1] and type qtype."""
    block, size = GGML_QUANT_SIZES[qtype]
    row_bytes = ne0 // block * size
    w.add_tensor(name, np.zeros((ne1, row_bytes), dtype=np.uint8), raw_dtype=qtype)


def f32(w, name, n):
    w.add_tensor(name, np.zeros(n, dtype=np.float32))


def tiny_llama(path):
    w = GGUFWriter(path, "llama")
    w.add_name("tiny-llama")
    w.add_block_count(2)
    w.add_context_length(2048)
    w.add_embedding_length(EMBD)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(HEADS_KV)
    w.add_file_type(7)  # MOSTLY_Q8_0
    # A long string value (skipped by the reader) and a string array (walked, not kept).
    w.add_chat_template("{# " + "x" * 5000 + " #}")
    w.add_token_list([f"tok{i}" for i in range(VOCAB)])
    w.add_array("tiny.int_array", [1, 2, 3])
    qtensor(w, "token_embd.weight", EMBD, VOCAB, Q.Q8_0)
    for layer in range(2):
        p = f"blk.{layer}."
        f32(w, p + "attn_norm.weight", EMBD)
        qtensor(w, p + "attn_q.weight", EMBD, EMBD, Q.Q8_0)
        qtensor(w, p + "attn_k.weight", EMBD, HEADS_KV * 16, Q.Q8_0)
        qtensor(w, p + "attn_v.weight", EMBD, HEADS_KV * 16, Q.Q4_0)
        qtensor(w, p + "attn_output.weight", EMBD, EMBD, Q.F16)
        f32(w, p + "ffn_norm.weight", EMBD)
        qtensor(w, p + "ffn_gate.weight", EMBD, FFN, Q.Q4_1)
        qtensor(w, p + "ffn_up.weight", EMBD, FFN, Q.Q5_0)
        # Layer 1 is smaller than layer 0: the estimate must use the largest.
        qtensor(w, p + "ffn_down.weight", FFN, EMBD, Q.Q8_0 if layer == 0 else Q.Q4_0)
    f32(w, "output_norm.weight", EMBD)
    qtensor(w, "output.weight", EMBD, VOCAB, Q.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tiny_tied_kquant(path):
    """Tied embeddings (no output.weight), per-layer head_count_kv, K-quant tensors."""
    w = GGUFWriter(path, "qwen2")
    w.add_name("tiny-tied")
    w.add_block_count(2)
    w.add_context_length(4096)
    w.add_embedding_length(256)
    w.add_head_count(8)
    w.add_array("qwen2.attention.head_count_kv", [2, 4])
    w.add_key_length(32)
    w.add_value_length(32)
    qtensor(w, "token_embd.weight", 256, 16, Q.Q6_K)
    for layer in range(2):
        p = f"blk.{layer}."
        qtensor(w, p + "attn_q.weight", 256, 4, Q.Q4_K)
        qtensor(w, p + "ffn_down.weight", 256, 4, Q.Q5_K)
        qtensor(w, p + "ffn_up.weight", 256, 4, Q.IQ4_XS)
        qtensor(w, p + "attn_norm.weight", 256, 1, Q.BF16)
    f32(w, "output_norm.weight", 256)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def s(text):
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def header(tensors, kvs, version=3, magic=b"GGUF"):
    return magic + struct.pack("<IQQ", version, tensors, kvs)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


tiny_llama("tiny-llama.gguf")
tiny_tied_kquant("tiny-tied-kquant.gguf")
good = open("tiny-llama.gguf", "rb").read()
# Cut inside the tensor infos (they run from byte ~5930 to ~6260; data starts at 7168).
write("truncated.gguf", good[:6100])
write("bad-magic.gguf", b"GGML" + good[4:512])
write("version-1.gguf", header(0, 0, version=1))
write("big-endian.gguf", b"GGUF" + struct.pack(">IQQ", 3, 0, 0))
write("absurd-tensor-count.gguf", header(1 << 40, 0))
write("absurd-kv-count.gguf", header(0, 1 << 62))
# A metadata key claiming 2^62 bytes.
write("huge-key.gguf", header(0, 1) + struct.pack("<Q", 1 << 62) + b"abc")
# A string value within no cap: 2^40 bytes.
write("huge-string.gguf", header(0, 1) + s("general.name") + struct.pack("<IQ", 8, 1 << 40) + b"x" * 16)
# A string value under the cap but the file ends long before it: must fail fast.
write("truncated-string.gguf", header(0, 1) + s("general.name") + struct.pack("<IQ", 8, 1 << 23) + b"x" * 16)
# An array claiming 2^60 u32 elements.
write("huge-array.gguf", header(0, 1) + s("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 4, 1 << 60))
# A tensor whose dims multiply past 2^64.
write("overflowing-dims.gguf", header(1, 0) + s("blk.0.attn_q.weight") + struct.pack("<I", 3)
      + struct.pack("<QQQ", 1 << 32, 1 << 32, 1 << 32) + struct.pack("<IQ", 0, 0))
# A tensor with 5 dims (ggml has 4).
write("too-many-dims.gguf", header(1, 0) + s("t") + struct.pack("<I", 5) + struct.pack("<5Q", 1, 1, 1, 1, 1) + struct.pack("<IQ", 0, 0))
# An unknown ggml type.
write("unknown-type.gguf", header(1, 0) + s("t") + struct.pack("<IQ", 1, 32) + struct.pack("<IQ", 4242, 0))
