//! Properties over random clusters: a chosen GPU fits, stale nodes are never chosen, the
//! decision does not depend on input order, `explain` agrees with `route`.

use proptest::prelude::*;
use vramroute_router::{
    FitKind, GpuSpec, LoadedModel, NodeSpec, NodeStatus, Policy, Request, Snapshot, SnapshotConfig,
    Target,
};

const MODELS: [&str; 3] = ["llama3.1:8b", "mistral:7b", "nomic-embed-text"];

fn node() -> impl Strategy<Value = NodeSpec> {
    (
        proptest::collection::vec((0u64..40_000, 0u32..=100, any::<bool>()), 0..5),
        (
            proptest::option::of(0.0f64..100.0),
            proptest::option::of(0.0f64..4000.0),
            proptest::option::of(0.0f64..=1.0),
        ),
        (
            0u32..5,
            proptest::option::of(1u32..96),
            0u64..60_000,
            any::<bool>(),
        ),
        (
            proptest::option::of(0usize..3),
            proptest::option::of(0u64..100_000),
            any::<u8>(),
        ),
    )
        .prop_map(
            |(gpus, (load, lat, sr), (active, cpus, age, healthy), (model, ram, misc))| {
                let mut n = NodeSpec::new("");
                for (i, (total, pct, known)) in gpus.iter().enumerate() {
                    let free = total * u64::from(*pct) / 100;
                    n.gpus
                        .push(GpuSpec::new(i as u32 * 2, *total, known.then_some(free)));
                }
                n.cpu_load_percent = load;
                n.latency_ms = lat;
                n.success_rate = sr;
                n.active_requests = active;
                n.cpu_count = cpus;
                n.report_age_ms = age;
                n.healthy = healthy || misc % 3 != 0;
                n.ram_total_mib = ram.map(|r| r + 1);
                n.ram_free_mib = ram.map(|r| r / 2);
                n.priority = (misc % 7 == 0).then_some(0);
                if misc % 5 == 0 {
                    n.labels.push("fast".into());
                }
                if let Some(m) = model {
                    let on_gpu = !n.gpus.is_empty() && misc % 2 == 0;
                    let mut lm = LoadedModel::new(MODELS[m], 4_000, if on_gpu { 4_000 } else { 0 });
                    if on_gpu && misc % 4 == 0 {
                        lm.gpu = Some(n.gpus[0].index);
                    }
                    n.loaded_models.push(lm);
                }
                n
            },
        )
}

fn cluster() -> impl Strategy<Value = Vec<NodeSpec>> {
    proptest::collection::vec(node(), 0..30).prop_map(|mut nodes| {
        for (i, n) in nodes.iter_mut().enumerate() {
            n.id = format!("10.0.0.{i}:11434");
        }
        nodes
    })
}

#[derive(Debug, Clone)]
struct Req {
    model: usize,
    size: u64,
    needs_gpu: bool,
    allow_cpu: bool,
    multi: bool,
    priority: u8,
    prefer_fast: bool,
}

fn req() -> impl Strategy<Value = Req> {
    (
        0usize..3,
        0u64..40_000,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u8..=12,
        any::<bool>(),
    )
        .prop_map(
            |(model, size, needs_gpu, allow_cpu, multi, priority, prefer_fast)| Req {
                model,
                size,
                needs_gpu,
                allow_cpu,
                multi,
                priority,
                prefer_fast,
            },
        )
}

fn request(r: &Req) -> Request<'static> {
    let req = Request::new(MODELS[r.model], r.size)
        .needs_gpu(r.needs_gpu)
        .allow_cpu(r.allow_cpu)
        .allow_multi_gpu(r.multi)
        .priority(r.priority);
    if r.prefer_fast {
        req.prefer_labels(&["fast"])
    } else {
        req
    }
}

fn policies() -> [Policy; 3] {
    [Policy::default(), Policy::BinPack, Policy::Spread]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn chosen_gpu_fits_and_stale_is_never_chosen(nodes in cluster(), r in req(), reserve in proptest::collection::vec((0usize..30, 0u64..30_000), 0..3)) {
        let s = Snapshot::build(nodes, &SnapshotConfig::default()).expect("valid");
        for (ni, mib) in reserve {
            if let Some(n) = s.nodes().get(ni) {
                let gpu = n.gpus.first().map(|g| g.index);
                let idx = s.node_index(&n.id).expect("present");
                s.reserve(idx, gpu, mib).expect("in range");
            }
        }
        let req = request(&r);
        for policy in policies() {
            let Ok(d) = s.route(&policy, &req) else { continue };
            let spec = s.node(d.node);
            prop_assert!(matches!(s.node_status(d.node).expect("in range"), NodeStatus::Eligible));
            prop_assert!(spec.healthy && spec.report_age_ms <= s.config().stale_after_ms);
            match d.fit {
                FitKind::SingleGpu => {
                    let (usable, free) = s.gpu_capacity_mib(d.node, d.gpu.expect("gpu")).expect("gpu").expect("valid");
                    prop_assert!(r.size <= usable && r.size <= free, "{} does not fit {usable}/{free}", r.size);
                    prop_assert_eq!(d.target, Target::Gpu);
                }
                FitKind::AcrossGpus { gpu_count } => {
                    prop_assert!(r.multi && gpu_count >= 2);
                    let total: u64 = spec.gpus.iter().map(|g| {
                        let (usable, free) = s.gpu_capacity_mib(d.node, g.index).expect("gpu").expect("valid");
                        usable.min(free)
                    }).sum();
                    prop_assert!(r.size <= total);
                }
                FitKind::AlreadyLoaded => {
                    prop_assert!(spec.loaded_models.iter().any(|m| m.name == MODELS[r.model]));
                }
                FitKind::CpuNoGpu | FitKind::CpuGpuTooSmall => {
                    prop_assert!(r.allow_cpu);
                    prop_assert_eq!(d.target, Target::Cpu);
                }
            }
        }
    }

    #[test]
    fn decision_is_independent_of_input_order(nodes in cluster(), r in req(), keys in proptest::collection::vec(any::<u32>(), 30)) {
        let cfg = SnapshotConfig::default();
        let a = Snapshot::build(nodes.clone(), &cfg).expect("valid");
        let mut shuffled: Vec<(u32, NodeSpec)> = nodes.into_iter().zip(keys.iter().copied()).map(|(n, k)| (k, n)).collect();
        shuffled.sort_by_key(|(k, _)| *k);
        let shuffled: Vec<NodeSpec> = shuffled
            .into_iter()
            .map(|(k, mut n)| {
                if k % 2 == 1 {
                    n.gpus.reverse();
                }
                n
            })
            .collect();
        let b = Snapshot::build(shuffled, &cfg).expect("valid");
        let req = request(&r);
        for policy in policies() {
            let da = a.route(&policy, &req);
            let db = b.route(&policy, &req);
            match (da, db) {
                (Ok(x), Ok(y)) => {
                    prop_assert_eq!(&a.node(x.node).id, &b.node(y.node).id);
                    prop_assert_eq!((x.gpu, x.target, x.fit, x.cpu_fallback), (y.gpu, y.target, y.fit, y.cpu_fallback));
                    prop_assert_eq!(x.score.to_bits(), y.score.to_bits());
                }
                (Err(x), Err(y)) => prop_assert_eq!(x, y),
                (x, y) => prop_assert!(false, "{x:?} vs {y:?}"),
            }
        }
    }

    #[test]
    fn explain_agrees_with_route(nodes in cluster(), r in req()) {
        let s = Snapshot::build(nodes, &SnapshotConfig::default()).expect("valid");
        let req = request(&r);
        for policy in policies() {
            let d = s.route(&policy, &req);
            let e = s.explain(&policy, &req);
            prop_assert_eq!(e.decision, d.ok());
            prop_assert_eq!(e.candidates.len() + e.rejected.len(), s.len());
            if let Ok(d) = d {
                prop_assert_eq!(e.candidates[0].node, d.node);
                prop_assert_eq!(e.candidates[0].score.to_bits(), d.score.to_bits());
            }
        }
    }
}
