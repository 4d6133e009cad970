//! A simulated cluster of reporters (`vramroute-sim`, and the soak harness's load):
//! N nodes publishing through the real registry writer, with churn.
//!
//! Each node writes what a reporter writes, with the same calls: its stats record
//! (`Registry::publish_stats`) every `interval`, its registration (`Registry::register`)
//! on joining and then every minute, and on a SIGTERM-style exit `Registry::deregister`.
//! Records are shaped like a reporter's (SOLLOL's fields plus ours: GPU UUIDs and PCI
//! bus ids, loaded models, RAM, CPU load, Ollama URL). Churn, drawn from a seeded
//! generator so a run is repeatable: free VRAM moves a little on every publish; a model
//! loads or unloads now and then (free VRAM follows); a fraction of the nodes per minute
//! leave, half of them dying (they stop writing; their keys expire on their own) and
//! half deregistering; each slot comes back after `downtime` as a new node (another id).
//!
//! Node ids and hosts are loopback addresses (`127.{1+slot/65536}.{slot/256}.{slot}` and
//! a generation byte folded into the port): nothing outside this machine is named, and
//! nothing connects to them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use vramroute_registry::{
    GpuOffload, GpuStat, GpuStatsRecord, LoadedModel, Registry, RpcNodeRecord, SCHEMA_VERSION,
};

use crate::route_fixtures::{Lcg, MODELS};

/// How a simulation runs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Simulated nodes (slots; a slot whose node left is empty until it rejoins).
    pub nodes: usize,
    /// Each node publishes its stats this often (the reporter's default: 5 s).
    pub interval: Duration,
    /// The simulation stops by itself after this long.
    pub duration: Duration,
    /// Fraction of the nodes that leave per minute (half die, half deregister).
    pub leave_per_min: f64,
    /// How long a slot stays empty after its node left.
    pub downtime: Duration,
    /// Chance per publish that a node loads or unloads a model.
    pub model_change: f64,
    /// Seed of the generator (same seed, same churn).
    pub seed: u64,
    /// Concurrent writer tasks.
    pub writers: usize,
    /// Start as a cluster that has already run this churn for a while (see
    /// [`SimNode::settle`]) instead of one whose nodes all just started with no model.
    pub settled: bool,
}

impl SimConfig {
    /// The chance per publish that a node leaves.
    pub fn leave_chance(&self) -> f64 {
        (self.leave_per_min * self.interval.as_secs_f64() / 60.0).clamp(0.0, 1.0)
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 1000,
            interval: Duration::from_secs(5),
            duration: Duration::from_secs(60),
            leave_per_min: 0.01,
            downtime: Duration::from_secs(30),
            model_change: 0.02,
            seed: 1,
            writers: 32,
            settled: false,
        }
    }
}

/// What a simulation did (counters shared with its writer tasks).
#[derive(Debug, Default)]
pub struct SimStats {
    /// Stats records published.
    pub publishes: AtomicU64,
    /// Registrations written.
    pub registrations: AtomicU64,
    /// Writes that failed (counted, logged once per writer, retried next interval).
    pub errors: AtomicU64,
    /// Nodes that joined (first appearance or rejoin).
    pub joined: AtomicU64,
    /// Nodes that stopped writing without deregistering.
    pub died: AtomicU64,
    /// Nodes that deregistered.
    pub deregistered: AtomicU64,
    /// Model loads and unloads.
    pub model_changes: AtomicU64,
    /// Publishes that started more than one interval late (the writers fell behind).
    pub late: AtomicU64,
    /// Models loaded across the live nodes now.
    pub models_loaded: AtomicU64,
}

impl SimStats {
    /// One line of counters.
    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "publishes {} registrations {} errors {} joined {} died {} deregistered {} model_changes {} late {} models_loaded {}",
            g(&self.publishes),
            g(&self.registrations),
            g(&self.errors),
            g(&self.joined),
            g(&self.died),
            g(&self.deregistered),
            g(&self.model_changes),
            g(&self.late),
            g(&self.models_loaded),
        )
    }
}

/// GPU sizes a simulated node may have (MiB) and how many of them.
const GPU_KINDS: [(&str, u64); 5] = [
    ("NVIDIA GeForce RTX 3090", 24_576),
    ("NVIDIA GeForce RTX 4090", 24_564),
    ("NVIDIA RTX A6000", 49_140),
    ("NVIDIA A100-SXM4-80GB", 81_920),
    ("NVIDIA GeForce RTX 3060", 12_288),
];
const GPU_COUNTS: [u32; 6] = [0, 1, 1, 2, 4, 8];

/// The longest age [`SimNode::settle`] gives a node.
pub const SETTLE_MAX: Duration = Duration::from_secs(4 * 3600);

/// The id of slot `slot`'s node in generation `generation` (`127.x.y.z:port`).
pub fn sim_node_id(slot: usize, generation: u32) -> String {
    format!("{}:{}", sim_host(slot), 11434 + generation % 1000)
}

/// The host of slot `slot` (loopback).
pub fn sim_host(slot: usize) -> String {
    format!(
        "127.{}.{}.{}",
        1 + slot / 65_536 % 254,
        slot / 256 % 256,
        slot % 256
    )
}

/// One simulated node's hardware and state.
#[derive(Debug, Clone)]
pub struct SimNode {
    /// Slot number.
    pub slot: usize,
    /// Generation (bumped on every rejoin: a new node id).
    pub generation: u32,
    /// `(name, total, free)` per GPU, MiB.
    pub gpus: Vec<(&'static str, u64, u64)>,
    /// Loaded models `(name, size, GPU index)`.
    pub loaded: Vec<(&'static str, u64, Option<u32>)>,
    /// Host RAM total and free, MiB.
    pub ram_mib: (u64, u64),
    /// Logical CPUs.
    pub cpus: u32,
    /// CPU load, %.
    pub cpu_load: f64,
}

impl SimNode {
    /// A fresh node for `slot` in `generation`, drawn from `rng`.
    pub fn new(slot: usize, generation: u32, rng: &mut Lcg) -> SimNode {
        let count = GPU_COUNTS[rng.below(GPU_COUNTS.len() as u32) as usize];
        let (name, total) = GPU_KINDS[rng.below(GPU_KINDS.len() as u32) as usize];
        let gpus = (0..count)
            .map(|_| (name, total, total - total / 20 - u64::from(rng.below(2048))))
            .collect();
        let ram = 16_384 * (1 + u64::from(rng.below(16)));
        SimNode {
            slot,
            generation,
            gpus,
            loaded: Vec::new(),
            ram_mib: (ram, ram / 2 + u64::from(rng.below((ram / 2) as u32))),
            cpus: [8, 16, 32, 64][rng.below(4) as usize],
            cpu_load: 100.0 * rng.unit(),
        }
    }

    /// Lives the churn of a node that has been up for a while before the first publish:
    /// an age drawn from the lifetime the leaving rate gives (exponential, mean
    /// `1 / leave_per_min` minutes; at most [`SETTLE_MAX`]), then that many report
    /// intervals of [`SimNode::step`]. A cluster of nodes settled this way starts with the
    /// loaded models it would have after running the churn that long, so its model count
    /// is flat from the start instead of climbing for hours from zero (≈ 1.75 models a
    /// node at the defaults, against ≈ 1 after ten minutes from a cold start). Returns the
    /// steps lived.
    pub fn settle(
        &mut self,
        rng: &mut Lcg,
        model_change: f64,
        leave_per_min: f64,
        interval: Duration,
    ) -> u32 {
        let per_min = 60.0 / interval.as_secs_f64().max(1e-3);
        let max = SETTLE_MAX.as_secs_f64() / 60.0 * per_min;
        let steps = if leave_per_min > 0.0 {
            // 1 - unit() is in (0, 1], so the logarithm is finite.
            (-(1.0 - rng.unit()).ln() / leave_per_min * per_min).min(max)
        } else {
            max
        };
        let steps = steps as u32;
        for _ in 0..steps {
            self.step(rng, model_change);
        }
        steps
    }

    /// The node id.
    pub fn id(&self) -> String {
        sim_node_id(self.slot, self.generation)
    }

    /// One report interval passes: free VRAM and CPU load move a little and, with chance
    /// `model_change`, a model loads (where it fits) or unloads. Returns whether a model
    /// changed.
    pub fn step(&mut self, rng: &mut Lcg, model_change: f64) -> bool {
        for (i, g) in self.gpus.iter_mut().enumerate() {
            // ±256 MiB of noise (other processes, KV caches growing and shrinking), never
            // above what the models loaded on the GPU leave free.
            let models: u64 = self
                .loaded
                .iter()
                .filter(|m| m.2 == Some(i as u32))
                .map(|m| m.1)
                .sum();
            let delta = i64::from(rng.below(513)) - 256;
            let ceiling = g.1.saturating_sub(models);
            g.2 = (g.2 as i64 + delta).clamp(0, ceiling as i64) as u64;
        }
        self.cpu_load = (self.cpu_load + 10.0 * (rng.unit() - 0.5)).clamp(0.0, 100.0);
        if rng.unit() >= model_change {
            return false;
        }
        if !self.loaded.is_empty() && rng.below(2) == 0 {
            let (_, size, gpu) = self
                .loaded
                .remove(rng.below(self.loaded.len() as u32) as usize);
            match gpu {
                Some(g) => {
                    let g = &mut self.gpus[g as usize];
                    g.2 = (g.2 + size).min(g.1);
                }
                None => self.ram_mib.1 = (self.ram_mib.1 + size).min(self.ram_mib.0),
            }
            return true;
        }
        let (name, size) = MODELS[rng.below(MODELS.len() as u32) as usize];
        if self.loaded.iter().any(|m| m.0 == name) {
            return false;
        }
        let gpu = self
            .gpus
            .iter()
            .enumerate()
            .filter(|(_, g)| g.2 >= size)
            .max_by_key(|(_, g)| g.2)
            .map(|(i, _)| i);
        match gpu {
            Some(i) => {
                self.gpus[i].2 -= size;
                self.loaded.push((name, size, Some(i as u32)));
            }
            None if self.ram_mib.1 >= size => {
                self.ram_mib.1 -= size;
                self.loaded.push((name, size, None));
            }
            None => return false,
        }
        true
    }

    /// The stats record a reporter on this node would publish at `now` (Unix seconds).
    pub fn stats_record(&self, now: f64) -> GpuStatsRecord {
        let vendor = if self.gpus.is_empty() {
            "none"
        } else {
            "nvidia"
        };
        let mut r = GpuStatsRecord::new(self.id(), vendor, now);
        r.gpus = self
            .gpus
            .iter()
            .enumerate()
            .map(|(i, &(name, total, free))| {
                let mut g = GpuStat::new(i as u32, name);
                g.memory_total_mb = Some(total);
                g.memory_free_mb = Some(free);
                g.memory_used_mb = Some(total - free);
                g.utilization_percent = Some(((total - free) * 100 / total) as u32);
                g.temperature_c = Some(35 + (self.slot % 40) as i32);
                g.uuid = Some(
                    format!(
                        "GPU-{:08x}-{:04x}-4a5b-8c9d-{:012x}",
                        self.slot, i, self.generation
                    )
                    .into(),
                );
                g.pci_bus_id = Some(format!("00000000:{:02x}:00.0", i + 1).into());
                g.power_w = Some(120.0 + (total - free) as f64 / 100.0);
                g.memory_kind = Some("dedicated".into());
                g.driver = Some("nvidia".into());
                g.ggml_device = Some(format!("CUDA{i}").into());
                g
            })
            .collect();
        r.schema_version = Some(SCHEMA_VERSION);
        r.reporter_version = Some("0.1.0".into());
        r.hostname = Some(format!("sim-{}-{}", self.slot, self.generation).into());
        r.gpu_offload = Some(if self.gpus.is_empty() {
            GpuOffload::Off
        } else {
            GpuOffload::On
        });
        r.loaded_models = Some(
            self.loaded
                .iter()
                .map(|&(name, size, gpu)| {
                    LoadedModel::new(name, Some(size), Some(if gpu.is_some() { size } else { 0 }))
                })
                .collect(),
        );
        r.cpu_ram_total_mb = Some(self.ram_mib.0);
        r.cpu_ram_free_mb = Some(self.ram_mib.1);
        r.cpu_count = Some(self.cpus);
        r.cpu_load_percent = Some(self.cpu_load);
        r.ollama_url = Some(format!("http://{}", self.id()).into());
        r.rpc_host = Some(sim_host(self.slot).into());
        r.rpc_port = Some(50052);
        r
    }

    /// The registration a reporter on this node would write (20 % reserves).
    pub fn rpc_record(&self) -> RpcNodeRecord {
        let mut r = RpcNodeRecord::default();
        r.has_gpu = !self.gpus.is_empty();
        r.gpu_devices = (0..self.gpus.len())
            .map(|i| format!("cuda:{i}").into())
            .collect();
        r.gpu_vram_mb = self.gpus.iter().map(|g| g.1 * 4 / 5).collect();
        r.gpu_names = self.gpus.iter().map(|g| g.0.into()).collect();
        r.cpu_ram_mb = self.ram_mib.0 * 4 / 5;
        let mut devices = vec!["cpu".to_owned()];
        devices.extend(r.gpu_devices.iter().map(|d| d.to_string()));
        r.device_config = devices.join(",").into();
        let mut memory = vec![r.cpu_ram_mb.to_string()];
        memory.extend(r.gpu_vram_mb.iter().map(u64::to_string));
        r.memory_config = memory.join(",").into();
        r.total_parallel_workers = 1 + self.gpus.len() as u32;
        r.schema_version = Some(SCHEMA_VERSION);
        r.reporter_version = Some("0.1.0".into());
        r.hostname = Some(format!("sim-{}-{}", self.slot, self.generation).into());
        r.ggml_devices = Some(
            (0..self.gpus.len())
                .map(|i| format!("CUDA{i}").into())
                .collect(),
        );
        r
    }
}

/// A duration on the command line: `90` (seconds), `90s`, `500ms`, `10m`, `1h`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("bad duration `{s}`: expected e.g. 90s, 500ms, 10m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => anyhow::bail!("bad duration `{s}`: unit must be ms, s, m or h"),
    };
    if !(secs.is_finite() && secs > 0.0) {
        anyhow::bail!("bad duration `{s}`: must be positive");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Unix seconds now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Where a slot's node is in its life.
enum Life {
    Up {
        node: SimNode,
        registered_at: Option<Instant>,
    },
    /// Left; comes back as a new node at this instant.
    Down { generation: u32, back_at: Instant },
}

/// Runs `config.nodes` simulated reporters against `registry` until `config.duration`
/// has passed or `stop` is set, then returns. Writes are spread evenly over the
/// interval (node `i` publishes at offset `i / nodes` of it). Failed writes are counted
/// in `stats.errors` and retried on the next interval, as a reporter does.
pub async fn run<R: Registry + Clone + 'static>(
    registry: R,
    config: SimConfig,
    stats: Arc<SimStats>,
    stop: Arc<AtomicBool>,
) {
    let writers = config.writers.clamp(1, config.nodes.max(1));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let registry = registry.clone();
        let config = config.clone();
        let stats = Arc::clone(&stats);
        let stop = Arc::clone(&stop);
        tasks.spawn(async move { writer(w, writers, registry, config, stats, stop, start).await });
    }
    while tasks.join_next().await.is_some() {}
}

async fn writer<R: Registry>(
    w: usize,
    writers: usize,
    registry: R,
    config: SimConfig,
    stats: Arc<SimStats>,
    stop: Arc<AtomicBool>,
    start: Instant,
) {
    let mut rng = Lcg::new(config.seed.wrapping_mul(1_000_003).wrapping_add(w as u64));
    let slots: Vec<usize> = (w..config.nodes).step_by(writers).collect();
    let mut lives: Vec<Life> = Vec::with_capacity(slots.len());
    for &slot in &slots {
        let mut node = SimNode::new(slot, 0, &mut rng);
        if config.settled {
            node.settle(
                &mut rng,
                config.model_change,
                config.leave_per_min,
                config.interval,
            );
            // Settling is CPU work (≈ 1,200 steps a node at the defaults): let the other
            // writers and the runtime in between nodes.
            tokio::task::yield_now().await;
        }
        stats
            .models_loaded
            .fetch_add(node.loaded.len() as u64, Ordering::Relaxed);
        lives.push(Life::Up {
            node,
            registered_at: None,
        });
    }
    stats
        .joined
        .fetch_add(slots.len() as u64, Ordering::Relaxed);
    let interval = config.interval.as_secs_f64();
    let leave = config.leave_chance();
    let mut logged_error = false;
    let mut round = 0u32;
    loop {
        for (k, &slot) in slots.iter().enumerate() {
            let due = start
                + Duration::from_secs_f64(
                    interval * (f64::from(round) + slot as f64 / config.nodes as f64),
                );
            if Instant::now() >= start + config.duration || stop.load(Ordering::Relaxed) {
                return;
            }
            let now = Instant::now();
            if due > now {
                tokio::time::sleep_until(due.into()).await;
            } else if now - due > config.interval {
                stats.late.fetch_add(1, Ordering::Relaxed);
            }
            let life = &mut lives[k];
            if let Life::Down {
                generation,
                back_at,
            } = life
            {
                if Instant::now() < *back_at {
                    continue;
                }
                *life = Life::Up {
                    node: SimNode::new(slot, *generation + 1, &mut rng),
                    registered_at: None,
                };
                stats.joined.fetch_add(1, Ordering::Relaxed);
            }
            let Life::Up {
                node,
                registered_at,
            } = life
            else {
                continue;
            };
            if round > 0 && rng.unit() < leave {
                let generation = node.generation;
                stats
                    .models_loaded
                    .fetch_sub(node.loaded.len() as u64, Ordering::Relaxed);
                if rng.below(2) == 0 {
                    stats.died.fetch_add(1, Ordering::Relaxed);
                } else {
                    let host = sim_host(slot);
                    match registry
                        .deregister(&node.id(), Some((host.as_str(), 50052)))
                        .await
                    {
                        Ok(()) => stats.deregistered.fetch_add(1, Ordering::Relaxed),
                        Err(_) => stats.errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
                *life = Life::Down {
                    generation,
                    back_at: Instant::now() + config.downtime,
                };
                continue;
            }
            let before = node.loaded.len();
            if round > 0 && node.step(&mut rng, config.model_change) {
                stats.model_changes.fetch_add(1, Ordering::Relaxed);
                if node.loaded.len() > before {
                    stats.models_loaded.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.models_loaded.fetch_sub(1, Ordering::Relaxed);
                }
            }
            let result = async {
                registry
                    .publish_stats(&node.stats_record(unix_now()))
                    .await?;
                stats.publishes.fetch_add(1, Ordering::Relaxed);
                if registered_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    registry
                        .register(&sim_host(slot), 50052, &node.rpc_record())
                        .await?;
                    *registered_at = Some(Instant::now());
                    stats.registrations.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), vramroute_registry::Error>(())
            }
            .await;
            if let Err(e) = result {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                if !logged_error {
                    eprintln!("sim writer {w}: write failed (counted; retried next interval): {e}");
                    logged_error = true;
                }
            }
        }
        round += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_models(nodes: &[SimNode]) -> f64 {
        nodes.iter().map(|n| n.loaded.len()).sum::<usize>() as f64 / nodes.len() as f64
    }

    /// A settled cluster starts near the churn's steady state: ten more minutes of steps
    /// leave its model count about where it was, while a cold cluster is still far below.
    #[test]
    fn a_settled_cluster_starts_at_its_steady_state() {
        let config = SimConfig::default();
        let mut rng = Lcg::new(7);
        let mut cold: Vec<SimNode> = (0..2000).map(|s| SimNode::new(s, 0, &mut rng)).collect();
        let mut settled = cold.clone();
        let mut lived = 0u64;
        for node in &mut settled {
            lived += u64::from(node.settle(
                &mut rng,
                config.model_change,
                config.leave_per_min,
                config.interval,
            ));
        }
        // Ages are drawn with mean 100 minutes (1,200 steps of 5 s), capped at 4 h.
        let mean_age = lived as f64 / 2000.0;
        assert!(
            (900.0..1300.0).contains(&mean_age),
            "mean age {mean_age} steps"
        );
        let start = mean_models(&settled);
        assert!(
            (1.2..2.5).contains(&start),
            "settled start {start} models a node"
        );
        // Ten minutes of the simulator's churn: a node that leaves comes back with none.
        let leave = config.leave_chance();
        for _ in 0..120 {
            for node in cold.iter_mut().chain(settled.iter_mut()) {
                if rng.unit() < leave {
                    *node = SimNode::new(node.slot, node.generation + 1, &mut rng);
                } else {
                    node.step(&mut rng, config.model_change);
                }
            }
        }
        let after = mean_models(&settled);
        assert!(
            (after - start).abs() / start < 0.1,
            "settled: {start} -> {after} models a node in ten minutes"
        );
        let cold_after = mean_models(&cold);
        eprintln!("models a node: settled {start} -> {after}, cold 0 -> {cold_after}");
        assert!(
            cold_after < 0.8 * after,
            "cold after ten minutes {cold_after}, settled {after}"
        );
    }

    #[test]
    fn settling_without_leaving_lives_the_longest_age() {
        let mut rng = Lcg::new(3);
        let mut node = SimNode::new(0, 0, &mut rng);
        let steps = node.settle(&mut rng, 0.02, 0.0, Duration::from_secs(5));
        assert_eq!(steps, 4 * 3600 / 5);
    }
}
