//! Node offers and SOLLOL's registration fields.

use expect_test::expect;
use vramroute_alloc::{NodeOffer, ReserveConfig, WorkerKind};
use vramroute_probe::{MemoryKind, Vendor};

use crate::fixtures::{gpu, host, sollol_example_gpus};

/// SOLLOL's own record, as its `register_gpu_node.py` wrote it (copied from
/// `/work/shared/sollol-records/rpc-node-gpu.json`).
const SOLLOL_RPC_NODE_GPU: &str = r#"{"has_gpu": true, "gpu_devices": ["cuda:0", "cuda:1"], "gpu_vram_mb": [19660, 8192], "gpu_names": ["NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 3080"], "cpu_ram_mb": 51200, "device_config": "cpu,cuda:0,cuda:1", "memory_config": "51200,19660,8192", "total_parallel_workers": 3}"#;

#[test]
fn sollol_record_is_reproduced_exactly() {
    let offer = NodeOffer::from_hardware(
        &sollol_example_gpus(),
        &host(64000),
        &ReserveConfig::default(),
    )
    .unwrap();
    let ours = serde_json::to_value(offer.sollol_capability()).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(SOLLOL_RPC_NODE_GPU).unwrap();
    assert_eq!(ours, theirs);
    // Same field order as SOLLOL's dict: serde_json writes struct fields in order.
    let compact = serde_json::to_string(&offer.sollol_capability()).unwrap();
    assert_eq!(
        compact,
        r#"{"has_gpu":true,"gpu_devices":["cuda:0","cuda:1"],"gpu_vram_mb":[19660,8192],"gpu_names":["NVIDIA GeForce RTX 3090","NVIDIA GeForce RTX 3080"],"cpu_ram_mb":51200,"device_config":"cpu,cuda:0,cuda:1","memory_config":"51200,19660,8192","total_parallel_workers":3}"#
    );
}

#[test]
fn cpu_only_node_matches_sollol_shape() {
    let offer = NodeOffer::from_hardware(&[], &host(32000), &ReserveConfig::default()).unwrap();
    let cap = offer.sollol_capability();
    assert_eq!(
        serde_json::to_string(&cap).unwrap(),
        r#"{"has_gpu":false,"gpu_devices":[],"gpu_vram_mb":[],"gpu_names":[],"cpu_ram_mb":25600,"device_config":"cpu","memory_config":"25600","total_parallel_workers":1}"#
    );
    assert_eq!(offer.workers.len(), 1);
    assert_eq!(offer.workers[0].kind, WorkerKind::Cpu);
}

#[test]
fn offer_lists_one_cpu_worker_and_one_per_gpu() {
    let offer = NodeOffer::from_hardware(
        &sollol_example_gpus(),
        &host(64000),
        &ReserveConfig::default(),
    )
    .unwrap();
    expect![[r#"
        CPU: 16 logical CPUs | 64000 MiB RAM | budget 51200 MiB (reserve 20%, floor 0 MiB)
        GPU 0: NVIDIA GeForce RTX 3090 (cuda:0) | 24576 MiB | budget 19660 MiB (reserve 20%, floor 0 MiB)
        GPU 1: NVIDIA GeForce RTX 3080 (cuda:1) | 10240 MiB | budget 8192 MiB (reserve 20%, floor 0 MiB)"#]]
    .assert_eq(&offer.to_string());
    let kinds: Vec<WorkerKind> = offer.workers.iter().map(|w| w.kind).collect();
    assert_eq!(kinds, [WorkerKind::Cpu, WorkerKind::Gpu, WorkerKind::Gpu]);
    assert_eq!(offer.workers[1].gpu.as_ref().unwrap().index, 0);
    assert_eq!(offer.workers[2].free_mib, Some(10240 - 500));
    assert_eq!(offer.cpu().unwrap().free_mib, Some(32000));
}

#[test]
fn configured_reserve_changes_every_field() {
    let reserve = ReserveConfig::new(0.1, 0.25, 2048, 0).unwrap();
    let offer = NodeOffer::from_hardware(&sollol_example_gpus(), &host(64000), &reserve).unwrap();
    let cap = offer.sollol_capability();
    // 3090: 10 % is 2457.6 MiB < floor 2048? No: 2457.6 > 2048, so int(24576*0.9) = 22118.
    // 3080: 10 % is 1024 < 2048, so the floor wins: 10240 - 2048 = 8192.
    assert_eq!(cap.gpu_vram_mb, vec![22118, 8192]);
    assert_eq!(cap.cpu_ram_mb, 48000);
    assert_eq!(cap.memory_config, "48000,22118,8192");
}

#[test]
fn absurd_reserve_is_an_error_not_a_clamp() {
    let bad = {
        let mut reserve_config = ReserveConfig::default();
        reserve_config.gpu_fraction = 1.5;
        reserve_config
    };
    let err = NodeOffer::from_hardware(&sollol_example_gpus(), &host(64000), &bad).unwrap_err();
    expect![[r#"invalid reserve setting: gpu_fraction = 1.5 is outside [0, 1): give the share to hold back, e.g. 0.2 for 20 %"#]]
    .assert_eq(&err.to_string());
}

#[test]
fn mixed_vendors_use_each_vendors_sollol_spelling() {
    let gpus = vec![
        gpu(Vendor::Nvidia, 0, "NVIDIA RTX A4000", Some(16376)),
        gpu(Vendor::Amd, 0, "AMD Radeon RX 7900 XTX", Some(24560)),
        gpu(Vendor::Intel, 0, "Intel Arc A770", Some(16256)),
    ];
    let offer = NodeOffer::from_hardware(&gpus, &host(128000), &ReserveConfig::default()).unwrap();
    let cap = offer.sollol_capability();
    assert_eq!(cap.gpu_devices, ["cuda:0", "rocm:0", "sycl:0"]);
    // int(16376*0.8)=13100 (13100.8), int(24560*0.8)=19648, int(16256*0.8)=13004 (13004.8)
    assert_eq!(cap.gpu_vram_mb, [13100, 19648, 13004]);
    assert_eq!(cap.device_config, "cpu,cuda:0,rocm:0,sycl:0");
    assert_eq!(cap.memory_config, "102400,13100,19648,13004");
    assert_eq!(cap.total_parallel_workers, 4);
}

#[test]
fn unknown_vram_gpu_is_offered_but_left_out_of_sollol_fields() {
    let mut igpu = gpu(Vendor::Intel, 0, "Intel Graphics", None);
    igpu.memory_kind = MemoryKind::Unified;
    let gpus = vec![
        gpu(Vendor::Nvidia, 0, "NVIDIA GeForce RTX 4090", Some(24564)),
        igpu,
    ];
    let offer = NodeOffer::from_hardware(&gpus, &host(64000), &ReserveConfig::default()).unwrap();
    assert_eq!(offer.workers.len(), 3);
    assert_eq!(offer.workers[2].total_mib, None);
    assert_eq!(offer.workers[2].budget_mib, None);
    let cap = offer.sollol_capability();
    assert_eq!(cap.gpu_devices, ["cuda:0"]);
    assert_eq!(cap.gpu_vram_mb, [19651]);
    assert_eq!(cap.total_parallel_workers, 2);
    expect![[r#"
        CPU: 16 logical CPUs | 64000 MiB RAM | budget 51200 MiB (reserve 20%, floor 0 MiB)
        GPU 0: NVIDIA GeForce RTX 4090 (cuda:0) | 24564 MiB | budget 19651 MiB (reserve 20%, floor 0 MiB)
        GPU 0: Intel Graphics (sycl:0) | VRAM size unknown: no budget, not in the SOLLOL record"#]]
    .assert_eq(&offer.to_string());

    // Only a GPU of unknown size: the SOLLOL record says CPU-only, the offer still lists it.
    let only = vec![gpu(Vendor::Amd, 0, "AMD Radeon", None)];
    let offer = NodeOffer::from_hardware(&only, &host(16000), &ReserveConfig::default()).unwrap();
    let cap = offer.sollol_capability();
    assert!(!cap.has_gpu);
    assert_eq!(cap.device_config, "cpu");
    assert_eq!(offer.gpus().count(), 1);
}
