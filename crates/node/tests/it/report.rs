//! Node reports built from the probe's fixture sysfs trees.
#![allow(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]

use std::path::PathBuf;

use vramroute_alloc::ReserveConfig;
use vramroute_node::{gpu_log_line, NodeIdentity, NodeReport, OllamaState};
use vramroute_ollama::{Error as OllamaError, PsModel, PsResponse};
use vramroute_probe::{
    GpuDevice, HostMemory, MemoryKind, NodeHardware, Prober, ProberConfig, Vendor,
};
use vramroute_registry::testing::fixtures;
use vramroute_registry::{decode_rpc, decode_stats, GpuOffload, Limits};

fn fixture(name: &str) -> Vec<GpuDevice> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../probe/tests/data")
        .join(name);
    let mut config = ProberConfig::with_sysfs_root(root);
    config.nvml = false;
    config.rocm = false;
    Prober::new(config).probe_gpus().expect("fixture readable")
}

fn host() -> HostMemory {
    let mut h = HostMemory::new(64000, 51200, 16);
    h.cpu_load_percent = Some(12.5);
    h
}

fn id() -> NodeIdentity {
    let mut node_identity = NodeIdentity::new("10.9.66.90:11434", "10.9.66.90", 50052);
    node_identity.ollama_url = Some("http://127.0.0.1:11434".into());
    node_identity.hostname = Some("gpu-box".into());
    node_identity
}

fn report(gpus: Vec<GpuDevice>, ollama: OllamaState) -> NodeReport {
    let hw = NodeHardware::new(gpus, host());
    NodeReport::new(hw, &ReserveConfig::default(), None, ollama, 1_795_441_356.5).unwrap()
}

fn ps(models: &[(u64, u64)]) -> vramroute_ollama::Result<PsResponse> {
    Ok(PsResponse::new(
        models
            .iter()
            .enumerate()
            .map(|(i, &(size, size_vram))| PsModel::new(format!("m{i}:latest"), size, size_vram))
            .collect(),
    ))
}

#[test]
fn amd_card_with_idle_ollama_is_reported_as_probed() {
    let r = report(fixture("amd-discrete"), OllamaState::from_ps(&ps(&[])));
    let rec = r.stats_record(&id());
    assert_eq!(rec.vendor, "amd");
    assert_eq!(rec.gpus.len(), 1);
    assert_eq!(rec.gpus[0].memory_total_mb, Some(24560));
    assert_eq!(rec.gpus[0].ggml_device.as_deref(), Some("ROCm0"));
    assert_eq!(rec.gpu_offload, Some(GpuOffload::Unknown));
    assert_eq!(rec.node_id, "10.9.66.90:11434");
    // What we write parses back through the validating reader.
    let json = rec.to_json();
    let back = decode_stats("10.9.66.90:11434", json.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(back.gpus, rec.gpus);

    let rpc = r.rpc_record();
    assert!(rpc.has_gpu);
    assert_eq!(rpc.gpu_devices, ["rocm:0"]);
    assert_eq!(rpc.gpu_vram_mb, [19648]);
    assert_eq!(rpc.cpu_ram_mb, 51200);
    assert_eq!(rpc.device_config, "cpu,rocm:0");
    assert_eq!(rpc.memory_config, "51200,19648");
    assert_eq!(rpc.total_parallel_workers, 2);
    assert_eq!(rpc.ggml_devices.as_deref(), Some(&["ROCm0".into()][..]));
    decode_rpc(rpc.to_json().as_bytes(), &Limits::default()).unwrap();
}

#[test]
fn ollama_cpu_only_hides_nothing() {
    let gib = 1 << 30;
    let r = report(
        fixture("amd-discrete"),
        OllamaState::from_ps(&ps(&[(5 * gib, 0), (gib, 0)])),
    );
    let rec = r.stats_record(&id());
    assert_eq!(rec.vendor, "none", "SOLLOL readers see a CPU-only node");
    assert!(rec.gpus.is_empty());
    assert_eq!(rec.gpu_offload, Some(GpuOffload::Off));
    let detected = &rec.extra["detected_gpus"];
    assert_eq!(
        detected[0]["memory_total_mb"], 24560,
        "hardware kept in extras"
    );
    let models = rec.loaded_models.as_ref().unwrap();
    assert_eq!(models[0].size_mb, Some(5120));
    assert_eq!(models[0].size_vram_mb, Some(0));
    // The registration still describes the hardware (llama.cpp does not use Ollama).
    assert!(r.rpc_record().has_gpu);
}

#[test]
fn ollama_down_or_partly_on_gpu_reports_gpus() {
    let down = Err(OllamaError::Unreachable {
        url: "http://127.0.0.1:11434/api/ps".into(),
        reason: "connection failed".into(),
    });
    let r = report(fixture("amd-discrete"), OllamaState::from_ps(&down));
    let rec = r.stats_record(&id());
    assert_eq!(rec.gpus.len(), 1);
    assert!(rec.gpu_offload_reason.unwrap().contains("not readable"));

    let r = report(
        fixture("amd-discrete"),
        OllamaState::from_ps(&ps(&[(10, 0), (10, 4)])),
    );
    assert_eq!(r.stats_record(&id()).gpu_offload, Some(GpuOffload::On));
}

#[test]
fn cpu_only_node_matches_sollol_shape() {
    let r = report(fixture("empty"), OllamaState::not_asked());
    let rec = r.stats_record(&id());
    assert_eq!(rec.vendor, "none");
    assert!(rec.gpus.is_empty());
    let rpc = r.rpc_record();
    assert!(!rpc.has_gpu);
    assert!(rpc.gpu_devices.is_empty() && rpc.gpu_vram_mb.is_empty());
    assert_eq!(rpc.device_config, "cpu");
    assert_eq!(rpc.memory_config, "51200");
    assert_eq!(rpc.total_parallel_workers, 1);
    assert_eq!(
        r.rpc_server_command("0.0.0.0", 50052).to_string(),
        "ggml-rpc-server --host 0.0.0.0 --port 50052 --device CPU"
    );
}

#[test]
fn nvidia_node_registration_equals_sollol_sample() {
    let gpu = |index: u32, name: &str, total: u64, bus: &str| {
        let mut gpu_device = GpuDevice::new(Vendor::Nvidia, index, name, "nvidia");
        gpu_device.uuid = Some(format!("GPU-{index}"));
        gpu_device.pci_bus_id = Some(bus.into());
        gpu_device.memory_total_mib = Some(total);
        gpu_device.memory_used_mib = Some(0);
        gpu_device.memory_free_mib = Some(total);
        gpu_device.utilization_percent = Some(0);
        gpu_device.temperature_celsius = Some(40.0);
        gpu_device.power_watts = Some(30.0);
        gpu_device.memory_kind = MemoryKind::Dedicated;
        gpu_device
    };
    let r = report(
        vec![
            gpu(0, "NVIDIA GeForce RTX 3090", 24576, "0000:01:00.0"),
            gpu(1, "NVIDIA GeForce RTX 3080", 10240, "0000:02:00.0"),
        ],
        OllamaState::not_asked(),
    );
    let sample: serde_json::Value = serde_json::from_str(fixtures::RPC_NODE_GPU).unwrap();
    let ours: serde_json::Value = serde_json::from_str(&r.rpc_record().to_json()).unwrap();
    for (k, v) in sample.as_object().unwrap() {
        assert_eq!(&ours[k], v, "field {k}");
    }
    let cmd = r.rpc_server_command("0.0.0.0", 50052).to_string();
    assert_eq!(
        cmd,
        "CUDA_DEVICE_ORDER=PCI_BUS_ID ggml-rpc-server --host 0.0.0.0 --port 50052 --device CPU,CUDA0,CUDA1"
    );
    assert!(!cmd.contains("--mem"));
    assert_eq!(
        gpu_log_line(&r.hardware.gpus[0]),
        "GPU 0: NVIDIA GeForce RTX 3090 | VRAM: 0/24576MB | Util: 0% | Temp: 40°C"
    );
}

#[test]
fn json_and_text_reports_carry_the_numbers() {
    let r = report(fixture("intel-xe"), OllamaState::not_asked());
    let j = r.to_json(&id(), "0.0.0.0");
    assert_eq!(j["gpus"].as_array().unwrap().len(), 2);
    assert_eq!(j["gpus"][0]["vendor"], "intel");
    assert!(
        j["gpus"][0]["memory_free_mb"].is_null(),
        "xe used/free unknown stays null"
    );
    assert_eq!(j["registration"]["device_config"], "cpu,sycl:0,sycl:1");
    let text = r.render_text(&id(), "0.0.0.0");
    assert!(text.contains("VRAM: ?/"), "{text}");
    assert!(
        text.contains("ggml-rpc-server --host 0.0.0.0 --port 50052 --device CPU,SYCL0,SYCL1"),
        "{text}"
    );
}

/// What a `gpus[0]` reader (SOLLOL) sees, and that every entry keeps its own index.
fn gpus_by_position(r: &NodeReport) -> Vec<(u32, String, Option<u64>)> {
    r.stats_record(&id())
        .gpus
        .iter()
        .map(|g| (g.index, g.name.to_string(), g.memory_total_mb))
        .collect()
}

#[test]
fn i915_lists_the_discrete_a770_before_the_integrated_uhd_770() {
    let r = report(fixture("intel-i915"), OllamaState::not_asked());
    // The probe keeps PCI order (the iGPU at 00:02.0 first) ...
    assert_eq!(r.hardware.gpus[0].name, "Intel UHD Graphics 770");
    // ... the stats record puts the GPU to route to first, indexes unchanged.
    assert_eq!(
        gpus_by_position(&r),
        [
            (1, "Intel Arc A770".to_string(), Some(16_384)),
            (0, "Intel UHD Graphics 770".to_string(), None),
        ]
    );
    let rec = r.stats_record(&id());
    assert_eq!(rec.vendor, "intel");
    let json = rec.to_json();
    assert!(
        json.starts_with(r#"{"vendor": "intel", "gpus": [{"index": 1, "name": "Intel Arc A770", "memory_total_mb": 16384"#),
        "{json}"
    );
}

#[test]
fn two_cards_list_the_largest_first_whatever_the_pci_order() {
    // amd-two-cards: the 24 GiB RX 7900 XTX is already first on the PCI bus.
    let r = report(fixture("amd-two-cards"), OllamaState::not_asked());
    assert_eq!(
        gpus_by_position(&r),
        [
            (0, "AMD Radeon RX 7900 XTX".to_string(), Some(24_560)),
            (1, "AMD Radeon RX 6800 XT".to_string(), Some(16_368)),
        ]
    );
    // Reversed on the bus: a 12 GiB card at index 0, a 24 GiB card at index 1.
    let card = |index: u32, name: &str, bus: &str, total: u64| {
        let mut g = GpuDevice::new(Vendor::Nvidia, index, name, "nvidia");
        g.pci_bus_id = Some(bus.into());
        g.memory_total_mib = Some(total);
        g.memory_free_mib = Some(total - 500);
        g.memory_used_mib = Some(500);
        g.memory_kind = MemoryKind::Dedicated;
        g
    };
    let small = card(0, "NVIDIA GeForce RTX 3060", "0000:01:00.0", 12_288);
    let big = card(1, "NVIDIA GeForce RTX 3090", "0000:02:00.0", 24_576);
    let r = report(vec![small.clone(), big.clone()], OllamaState::not_asked());
    assert_eq!(
        gpus_by_position(&r),
        [
            (1, "NVIDIA GeForce RTX 3090".to_string(), Some(24_576)),
            (0, "NVIDIA GeForce RTX 3060".to_string(), Some(12_288)),
        ]
    );
    // Equal totals keep the probe's (PCI) order; free VRAM does not reorder them.
    let mut twin = card(1, "NVIDIA GeForce RTX 3060", "0000:02:00.0", 12_288);
    twin.memory_free_mib = Some(12_000);
    let r = report(vec![small, twin], OllamaState::not_asked());
    let order: Vec<u32> = gpus_by_position(&r).iter().map(|g| g.0).collect();
    assert_eq!(order, [0, 1]);
    // The registration keeps its own (offer) order: one GPU list per reader.
    let rpc = report(
        vec![card(0, "a", "0000:01:00.0", 12_288), big],
        OllamaState::not_asked(),
    )
    .rpc_record();
    assert_eq!(rpc.gpu_names, ["a", "NVIDIA GeForce RTX 3090"]);
}

#[test]
fn cpu_load_is_published_for_the_scorer() {
    // SOLLOL ignores the extra field; the router's CPU-load term reads it.
    let r = report(Vec::new(), OllamaState::not_asked());
    let rec = r.stats_record(&id());
    assert_eq!(rec.cpu_load_percent, Some(12.5));
    assert!(
        rec.to_json().contains("\"cpu_load_percent\": 12.5"),
        "{}",
        rec.to_json()
    );
}

#[test]
fn gpus_of_two_vendors_get_distinct_record_indexes() {
    // The `corrupt` tree has AMD cards and an Intel card: the probe numbers each
    // vendor from 0, so two devices carry index 0. The record's index is the GPU's
    // position on the node, unique; the vendor ordinal stays in `ggml_device`.
    let gpus = fixture("corrupt");
    let vendors: Vec<(Vendor, u32)> = gpus.iter().map(|g| (g.vendor, g.index)).collect();
    assert!(
        vendors.contains(&(Vendor::Amd, 0)) && vendors.contains(&(Vendor::Intel, 0)),
        "the probe numbers per vendor: {vendors:?}"
    );
    let r = report(gpus, OllamaState::not_asked());
    let record = r.stats_record(&id());
    let indexes: Vec<u32> = record.gpus.iter().map(|g| g.index).collect();
    assert_eq!(
        indexes,
        (0..u32::try_from(indexes.len()).unwrap()).collect::<Vec<_>>()
    );
    // The published bytes decode as a record with the same distinct indexes.
    let back = decode_stats(
        "10.9.66.90:11434",
        record.to_json().as_bytes(),
        &Limits::default(),
    )
    .unwrap();
    let mut seen: Vec<u32> = back.gpus.iter().map(|g| g.index).collect();
    seen.dedup();
    assert_eq!(seen.len(), back.gpus.len(), "no repeated index: {seen:?}");
}
