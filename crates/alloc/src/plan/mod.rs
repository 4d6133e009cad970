//! Cluster placement: which workers hold which layers, and the llama.cpp arguments that
//! make llama.cpp do exactly that.
//!
//! How llama.cpp maps layers to devices (`llama-model.cpp`, `load_tensors`): the model's
//! device list is the RPC devices first (each `--rpc` endpoint's devices in the order
//! its `rpc-server --device` lists them), then local GPUs. With `-ngl N` the *last* `N`
//! of the `n_layer + 1` "layers" (repeating layers, then the output layer) are
//! offloaded; the first `n_layer − N` stay on the local CPU. Offloaded layer `j`
//! (counted from the first offloaded one) goes to the first device `k` whose cumulative
//! split share exceeds `j / N`. Giving `--tensor-split` as whole layer counts that sum to
//! `N` therefore assigns exactly those contiguous ranges (the comparison divides the same
//! integers by the same sum, so there is no rounding drift). `--tensor-split` takes at
//! most [`MAX_TENSOR_SPLIT`] (15) entries, one per device of the list, so a plan never
//! lists more devices than that: it chooses as few rpc-servers as fit and fails, saying
//! so, when the fit needs more devices.
//!
//! **Where the output layer goes.** It either stays on the llama-server host (with the
//! host's first `h ≥ 0` layers, `-ngl n_layer − h`), when the caller lists a local CPU
//! with room for it, or it goes with the last offloaded layer, on the device `o` that
//! holds it (`-ngl n_layer + 1`). Beside the output, `o` takes `out_cap[o] ≤ cap[o]`
//! layers, and every device after `o` in llama.cpp's order must stay empty. The plan
//! chooses the `--rpc` order and each rpc-server's `--device` order, so a remote `o` is
//! put last among the RPC devices; only local GPUs (after all RPC devices, in their own
//! order) cannot move. The layers that fit are then exactly
//! `Σ cap − min_o loss(o)`, `loss(o) = cap[o] − out_cap[o] + Σ cap of local GPUs after o`.
//!
//! **Why more never hurts.** For a fixed `o`, `Σ cap − loss(o)` is a sum of per-device
//! capacities (`out_cap[o]` for `o`) over a set of devices that only grows when devices
//! are added, and each term only grows with budget; so the best `o`'s figure, and the
//! host option's `Σ cap + host layers`, never shrink. The candidate sets tried (the
//! largest GPU nodes first, then all GPU nodes plus CPU nodes) end with every node, so a
//! model that fits keeps fitting with more budget on any worker or one more worker, as
//! long as the 15-device limit does not bind. The old rule (fill in order, then move
//! layers only to devices *before* the last occupied one) broke this: three 750 MiB CPU
//! workers failed where three 723 MiB ones fitted. `placement.rs`'s property test checks
//! it on random clusters.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::{RpcServerCommand, ShellCommand, RPC_SERVER_BINARY};
use crate::error::{Error, Result};
use crate::estimate::{ModelEstimate, COMPUTE_ALLOWANCE_MIB};
use crate::worker::{ClusterWorker, WorkerKind};

mod build;
mod placement;

/// llama.cpp's `llama_max_devices()`.
pub const LLAMA_MAX_DEVICES: usize = 16;

/// Most entries `--tensor-split` takes: llama.cpp rejects a list whose length is
/// `llama_max_devices()` or more ("got 16 input configs, but system only has 16
/// devices"). A plan's device list, and so its split, never has more.
pub const MAX_TENSOR_SPLIT: usize = LLAMA_MAX_DEVICES - 1;

/// Knobs of [`plan()`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PlanOptions {
    /// Compute buffer reserved on every device that holds layers, MiB. `None` (default):
    /// the model estimate's `overhead_mib` (sized from its dimensions and context), or
    /// [`COMPUTE_ALLOWANCE_MIB`] when the estimate has none (an explicit size).
    pub per_device_overhead_mib: Option<u64>,
    /// Cap each worker at its live free memory when that is known and below its budget.
    /// Default true.
    pub use_live_free: bool,
    /// Most devices the plan may use, counting every device of each chosen `rpc-server`
    /// and the local GPUs: the length of `--tensor-split`. Default and upper bound
    /// [`MAX_TENSOR_SPLIT`] (15); a larger value is treated as 15.
    pub max_devices: usize,
    /// Model path for `llama-server -m` (omitted from the arguments when `None`).
    pub model_path: Option<String>,
    /// The RPC server binary the printed commands name. Default [`RPC_SERVER_BINARY`]
    /// (`ggml-rpc-server`); `rpc-server` for llama.cpp builds that still use that name
    /// (see [`crate::pick_rpc_server_binary`]).
    pub rpc_server_binary: String,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            per_device_overhead_mib: None,
            use_live_free: true,
            max_devices: MAX_TENSOR_SPLIT,
            model_path: None,
            rpc_server_binary: RPC_SERVER_BINARY.to_owned(),
        }
    }
}

/// One device in llama.cpp's device order and what the plan puts on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PlannedDevice {
    /// Node the device belongs to.
    pub node_id: String,
    /// ggml device name.
    pub device_name: String,
    /// CPU or GPU.
    pub kind: WorkerKind,
    /// `host:port` of its `rpc-server`; `None` for a local GPU.
    pub endpoint: Option<String>,
    /// First layer it holds (meaningful when `layers > 0`).
    pub first_layer: u32,
    /// Number of repeating layers it holds (0: in the list only because its
    /// `rpc-server` exposes it).
    pub layers: u32,
    /// Whether the output layer is on this device.
    pub holds_output: bool,
    /// Memory the plan puts on it, MiB (layers, output, compute buffer).
    pub planned_mib: u64,
    /// What it could take, MiB (budget, capped by live free memory when enabled).
    pub capacity_mib: u64,
}

/// An `rpc-server` a plan needs, with the command that starts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RpcServerPlan {
    /// The node.
    pub node_id: String,
    /// `host:port`, as in `--rpc`.
    pub endpoint: String,
    /// The command (today's form: all the endpoint's devices, in the plan's order).
    pub command: RpcServerCommand,
}

/// A placement of a model over cluster workers, with the llama.cpp arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Plan {
    /// The model.
    pub model: String,
    /// Repeating layers of the model.
    pub layer_count: u32,
    /// Context the estimate (and so the KV cache) was sized for.
    pub context_length: Option<u32>,
    /// Model path for `-m`, if given.
    pub model_path: Option<String>,
    /// Layers that stay on the `llama-server` host's CPU (the first ones).
    pub host_cpu_layers: u32,
    /// Memory the plan puts on the host CPU, MiB (input embeddings, the host's compute and
    /// output buffers, its layers, and the output layer when it stays there).
    pub host_cpu_mib: u64,
    /// The `-ngl` value (`layer_count + 1` offloads the output layer too).
    pub n_gpu_layers: u32,
    /// Devices in llama.cpp's order: RPC devices (in `--rpc` order), then local GPUs.
    pub devices: Vec<PlannedDevice>,
    /// `--rpc` endpoints, in order.
    pub rpc_endpoints: Vec<String>,
    /// `--tensor-split`, one whole number per device (layers, +1 for the output layer).
    pub tensor_split: Vec<u32>,
    /// The `rpc-server` each chosen node must run.
    pub rpc_servers: Vec<RpcServerPlan>,
    /// Total memory the plan uses, MiB.
    pub need_mib: u64,
    /// Why each choice was made, in order.
    pub reasons: Vec<String>,
}

impl Plan {
    /// `llama-server` arguments: `-m`, `-c`, `--rpc`, `-ngl`, `--tensor-split`.
    pub fn llama_server_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(path) = &self.model_path {
            args.extend(["-m".to_owned(), path.clone()]);
        }
        if let Some(ctx) = self.context_length {
            args.extend(["-c".to_owned(), ctx.to_string()]);
        }
        if !self.rpc_endpoints.is_empty() {
            args.extend(["--rpc".to_owned(), self.rpc_endpoints.join(",")]);
        }
        args.extend(["-ngl".to_owned(), self.n_gpu_layers.to_string()]);
        if !self.tensor_split.is_empty() {
            let split: Vec<String> = self.tensor_split.iter().map(u32::to_string).collect();
            args.extend(["--tensor-split".to_owned(), split.join(",")]);
        }
        args
    }

    /// The whole `llama-server` command line.
    pub fn llama_server_command(&self) -> ShellCommand {
        ShellCommand {
            env: Vec::new(),
            program: "llama-server".to_owned(),
            args: self.llama_server_args(),
        }
    }
}

impl fmt::Display for Plan {
    /// The explanation, the per-node `rpc-server` commands and the `llama-server` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plan for {}:", self.model)?;
        for reason in &self.reasons {
            writeln!(f, "  - {reason}")?;
        }
        for server in &self.rpc_servers {
            writeln!(f, "on {}: {}", server.node_id, server.command)?;
        }
        write!(f, "then: {}", self.llama_server_command())
    }
}

/// A remote `rpc-server`: its devices in server order.
struct Endpoint<'a> {
    host: &'a str,
    port: u16,
    node_id: &'a str,
    devs: Vec<usize>,
    gpu_layers: u64,
    cpu_layers: u64,
}

/// Where the output layer goes in one placement attempt.
#[derive(Clone, Copy)]
enum OutputAt {
    /// Device `index` of the `group`-th selected endpoint.
    Remote { group: usize, index: usize },
    /// Local GPU number `i`.
    Local(usize),
}

/// The result of one placement attempt.
struct Assignment {
    /// Endpoints in `--rpc` order.
    selected: Vec<usize>,
    /// Each endpoint's devices in `--device` order (parallel to `selected`).
    groups: Vec<Vec<usize>>,
    /// Every device in llama.cpp's order (the groups, then local GPUs).
    devs: Vec<usize>,
    counts: Vec<u32>,
    /// Layers on the llama-server host's CPU (the first ones).
    host_layers: u32,
    /// The output layer stays on the host's CPU (`-ngl` ≤ n_layer).
    output_on_host: bool,
}

/// Everything derived from the inputs once, reused by every attempt.
struct Planner<'a> {
    model: &'a ModelEstimate,
    workers: &'a [ClusterWorker],
    opts: &'a PlanOptions,
    layers: u32,
    /// Per-layer, output, host-only (input embeddings + the host's buffers) and per-device
    /// compute buffer, KiB.
    per_layer_kib: u64,
    out_kib: u64,
    host_kib: u64,
    /// The host's compute and output buffers alone, KiB (part of `host_kib`).
    host_ovh_kib: u64,
    ovh_kib: u64,
    /// `opts.max_devices`, at most [`MAX_TENSOR_SPLIT`].
    max_devices: usize,
    /// Per worker: capacity (KiB) and how many layers it can take.
    cap_kib: Vec<u64>,
    layer_cap: Vec<u32>,
    /// Per worker: how many layers it can take together with the output layer.
    out_cap: Vec<u32>,
    local_cpu: Option<usize>,
    /// Layers the local CPU can take while also holding input and output.
    local_cpu_layers: u32,
    local_gpus: Vec<usize>,
    endpoints: Vec<Endpoint<'a>>,
}

const KIB_PER_MIB: u64 = 1024;

/// Rejects a device listed twice for the same `rpc-server` (or twice locally).
fn check_unique(workers: &[ClusterWorker], group: &[usize], w: &ClusterWorker) -> Result<()> {
    if group
        .iter()
        .any(|&d| workers[d].device_name.eq_ignore_ascii_case(&w.device_name))
    {
        return Err(Error::InvalidInput(format!(
            "device {} of {} is listed twice",
            w.device_name, w.node_id
        )));
    }
    Ok(())
}

fn kib_to_mib_ceil(kib: u64) -> u64 {
    kib.div_ceil(KIB_PER_MIB)
}

/// Places `model` on `workers`: GPUs first (local GPUs, then remote GPU nodes largest
/// first, as few nodes as fit), then CPUs (the local CPU, then CPUs of the chosen nodes,
/// then CPU-only nodes largest first). Layers are spread over the chosen GPUs in
/// proportion to their capacity; CPUs are filled in order. Deterministic: ties break by
/// node id, host and port.
///
/// Needs the model's layer count and per-layer size ([`Error::NoLayerInfo`] otherwise);
/// a model that cannot fit yields [`Error::DoesNotFit`] with the shortfall and what
/// would help.
pub fn plan(model: &ModelEstimate, workers: &[ClusterWorker], opts: &PlanOptions) -> Result<Plan> {
    Planner::new(model, workers, opts)?.run()
}

impl<'a> Planner<'a> {
    fn new(
        model: &'a ModelEstimate,
        workers: &'a [ClusterWorker],
        opts: &'a PlanOptions,
    ) -> Result<Planner<'a>> {
        let no_layers = || Error::NoLayerInfo {
            name: model.name.clone(),
            hint: format!(
                "the {} estimate has no layer count; read the model's GGUF header, ask an \
                 Ollama node for /api/show, or give the layer count",
                model.source
            ),
        };
        let layers = model.layer_count.filter(|&l| l > 0).ok_or_else(no_layers)?;
        let per_layer = model.per_layer_mib.ok_or_else(no_layers)?;
        if !per_layer.is_finite() || per_layer <= 0.0 || per_layer > 1e9 {
            return Err(Error::InvalidInput(format!(
                "per-layer size {per_layer} MiB of `{}` is not plausible",
                model.name
            )));
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked finite, positive and below 1e9 MiB just above"
        )]
        let per_layer_kib = ((per_layer * 1024.0).ceil() as u64).max(1);
        // Bounds that keep every sum below in u64 (a petabyte is not a plausible layer).
        const MAX_PLAUSIBLE_MIB: u64 = 1 << 30;
        let ovh_mib = opts
            .per_device_overhead_mib
            .unwrap_or(if model.overhead_mib > 0 {
                model.overhead_mib
            } else {
                COMPUTE_ALLOWANCE_MIB
            });
        let host_ovh_mib = if model.host_overhead_mib > 0 || model.dims.is_some() {
            model.host_overhead_mib
        } else {
            COMPUTE_ALLOWANCE_MIB
        };
        for (what, mib) in [
            ("output size", model.output_mib),
            ("input (host) size", model.host_mib),
            ("per-device overhead", ovh_mib),
            ("host overhead", host_ovh_mib),
        ] {
            if mib > MAX_PLAUSIBLE_MIB {
                return Err(Error::InvalidInput(format!(
                    "{what} {mib} MiB of `{}` is not plausible",
                    model.name
                )));
            }
        }
        let ovh_kib = ovh_mib * KIB_PER_MIB;
        let out_kib = model.output_mib * KIB_PER_MIB;
        let host_kib = (model.host_mib + host_ovh_mib) * KIB_PER_MIB;

        let mut cap_kib = Vec::with_capacity(workers.len());
        let mut layer_cap = Vec::with_capacity(workers.len());
        let mut out_cap = Vec::with_capacity(workers.len());
        let mut local_cpu = None;
        let mut local_gpus = Vec::new();
        let mut endpoints: Vec<Endpoint<'a>> = Vec::new();
        for (i, w) in workers.iter().enumerate() {
            let mut cap = w.budget_mib;
            if opts.use_live_free {
                if let Some(free) = w.free_mib {
                    cap = cap.min(free);
                }
            }
            let cap = cap.saturating_mul(KIB_PER_MIB);
            cap_kib.push(cap);
            let fit = cap.saturating_sub(ovh_kib) / per_layer_kib;
            layer_cap.push(u32::try_from(fit).unwrap_or(u32::MAX).min(layers));
            let fit = cap.saturating_sub(ovh_kib + out_kib) / per_layer_kib;
            out_cap.push(u32::try_from(fit).unwrap_or(u32::MAX).min(layers));
            match (w.local, w.kind) {
                (true, WorkerKind::Cpu) => {
                    if local_cpu.replace(i).is_some() {
                        return Err(Error::InvalidInput(
                            "more than one local CPU worker: the llama-server host has one CPU device"
                                .to_owned(),
                        ));
                    }
                }
                (true, WorkerKind::Gpu) => {
                    check_unique(workers, &local_gpus, w)?;
                    local_gpus.push(i);
                }
                (false, _) => {
                    if w.host.is_empty() || w.rpc_port == 0 {
                        return Err(Error::InvalidInput(format!(
                            "remote device {} of {} has no rpc-server address",
                            w.device_name, w.node_id
                        )));
                    }
                    // Workers of one endpoint usually come together: look at the last first.
                    let same = |e: &Endpoint<'_>| e.port == w.rpc_port && e.host == w.host;
                    let found = match endpoints.last() {
                        Some(e) if same(e) => Some(endpoints.len() - 1),
                        _ => endpoints.iter().position(same),
                    };
                    match found {
                        Some(e) => {
                            check_unique(workers, &endpoints[e].devs, w)?;
                            endpoints[e].devs.push(i);
                        }
                        None => endpoints.push(Endpoint {
                            host: &w.host,
                            port: w.rpc_port,
                            node_id: &w.node_id,
                            devs: vec![i],
                            gpu_layers: 0,
                            cpu_layers: 0,
                        }),
                    }
                }
            }
        }
        for e in &mut endpoints {
            for &d in &e.devs {
                match workers[d].kind {
                    WorkerKind::Gpu => e.gpu_layers += u64::from(layer_cap[d]),
                    WorkerKind::Cpu => e.cpu_layers += u64::from(layer_cap[d]),
                }
            }
        }
        let local_cpu_layers = local_cpu.map_or(0, |c| {
            let fit = cap_kib[c]
                .saturating_sub(host_kib + out_kib + ovh_kib)
                .checked_div(per_layer_kib)
                .unwrap_or(0);
            u32::try_from(fit).unwrap_or(u32::MAX).min(layers)
        });
        Ok(Planner {
            model,
            workers,
            opts,
            layers,
            per_layer_kib,
            out_kib,
            host_kib,
            host_ovh_kib: host_ovh_mib * KIB_PER_MIB,
            ovh_kib,
            max_devices: opts.max_devices.min(MAX_TENSOR_SPLIT),
            cap_kib,
            layer_cap,
            out_cap,
            local_cpu,
            local_cpu_layers,
            local_gpus,
            endpoints,
        })
    }

    fn device_count(&self, selected: &[usize]) -> usize {
        selected
            .iter()
            .map(|&e| self.endpoints[e].devs.len())
            .sum::<usize>()
            + self.local_gpus.len()
    }

    fn is_gpu(&self, w: usize) -> bool {
        self.workers[w].kind == WorkerKind::Gpu
    }

    fn run(&self) -> Result<Plan> {
        let l = u64::from(self.layers);
        if let Some(c) = self.local_cpu {
            if self.cap_kib[c] < self.host_kib {
                return Err(self.does_not_fit(false));
            }
        }
        let by = |a: &Endpoint<'_>, b: &Endpoint<'_>, ka: u64, kb: u64| {
            kb.cmp(&ka)
                .then_with(|| a.node_id.cmp(b.node_id))
                .then_with(|| a.host.cmp(b.host))
                .then_with(|| a.port.cmp(&b.port))
        };
        let mut gpu_eps: Vec<usize> = (0..self.endpoints.len())
            .filter(|&e| self.endpoints[e].gpu_layers > 0)
            .collect();
        gpu_eps.sort_by(|&a, &b| {
            let (ea, eb) = (&self.endpoints[a], &self.endpoints[b]);
            by(ea, eb, ea.gpu_layers, eb.gpu_layers)
        });
        let mut too_many = false;

        // Phase A: GPUs only, as few remote nodes as fit.
        let mut gpu_total: u64 = self
            .local_gpus
            .iter()
            .map(|&w| u64::from(self.layer_cap[w]))
            .sum();
        for k in 0..=gpu_eps.len() {
            if k > 0 {
                gpu_total += self.endpoints[gpu_eps[k - 1]].gpu_layers;
            }
            if gpu_total < l {
                continue;
            }
            if self.device_count(&gpu_eps[..k]) > self.max_devices {
                too_many = true;
                break;
            }
            if let Some(a) = self.assign(&gpu_eps[..k], false) {
                return Ok(self.build(a, true, k, gpu_eps.len()));
            }
        }

        // Phase B: every GPU node, then CPUs (local, chosen nodes', CPU-only nodes).
        if !too_many {
            let mut cpu_eps: Vec<usize> = (0..self.endpoints.len())
                .filter(|&e| self.endpoints[e].gpu_layers == 0 && self.endpoints[e].cpu_layers > 0)
                .collect();
            cpu_eps.sort_by(|&a, &b| {
                let (ea, eb) = (&self.endpoints[a], &self.endpoints[b]);
                by(ea, eb, ea.cpu_layers, eb.cpu_layers)
            });
            let mut selected = gpu_eps.clone();
            let mut total = gpu_total
                + u64::from(self.local_cpu_layers)
                + gpu_eps
                    .iter()
                    .map(|&e| self.endpoints[e].cpu_layers)
                    .sum::<u64>();
            for k in 0..=cpu_eps.len() {
                if k > 0 {
                    selected.push(cpu_eps[k - 1]);
                    total += self.endpoints[cpu_eps[k - 1]].cpu_layers;
                }
                if total < l {
                    continue;
                }
                if self.device_count(&selected) > self.max_devices {
                    too_many = true;
                    break;
                }
                if let Some(a) = self.assign(&selected, true) {
                    return Ok(self.build(a, false, gpu_eps.len(), gpu_eps.len()));
                }
            }
        }
        Err(self.does_not_fit(too_many))
    }
}
