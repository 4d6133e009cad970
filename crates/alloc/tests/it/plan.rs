//! Placement plans: fit, barely fit, do not fit, CPU fallback, and agreement with
//! llama.cpp's own layer-to-device mapping.

use expect_test::expect;
use vramroute_alloc::{
    plan, sollol_table_estimate, ClusterWorker, Error, GgmlBackend, ModelEstimate, NodeOffer, Plan,
    PlanOptions, ReserveConfig, WorkerKind,
};
use vramroute_probe::Vendor;

use crate::fixtures::{gpu, host};

/// The workers of a node with NVIDIA GPUs of `gpus_mib` and `ram_mib` RAM, as its
/// rpc-server (today's form, CUDA build) exposes them.
fn node(id: &str, host_ip: &str, gpus_mib: &[u64], ram_mib: u64) -> Vec<ClusterWorker> {
    let gpus: Vec<_> = gpus_mib
        .iter()
        .zip(0u32..)
        .map(|(&mib, i)| gpu(Vendor::Nvidia, i, &format!("GPU {mib}"), Some(mib)))
        .collect();
    let offer = NodeOffer::from_hardware(&gpus, &host(ram_mib), &ReserveConfig::default())
        .expect("valid reserve");
    let backend = offer.default_backend();
    let mut workers = offer.cluster_workers(id, host_ip, 50052, backend, false);
    for w in &mut workers {
        w.free_mib = None; // plan against budgets unless a test says otherwise
    }
    workers
}

fn local_cpu(ram_budget_mib: u64) -> ClusterWorker {
    let mut cluster_worker = ClusterWorker::new(
        "coordinator",
        String::new(),
        0,
        WorkerKind::Cpu,
        "CPU",
        ram_budget_mib,
    );
    cluster_worker.local = true;
    cluster_worker
}

/// llama.cpp's `load_tensors` layer assignment, re-implemented with its f32 arithmetic:
/// for layers `0..=n_layer` (the last is the output layer) the device index, or `None`
/// for the host CPU.
fn llama_cpp_devices(n_layer: u32, ngl: u32, split: &[u32]) -> Vec<Option<usize>> {
    let i_gpu_start = n_layer.saturating_sub(ngl);
    let act = ngl.min(n_layer + 1);
    let mut sum = 0f32;
    let mut splits: Vec<f32> = split
        .iter()
        .map(|&x| {
            sum += x as f32;
            sum
        })
        .collect();
    for s in &mut splits {
        *s /= sum;
    }
    (0..=n_layer)
        .map(|il| {
            if il < i_gpu_start || il - i_gpu_start >= act {
                None
            } else {
                let x = (il - i_gpu_start) as f32 / act as f32;
                Some(splits.partition_point(|&s| s <= x))
            }
        })
        .collect()
}

/// Checks that llama.cpp, given the plan's -ngl and --tensor-split, puts every layer
/// exactly where the plan says, and that no device exceeds its capacity.
pub(crate) fn assert_llama_cpp_agrees(p: &Plan) {
    let n = p.layer_count;
    let mapped = llama_cpp_devices(n, p.n_gpu_layers, &p.tensor_split);
    let mut expected: Vec<Option<usize>> = vec![None; (n + 1) as usize];
    for (k, d) in p.devices.iter().enumerate() {
        for layer in d.first_layer..d.first_layer + d.layers {
            expected[layer as usize] = Some(k);
        }
        if d.holds_output {
            expected[n as usize] = Some(k);
        }
        assert!(
            d.planned_mib <= d.capacity_mib,
            "{} {} over capacity: {} > {}",
            d.node_id,
            d.device_name,
            d.planned_mib,
            d.capacity_mib
        );
    }
    assert_eq!(mapped, expected, "llama.cpp disagrees with {p:#?}");
    assert_eq!(p.devices.len(), p.tensor_split.len().max(p.devices.len()));
    let host_layers = expected
        .iter()
        .take(n as usize)
        .filter(|d| d.is_none())
        .count();
    assert_eq!(host_layers, p.host_cpu_layers as usize);
}

/// SOLLOL's sharding example: 70B (~40 GB, 80 layers) on 16 + 32 + 16 GB GPUs and a
/// CPU-only 64 GB node.
fn sollol_cluster() -> Vec<ClusterWorker> {
    let mut w = Vec::new();
    w.extend(node("gpu16-a", "10.0.0.11", &[16384], 32768));
    w.extend(node("gpu32", "10.0.0.12", &[32768], 32768));
    w.extend(node("gpu16-b", "10.0.0.13", &[16384], 32768));
    w.extend(node("cpu64", "10.0.0.14", &[], 65536));
    w
}

#[test]
fn sollol_70b_example_gets_a_valid_plan() {
    let model = sollol_table_estimate("llama3.1:70b").unwrap();
    let opts = {
        let mut plan_options = PlanOptions::default();
        plan_options.model_path = Some("/models/llama-3.1-70b-q4_k_m.gguf".to_owned());
        plan_options
    };
    let p = plan(&model, &sollol_cluster(), &opts).unwrap();
    assert_llama_cpp_agrees(&p);
    expect![[r#"
        plan for llama3.1:70b:
          - llama3.1:70b: 80 layers × 500.0 MiB, output 0 MiB, input 0 MiB (kept on the llama-server host), compute buffers 512 MiB per device used and 512 MiB on the llama-server host [source: SOLLOL size table]
          - GPUs alone hold the model: 3 of 3 GPU node(s) chosen, largest capacity first (fewest network hops)
          - gpu32 (10.0.0.12:50052): rpc-server with 2 device(s), room for 51 GPU + 51 CPU layer(s)
          - gpu16-a (10.0.0.11:50052): rpc-server with 2 device(s), room for 25 GPU + 51 CPU layer(s)
          - gpu16-b (10.0.0.13:50052): rpc-server with 2 device(s), room for 25 GPU + 51 CPU layer(s)
          - not needed: cpu64
          - layers 0-39 → gpu32 CUDA0 (20512 of 26214 MiB)
          - layers 40-59 → gpu16-a CUDA0 (10512 of 13107 MiB)
          - layers 60-79 + output → gpu16-b CUDA0 (10512 of 13107 MiB)
        on gpu32: CUDA_DEVICE_ORDER=PCI_BUS_ID ggml-rpc-server --host 10.0.0.12 --port 50052 --device CPU,CUDA0
        on gpu16-a: CUDA_DEVICE_ORDER=PCI_BUS_ID ggml-rpc-server --host 10.0.0.11 --port 50052 --device CPU,CUDA0
        on gpu16-b: CUDA_DEVICE_ORDER=PCI_BUS_ID ggml-rpc-server --host 10.0.0.13 --port 50052 --device CPU,CUDA0
        then: llama-server -m /models/llama-3.1-70b-q4_k_m.gguf --rpc 10.0.0.12:50052,10.0.0.11:50052,10.0.0.13:50052 -ngl 81 --tensor-split 0,40,0,20,0,21"#]]
    .assert_eq(&p.to_string());
    // Weights, a compute buffer per GPU used and the host's buffers (no dimensions in
    // SOLLOL's table: 512 MiB each).
    assert_eq!(p.need_mib, 40000 + 3 * 512 + 512);
}

#[test]
fn sollol_example_without_the_big_gpu_uses_cpus() {
    // Drop the 32 GB GPU node: 16 + 16 GB GPUs hold 50 layers; the rest go to CPUs,
    // the local CPU first, then the chosen nodes' CPUs, then the CPU-only node.
    let workers: Vec<ClusterWorker> = sollol_cluster()
        .into_iter()
        .filter(|w| w.node_id != "gpu32")
        .chain([local_cpu(8192)])
        .collect();
    let model = sollol_table_estimate("llama3.1:70b").unwrap();
    let p = plan(&model, &workers, &PlanOptions::default()).unwrap();
    assert_llama_cpp_agrees(&p);
    // Local CPU: (8192 - 512 host buffers - 512 compute) / 500 = 14 layers; GPUs 25 + 25;
    // the rest (16) on gpu16-a's CPU.
    assert_eq!(p.host_cpu_layers, 14);
    assert_eq!(p.n_gpu_layers, 66);
    expect![[r#"
        llama-server --rpc 10.0.0.11:50052,10.0.0.13:50052 -ngl 66 --tensor-split 16,25,0,25"#]]
    .assert_eq(&p.llama_server_command().to_string());
    assert!(
        p.reasons[1].starts_with("GPUs hold 50 of 80 layers"),
        "{:?}",
        p.reasons
    );
    assert!(
        p.reasons.iter().any(|r| r == "not needed: cpu64"),
        "{:?}",
        p.reasons
    );
}

#[test]
fn cpu_only_nodes_join_when_gpus_and_chosen_nodes_are_not_enough() {
    let mut workers = node("gpu8", "10.0.1.1", &[8192], 4096);
    workers.extend(node("cpu-small", "10.0.1.2", &[], 8192));
    workers.extend(node("cpu-big", "10.0.1.3", &[], 65536));
    let model = ModelEstimate::explicit("m", 30000).with_layers(60).unwrap();
    let p = plan(&model, &workers, &PlanOptions::default()).unwrap();
    assert_llama_cpp_agrees(&p);
    // GPU: (6553-512)/500 = 12; gpu8's CPU: (3276-512)/500 = 5; then the biggest
    // CPU-only node takes the remaining 43; the small one is not needed.
    assert_eq!(p.rpc_endpoints, ["10.0.1.1:50052", "10.0.1.3:50052"]);
    assert_eq!(p.tensor_split, [5, 12, 44]);
    assert_eq!(p.host_cpu_layers, 0);
    assert_eq!(p.n_gpu_layers, 61);
}

#[test]
fn barely_fits_exactly_and_one_mib_less_does_not() {
    // 10 layers × 1000 MiB + 512 MiB allowance = 10512 MiB exactly.
    let model = ModelEstimate::explicit("exact", 10000)
        .with_layers(10)
        .unwrap();
    let worker =
        |budget| ClusterWorker::new("n", "10.0.0.1", 50052, WorkerKind::Gpu, "CUDA0", budget);
    let p = plan(&model, &[worker(10512)], &PlanOptions::default()).unwrap();
    assert_llama_cpp_agrees(&p);
    assert_eq!(p.devices[0].planned_mib, 10512);
    assert_eq!(p.devices[0].capacity_mib, 10512);
    assert_eq!(p.tensor_split, [11]);

    let err = plan(&model, &[worker(10511)], &PlanOptions::default()).unwrap_err();
    match &err {
        Error::DoesNotFit {
            short_by_mib,
            need_mib,
            available_mib,
            ..
        } => {
            // Nine layers fit; one whole layer (1000 MiB) is missing. The need includes the
            // llama-server host's buffers (512 MiB: an explicit size has no dimensions).
            assert_eq!(
                (*short_by_mib, *need_mib, *available_mib),
                (1000, 10000 + 512, 9000)
            );
        }
        other => panic!("{other}"),
    }
    expect!["model `exact` does not fit: short by 1000 MiB (10512 MiB needed, 9000 MiB usable); what would help: another node with at least 1512 MiB of budget (a GPU of 1890 MiB or more at a 20 % reserve); a smaller quantization: the weights are 10000 MiB; a quant about 1000 MiB smaller would fit"]
        .assert_eq(&err.to_string());
}

#[test]
fn does_not_fit_says_by_how_much_and_suggests_ctx() {
    let model = {
        // Every field is set below: `explicit` is only a starting point.
        let mut model_estimate = ModelEstimate::explicit("llama3.1:70b-q4", 40000 + 10240 + 512);
        model_estimate.weights_mib = 40000;
        model_estimate.kv_cache_mib = 10240;
        model_estimate.overhead_mib = 512;
        model_estimate.host_overhead_mib = 0;
        model_estimate.dims = None;
        model_estimate.layer_count = Some(80);
        model_estimate.per_layer_mib = Some(628.0);
        model_estimate.output_mib = 0;
        model_estimate.host_mib = 0;
        model_estimate.context_length = Some(32768);
        model_estimate.kv_bytes_per_token = Some(327_680);
        model_estimate.source = vramroute_alloc::EstimateSource::OllamaShow;
        model_estimate.notes = Vec::new();
        model_estimate
    };
    // GPUs: (19660 - 512) / 628 = 30 layers each; CPUs (4096 MiB RAM): 4 layers each.
    // 68 of 80 layers: short by 12 × 628 = 7536 MiB, less than the 10240 MiB KV cache.
    let mut workers = node("a", "10.0.0.1", &[24576], 4096);
    workers.extend(node("b", "10.0.0.2", &[24576], 4096));
    let err = plan(&model, &workers, &PlanOptions::default()).unwrap_err();
    expect!["model `llama3.1:70b-q4` does not fit: short by 7536 MiB (50752 MiB needed, 42704 MiB usable); what would help: another node with at least 8048 MiB of budget (a GPU of 10060 MiB or more at a 20 % reserve); a smaller context: ctx 8448 (the KV cache is 10240 MiB at ctx 32768); a smaller quantization: the weights are 40000 MiB; a quant about 7536 MiB smaller would fit"]
        .assert_eq(&err.to_string());
    // The suggested context does fit (KV shrinks per layer).
    let per_token_per_layer = 327_680.0 / 80.0;
    let smaller = {
        let mut model_estimate = model;
        model_estimate.per_layer_mib = Some(500.0 + per_token_per_layer * 8448.0 / 1_048_576.0);
        model_estimate.context_length = Some(8448);
        model_estimate
    };
    let p = plan(&smaller, &workers, &PlanOptions::default()).unwrap();
    assert_llama_cpp_agrees(&p);
}

#[test]
fn estimates_without_layers_cannot_be_planned() {
    let err = plan(
        &ModelEstimate::explicit("blob", 4000),
        &node("a", "10.0.0.1", &[24576], 16384),
        &PlanOptions::default(),
    )
    .unwrap_err();
    expect!["cannot split model `blob` across devices: the explicit size estimate has no layer count; read the model's GGUF header, ask an Ollama node for /api/show, or give the layer count"]
        .assert_eq(&err.to_string());
}

#[test]
fn local_gpus_come_after_rpc_devices_and_avoid_the_network_when_enough() {
    let local_gpu = |name: &str, budget| {
        let mut cluster_worker = ClusterWorker::new(
            "coordinator",
            String::new(),
            0,
            WorkerKind::Gpu,
            name,
            budget,
        );
        cluster_worker.local = true;
        cluster_worker
    };
    let model = sollol_table_estimate("llama3.1:8b").unwrap(); // 4700 MiB, 32 layers
    let mut workers = node("remote", "10.0.0.2", &[24576], 32768);
    workers.push(local_cpu(16000));
    workers.push(local_gpu("CUDA0", 8000));
    let p = plan(&model, &workers, &PlanOptions::default()).unwrap();
    assert_llama_cpp_agrees(&p);
    assert!(p.rpc_endpoints.is_empty());
    assert!(p.rpc_servers.is_empty());
    expect!["llama-server -ngl 33 --tensor-split 33"]
        .assert_eq(&p.llama_server_command().to_string());

    // A local GPU too small: the remote node joins, and its devices come first.
    workers.pop();
    workers.push(local_gpu("CUDA0", 2000));
    let p = plan(&model, &workers, &PlanOptions::default()).unwrap();
    assert_llama_cpp_agrees(&p);
    assert_eq!(p.rpc_endpoints, ["10.0.0.2:50052"]);
    let order: Vec<String> = p
        .devices
        .iter()
        .map(|d| format!("{}/{}", d.node_id, d.device_name))
        .collect();
    assert_eq!(order, ["remote/CPU", "remote/CUDA0", "coordinator/CUDA0"]);
    assert_eq!(p.devices[2].endpoint, None);
    // Remote: all 32 layers would fit; local: (2000 - 512) / 146.875 = 10 layers.
    // Proportional to 32 : 10 → 24.4 and 7.6 → 24 and 8 (largest remainder), + output.
    assert_eq!(p.tensor_split, [0, 24, 9]);
}

#[test]
fn live_free_memory_caps_the_budget() {
    let model = ModelEstimate::explicit("m", 8000).with_layers(16).unwrap();
    let mut a = node("a", "10.0.0.1", &[16384], 16384);
    let mut b = node("b", "10.0.0.2", &[12288], 16384);
    // a's GPU is busy: 2000 MiB free.
    a[1].free_mib = Some(2000);
    b[1].free_mib = Some(12000);
    let workers: Vec<ClusterWorker> = a.into_iter().chain(b).collect();
    let p = plan(&model, &workers, &PlanOptions::default()).unwrap();
    assert_llama_cpp_agrees(&p);
    assert_eq!(p.rpc_endpoints, ["10.0.0.2:50052"]);
    // Without live capping, the bigger GPU (a) wins.
    let opts = {
        let mut plan_options = PlanOptions::default();
        plan_options.use_live_free = false;
        plan_options
    };
    let p = plan(&model, &workers, &opts).unwrap();
    assert_eq!(p.rpc_endpoints, ["10.0.0.1:50052"]);
    // And a capped device is called out.
    let mut c = node("c", "10.0.0.3", &[16384], 16384);
    c[1].free_mib = Some(9000);
    let p = plan(&model, &c, &PlanOptions::default()).unwrap();
    assert!(
        p.reasons
            .iter()
            .any(|r| r.ends_with("(8512 of 9000 MiB, capped by live free memory)")),
        "{:?}",
        p.reasons
    );
}

#[test]
fn output_layer_needs_room_on_the_last_device() {
    // Two equal GPUs; the output head (2000 MiB) must fit where the last layer is.
    let model = {
        // Every field is set below: `explicit` is only a starting point.
        let mut m = ModelEstimate::explicit("big-vocab", 0);
        m.weights_mib = 10000;
        m.kv_cache_mib = 0;
        m.overhead_mib = 512;
        m.host_overhead_mib = 0;
        m.dims = None;
        m.layer_count = Some(20);
        m.per_layer_mib = Some(400.0);
        m.output_mib = 2000;
        m.host_mib = 1000;
        m.context_length = Some(4096);
        m.kv_bytes_per_token = None;
        m.source = vramroute_alloc::EstimateSource::Gguf;
        m.notes = Vec::new();
        m
    };
    let mut workers = node("a", "10.0.0.1", &[8192], 8192);
    workers.extend(node("b", "10.0.0.2", &[8192], 8192));
    let p = plan(&model, &workers, &PlanOptions::default()).unwrap();
    assert_llama_cpp_agrees(&p);
    // Each GPU: (6553 - 512) / 400 = 15 layers; beside the output head, the last one
    // has room for (6553 - 512 - 2000) / 400 = 10. Proportional to 15 : 10 → 12 + 8.
    assert_eq!(p.tensor_split, [0, 12, 0, 9]);
    assert_eq!(p.devices[3].planned_mib, 8 * 400 + 2000 + 512);
    // With a 3000 MiB head: 15 : 7 → 13.6 + 6.4 → 14 + 6 (largest remainder).
    let mut bigger = model.clone();
    bigger.output_mib = 3000;
    let p = plan(&bigger, &workers, &PlanOptions::default()).unwrap();
    assert_llama_cpp_agrees(&p);
    assert_eq!(p.tensor_split, [0, 14, 0, 7]);
    assert_eq!(p.devices[3].planned_mib, 6 * 400 + 3000 + 512);
}

#[test]
fn too_many_devices_for_llama_cpp() {
    // 20 small single-GPU nodes: 40 devices (CPU + GPU each) > 16.
    let workers: Vec<ClusterWorker> = (0..20)
        .flat_map(|i| node(&format!("n{i:02}"), &format!("10.0.2.{i}"), &[4096], 4096))
        .collect();
    let model = ModelEstimate::explicit("m", 40000).with_layers(80).unwrap();
    let err = plan(&model, &workers, &PlanOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("--tensor-split takes at most 15 devices"),
        "{err}"
    );
}

#[test]
fn plans_are_deterministic_whatever_the_input_order() {
    let model = sollol_table_estimate("llama3.1:70b").unwrap();
    let workers = sollol_cluster();
    let p1 = plan(&model, &workers, &PlanOptions::default()).unwrap();
    let mut reversed: Vec<Vec<ClusterWorker>> = Vec::new();
    for w in workers {
        match reversed.last_mut() {
            Some(group) if group[0].host == w.host => group.push(w),
            _ => reversed.push(vec![w]),
        }
    }
    reversed.reverse();
    let workers: Vec<ClusterWorker> = reversed.into_iter().flatten().collect();
    let p2 = plan(&model, &workers, &PlanOptions::default()).unwrap();
    assert_eq!(p1.llama_server_args(), p2.llama_server_args());
    assert_eq!(p1.rpc_servers, p2.rpc_servers);
}

#[test]
fn invalid_inputs_are_rejected() {
    let model = ModelEstimate::explicit("m", 1000).with_layers(10).unwrap();
    let mut dup = node("a", "10.0.0.1", &[8192], 8192);
    dup.push(dup[1].clone());
    assert!(matches!(
        plan(&model, &dup, &PlanOptions::default()),
        Err(Error::InvalidInput(_))
    ));
    let two_local = vec![local_cpu(1000), local_cpu(2000)];
    assert!(matches!(
        plan(&model, &two_local, &PlanOptions::default()),
        Err(Error::InvalidInput(_))
    ));
    let mut no_addr = node("a", "", &[8192], 8192);
    no_addr.truncate(1);
    assert!(matches!(
        plan(&model, &no_addr, &PlanOptions::default()),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn everything_on_the_local_cpu_when_there_is_nothing_else() {
    let model = ModelEstimate::explicit("m", 1000).with_layers(10).unwrap();
    let p = plan(&model, &[local_cpu(4000)], &PlanOptions::default()).unwrap();
    assert_eq!(p.host_cpu_layers, 10);
    expect!["llama-server -ngl 0"].assert_eq(&p.llama_server_command().to_string());
}

#[test]
fn random_clusters_always_agree_with_llama_cpp() {
    // A deterministic sweep over cluster shapes: every plan must map layers exactly
    // as llama.cpp will, and never exceed a device.
    let mut state: u64 = 42;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let mut planned = 0;
    for round in 0..300 {
        let nodes = 1 + next(6);
        let mut workers = Vec::new();
        for n in 0..nodes {
            let gpus: Vec<u64> = (0..next(3)).map(|_| 2048 + 1024 * next(24)).collect();
            workers.extend(node(
                &format!("n{n}"),
                &format!("10.9.{round}.{n}"),
                &gpus,
                4096 + 4096 * next(16),
            ));
        }
        if next(2) == 0 {
            workers.push(local_cpu(2048 + 1024 * next(16)));
        }
        let layers = 8 + u32::try_from(next(120)).unwrap();
        let mut model = ModelEstimate::explicit("m", 1000 + 1000 * next(60))
            .with_layers(layers)
            .unwrap();
        model.output_mib = next(1500);
        model.host_mib = next(800);
        match plan(&model, &workers, &PlanOptions::default()) {
            Ok(p) => {
                assert_llama_cpp_agrees(&p);
                planned += 1;
            }
            Err(Error::DoesNotFit { short_by_mib, .. }) => assert!(short_by_mib >= 1),
            Err(other) => panic!("round {round}: {other}"),
        }
    }
    assert!(planned > 100, "only {planned} plans");
}

#[test]
fn other_backends_name_their_devices_in_rpc_commands() {
    let gpus = vec![gpu(Vendor::Amd, 0, "AMD Radeon PRO W7900", Some(49136))];
    let offer = NodeOffer::from_hardware(&gpus, &host(65536), &ReserveConfig::default()).unwrap();
    let workers = offer.cluster_workers("amd", "10.0.3.1", 50052, GgmlBackend::Hip, false);
    let model = sollol_table_estimate("mixtral:8x7b").unwrap();
    let p = plan(&model, &workers, &PlanOptions::default()).unwrap();
    assert_llama_cpp_agrees(&p);
    expect!["ggml-rpc-server --host 10.0.3.1 --port 50052 --device CPU,ROCm0"]
        .assert_eq(&p.rpc_servers[0].command.to_string());
}

#[test]
fn absurd_sizes_are_errors_not_overflows() {
    let workers = node("a", "10.0.0.1", &[8192], 8192);
    let mut model = ModelEstimate::explicit("m", 1000).with_layers(10).unwrap();
    model.output_mib = u64::MAX;
    assert!(matches!(
        plan(&model, &workers, &PlanOptions::default()),
        Err(Error::InvalidInput(_))
    ));
    let model = ModelEstimate::explicit("m", 1000).with_layers(10).unwrap();
    let opts = {
        let mut plan_options = PlanOptions::default();
        plan_options.per_device_overhead_mib = Some(u64::MAX);
        plan_options
    };
    assert!(matches!(
        plan(&model, &workers, &opts),
        Err(Error::InvalidInput(_))
    ));
    // Huge budgets are fine: they just fit.
    let mut rich = workers.clone();
    for w in &mut rich {
        w.budget_mib = u64::MAX;
    }
    let p = plan(&model, &rich, &PlanOptions::default()).unwrap();
    assert_llama_cpp_agrees(&p);
    // A per-layer size at the plausibility limit fails cleanly.
    let mut huge = ModelEstimate::explicit("m", 1000)
        .with_layers(16_384)
        .unwrap();
    huge.per_layer_mib = Some(1e9);
    huge.context_length = Some(u32::MAX);
    huge.kv_bytes_per_token = Some(1);
    assert!(matches!(
        plan(&huge, &workers, &PlanOptions::default()),
        Err(Error::DoesNotFit { .. })
    ));
}
