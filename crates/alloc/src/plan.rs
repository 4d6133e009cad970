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

    /// Tries to place every layer on the devices of `selected` endpoints and the local
    /// GPUs (and on CPUs, the local one included, when `allow_cpu`). Exact for the
    /// placements it considers (see the module doc): it fails only when none of them
    /// fits, so more budget or more devices never make it fail.
    fn assign(&self, selected: &[usize], allow_cpu: bool) -> Option<Assignment> {
        if allow_cpu {
            if let Some(a) = self.assign_output_on_host(selected) {
                return Some(a);
            }
        }
        self.assign_output_on_device(selected, allow_cpu)
    }

    /// Layers this worker can take in this attempt (CPUs only when `allow_cpu`).
    fn cap(&self, w: usize, allow_cpu: bool) -> u32 {
        if allow_cpu || self.is_gpu(w) {
            self.layer_cap[w]
        } else {
            0
        }
    }

    /// Every layer offloaded, the output layer on the device that holds the last layer.
    ///
    /// The device that holds the output (`o`) can take `out_cap[o]` layers instead of
    /// `cap[o]`, and every device after it in llama.cpp's order must stay empty. We choose
    /// the order of `--rpc` endpoints and of each rpc-server's `--device` list, so a remote
    /// `o` goes last among the RPC devices; only local GPUs (always after RPC devices, in
    /// their own order) cannot move. The layers that fit are therefore
    /// `Σ cap − loss(o)` with `loss(o) = cap[o] − out_cap[o]` + the local GPUs after `o`,
    /// and we take the `o` of least loss (ties: the later device, which keeps the natural
    /// order). Both terms only grow with budgets and devices: the check is monotone.
    fn assign_output_on_device(&self, selected: &[usize], allow_cpu: bool) -> Option<Assignment> {
        let l = self.layers;
        let mut groups: Vec<Vec<usize>> = selected
            .iter()
            .map(|&e| self.endpoints[e].devs.clone())
            .collect();
        let local = &self.local_gpus;
        let cap = |w: usize| u64::from(self.cap(w, allow_cpu));
        let local_caps: Vec<u64> = local.iter().map(|&w| cap(w)).collect();
        let local_total: u64 = local_caps.iter().sum();
        let total: u64 = groups.iter().flatten().map(|&w| cap(w)).sum::<u64>() + local_total;
        if total < u64::from(l) {
            return None;
        }
        let mut best: Option<(u64, OutputAt)> = None;
        let mut consider = |loss: u64, at| {
            if best.is_none_or(|(b, _)| loss <= b) {
                best = Some((loss, at));
            }
        };
        for (g, group) in groups.iter().enumerate() {
            for (i, &w) in group.iter().enumerate() {
                if cap(w) > 0 && self.out_cap[w] > 0 {
                    let at = OutputAt::Remote { group: g, index: i };
                    consider(cap(w) - u64::from(self.out_cap[w]) + local_total, at);
                }
            }
        }
        let mut after = local_total;
        for (i, &w) in local.iter().enumerate() {
            after -= local_caps[i];
            if cap(w) > 0 && self.out_cap[w] > 0 {
                consider(
                    cap(w) - u64::from(self.out_cap[w]) + after,
                    OutputAt::Local(i),
                );
            }
        }
        let (loss, at) = best?;
        if total - loss < u64::from(l) {
            return None;
        }
        // Put a remote output device last among the RPC devices.
        let mut order: Vec<usize> = selected.to_vec();
        if let OutputAt::Remote { group: g, index: i } = at {
            let group = groups.remove(g);
            let e = order.remove(g);
            let mut group = group;
            let w = group.remove(i);
            group.push(w);
            groups.push(group);
            order.push(e);
        }
        let devs: Vec<usize> = groups.iter().flatten().chain(local).copied().collect();
        let remote = devs.len() - local.len();
        let o = match at {
            OutputAt::Remote { .. } => remote - 1,
            OutputAt::Local(i) => remote + i,
        };
        let caps: Vec<u32> = devs
            .iter()
            .enumerate()
            .map(|(k, &w)| match k.cmp(&o) {
                std::cmp::Ordering::Less => self.cap(w, allow_cpu),
                std::cmp::Ordering::Equal => self.out_cap[w],
                std::cmp::Ordering::Greater => 0,
            })
            .collect();
        let mut counts = self.fill(&devs, &caps, 0)?;
        if counts[o] == 0 {
            // The output device must hold the last layer: take one from the last device
            // that has some (it has room: out_cap[o] >= 1).
            let j = counts.iter().rposition(|&c| c > 0)?;
            counts[j] -= 1;
            counts[o] = 1;
        }
        Some(Assignment {
            selected: order,
            groups,
            devs,
            counts,
            host_layers: 0,
            output_on_host: false,
        })
    }

    /// The output layer (and the first `h ≥ 0` layers) on the llama-server host's CPU,
    /// when there is a local CPU worker with room for the input embeddings, the host's
    /// buffers and the output layer. The rest is offloaded: GPUs first, then the host's
    /// own layers, then remote CPUs in order.
    fn assign_output_on_host(&self, selected: &[usize]) -> Option<Assignment> {
        let c = self.local_cpu?;
        if self.cap_kib[c] < self.host_kib + self.out_kib {
            return None;
        }
        let groups: Vec<Vec<usize>> = selected
            .iter()
            .map(|&e| self.endpoints[e].devs.clone())
            .collect();
        let devs: Vec<usize> = groups
            .iter()
            .flatten()
            .chain(&self.local_gpus)
            .copied()
            .collect();
        let caps: Vec<u32> = devs.iter().map(|&w| self.cap(w, true)).collect();
        let counts = self.fill(&devs, &caps, self.local_cpu_layers)?;
        let on_devices: u32 = counts.iter().sum();
        Some(Assignment {
            selected: selected.to_vec(),
            groups,
            devs,
            counts,
            host_layers: self.layers - on_devices,
            output_on_host: true,
        })
    }

    /// Distributes the layers: over the GPUs in proportion to `caps` when they hold them
    /// all, else GPUs full, then up to `host` layers on the llama-server host (the first
    /// layers; not in the returned counts), then CPUs in order. `None` if they do not fit.
    fn fill(&self, devs: &[usize], caps: &[u32], host: u32) -> Option<Vec<u32>> {
        let l = self.layers;
        let mut counts = vec![0u32; devs.len()];
        let gpu_total: u64 = devs
            .iter()
            .zip(caps)
            .filter(|(&w, _)| self.is_gpu(w))
            .map(|(_, &c)| u64::from(c))
            .sum();
        if gpu_total >= u64::from(l) {
            self.proportional(devs, caps, &mut counts, gpu_total);
            return Some(counts);
        }
        let mut rest = l;
        for (i, &w) in devs.iter().enumerate() {
            if self.is_gpu(w) {
                counts[i] = caps[i];
                rest -= caps[i];
            }
        }
        rest -= rest.min(host);
        for (i, &w) in devs.iter().enumerate() {
            if !self.is_gpu(w) && rest > 0 {
                counts[i] = rest.min(caps[i]);
                rest -= counts[i];
            }
        }
        (rest == 0).then_some(counts)
    }

    /// Spreads the layers over the GPU devices in proportion to their capacity
    /// (largest-remainder rounding, ties to the earlier device).
    fn proportional(&self, devs: &[usize], caps: &[u32], counts: &mut [u32], gpu_total: u64) {
        let l = u64::from(self.layers);
        let mut assigned = 0u64;
        let mut remainders: Vec<(u64, usize)> = Vec::with_capacity(devs.len());
        for (i, &w) in devs.iter().enumerate() {
            if !self.is_gpu(w) || caps[i] == 0 {
                continue;
            }
            let scaled = l * u64::from(caps[i]);
            let share = scaled / gpu_total;
            // share <= caps[i] because l <= gpu_total.
            counts[i] = u32::try_from(share).unwrap_or(caps[i]);
            assigned += share;
            remainders.push((scaled % gpu_total, i));
        }
        remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut left = l - assigned;
        while left > 0 {
            let before = left;
            for &(_, i) in &remainders {
                if left > 0 && counts[i] < caps[i] {
                    counts[i] += 1;
                    left -= 1;
                }
            }
            if left == before {
                break; // cannot happen when l <= gpu_total; never loop forever
            }
        }
    }

    fn endpoint_name(&self, e: usize) -> String {
        let ep = &self.endpoints[e];
        format!("{}:{}", ep.host, ep.port)
    }

    fn build(
        &self,
        a: Assignment,
        gpus_only: bool,
        gpu_nodes_used: usize,
        gpu_nodes: usize,
    ) -> Plan {
        let l = self.layers;
        let m = self.model;
        let mut reasons = Vec::new();
        reasons.push(format!(
            "{}: {l} layers × {:.1} MiB, output {} MiB, input {} MiB (kept on the llama-server host), \
             compute buffers {} MiB per device used and {} MiB on the llama-server host [source: {}]",
            m.name,
            self.per_layer_kib as f64 / 1024.0,
            m.output_mib,
            m.host_mib,
            self.ovh_kib / KIB_PER_MIB,
            self.host_ovh_kib / KIB_PER_MIB,
            m.source
        ));
        if !self.local_gpus.is_empty() {
            reasons.push(format!(
                "{} local GPU(s) take layers first: no network hop",
                self.local_gpus.len()
            ));
        }
        if gpus_only {
            reasons.push(format!(
                "GPUs alone hold the model: {gpu_nodes_used} of {gpu_nodes} GPU node(s) chosen, \
                 largest capacity first (fewest network hops)"
            ));
        } else {
            let gpu_layers: u32 = a
                .devs
                .iter()
                .zip(&a.counts)
                .filter(|(&w, _)| self.is_gpu(w))
                .map(|(_, &c)| c)
                .sum();
            reasons.push(format!(
                "GPUs hold {gpu_layers} of {l} layers: the rest go to CPUs, the llama-server \
                 host's first (no network hop), then CPUs of chosen nodes, then CPU-only nodes"
            ));
        }
        for &e in &a.selected {
            let ep = &self.endpoints[e];
            reasons.push(format!(
                "{} ({}): rpc-server with {} device(s), room for {} GPU + {} CPU layer(s)",
                ep.node_id,
                self.endpoint_name(e),
                ep.devs.len(),
                ep.gpu_layers,
                ep.cpu_layers
            ));
        }
        let unused: Vec<&str> = (0..self.endpoints.len())
            .filter(|e| !a.selected.contains(e))
            .map(|e| self.endpoints[e].node_id)
            .collect();
        if !unused.is_empty() {
            let shown = unused.len().min(8);
            let more = if unused.len() > shown {
                format!(" and {} more", unused.len() - shown)
            } else {
                String::new()
            };
            reasons.push(format!("not needed: {}{more}", unused[..shown].join(", ")));
        }

        let mut next = a.host_layers;
        let output_dev = if a.output_on_host {
            None
        } else {
            a.counts.iter().rposition(|&c| c > 0)
        };
        if a.host_layers > 0 {
            reasons.push(format!(
                "layers 0-{} stay on the llama-server host's CPU, and so does the output layer",
                a.host_layers - 1
            ));
        } else if a.output_on_host {
            reasons.push(
                "the output layer stays on the llama-server host's CPU (no device has room for it \
                 with its last layer)"
                    .to_owned(),
            );
        }
        let mut devices = Vec::with_capacity(a.devs.len());
        let mut tensor_split = Vec::with_capacity(a.devs.len());
        let mut need_kib = self.host_kib;
        for (i, (&w, &count)) in a.devs.iter().zip(&a.counts).enumerate() {
            let worker = &self.workers[w];
            let holds_output = output_dev == Some(i);
            let mut kib = u64::from(count) * self.per_layer_kib;
            if holds_output {
                kib += self.out_kib;
            }
            if count > 0 {
                kib += self.ovh_kib;
            }
            need_kib += kib;
            let endpoint = (!worker.local).then(|| format!("{}:{}", worker.host, worker.rpc_port));
            if count > 0 {
                let capped = self.opts.use_live_free
                    && worker.free_mib.is_some_and(|f| f < worker.budget_mib);
                reasons.push(format!(
                    "layers {next}-{}{} → {} {} ({} of {} MiB{})",
                    next + count - 1,
                    if holds_output { " + output" } else { "" },
                    worker.node_id,
                    worker.device_name,
                    kib_to_mib_ceil(kib),
                    self.cap_kib[w] / KIB_PER_MIB,
                    if capped {
                        ", capped by live free memory"
                    } else {
                        ""
                    }
                ));
            }
            devices.push(PlannedDevice {
                node_id: worker.node_id.clone(),
                device_name: worker.device_name.clone(),
                kind: worker.kind,
                endpoint,
                first_layer: next,
                layers: count,
                holds_output,
                planned_mib: kib_to_mib_ceil(kib),
                capacity_mib: self.cap_kib[w] / KIB_PER_MIB,
            });
            tensor_split.push(count + u32::from(holds_output));
            next += count;
        }
        let mut host_kib = self.host_kib;
        if a.output_on_host {
            host_kib += self.out_kib;
        }
        if a.host_layers > 0 {
            host_kib += u64::from(a.host_layers) * self.per_layer_kib + self.ovh_kib;
        }
        need_kib += host_kib - self.host_kib;
        let n_gpu_layers = if a.output_on_host {
            l - a.host_layers
        } else {
            l + 1
        };
        let offloaded: u32 = tensor_split.iter().sum();
        if offloaded == 0 {
            tensor_split.clear();
        }
        let rpc_servers: Vec<RpcServerPlan> = a
            .selected
            .iter()
            .zip(&a.groups)
            .map(|(&e, group)| {
                let ep = &self.endpoints[e];
                let names: Vec<&str> = group
                    .iter()
                    .map(|&d| self.workers[d].device_name.as_str())
                    .collect();
                let mut command = ShellCommand::new(self.opts.rpc_server_binary.as_str())
                    .arg("--host")
                    .arg(ep.host)
                    .arg("--port")
                    .arg(ep.port.to_string())
                    .arg("--device")
                    .arg(names.join(","));
                if names
                    .iter()
                    .any(|n| n.to_ascii_uppercase().starts_with("CUDA"))
                {
                    command = command.env("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
                }
                RpcServerPlan {
                    node_id: ep.node_id.to_owned(),
                    endpoint: self.endpoint_name(e),
                    command,
                }
            })
            .collect();
        Plan {
            model: m.name.clone(),
            layer_count: l,
            context_length: m.context_length,
            model_path: self.opts.model_path.clone(),
            host_cpu_layers: a.host_layers,
            host_cpu_mib: kib_to_mib_ceil(host_kib),
            n_gpu_layers: if offloaded == 0 { 0 } else { n_gpu_layers },
            rpc_endpoints: a.selected.iter().map(|&e| self.endpoint_name(e)).collect(),
            devices,
            tensor_split,
            rpc_servers,
            need_mib: kib_to_mib_ceil(need_kib),
            reasons,
        }
    }

    fn does_not_fit(&self, too_many: bool) -> Error {
        let l = u64::from(self.layers);
        let p = self.per_layer_kib;
        let all_layers: u64 = self
            .workers
            .iter()
            .enumerate()
            .filter(|(_, w)| !(w.local && w.kind == WorkerKind::Cpu))
            .map(|(i, _)| u64::from(self.layer_cap[i]))
            .sum::<u64>()
            + u64::from(self.local_cpu_layers);
        let short_layers = l.saturating_sub(all_layers);
        let short_kib = (short_layers * p + self.out_kib).max(KIB_PER_MIB);
        let need_kib = l * p + self.out_kib + self.host_kib;
        let available_kib = all_layers.min(l) * p;
        let short_mib = kib_to_mib_ceil(short_kib);
        let ovh_mib = self.ovh_kib / KIB_PER_MIB;

        let mut suggestions = Vec::new();
        if too_many {
            suggestions.push(format!(
                "llama.cpp's --tensor-split takes at most {} devices: start the rpc-servers of \
                 big nodes with fewer devices (e.g. only their GPUs) or use nodes with more \
                 memory per device",
                self.max_devices
            ));
        }
        if let Some(c) = self.local_cpu {
            if self.cap_kib[c] < self.host_kib {
                suggestions.push(format!(
                    "the llama-server host needs {} MiB of RAM for the input embeddings and its \
                     compute buffers and has {} MiB",
                    kib_to_mib_ceil(self.host_kib),
                    self.cap_kib[c] / KIB_PER_MIB
                ));
            }
        }
        let node_mib = short_mib + ovh_mib;
        suggestions.push(format!(
            "another node with at least {node_mib} MiB of budget (a GPU of {} MiB or more at a \
             20 % reserve)",
            (node_mib * 5).div_ceil(4)
        ));
        if let (Some(per_token), Some(ctx)) =
            (self.model.kv_bytes_per_token, self.model.context_length)
        {
            if per_token > 0 {
                let drop_tokens = short_kib.saturating_mul(1024).div_ceil(per_token);
                let new_ctx = u64::from(ctx).saturating_sub(drop_tokens) / 256 * 256;
                if new_ctx >= 256 {
                    suggestions.push(format!(
                        "a smaller context: ctx {new_ctx} (the KV cache is {} MiB at ctx {ctx})",
                        self.model.kv_cache_mib
                    ));
                } else {
                    suggestions.push(format!(
                        "a smaller context alone cannot do it (the KV cache is only {} MiB at ctx {ctx})",
                        self.model.kv_cache_mib
                    ));
                }
            }
        }
        suggestions.push(format!(
            "a smaller quantization: the weights are {} MiB; a quant about {short_mib} MiB smaller would fit",
            self.model.weights_mib
        ));
        let capped = self
            .workers
            .iter()
            .filter(|w| w.free_mib.is_some_and(|f| f < w.budget_mib))
            .count();
        if self.opts.use_live_free && capped > 0 {
            suggestions.push(format!(
                "free memory on busy devices: {capped} device(s) have less free than their budget \
                 (unload other models there)"
            ));
        }
        Error::DoesNotFit {
            model: self.model.name.clone(),
            need_mib: kib_to_mib_ceil(need_kib),
            available_mib: available_kib / KIB_PER_MIB,
            short_by_mib: short_mib,
            suggestions,
        }
    }
}
