//! `vramroute-alloc`: the hybrid CPU/GPU planner.
//!
//! Owns three things:
//! - **Offers** — what one node can give: one CPU worker plus one worker per GPU, each
//!   with a safe budget ([`ReserveConfig`], [`NodeOffer`]), SOLLOL's registration fields
//!   computed exactly as SOLLOL computes them ([`SollolCapability`]), and `rpc-server`
//!   command lines for today's and for pre-October-2025 llama.cpp ([`GgmlBackend`],
//!   [`RpcServerCommand`], [`pick_rpc_server_binary`]).
//! - **Model memory** — what a model needs, from a GGUF header ([`GgufInfo`]), Ollama's
//!   metadata, SOLLOL's size table or an explicit size ([`ModelEstimate`],
//!   [`ModelSizer`]); every estimate names its source. llama.cpp's compute buffers come
//!   from the model's dimensions ([`ModelDims`], [`BatchSizes`]).
//! - **Plans** — which cluster workers hold which layers, with the `llama-server`
//!   arguments that make llama.cpp do exactly that ([`plan()`], [`Plan`]).
//!
//! **Must not know:** Redis, HTTP, Ollama's wire format, clocks. The crate is pure; the
//! only I/O is reading a GGUF header ([`GgufInfo::from_path`]), which is untrusted input.
//! All sizes are MiB (1,048,576 bytes) unless a name says otherwise.
//!
//! **Module layering** (each module uses only modules on lines above it; no cycles):
//! 1. `error` — the crate's [`Error`] and [`Result`].
//! 2. `command` (shell-quoted command lines, the rpc-server binary name; uses nothing),
//!    `compute` (llama.cpp's compute buffers from model dimensions; uses nothing),
//!    `backend` ([`GgmlBackend`], ggml device names) and `gguf` (the GGUF header reader) —
//!    each uses at most `error`.
//! 3. `estimate` (model memory) — uses `error`, `compute`, `gguf`.
//! 4. `worker` ([`Worker`], [`WorkerKind`], [`ClusterWorker`], and the SOLLOL ↔ ggml
//!    device-name rules) — uses `backend`.
//! 5. `offer` (what a node offers) — uses `error`, `backend`, `command`, `worker`.
//! 6. `plan` (cluster placement) — uses `error`, `command`, `estimate`, `worker`; its
//!    children `plan::placement` (layers per device, where the output goes) and
//!    `plan::build` (the Plan, its commands, the "does not fit" error) extend its planner.
//!
//! ```
//! use vramroute_alloc::{
//!     plan, GgmlBackend, ModelSizer, NodeOffer, PlanOptions, ReserveConfig, RPC_SERVER_BINARY,
//! };
//! use vramroute_probe::HostMemory;
//!
//! // A CPU-only node with 64000 MiB of RAM.
//! let host = HostMemory::new(64000, 60000, 16);
//! let offer = NodeOffer::from_hardware(&[], &host, &ReserveConfig::default())?;
//! assert_eq!(offer.sollol_capability().memory_config, "51200");
//! let cmd = offer.rpc_server_command("10.0.0.9", 50052, GgmlBackend::Cpu, RPC_SERVER_BINARY);
//! assert_eq!(cmd.to_string(), "ggml-rpc-server --host 10.0.0.9 --port 50052 --device CPU");
//!
//! // Place llama3.1:8b (SOLLOL's table: 4700 MiB, 32 layers) on it.
//! let model = ModelSizer::new().estimate("llama3.1:8b", 4096)?;
//! let workers = offer.cluster_workers("10.0.0.9:11434", "10.0.0.9", 50052, GgmlBackend::Cpu, false);
//! let p = plan(&model, &workers, &PlanOptions::default())?;
//! assert_eq!(p.llama_server_args().join(" "), "--rpc 10.0.0.9:50052 -ngl 33 --tensor-split 33");
//! # Ok::<(), vramroute_alloc::Error>(())
//! ```

mod backend;
mod command;
mod compute;
mod error;
mod estimate;
mod gguf;
mod offer;
mod plan;
mod worker;

pub use backend::GgmlBackend;
pub use command::{
    pick_rpc_server_binary, shell_quote, RpcServerCommand, ShellCommand, LEGACY_RPC_SERVER_BINARY,
    RPC_SERVER_BINARY,
};
pub use compute::{
    device_compute_bytes, host_compute_bytes, BatchSizes, ModelDims, DEFAULT_N_BATCH,
    DEFAULT_N_SEQ_MAX, DEFAULT_N_UBATCH, FALLBACK_COMPUTE_MIB,
};
pub use error::{Error, Result};
pub use estimate::{
    estimate_from_gguf, estimate_from_ollama_show, estimate_from_ollama_tags, sollol_size_table,
    sollol_table_estimate, EstimateSource, ModelEstimate, ModelSizer, OllamaShowInfo,
    OllamaTagsInfo, SollolTableEntry, COMPUTE_ALLOWANCE_MIB, DEFAULT_CTX, MIB,
};
pub use gguf::{
    parse_gguf, GgmlType, GgufInfo, GgufValue, TensorInfo, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN,
    MAX_DIMS, MAX_HEADER_BYTES, MAX_KEPT_INTS, MAX_KEY_BYTES, MAX_KV, MAX_LAYERS, MAX_STRING_BYTES,
    MAX_TENSORS,
};
pub use offer::{NodeOffer, ReserveConfig, SollolCapability};
pub use plan::{
    plan, Plan, PlanOptions, PlannedDevice, RpcServerPlan, LLAMA_MAX_DEVICES, MAX_TENSOR_SPLIT,
};
/// The model-name rule, owned by the router (one rule, one home); re-exported here
/// because alloc's size table is keyed by it.
pub use vramroute_router::normalize_model_name;
pub use worker::{ggml_device_of_sollol, sollol_device_name, ClusterWorker, Worker, WorkerKind};
