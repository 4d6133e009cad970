//! What one node offers: a CPU worker plus one worker per GPU, each with a safe budget,
//! the SOLLOL registration fields, and the `rpc-server` command lines that serve it.

use std::fmt;

use serde::{Deserialize, Serialize};
use vramroute_probe::{GpuDevice, HostMemory};

use crate::backend::GgmlBackend;
use crate::command::{RpcServerCommand, ShellCommand};
#[cfg(doc)]
use crate::command::{LEGACY_RPC_SERVER_BINARY, RPC_SERVER_BINARY};
use crate::error::{Error, Result};
use crate::worker::{ClusterWorker, Worker, WorkerKind};

/// How much of each memory pool is held back from the budget.
///
/// The reserve of a pool of `total` MiB is the larger of `total − trunc(total × (1 −
/// fraction))` and the floor; the budget is what remains. With the defaults (20 %, no
/// floor) the budget is `int(total * 0.8)`, exactly SOLLOL's `register_gpu_node.py`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ReserveConfig {
    /// Fraction of each GPU's VRAM held back, in `[0, 1)`. Default 0.20.
    pub gpu_fraction: f64,
    /// Fraction of host RAM held back, in `[0, 1)`. Default 0.20.
    pub ram_fraction: f64,
    /// At least this much VRAM is held back on every GPU, MiB. Default 0.
    pub gpu_floor_mib: u64,
    /// At least this much RAM is held back, MiB. Default 0.
    pub ram_floor_mib: u64,
}

impl Default for ReserveConfig {
    fn default() -> Self {
        ReserveConfig {
            gpu_fraction: 0.20,
            ram_fraction: 0.20,
            gpu_floor_mib: 0,
            ram_floor_mib: 0,
        }
    }
}

impl ReserveConfig {
    /// A validated configuration.
    pub fn new(
        gpu_fraction: f64,
        ram_fraction: f64,
        gpu_floor_mib: u64,
        ram_floor_mib: u64,
    ) -> Result<Self> {
        let config = ReserveConfig {
            gpu_fraction,
            ram_fraction,
            gpu_floor_mib,
            ram_floor_mib,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that both fractions are finite and in `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("gpu_fraction", self.gpu_fraction),
            ("ram_fraction", self.ram_fraction),
        ] {
            if !value.is_finite() || !(0.0..1.0).contains(&value) {
                return Err(Error::InvalidReserve(format!(
                    "{name} = {value} is outside [0, 1): give the share to hold back, \
                     e.g. 0.2 for 20 %"
                )));
            }
        }
        Ok(())
    }

    /// The budget left of a `total_mib` GPU after the GPU reserve.
    pub fn gpu_budget_mib(&self, total_mib: u64) -> u64 {
        budget(total_mib, self.gpu_fraction, self.gpu_floor_mib)
    }

    /// The budget left of `total_mib` RAM after the RAM reserve.
    pub fn ram_budget_mib(&self, total_mib: u64) -> u64 {
        budget(total_mib, self.ram_fraction, self.ram_floor_mib)
    }
}

/// `trunc(total × (1 − fraction))`, lowered so at least `floor` is held back. The float
/// product and truncation are Python's `int(total * 0.8)` bit for bit (IEEE-754 double;
/// `1.0 - 0.2 == 0.8` exactly).
fn budget(total_mib: u64, fraction: f64, floor_mib: u64) -> u64 {
    // Truncation toward zero (and saturation) is the point: it is SOLLOL's int().
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "Python int(float) semantics, exact below 2^53 MiB"
    )]
    let kept = ((total_mib as f64) * (1.0 - fraction)) as u64;
    let kept = kept.min(total_mib);
    if total_mib - kept < floor_mib {
        total_mib.saturating_sub(floor_mib)
    } else {
        kept
    }
}

/// What a node offers: one CPU worker (always first) and one worker per GPU in the
/// order the probe returned them (PCI bus order).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct NodeOffer {
    /// The CPU worker, then one per GPU.
    pub workers: Vec<Worker>,
    /// The reserve the budgets were computed with.
    pub reserve: ReserveConfig,
    /// Logical CPUs of the host.
    pub cpu_count: u32,
}

/// The registration record SOLLOL's `register_gpu_node.py` publishes at
/// `sollol:rpc:node:{ip}:{port}`. Field order is SOLLOL's; all sizes are MiB ("MB" in
/// SOLLOL's names is MiB).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SollolCapability {
    /// Whether the node has at least one GPU of known VRAM size.
    pub has_gpu: bool,
    /// `cuda:N` / `rocm:N` / `sycl:N`, one per GPU.
    pub gpu_devices: Vec<String>,
    /// Per-GPU budget after the reserve, MiB.
    pub gpu_vram_mb: Vec<u64>,
    /// Per-GPU names.
    pub gpu_names: Vec<String>,
    /// RAM budget after the reserve, MiB.
    pub cpu_ram_mb: u64,
    /// `cpu` followed by `gpu_devices`, comma-separated.
    pub device_config: String,
    /// `cpu_ram_mb` followed by `gpu_vram_mb`, comma-separated.
    pub memory_config: String,
    /// 1 (the CPU) + number of GPUs.
    pub total_parallel_workers: u32,
}

impl NodeOffer {
    /// Builds the offer from probed hardware. GPUs whose VRAM size is unknown are listed
    /// with `total_mib`/`budget_mib` of `None`: they stay in the `rpc-server --device`
    /// list (today's rpc-server reports their real memory itself) but are left out of
    /// the SOLLOL fields, which have no way to say "unknown".
    pub fn from_hardware(
        gpus: &[GpuDevice],
        host: &HostMemory,
        reserve: &ReserveConfig,
    ) -> Result<NodeOffer> {
        reserve.validate()?;
        let mut workers = Vec::with_capacity(gpus.len() + 1);
        workers.push(Worker {
            kind: WorkerKind::Cpu,
            name: "CPU".to_owned(),
            total_mib: Some(host.total_ram_mib),
            budget_mib: Some(reserve.ram_budget_mib(host.total_ram_mib)),
            free_mib: Some(host.available_ram_mib),
            gpu: None,
        });
        for gpu in gpus {
            workers.push(Worker {
                kind: WorkerKind::Gpu,
                name: gpu.name.clone(),
                total_mib: gpu.memory_total_mib,
                budget_mib: gpu.memory_total_mib.map(|t| reserve.gpu_budget_mib(t)),
                free_mib: gpu.memory_free_mib,
                gpu: Some(gpu.clone()),
            });
        }
        Ok(NodeOffer {
            workers,
            reserve: *reserve,
            cpu_count: host.cpu_count,
        })
    }

    /// The CPU worker (`from_hardware` always makes one; a hand-built offer may not).
    pub fn cpu(&self) -> Option<&Worker> {
        self.workers.iter().find(|w| w.kind == WorkerKind::Cpu)
    }

    /// The GPU workers in offer order.
    pub fn gpus(&self) -> impl Iterator<Item = &Worker> {
        self.workers.iter().filter(|w| w.kind == WorkerKind::Gpu)
    }

    /// The CPU RAM budget, MiB (0 for a hand-built offer without one).
    pub fn cpu_budget_mib(&self) -> u64 {
        self.cpu().and_then(|w| w.budget_mib).unwrap_or(0)
    }

    /// SOLLOL's registration fields, computed as `register_gpu_node.py` does.
    pub fn sollol_capability(&self) -> SollolCapability {
        let cpu_ram_mb = self.cpu_budget_mib();
        let mut gpu_devices = Vec::new();
        let mut gpu_vram_mb = Vec::new();
        let mut gpu_names = Vec::new();
        for worker in self.gpus() {
            if let (Some(budget), Some(device)) = (worker.budget_mib, worker.sollol_device()) {
                gpu_devices.push(device);
                gpu_vram_mb.push(budget);
                gpu_names.push(worker.name.clone());
            }
        }
        let mut device_config = String::from("cpu");
        let mut memory_config = cpu_ram_mb.to_string();
        for (device, vram) in gpu_devices.iter().zip(&gpu_vram_mb) {
            device_config.push(',');
            device_config.push_str(device);
            memory_config.push(',');
            memory_config.push_str(&vram.to_string());
        }
        let workers = u32::try_from(gpu_devices.len()).map_or(u32::MAX, |n| n.saturating_add(1));
        SollolCapability {
            has_gpu: !gpu_devices.is_empty(),
            gpu_devices,
            gpu_vram_mb,
            gpu_names,
            cpu_ram_mb,
            device_config,
            memory_config,
            total_parallel_workers: workers,
        }
    }

    /// The backend to assume when none is given: the one for the first GPU's vendor, or
    /// [`GgmlBackend::Cpu`] on a node without GPUs.
    pub fn default_backend(&self) -> GgmlBackend {
        self.gpus()
            .find_map(|w| w.gpu.as_ref())
            .map_or(GgmlBackend::Cpu, |g| GgmlBackend::for_vendor(g.vendor))
    }

    /// The ggml devices an `rpc-server` built with `backend` serves from this node, in
    /// `--device` order: `CPU` first, then the backend's GPUs by device number.
    pub fn ggml_devices(&self, backend: GgmlBackend) -> Vec<(String, &Worker)> {
        let gpu_workers: Vec<&Worker> = self.gpus().collect();
        let gpus: Vec<GpuDevice> = gpu_workers.iter().filter_map(|w| w.gpu.clone()).collect();
        let mut out: Vec<(String, &Worker)> = self
            .cpu()
            .map(|w| ("CPU".to_owned(), w))
            .into_iter()
            .collect();
        for (name, i) in backend.devices(&gpus) {
            if let Some(worker) = gpu_workers.get(i) {
                out.push((name, worker));
            }
        }
        out
    }

    /// Today's `rpc-server` command (llama.cpp since October 2025): one server for all
    /// devices, `--device CPU,CUDA0,...`, no `--mem` (the server reports each device's
    /// real free memory). CUDA builds get `CUDA_DEVICE_ORDER=PCI_BUS_ID`. `binary` is the
    /// program to name: [`RPC_SERVER_BINARY`] (`ggml-rpc-server`, today's builds) unless the
    /// caller found another one installed ([`crate::pick_rpc_server_binary`]).
    pub fn rpc_server_command(
        &self,
        host: &str,
        port: u16,
        backend: GgmlBackend,
        binary: &str,
    ) -> RpcServerCommand {
        let devices: Vec<String> = self
            .ggml_devices(backend)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let mut cmd = ShellCommand::new(binary)
            .arg("--host")
            .arg(host)
            .arg("--port")
            .arg(port.to_string())
            .arg("--device")
            .arg(devices.join(","));
        cmd.env = backend.env();
        cmd
    }

    /// The `rpc-server` commands for llama.cpp builds from before October 2025: one
    /// server per device on consecutive ports from `base_port` (CPU first), each
    /// `-d DEVICE -m BUDGET_MIB`. A GPU of unknown size gets no `-m`, so that old server
    /// falls back to the device's own free-memory report. Those builds named the binary
    /// [`LEGACY_RPC_SERVER_BINARY`] (`rpc-server`); pass what is installed as `binary`.
    pub fn legacy_rpc_server_commands(
        &self,
        host: &str,
        base_port: u16,
        backend: GgmlBackend,
        binary: &str,
    ) -> Result<Vec<RpcServerCommand>> {
        let devices = self.ggml_devices(backend);
        let mut out = Vec::with_capacity(devices.len());
        for (i, (name, worker)) in devices.into_iter().enumerate() {
            let port = u16::try_from(i)
                .ok()
                .and_then(|i| base_port.checked_add(i))
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "base port {base_port} leaves no room for device {name}: choose a lower port"
                    ))
                })?;
            let mut cmd = ShellCommand::new(binary)
                .arg("--host")
                .arg(host)
                .arg("--port")
                .arg(port.to_string())
                .arg("-d")
                .arg(name);
            if let Some(budget) = worker.budget_mib {
                cmd = cmd.arg("-m").arg(budget.to_string());
            }
            cmd.env = backend.env();
            out.push(cmd);
        }
        Ok(out)
    }

    /// This node's devices as planner inputs for an `rpc-server` at `host:rpc_port`
    /// built with `backend`, in the server's `--device` order (which the plan's
    /// `--tensor-split` must follow). A GPU of unknown size gets budget 0: the planner
    /// puts nothing on it, but it keeps its place in the device order.
    pub fn cluster_workers(
        &self,
        node_id: &str,
        host: &str,
        rpc_port: u16,
        backend: GgmlBackend,
        local: bool,
    ) -> Vec<ClusterWorker> {
        self.ggml_devices(backend)
            .into_iter()
            .map(|(device_name, worker)| ClusterWorker {
                node_id: node_id.to_owned(),
                host: host.to_owned(),
                rpc_port,
                kind: worker.kind,
                device_name,
                budget_mib: worker.budget_mib.unwrap_or(0),
                free_mib: worker.free_mib,
                local,
            })
            .collect()
    }
}

impl fmt::Display for NodeOffer {
    /// One line per worker, e.g.
    /// `GPU 0: NVIDIA GeForce RTX 3090 (cuda:0) | 24576 MiB | budget 19660 MiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, worker) in self.workers.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match &worker.gpu {
                None => write!(
                    f,
                    "CPU: {} logical CPUs | {} MiB RAM | budget {} MiB (reserve {}%, floor {} MiB)",
                    self.cpu_count,
                    worker.total_mib.unwrap_or(0),
                    worker.budget_mib.unwrap_or(0),
                    percent(self.reserve.ram_fraction),
                    self.reserve.ram_floor_mib
                )?,
                Some(gpu) => {
                    let device = worker.sollol_device().unwrap_or_default();
                    write!(f, "GPU {}: {} ({device})", gpu.index, worker.name)?;
                    match (worker.total_mib, worker.budget_mib) {
                        (Some(total), Some(budget)) => write!(
                            f,
                            " | {total} MiB | budget {budget} MiB (reserve {}%, floor {} MiB)",
                            percent(self.reserve.gpu_fraction),
                            self.reserve.gpu_floor_mib
                        )?,
                        _ => write!(
                            f,
                            " | VRAM size unknown: no budget, not in the SOLLOL record"
                        )?,
                    }
                }
            }
        }
        Ok(())
    }
}

/// `0.2` → `"20"`, `0.125` → `"12.5"`.
fn percent(fraction: f64) -> String {
    let p = (fraction * 1000.0).round() / 10.0;
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_matches_python_int_truncation() {
        let r = ReserveConfig::default();
        // Python: int(24576 * 0.8) == 19660, int(10240 * 0.8) == 8192 (8192.000000000001),
        // int(64000 * 0.8) == 51200, int(1 * 0.8) == 0.
        assert_eq!(r.gpu_budget_mib(24576), 19660);
        assert_eq!(r.gpu_budget_mib(10240), 8192);
        assert_eq!(r.ram_budget_mib(64000), 51200);
        assert_eq!(r.ram_budget_mib(1), 0);
        assert_eq!(r.ram_budget_mib(0), 0);
    }

    #[test]
    fn floor_raises_the_reserve() {
        let r = ReserveConfig::new(0.2, 0.2, 4096, 8192).unwrap();
        // 20 % of 8192 is 1638.4 < 4096, so the floor wins.
        assert_eq!(r.gpu_budget_mib(8192), 4096);
        // 20 % of 65536 is 13107.2 > 8192, so the fraction wins.
        assert_eq!(r.ram_budget_mib(65536), 52428);
        // A floor above the total leaves nothing.
        assert_eq!(r.gpu_budget_mib(2048), 0);
    }

    #[test]
    fn absurd_fractions_are_rejected() {
        for bad in [-0.1, 1.0, 1.5, f64::NAN, f64::INFINITY] {
            let err = ReserveConfig::new(bad, 0.2, 0, 0).unwrap_err();
            assert!(err.to_string().contains("gpu_fraction"), "{err}");
            let err = ReserveConfig::new(0.2, bad, 0, 0).unwrap_err();
            assert!(err.to_string().contains("ram_fraction"), "{err}");
        }
        assert!(ReserveConfig::new(0.0, 0.99, 0, 0).is_ok());
    }

    #[test]
    fn percent_formats() {
        assert_eq!(percent(0.2), "20");
        assert_eq!(percent(0.125), "12.5");
        assert_eq!(percent(0.0), "0");
    }
}
