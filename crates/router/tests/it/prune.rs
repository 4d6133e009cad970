//! The pruned `sollol` search (`src/prune.rs`) must return exactly what scoring every node
//! returns, ties and CPU-fallback mode included, whatever reservations were made and by
//! whichever public path, and whatever spelling the request uses for a loaded model.

use std::sync::Arc;

use proptest::prelude::*;
use vramroute_router::{
    Complexity, GpuSpec, NodeIndex, NodeSpec, Policy, Request, Reservation, ResidentModel, Router,
    Snapshot, SnapshotConfig, SollolParams,
};

/// Models loaded on nodes (canonical and not), and one loaded nowhere.
const MODELS: [&str; 5] = [
    "llama3.1:8b",
    "mistral:7b",
    "llama3.1:latest",
    "qwen2.5-coder:3b",
    "phi3:mini",
];

/// One of Ollama's spellings of `MODELS[model]` (or, for the last variant, a different
/// name when the model is tagged: `x:8b:latest` is no Ollama name).
fn spell(model: usize, spelling: u8) -> String {
    let m = MODELS[model % MODELS.len()];
    match spelling % 6 {
        0 => m.to_owned(),
        1 => m.to_ascii_uppercase(),
        2 => format!("library/{m}"),
        3 => format!("registry.ollama.ai/library/{}", m.replace("llama", "LLaMA")),
        4 => m.strip_suffix(":latest").unwrap_or(m).to_owned(),
        _ => format!("{m}:latest"),
    }
}

fn node() -> impl Strategy<Value = NodeSpec> {
    (
        proptest::collection::vec((1u64..30_000, 0u32..=100), 0..4),
        proptest::option::of(0.0f64..100.0),
        proptest::option::of(0.0f64..3000.0),
        proptest::option::of(0.5f64..1.0),
        0u32..4,
        proptest::option::of(1u32..64),
        0u8..8,
        (any::<bool>(), 0u64..40_000),
        proptest::collection::vec((0usize..4, any::<u8>(), any::<bool>(), any::<bool>()), 0..3),
    )
        .prop_map(
            |(gpus, load, lat, sr, active, cpus, misc, (healthy, age), loaded)| {
                let mut n = NodeSpec::new("");
                for (i, (total, pct)) in gpus.iter().enumerate() {
                    n.gpus.push(GpuSpec::new(
                        i as u32,
                        *total,
                        Some(total * u64::from(*pct) / 100),
                    ));
                }
                n.cpu_load_percent = load;
                n.latency_ms = lat;
                n.success_rate = sr;
                n.active_requests = active;
                n.cpu_count = cpus;
                n.ram_total_mib = Some(16_384);
                n.ram_free_mib = Some(8_192 + u64::from(misc) * 1000);
                n.healthy = healthy || misc % 2 == 0;
                n.report_age_ms = age;
                n.priority = (misc == 3).then_some(0);
                for (model, spelling, on_gpu, pinned) in loaded {
                    let on_gpu = on_gpu && !n.gpus.is_empty();
                    let mut lm = ResidentModel::new(
                        spell(model, spelling),
                        4_100,
                        if on_gpu { 4_100 } else { 0 },
                    );
                    if on_gpu && pinned {
                        lm.gpu = Some(n.gpus[usize::from(spelling) % n.gpus.len()].index);
                    }
                    n.loaded_models.push(lm);
                }
                n
            },
        )
}

/// A request in the pruning regime (no affinity, no label or node filters).
#[derive(Debug, Clone)]
struct Req {
    model: usize,
    spelling: u8,
    size: u64,
    priority: u8,
    complexity: u8,
    needs_gpu: bool,
    allow_cpu: bool,
    multi: bool,
}

fn req() -> impl Strategy<Value = Req> {
    (
        (0usize..MODELS.len(), any::<u8>()),
        // Small models often: below the overwhelmed threshold (2000 MiB) the bound has
        // its subtle case.
        prop_oneof![0u64..2_500, 0u64..20_000],
        0u8..=10,
        0u8..3,
        (any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |((model, spelling), size, priority, complexity, (needs_gpu, allow_cpu, multi))| Req {
                model,
                spelling,
                size,
                priority,
                complexity,
                needs_gpu,
                allow_cpu,
                multi,
            },
        )
}

/// How much to reserve: a number, or what leaves that much free where it goes (so that
/// reservations often push a GPU just under SOLLOL's "overwhelmed" threshold, where a
/// reserved node's score can rise above its static bound).
#[derive(Debug, Clone, Copy)]
enum Amount {
    Mib(u64),
    Leave(u64),
}

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        (0u64..20_000).prop_map(Amount::Mib),
        (0u64..2_500).prop_map(Amount::Leave),
    ]
}

impl Amount {
    /// MiB to reserve where `free_mib` is free.
    fn mib(self, free_mib: u64) -> u64 {
        match self {
            Amount::Mib(m) => m,
            Amount::Leave(left) => free_mib.saturating_sub(left),
        }
    }
}

/// One way of reserving memory (or of swapping the snapshot) through the public API.
#[derive(Debug, Clone)]
enum Op {
    /// `Snapshot::reserve` on the router's current snapshot.
    SnapshotReserve {
        node: usize,
        gpu: bool,
        amount: Amount,
    },
    /// `Router::reserve_node` by id.
    ReserveNode {
        node: usize,
        gpu: bool,
        amount: Amount,
    },
    /// `Router::route`, then `Router::reserve` of the decision (with the request's size,
    /// or what leaves `Leave` free on the chosen GPU).
    RouteThenReserve(Req, Amount),
    /// `Router::route_and_reserve` (with the request's size, or one that leaves `Leave`
    /// free on the GPU a plain route would choose).
    RouteAndReserve(Req, Amount),
    /// `Router::update_keep_reservations` with fresh reports (one node's free VRAM
    /// halved, or that node gone).
    UpdateKeep { node: usize, drop_it: bool },
    /// `Router::release` of the latest reservation.
    ReleaseLast,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..40, any::<bool>(), amount()).prop_map(|(node, gpu, amount)| Op::SnapshotReserve {
            node,
            gpu,
            amount
        }),
        (0usize..40, any::<bool>(), amount()).prop_map(|(node, gpu, amount)| Op::ReserveNode {
            node,
            gpu,
            amount
        }),
        (req(), amount()).prop_map(|(r, a)| Op::RouteThenReserve(r, a)),
        (req(), amount()).prop_map(|(r, a)| Op::RouteAndReserve(r, a)),
        (0usize..40, any::<bool>()).prop_map(|(node, drop_it)| Op::UpdateKeep { node, drop_it }),
        Just(Op::ReleaseLast),
    ]
}

fn complexity(c: u8) -> Complexity {
    [Complexity::Simple, Complexity::Medium, Complexity::Complex][usize::from(c % 3)]
}

fn request<'a>(r: &Req, model: &'a str) -> Request<'a> {
    Request::new(model, r.size)
        .priority(r.priority)
        .complexity(complexity(r.complexity))
        .needs_gpu(r.needs_gpu)
        .allow_cpu(r.allow_cpu)
        .allow_multi_gpu(r.multi)
}

/// Free MiB on a node's GPU (`Some`) or RAM (`None`) of the current snapshot, 0 if unknown.
fn free_mib(snap: &Snapshot, node: NodeIndex, gpu: Option<u32>) -> u64 {
    match gpu {
        Some(g) => snap
            .gpu_capacity_mib(node, g)
            .expect("GPU exists")
            .map_or(0, |(_, free)| free),
        None => {
            let spec = snap.node(node);
            let reserved = snap.reserved_mib(node, None).expect("node exists");
            spec.ram_free_mib.unwrap_or(0).saturating_sub(reserved)
        }
    }
}

/// The size to reserve for `r`: its own, or what leaves `amount` free where a plain
/// route would put it.
fn sized(router: &Router, r: &Req, model: &str, amount: Amount) -> u64 {
    match (amount, router.route(&request(r, model))) {
        (Amount::Leave(_), Ok(d)) => {
            let snap = router.snapshot();
            amount.mib(free_mib(&snap, d.node, d.gpu)).max(1)
        }
        _ => r.size,
    }
}

fn apply(router: &Router, op: &Op, held: &mut Vec<Reservation>) {
    let snap = router.snapshot();
    match op {
        Op::SnapshotReserve { node, gpu, amount } => {
            let Some(spec) = snap.nodes().get(node % snap.len().max(1)) else {
                return;
            };
            let g = spec.gpus.first().map(|g| g.index).filter(|_| *gpu);
            let ni = snap.node_index(&spec.id).expect("present");
            let mib = amount.mib(free_mib(&snap, ni, g));
            snap.reserve(ni, g, mib).expect("node and GPU exist");
        }
        Op::ReserveNode { node, gpu, amount } => {
            let Some(spec) = snap.nodes().get(node % snap.len().max(1)) else {
                return;
            };
            let g = spec.gpus.first().map(|g| g.index).filter(|_| *gpu);
            let ni = snap.node_index(&spec.id).expect("present");
            let mib = amount.mib(free_mib(&snap, ni, g));
            router
                .reserve_node(&spec.id, g, mib)
                .expect("node and GPU exist");
        }
        Op::RouteThenReserve(r, amount) => {
            let model = spell(r.model, r.spelling);
            let size = sized(router, r, &model, *amount);
            if let Ok(d) = router.route(&request(r, &model)) {
                held.push(router.reserve(&d, size).expect("same snapshot"));
            }
        }
        Op::RouteAndReserve(r, amount) => {
            let model = spell(r.model, r.spelling);
            let r = Req {
                size: sized(router, r, &model, *amount),
                ..r.clone()
            };
            if let Ok((_, Some(res))) = router.route_and_reserve(&request(&r, &model)) {
                held.push(res);
            }
        }
        Op::UpdateKeep { node, drop_it } => {
            // The unchanged nodes' specs are shared with the current snapshot, as a
            // live cluster passes them.
            let mut nodes: Vec<_> = snap
                .nodes()
                .iter()
                .map(|n| (Arc::clone(n), n.report_age_ms))
                .collect();
            if !nodes.is_empty() {
                let i = node % nodes.len();
                if *drop_it {
                    nodes.remove(i);
                } else {
                    for g in &mut Arc::make_mut(&mut nodes[i].0).gpus {
                        g.memory_free_mib = g.memory_free_mib.map(|f| f / 2);
                    }
                }
            }
            let fresh = Snapshot::build_shared(nodes, &SnapshotConfig::default()).expect("valid");
            router.update_keep_reservations(fresh);
        }
        Op::ReleaseLast => {
            if let Some(r) = held.pop() {
                router.release(&r).expect("release");
            }
        }
    }
}

fn params() -> [SollolParams; 2] {
    [SollolParams::default(), {
        let mut v = SollolParams::default();
        v.skip_penalties_when_overwhelmed = false;
        v
    }]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pruned_equals_exhaustive(
        mut nodes in proptest::collection::vec(node(), 1..40),
        ops in proptest::collection::vec(op(), 0..6),
        r in req(),
    ) {
        for (i, n) in nodes.iter_mut().enumerate() {
            n.id = format!("n{i:02}").into();
        }
        let snap = Snapshot::build(nodes, &SnapshotConfig::default()).expect("valid");
        for p in params() {
            let router = Router::new(
                Snapshot::build(
                    snap.nodes().iter().map(|n| NodeSpec::clone(n)).collect(),
                    &SnapshotConfig::default(),
                ).expect("valid"),
                Policy::Sollol(p.clone()),
            ).expect("valid policy");
            let mut held = Vec::new();
            let model = spell(r.model, r.spelling);
            let req = request(&r, &model);
            for op in &ops {
                apply(&router, op, &mut held);
                let s = router.snapshot();
                let full = s.route_exhaustive(&router.policy(), &req);
                prop_assert_eq!(router.route(&req), full, "after {:?}", op);
            }
            let s = router.snapshot();
            prop_assert_eq!(router.route(&req), s.route_exhaustive(&router.policy(), &req));
        }
    }
}
