//! Prometheus metrics of the reporter (`--metrics-addr`).
//!
//! GPU gauges carry `node`, `gpu`, `uuid`, `pci_bus_id`, `vendor` and `name` labels.
//! A value the probe could not read is absent from the output (never reported as 0).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use vramroute_probe::GpuDevice;

const MIB: f64 = 1_048_576.0;

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GpuLabels {
    node: String,
    gpu: String,
    uuid: String,
    pci_bus_id: String,
    vendor: String,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The reporter's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    memory_total: Family<GpuLabels, FloatGauge>,
    memory_used: Family<GpuLabels, FloatGauge>,
    memory_free: Family<GpuLabels, FloatGauge>,
    utilization: Family<GpuLabels, FloatGauge>,
    temperature: Family<GpuLabels, FloatGauge>,
    power: Family<GpuLabels, FloatGauge>,
    publishes: Family<ResultLabels, Counter>,
    probe_seconds: Histogram,
    probe_timeouts: Counter,
    probe_stuck: Gauge,
    redis_up: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("vramroute");
        let memory_total = Family::<GpuLabels, FloatGauge>::default();
        let memory_used = Family::<GpuLabels, FloatGauge>::default();
        let memory_free = Family::<GpuLabels, FloatGauge>::default();
        let utilization = Family::<GpuLabels, FloatGauge>::default();
        let temperature = Family::<GpuLabels, FloatGauge>::default();
        let power = Family::<GpuLabels, FloatGauge>::default();
        let publishes = Family::<ResultLabels, Counter>::default();
        // 50 µs .. ~0.4 s
        let probe_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 14),
        );
        let redis_up = Gauge::default();
        let probe_timeouts = Counter::default();
        let probe_stuck = Gauge::default();
        registry.register(
            "probe_timeouts",
            "Hardware probes that did not answer within the probe timeout",
            probe_timeouts.clone(),
        );
        registry.register(
            "probe_stuck",
            "1 while the hardware probe has not answered (the last good values are republished)",
            probe_stuck.clone(),
        );
        registry.register(
            "gpu_memory_total_bytes",
            "Total memory of the GPU",
            memory_total.clone(),
        );
        registry.register(
            "gpu_memory_used_bytes",
            "Memory in use on the GPU",
            memory_used.clone(),
        );
        registry.register(
            "gpu_memory_free_bytes",
            "Memory free on the GPU",
            memory_free.clone(),
        );
        registry.register(
            "gpu_utilization_percent",
            "GPU busy percentage",
            utilization.clone(),
        );
        registry.register(
            "gpu_temperature_celsius",
            "GPU temperature",
            temperature.clone(),
        );
        registry.register("gpu_power_watts", "GPU average power draw", power.clone());
        registry.register(
            "publishes",
            "Publishes to Redis, by result",
            publishes.clone(),
        );
        registry.register(
            "probe_duration_seconds",
            "Time one hardware probe took",
            probe_seconds.clone(),
        );
        registry.register(
            "redis_up",
            "1 when the last publish reached Redis",
            redis_up.clone(),
        );
        Metrics {
            registry,
            memory_total,
            memory_used,
            memory_free,
            utilization,
            temperature,
            power,
            publishes,
            probe_seconds,
            probe_timeouts,
            probe_stuck,
            redis_up,
        }
    }

    /// Replace the GPU gauges with this probe's values.
    pub(crate) fn observe_gpus(&self, node: &str, gpus: &[GpuDevice]) {
        let families = [
            &self.memory_total,
            &self.memory_used,
            &self.memory_free,
            &self.utilization,
            &self.temperature,
            &self.power,
        ];
        for family in families {
            family.clear();
        }
        for gpu in gpus {
            let labels = GpuLabels {
                node: node.to_string(),
                gpu: format!("{}:{}", gpu.vendor, gpu.index),
                uuid: gpu.uuid.clone().unwrap_or_default(),
                pci_bus_id: gpu.pci_bus_id.clone().unwrap_or_default(),
                vendor: gpu.vendor.to_string(),
                name: gpu.name.clone(),
            };
            let mib = |v: Option<u64>| v.map(|m| m as f64 * MIB);
            let values = [
                (&self.memory_total, mib(gpu.memory_total_mib)),
                (&self.memory_used, mib(gpu.memory_used_mib)),
                (&self.memory_free, mib(gpu.memory_free_mib)),
                (&self.utilization, gpu.utilization_percent.map(f64::from)),
                (&self.temperature, gpu.temperature_celsius),
                (&self.power, gpu.power_watts),
            ];
            for (family, value) in values {
                if let Some(v) = value {
                    family.get_or_create(&labels).set(v);
                }
            }
        }
    }

    pub(crate) fn observe_probe(&self, seconds: f64) {
        self.probe_seconds.observe(seconds);
    }

    /// A probe did not answer within the timeout (and is stuck from now).
    pub(crate) fn probe_timed_out(&self) {
        self.probe_timeouts.inc();
        self.probe_stuck.set(1);
    }

    /// The stuck probe answered.
    pub(crate) fn probe_answered(&self) {
        self.probe_stuck.set(0);
    }

    pub(crate) fn observe_publish(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.publishes.get_or_create(&ResultLabels { result }).inc();
        self.redis_up.set(i64::from(ok));
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serve `/metrics` on `listener` until the process exits, under `limits` (timeouts and
/// a connection cap: idle scrapers cannot take the reporter's file descriptors).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    limits: vramroute_serve::ServeLimits,
) {
    use axum::http::header::CONTENT_TYPE;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    }
    if let Err(e) = vramroute_serve::serve(listener, app, limits, std::future::pending()).await {
        tracing::warn!("metrics server stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vramroute_probe::{MemoryKind, Vendor};

    fn gpu(free: Option<u64>) -> GpuDevice {
        let mut gpu_device = GpuDevice::new(Vendor::Amd, 0, "AMD Radeon RX 7900 XTX", "amdgpu");
        gpu_device.uuid = Some("abc".into());
        gpu_device.pci_bus_id = Some("0000:03:00.0".into());
        gpu_device.memory_total_mib = Some(24560);
        gpu_device.memory_used_mib = free.map(|f| 24560 - f);
        gpu_device.memory_free_mib = free;
        gpu_device.utilization_percent = Some(7);
        gpu_device.temperature_celsius = Some(45.0);
        gpu_device.memory_kind = MemoryKind::Dedicated;
        gpu_device
    }

    #[test]
    fn known_values_are_exported_unknown_ones_absent() {
        let m = Metrics::new();
        m.observe_gpus("10.0.0.1:11434", &[gpu(Some(20000))]);
        m.observe_publish(true);
        let text = m.render();
        assert!(text.contains(
            "vramroute_gpu_memory_free_bytes{node=\"10.0.0.1:11434\",gpu=\"amd:0\",uuid=\"abc\",pci_bus_id=\"0000:03:00.0\",vendor=\"amd\",name=\"AMD Radeon RX 7900 XTX\"} 20971520000.0"
        ), "{text}");
        assert!(!text.contains("vramroute_gpu_power_watts{"), "{text}");
        assert!(
            text.contains("vramroute_publishes_total{result=\"ok\"} 1"),
            "{text}"
        );

        // The free value becomes unknown: its series disappears instead of reading 0.
        m.observe_gpus("10.0.0.1:11434", &[gpu(None)]);
        let text = m.render();
        assert!(!text.contains("vramroute_gpu_memory_free_bytes{"), "{text}");
        assert!(text.contains("vramroute_gpu_memory_total_bytes{"), "{text}");
    }
}
