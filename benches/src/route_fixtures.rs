//! Deterministic synthetic clusters for the router benchmarks.
//!
//! No `rand`: a 64-bit linear congruential generator (Knuth's MMIX constants), so every
//! run and every machine benchmarks the same cluster.

use vramroute_router::{GpuSpec, NodeSpec, ResidentModel};

/// Knuth's MMIX LCG; the high bits are used.
#[derive(Clone, Debug)]
pub struct Lcg(u64);

impl Lcg {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Lcg(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 32) as u32
    }

    /// Uniform in `0..n` (`n > 0`; modulo bias is irrelevant here).
    pub fn below(&mut self, n: u32) -> u32 {
        self.next_u32() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        f64::from(self.next_u32()) / 4_294_967_296.0
    }
}

/// SOLLOL's model-size table (MiB), a subset used for loaded models.
pub const MODELS: [(&str, u64); 8] = [
    ("nomic-embed-text", 274),
    ("llama3.2:1b", 1300),
    ("llama3.2:3b", 1900),
    ("codellama:7b", 3600),
    ("mistral:7b", 4100),
    ("llama3.1:8b", 4700),
    ("codellama:13b", 6900),
    ("mixtral:8x7b", 26000),
];

const GPU_SIZES_MIB: [u64; 8] = [4096, 6144, 8192, 12288, 16384, 24576, 49152, 81920];
const CPU_COUNTS: [u32; 5] = [4, 8, 16, 32, 64];

/// A cluster of `nodes` nodes with 0–8 GPUs each (uniform), mixed VRAM sizes and free
/// memory, 0–3 loaded models, 5 % stale and 3 % unhealthy nodes, varied latency, success
/// rate, CPU load and active requests. Same `seed`, same cluster.
pub fn synthetic_cluster(nodes: usize, seed: u64) -> Vec<NodeSpec> {
    let mut rng = Lcg::new(seed);
    (0..nodes)
        .map(|i| {
            let mut n = NodeSpec::new(format!(
                "10.{}.{}.{}:11434",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            ));
            let gpu_count = rng.below(9);
            for g in 0..gpu_count {
                let total = GPU_SIZES_MIB[rng.below(GPU_SIZES_MIB.len() as u32) as usize];
                let free = (total as f64 * rng.unit()) as u64;
                let mut gpu = GpuSpec::new(g, total, Some(free));
                gpu.memory_used_mib = Some(total - free);
                gpu.utilization_percent = Some(rng.below(101));
                gpu.temperature_celsius = Some(30.0 + 50.0 * rng.unit());
                n.gpus.push(gpu);
            }
            for _ in 0..rng.below(4) {
                let (name, size) = MODELS[rng.below(MODELS.len() as u32) as usize];
                let on_gpu = gpu_count > 0 && rng.below(4) != 0;
                let mut m = ResidentModel::new(name, size, if on_gpu { size } else { 0 });
                if on_gpu {
                    m.gpu = Some(rng.below(gpu_count));
                }
                if !n.loaded_models.iter().any(|x| x.name == name) {
                    n.loaded_models.push(m);
                }
            }
            let ram_total = 16_384 * (1 + u64::from(rng.below(16)));
            n.ram_total_mib = Some(ram_total);
            n.ram_free_mib = Some((ram_total as f64 * rng.unit()) as u64);
            n.cpu_count = Some(CPU_COUNTS[rng.below(CPU_COUNTS.len() as u32) as usize]);
            n.cpu_load_percent = Some(100.0 * rng.unit());
            n.active_requests = rng.below(6);
            n.latency_ms = Some(20.0 + 3000.0 * rng.unit());
            n.success_rate = Some(0.8 + 0.2 * rng.unit());
            n.report_age_ms = if rng.below(100) < 5 {
                120_000
            } else {
                u64::from(rng.below(10_000))
            };
            n.healthy = rng.below(100) >= 3;
            n.priority = if rng.below(100) == 0 { Some(0) } else { None };
            n
        })
        .collect()
}
