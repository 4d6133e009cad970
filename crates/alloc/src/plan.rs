//! Cluster placement: which workers hold which layers, and the llama.cpp arguments.

use serde::{Deserialize, Serialize};

use crate::offer::WorkerKind;

/// One ggml device somewhere in the cluster, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterWorker {
    /// The node it belongs to (e.g. `10.0.0.5:11434`), for explanations.
    pub node_id: String,
    /// Address its `rpc-server` listens on (ignored for local workers).
    pub host: String,
    /// Port of its `rpc-server` (ignored for local workers).
    pub rpc_port: u16,
    /// CPU or GPU.
    pub kind: WorkerKind,
    /// The ggml device name (`CPU`, `CUDA0`, `ROCm1`, ...).
    pub device_name: String,
    /// Budget after the node's reserve, MiB. 0 means "place nothing here".
    pub budget_mib: u64,
    /// Free right now, MiB, when known.
    pub free_mib: Option<u64>,
    /// Whether the device is on the machine that runs `llama-server` (used directly,
    /// not through RPC; a local CPU worker is where non-offloaded layers stay).
    pub local: bool,
}
