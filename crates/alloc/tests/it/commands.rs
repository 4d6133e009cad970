//! rpc-server command lines: today's form and the legacy per-device form.

use expect_test::expect;
use vramroute_alloc::{
    pick_rpc_server_binary, GgmlBackend, NodeOffer, ReserveConfig, LEGACY_RPC_SERVER_BINARY,
    RPC_SERVER_BINARY,
};
use vramroute_probe::{MemoryKind, Vendor};

use crate::fixtures::{gpu, host, sollol_example_gpus};

fn lines(cmds: &[vramroute_alloc::RpcServerCommand]) -> String {
    cmds.iter().map(|c| format!("{c}\n")).collect()
}

#[test]
fn todays_command_uses_ggml_names_and_no_mem() {
    let offer = NodeOffer::from_hardware(
        &sollol_example_gpus(),
        &host(64000),
        &ReserveConfig::default(),
    )
    .unwrap();
    assert_eq!(offer.default_backend(), GgmlBackend::Cuda);
    let cmd =
        offer.rpc_server_command("0.0.0.0", 50052, offer.default_backend(), RPC_SERVER_BINARY);
    expect!["CUDA_DEVICE_ORDER=PCI_BUS_ID ggml-rpc-server --host 0.0.0.0 --port 50052 --device CPU,CUDA0,CUDA1"]
        .assert_eq(&cmd.to_string());
    assert!(!cmd.args.iter().any(|a| a == "--mem" || a == "-m"));
    // SOLLOL's spelling would make rpc-server fail; ours never contains it.
    assert!(!cmd.to_string().contains("cuda:"));
    assert_eq!(cmd.program, "ggml-rpc-server");
    assert_eq!(cmd.flag_value("--device"), Some("CPU,CUDA0,CUDA1"));
}

#[test]
fn legacy_commands_one_server_per_device_with_budgets() {
    let offer = NodeOffer::from_hardware(
        &sollol_example_gpus(),
        &host(64000),
        &ReserveConfig::default(),
    )
    .unwrap();
    let cmds = offer
        .legacy_rpc_server_commands(
            "10.1.2.3",
            50052,
            GgmlBackend::Cuda,
            LEGACY_RPC_SERVER_BINARY,
        )
        .unwrap();
    expect![[r#"
        CUDA_DEVICE_ORDER=PCI_BUS_ID rpc-server --host 10.1.2.3 --port 50052 -d CPU -m 51200
        CUDA_DEVICE_ORDER=PCI_BUS_ID rpc-server --host 10.1.2.3 --port 50053 -d CUDA0 -m 19660
        CUDA_DEVICE_ORDER=PCI_BUS_ID rpc-server --host 10.1.2.3 --port 50054 -d CUDA1 -m 8192
    "#]]
    .assert_eq(&lines(&cmds));
}

#[test]
fn legacy_ports_that_would_overflow_are_an_error() {
    let offer = NodeOffer::from_hardware(
        &sollol_example_gpus(),
        &host(64000),
        &ReserveConfig::default(),
    )
    .unwrap();
    let err = offer
        .legacy_rpc_server_commands("h", 65534, GgmlBackend::Cuda, LEGACY_RPC_SERVER_BINARY)
        .unwrap_err();
    assert!(err.to_string().contains("base port 65534"), "{err}");
}

#[test]
fn every_backend_names_its_devices() {
    let names: Vec<String> = GgmlBackend::ALL
        .iter()
        .map(|b| format!("{b}: {} {}", b.device_name(0), b.device_name(3)))
        .collect();
    expect![[r#"
        [
            "cuda: CUDA0 CUDA3",
            "hip: ROCm0 ROCm3",
            "sycl: SYCL0 SYCL3",
            "vulkan: Vulkan0 Vulkan3",
            "cpu: CPU CPU",
        ]
    "#]]
    .assert_debug_eq(&names);
    for b in GgmlBackend::ALL {
        assert_eq!(b.as_str().parse::<GgmlBackend>().unwrap(), b);
    }
    assert_eq!("ROCm".parse::<GgmlBackend>().unwrap(), GgmlBackend::Hip);
    let err = "metal".parse::<GgmlBackend>().unwrap_err();
    assert!(err
        .to_string()
        .contains("cuda, hip (rocm), sycl, vulkan, cpu"));
    assert_eq!(GgmlBackend::for_vendor(Vendor::Nvidia), GgmlBackend::Cuda);
    assert_eq!(GgmlBackend::for_vendor(Vendor::Amd), GgmlBackend::Hip);
    assert_eq!(GgmlBackend::for_vendor(Vendor::Intel), GgmlBackend::Sycl);
}

#[test]
fn each_vendor_default_backend_command() {
    let out: String = [
        (Vendor::Amd, "AMD Radeon RX 7900 XTX"),
        (Vendor::Intel, "Intel Arc A770"),
        (Vendor::Nvidia, "NVIDIA L4"),
    ]
    .iter()
    .map(|(vendor, name)| {
        let gpus = vec![
            gpu(*vendor, 0, name, Some(16384)),
            gpu(*vendor, 1, name, Some(16384)),
        ];
        let offer =
            NodeOffer::from_hardware(&gpus, &host(32768), &ReserveConfig::default()).unwrap();
        format!(
            "{}\n",
            offer.rpc_server_command(
                "192.168.1.7",
                50052,
                offer.default_backend(),
                RPC_SERVER_BINARY
            )
        )
    })
    .collect();
    expect![[r#"
        ggml-rpc-server --host 192.168.1.7 --port 50052 --device CPU,ROCm0,ROCm1
        ggml-rpc-server --host 192.168.1.7 --port 50052 --device CPU,SYCL0,SYCL1
        CUDA_DEVICE_ORDER=PCI_BUS_ID ggml-rpc-server --host 192.168.1.7 --port 50052 --device CPU,CUDA0,CUDA1
    "#]]
    .assert_eq(&out);
}

#[test]
fn backend_only_sees_its_vendors_gpus_and_vulkan_sees_dedicated_ones() {
    let mut igpu = gpu(Vendor::Intel, 0, "Intel UHD 770", Some(8192));
    igpu.memory_kind = MemoryKind::Unified;
    let gpus = vec![
        igpu,
        gpu(Vendor::Nvidia, 0, "NVIDIA GeForce RTX 3090", Some(24576)),
        gpu(Vendor::Amd, 0, "AMD Radeon RX 6800", Some(16368)),
    ];
    let offer = NodeOffer::from_hardware(&gpus, &host(64000), &ReserveConfig::default()).unwrap();
    let out: String = GgmlBackend::ALL
        .iter()
        .map(|b| {
            format!(
                "{b}: {}\n",
                offer.rpc_server_command("h", 1, *b, RPC_SERVER_BINARY)
            )
        })
        .collect();
    expect![[r#"
        cuda: CUDA_DEVICE_ORDER=PCI_BUS_ID ggml-rpc-server --host h --port 1 --device CPU,CUDA0
        hip: ggml-rpc-server --host h --port 1 --device CPU,ROCm0
        sycl: ggml-rpc-server --host h --port 1 --device CPU,SYCL0
        vulkan: ggml-rpc-server --host h --port 1 --device CPU,Vulkan0,Vulkan1
        cpu: ggml-rpc-server --host h --port 1 --device CPU
    "#]]
    .assert_eq(&out);
    // Vulkan0 is the 3090 (first dedicated GPU), not the integrated Intel part.
    let vk = offer.ggml_devices(GgmlBackend::Vulkan);
    assert_eq!(vk[1].1.name, "NVIDIA GeForce RTX 3090");
    assert_eq!(vk[2].1.name, "AMD Radeon RX 6800");

    // With only an integrated GPU, Vulkan uses it.
    let mut only = gpu(Vendor::Intel, 0, "Intel Iris Xe", Some(8192));
    only.memory_kind = MemoryKind::Unified;
    let offer = NodeOffer::from_hardware(&[only], &host(16000), &ReserveConfig::default()).unwrap();
    assert_eq!(
        offer
            .rpc_server_command("h", 1, GgmlBackend::Vulkan, RPC_SERVER_BINARY)
            .flag_value("--device"),
        Some("CPU,Vulkan0")
    );
}

#[test]
fn cuda_numbering_follows_the_probe_index_not_list_position() {
    // Probe order is PCI bus order; CUDA with PCI_BUS_ID numbers the same way, so the
    // NVML index is the CUDA index even when another vendor's GPU sits in between.
    let gpus = vec![
        gpu(Vendor::Nvidia, 0, "A", Some(8192)),
        gpu(Vendor::Amd, 0, "B", Some(8192)),
        gpu(Vendor::Nvidia, 1, "C", Some(8192)),
    ];
    let offer = NodeOffer::from_hardware(&gpus, &host(16000), &ReserveConfig::default()).unwrap();
    let devs: Vec<(String, String)> = offer
        .ggml_devices(GgmlBackend::Cuda)
        .into_iter()
        .map(|(n, w)| (n, w.name.clone()))
        .collect();
    assert_eq!(
        devs,
        [("CPU", "CPU"), ("CUDA0", "A"), ("CUDA1", "C")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
}

#[test]
fn cpu_only_node_commands() {
    let offer = NodeOffer::from_hardware(&[], &host(65536), &ReserveConfig::default()).unwrap();
    assert_eq!(offer.default_backend(), GgmlBackend::Cpu);
    let cmd = offer.rpc_server_command(
        "10.0.0.9",
        50052,
        offer.default_backend(),
        RPC_SERVER_BINARY,
    );
    expect!["ggml-rpc-server --host 10.0.0.9 --port 50052 --device CPU"]
        .assert_eq(&cmd.to_string());
    let legacy = offer
        .legacy_rpc_server_commands(
            "10.0.0.9",
            50052,
            GgmlBackend::Cpu,
            LEGACY_RPC_SERVER_BINARY,
        )
        .unwrap();
    expect![[r#"
        rpc-server --host 10.0.0.9 --port 50052 -d CPU -m 52428
    "#]]
    .assert_eq(&lines(&legacy));
}

#[test]
fn unknown_vram_gpu_keeps_its_place_but_gets_no_mem_cap() {
    let gpus = vec![
        gpu(Vendor::Amd, 0, "AMD Radeon RX 7600", Some(8176)),
        gpu(Vendor::Amd, 1, "AMD Radeon (unknown size)", None),
    ];
    let offer = NodeOffer::from_hardware(&gpus, &host(32000), &ReserveConfig::default()).unwrap();
    let legacy = offer
        .legacy_rpc_server_commands("::1", 50052, GgmlBackend::Hip, LEGACY_RPC_SERVER_BINARY)
        .unwrap();
    expect![[r#"
        rpc-server --host ::1 --port 50052 -d CPU -m 25600
        rpc-server --host ::1 --port 50053 -d ROCm0 -m 6540
        rpc-server --host ::1 --port 50054 -d ROCm1
    "#]]
    .assert_eq(&lines(&legacy));
    let workers = offer.cluster_workers("n1", "10.0.0.2", 50052, GgmlBackend::Hip, false);
    let summary: Vec<String> = workers
        .iter()
        .map(|w| format!("{} {:?} {}", w.device_name, w.kind, w.budget_mib))
        .collect();
    assert_eq!(summary, ["CPU Cpu 25600", "ROCm0 Gpu 6540", "ROCm1 Gpu 0"]);
}

#[test]
fn hosts_with_shell_metacharacters_are_quoted() {
    let offer = NodeOffer::from_hardware(&[], &host(1000), &ReserveConfig::default()).unwrap();
    let cmd = offer.rpc_server_command(
        "/run/rpc server.sock",
        50052,
        GgmlBackend::Cpu,
        RPC_SERVER_BINARY,
    );
    expect!["ggml-rpc-server --host '/run/rpc server.sock' --port 50052 --device CPU"]
        .assert_eq(&cmd.to_string());
}

#[test]
fn the_binary_is_a_parameter_and_picked_from_what_is_installed() {
    let offer = NodeOffer::from_hardware(&[], &host(8192), &ReserveConfig::default()).unwrap();
    // Today's builds only have ggml-rpc-server; an older build found on PATH is named.
    let found = [
        "/usr/bin/llama-server",
        "/opt/llama.cpp/build/bin/rpc-server",
    ];
    let binary = pick_rpc_server_binary(&found).unwrap_or(RPC_SERVER_BINARY);
    let cmd = offer.rpc_server_command("10.0.0.9", 50052, GgmlBackend::Cpu, binary);
    expect!["rpc-server --host 10.0.0.9 --port 50052 --device CPU"].assert_eq(&cmd.to_string());
    // Both installed: the current name wins; none: no pick, callers print the default.
    assert_eq!(
        pick_rpc_server_binary(&["rpc-server", "/usr/local/bin/ggml-rpc-server"]),
        Some("ggml-rpc-server")
    );
    assert_eq!(
        pick_rpc_server_binary(&["llama-server", "my-rpc-server"]),
        None
    );
    assert_eq!(pick_rpc_server_binary::<String>(&[]), None);
}
