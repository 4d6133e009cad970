//! Placement properties: monotonicity (more budget or one more worker never turns a fitting
//! plan into a failing one), the 15-entry `--tensor-split` limit, the measured model's
//! buffers through a whole plan, and the 3 × 750 MiB regression.

use proptest::prelude::*;
use vramroute_alloc::{
    estimate_from_gguf, plan, ClusterWorker, Error, ModelEstimate, Plan, PlanOptions, WorkerKind,
    MAX_TENSOR_SPLIT,
};

use crate::estimate::{measured_model_header, MEASURED};
use crate::plan::assert_llama_cpp_agrees;

fn remote(node: usize, kind: WorkerKind, name: &str, budget_mib: u64) -> ClusterWorker {
    ClusterWorker::new(
        format!("n{node}"),
        format!("10.7.0.{node}"),
        50052,
        kind,
        name,
        budget_mib,
    )
}

fn cpu_nodes(budgets: &[u64]) -> Vec<ClusterWorker> {
    budgets
        .iter()
        .enumerate()
        .map(|(i, &b)| remote(i, WorkerKind::Cpu, "CPU", b))
        .collect()
}

#[test]
fn three_cpu_workers_of_750_mib_fit_like_723_mib_ones() {
    // The case: the measured 24-layer model at ctx 4096 with the old fixed
    // 512 MiB compute allowance. 723 MiB workers take 10 layers each (10/10/4 + output);
    // 750 MiB workers take 12, so filling in order left 12/12/0, the output layer found no
    // room beside layer 23, and the planner gave up "short by 34 MiB" while the third
    // worker stood empty.
    let model = estimate_from_gguf(&measured_model_header(false), 4096).unwrap();
    let mut opts = PlanOptions::default();
    opts.per_device_overhead_mib = Some(512);
    for budget in [723, 750, 800, 2000] {
        let p = plan(&model, &cpu_nodes(&[budget; 3]), &opts)
            .unwrap_or_else(|e| panic!("{budget} MiB workers: {e}"));
        assert_llama_cpp_agrees(&p);
        assert_eq!(p.n_gpu_layers, 25, "{budget}: everything offloaded");
    }
    let p = plan(&model, &cpu_nodes(&[750; 3]), &opts).unwrap();
    assert_eq!(p.tensor_split, [12, 11, 2]);
    assert!(p.devices[2].holds_output);
}

#[test]
fn measured_model_on_three_cpu_rpc_servers_plans_the_measured_buffers() {
    // SPEC.md's set-up: 3 CPU rpc-servers, llama-server defaults. Every device that holds
    // layers carries a compute buffer within [measured, 1.25 × measured + 64 MiB], and so
    // does the llama-server host.
    let info = measured_model_header(false);
    for (ctx, device, host) in MEASURED {
        let e = estimate_from_gguf(&info, ctx).unwrap();
        let per_layer = e.per_layer_mib.unwrap();
        // Room for 9 layers each (and the output on the last): all three are used.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "small"
        )]
        let budget = e.overhead_mib + (9.0 * per_layer).ceil() as u64 + e.output_mib + 1;
        let p = plan(&e, &cpu_nodes(&[budget; 3]), &PlanOptions::default()).unwrap();
        assert_llama_cpp_agrees(&p);
        let used: Vec<_> = p.devices.iter().filter(|d| d.layers > 0).collect();
        assert_eq!(used.len(), 3, "ctx {ctx}: {:?}", p.tensor_split);
        for d in used {
            let layers = f64::from(d.layers) * per_layer;
            let output = if d.holds_output { e.output_mib } else { 0 };
            #[allow(clippy::cast_precision_loss, reason = "small")]
            let compute = d.planned_mib as f64 - layers - output as f64;
            assert!(
                compute >= device - 1.0 && compute <= 1.25 * device + 64.0,
                "ctx {ctx}: {} plans {compute:.1} MiB of compute, measured {device}",
                d.node_id
            );
        }
        #[allow(clippy::cast_precision_loss, reason = "small")]
        let host_buffers = (p.host_cpu_mib - e.host_mib) as f64;
        assert!(
            host_buffers >= host && host_buffers <= 1.25 * host + 64.0,
            "ctx {ctx}: host buffers {host_buffers} MiB, measured {host}"
        );
    }
}

#[test]
fn tensor_split_never_has_16_entries() {
    // 8 nodes of CPU + GPU = 16 devices; the model needs all 8 GPUs: llama.cpp would
    // reject the 16-entry split, so the plan must fail and say why.
    let mut workers = Vec::new();
    for n in 0..8 {
        workers.push(remote(n, WorkerKind::Cpu, "CPU", 100));
        workers.push(remote(n, WorkerKind::Gpu, "CUDA0", 1512));
    }
    let model = ModelEstimate::explicit("m", 8000).with_layers(8).unwrap();
    let err = plan(&model, &workers, &PlanOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("--tensor-split takes at most 15"),
        "{err}"
    );
    // Seven nodes suffice for 7 layers: 14 entries.
    let model = ModelEstimate::explicit("m", 7000).with_layers(7).unwrap();
    let p = plan(&model, &workers, &PlanOptions::default()).unwrap();
    assert_eq!(p.tensor_split.len(), 14);
    // Asking for more than llama.cpp takes is capped.
    let mut opts = PlanOptions::default();
    opts.max_devices = 64;
    let model = ModelEstimate::explicit("m", 8000).with_layers(8).unwrap();
    assert!(plan(&model, &workers, &opts).is_err());
}

/// A random cluster: up to 4 remote nodes (a CPU and up to 2 GPUs each: at most 12
/// devices, so one more node keeps it within llama.cpp's 15) and maybe a local CPU.
fn cluster() -> impl Strategy<Value = Vec<ClusterWorker>> {
    (
        proptest::collection::vec(
            (0u64..6000, proptest::collection::vec(0u64..12_000, 0..=2)),
            1..=4,
        ),
        proptest::option::of(0u64..6000),
    )
        .prop_map(|(nodes, local)| {
            let mut out = Vec::new();
            for (n, (ram, gpus)) in nodes.into_iter().enumerate() {
                out.push(remote(n, WorkerKind::Cpu, "CPU", ram));
                for (g, vram) in gpus.into_iter().enumerate() {
                    out.push(remote(n, WorkerKind::Gpu, &format!("CUDA{g}"), vram));
                }
            }
            if let Some(budget_mib) = local {
                let mut w = ClusterWorker::new(
                    "coordinator",
                    String::new(),
                    0,
                    WorkerKind::Cpu,
                    "CPU",
                    budget_mib,
                );
                w.local = true;
                out.push(w);
            }
            out
        })
}

fn model() -> impl Strategy<Value = ModelEstimate> {
    (1u32..=80, 100u64..30_000, 0u64..1500, 0u64..800, 0u64..700).prop_map(
        |(layers, mib, output, host, compute)| {
            let mut m = ModelEstimate::explicit("m", mib)
                .with_layers(layers)
                .expect("1 to 80 layers are plausible");
            m.output_mib = output;
            m.host_mib = host;
            m.overhead_mib = compute;
            m
        },
    )
}

fn check(p: &Plan) {
    assert!(
        p.tensor_split.len() <= MAX_TENSOR_SPLIT,
        "{:?}",
        p.tensor_split
    );
    assert!(p.devices.len() <= MAX_TENSOR_SPLIT);
    assert_llama_cpp_agrees(p);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn more_budget_or_one_more_worker_never_breaks_a_fitting_plan(
        workers in cluster(),
        m in model(),
        pick in any::<prop::sample::Index>(),
        extra_mib in 1u64..8000,
        new_ram in 0u64..6000,
        new_gpu in proptest::option::of(0u64..12_000),
    ) {
        let opts = PlanOptions::default();
        let Ok(p) = plan(&m, &workers, &opts) else {
            return Ok(());
        };
        check(&p);

        let mut richer = workers.clone();
        let i = pick.index(richer.len());
        richer[i].budget_mib += extra_mib;
        match plan(&m, &richer, &opts) {
            Ok(p) => check(&p),
            Err(e) => prop_assert!(false, "+{extra_mib} MiB on worker {i} broke the plan: {e}"),
        }

        let mut more = workers.clone();
        more.push(remote(9, WorkerKind::Cpu, "CPU", new_ram));
        if let Some(vram) = new_gpu {
            more.push(remote(9, WorkerKind::Gpu, "CUDA0", vram));
        }
        match plan(&m, &more, &opts) {
            Ok(p) => check(&p),
            Err(e) => prop_assert!(false, "one more node broke the plan: {e}"),
        }
    }

    #[test]
    fn no_plan_has_a_split_longer_than_15(
        nodes in proptest::collection::vec((0u64..4000, 0usize..=3, 500u64..6000), 1..=12),
        m in model(),
    ) {
        let mut workers = Vec::new();
        for (n, (ram, gpus, vram)) in nodes.into_iter().enumerate() {
            workers.push(remote(n, WorkerKind::Cpu, "CPU", ram));
            for g in 0..gpus {
                workers.push(remote(n, WorkerKind::Gpu, &format!("CUDA{g}"), vram));
            }
        }
        match plan(&m, &workers, &PlanOptions::default()) {
            Ok(p) => check(&p),
            Err(Error::DoesNotFit { short_by_mib, .. }) => prop_assert!(short_by_mib >= 1),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }
}
