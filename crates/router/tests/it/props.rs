//! Properties over random clusters: a chosen GPU fits, stale nodes are never chosen, no
//! route is refused while some node could take the model, the decision does not depend
//! on input order, `explain` agrees with the exhaustive scorer.

use proptest::prelude::*;
use vramroute_router::{
    same_model, FitKind, GpuSpec, NoRoute, NodeSpec, NodeStatus, Policy, Request, ResidentModel,
    Snapshot, SnapshotConfig, Target,
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
                    let mut lm =
                        ResidentModel::new(MODELS[m], 4_000, if on_gpu { 4_000 } else { 0 });
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
            n.id = format!("10.0.0.{i}:11434").into();
        }
        nodes
    })
}

/// Ollama's spellings of one model: as written, upper case, `library/`-prefixed, and for
/// the untagged name of a `:latest` model, tagged.
fn spell(model: usize, spelling: u8) -> String {
    let m = MODELS[model];
    match spelling % 4 {
        0 => m.to_owned(),
        1 => m.to_ascii_uppercase(),
        2 => format!("library/{m}"),
        _ if m.contains(':') => m.to_owned(),
        _ => format!("{m}:latest"),
    }
}

#[derive(Debug, Clone)]
struct Req {
    model: usize,
    spelling: u8,
    size: u64,
    needs_gpu: bool,
    allow_cpu: bool,
    multi: bool,
    priority: u8,
    prefer_fast: bool,
}

fn req() -> impl Strategy<Value = Req> {
    (
        (0usize..3, any::<u8>()),
        0u64..40_000,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u8..=12,
        any::<bool>(),
    )
        .prop_map(
            |((model, spelling), size, needs_gpu, allow_cpu, multi, priority, prefer_fast)| Req {
                model,
                spelling,
                size,
                needs_gpu,
                allow_cpu,
                multi,
                priority,
                prefer_fast,
            },
        )
}

fn request<'a>(r: &Req, model: &'a str) -> Request<'a> {
    let req = Request::new(model, r.size)
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

/// Checks that `no` was the right answer: no eligible node could take the model under the
/// fit rules (warm copy, one GPU with size ≤ usable and ≤ free, a split where allowed, RAM
/// where allowed; unknown RAM counts as enough), and the variant names the right case.
fn justified(s: &Snapshot, r: &Req, model: &str, no: NoRoute) -> Result<(), TestCaseError> {
    if s.is_empty() {
        prop_assert_eq!(no, NoRoute::EmptySnapshot);
        return Ok(());
    }
    let cfg = s.config();
    let mut eligible = 0;
    for spec in s.nodes() {
        let ni = s.node_index(&spec.id).expect("present");
        if !matches!(s.node_status(ni).expect("in range"), NodeStatus::Eligible) {
            continue;
        }
        eligible += 1;
        let warm = spec
            .loaded_models
            .iter()
            .find(|m| same_model(&m.name, model));
        prop_assert!(
            !warm.is_some_and(|m| m.vram_mib.is_none_or(|v| v > 0) || r.allow_cpu),
            "{} holds {model} warm",
            spec.id
        );
        let caps: Vec<(u64, u64)> = spec
            .gpus
            .iter()
            .map(|g| {
                s.gpu_capacity_mib(ni, g.index)
                    .expect("gpu")
                    .expect("valid")
            })
            .collect();
        for (g, &(usable, free)) in spec.gpus.iter().zip(&caps) {
            prop_assert!(
                !(r.size <= usable && r.size <= free),
                "{} GPU {} fits {}: usable {usable}, free {free}",
                spec.id,
                g.index,
                r.size
            );
        }
        let split: u64 = caps.iter().map(|&(u, f)| u.min(f)).sum();
        prop_assert!(
            !(r.multi && caps.len() >= 2 && r.size <= split),
            "{} fits {} across its GPUs ({split})",
            spec.id,
            r.size
        );
        if r.allow_cpu {
            let usable = spec
                .ram_total_mib
                .map(|t| (t as f64 * cfg.ram_safety_margin).floor() as u64);
            let reserved = s.reserved_mib(ni, None).expect("ram");
            let free = spec.ram_free_mib.map(|f| f.saturating_sub(reserved));
            prop_assert!(
                !(usable.is_none_or(|u| r.size <= u) && free.is_none_or(|f| r.size <= f)),
                "{} fits {} in RAM (usable {usable:?}, free {free:?})",
                spec.id,
                r.size
            );
        }
    }
    if eligible == 0 {
        prop_assert_eq!(no, NoRoute::NoEligibleNode);
    } else {
        prop_assert_eq!(no, NoRoute::NothingFits { size_mib: r.size });
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

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
        let model = spell(r.model, r.spelling);
        let req = request(&r, &model);
        for policy in policies() {
            let d = match s.route(&policy, &req) {
                Ok(d) => d,
                Err(e) => {
                    justified(&s, &r, &model, e)?;
                    continue;
                }
            };
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
                    prop_assert!(spec.loaded_models.iter().any(|m| same_model(&m.name, &model)));
                }
                FitKind::CpuNoGpu | FitKind::CpuGpuTooSmall => {
                    prop_assert!(r.allow_cpu);
                    prop_assert_eq!(d.target, Target::Cpu);
                }
                other => prop_assert!(false, "a fit kind this property does not know: {:?}", other),
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
        let model = spell(r.model, r.spelling);
        let req = request(&r, &model);
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
    fn explain_agrees_with_the_exhaustive_scorer(nodes in cluster(), r in req(), reserve in proptest::collection::vec((0usize..30, 0u64..30_000), 0..3)) {
        let s = Snapshot::build(nodes, &SnapshotConfig::default()).expect("valid");
        for (ni, mib) in reserve {
            if let Some(n) = s.nodes().get(ni) {
                let gpu = n.gpus.first().map(|g| g.index);
                let idx = s.node_index(&n.id).expect("present");
                s.reserve(idx, gpu, mib).expect("in range");
            }
        }
        let model = spell(r.model, r.spelling);
        let req = request(&r, &model);
        for policy in policies() {
            let full = s.route_exhaustive(&policy, &req);
            let e = s.explain(&policy, &req);
            prop_assert_eq!(e.decision, full.ok(), "{}", e);
            prop_assert_eq!(e.no_route, full.err());
            prop_assert_eq!(e.candidates.len() + e.rejected.len(), s.len());
            match full {
                Ok(d) => {
                    prop_assert_eq!(e.cpu_fallback, d.cpu_fallback);
                    prop_assert_eq!(e.node_id.as_deref(), Some(s.node(d.node).id.as_str()));
                    prop_assert_eq!(e.candidates[0].node, d.node);
                    prop_assert_eq!(e.candidates[0].score.to_bits(), d.score.to_bits());
                }
                Err(_) => prop_assert!(e.node_id.is_none()),
            }
        }
    }
}
