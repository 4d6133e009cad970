//! Property: over random clusters (reservations, warm models, unknown values,
//! SOLLOL-only nodes), `check`'s best is `route`'s placement, and a model never lands on
//! a node whose known VRAM (GPU) or RAM (CPU) is below its size.

use proptest::prelude::*;
use vramroute_cluster::{check_sized, model_size, LiveCluster, LiveConfig, Placement, StatusView};
use vramroute_registry::LoadedModel;
use vramroute_router::{FitKind, Policy, Request, Target};

use crate::common::{cluster, gpu, registration, stats, NOW};

const MODELS: &[&str] = &[
    "llama3.2:3b",
    "llama3.1:8b",
    "Llama3.1:8B",
    "library/codellama:13b",
    "mixtral:8x7b",
    "llama3.1:70b",
    "custom-model",
];

#[derive(Debug, Clone)]
struct GenNode {
    gpus: Vec<(u64, Option<u64>)>,
    /// `None`: SOLLOL-written (no RAM in the stats record).
    ram: Option<(u64, Option<u64>)>,
    /// SOLLOL's registration: usable RAM.
    registered_ram: Option<u64>,
    loaded: Vec<(usize, Option<u64>)>,
    age_s: f64,
}

fn gen_node() -> impl Strategy<Value = GenNode> {
    (
        prop::collection::vec(
            (2000u64..50_000).prop_flat_map(|t| (Just(t), prop::option::weighted(0.8, 0..=t))),
            0..3,
        ),
        prop::option::weighted(
            0.6,
            (1000u64..128_000).prop_flat_map(|t| (Just(t), prop::option::weighted(0.7, 0..=t))),
        ),
        prop::option::weighted(0.5, 1000u64..80_000),
        prop::collection::vec(
            (0..MODELS.len(), prop::option::weighted(0.7, 100u64..30_000)),
            0..2,
        ),
        prop_oneof![4 => Just(1.0), 1 => Just(120.0)],
    )
        .prop_map(|(gpus, ram, registered_ram, loaded, age_s)| GenNode {
            gpus,
            ram,
            registered_ram,
            loaded,
            age_s,
        })
}

fn build(nodes: &[GenNode]) -> StatusView {
    let mut st = Vec::new();
    let mut rpc = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let ip = format!("10.7.0.{}", i + 1);
        let gpus = n
            .gpus
            .iter()
            .enumerate()
            .map(|(g, (total, free))| gpu(u32::try_from(g).expect("few"), Some(*total), *free))
            .collect();
        let loaded = n
            .loaded
            .iter()
            .map(|(m, size)| {
                LoadedModel::new(
                    MODELS[*m],
                    *size,
                    size.map(|s| if n.gpus.is_empty() { 0 } else { s }),
                )
            })
            .collect();
        st.push(stats(&format!("{ip}:11434"), gpus, n.ram, loaded, n.age_s));
        if let Some(r) = n.registered_ram {
            rpc.push(registration(&ip, r, &[]));
        }
    }
    StatusView::from_cluster(&cluster(st, rpc), "prop".into(), NOW, 30.0, 0.8)
}

fn known_ram(view: &StatusView, id: &str) -> Option<u64> {
    let n = view.node(id)?;
    match n.cpu_ram_total_mb {
        Some(t) => Some((t as f64 * 0.8).floor() as u64),
        None => n.cpu_ram_registered_mb,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn check_best_is_route_choice_and_sizes_are_respected(
        nodes in prop::collection::vec(gen_node(), 1..7),
        reserve_first in prop::collection::vec((0..MODELS.len(), any::<bool>()), 0..4),
        model in 0..MODELS.len(),
        explicit in prop::option::weighted(0.3, 100u64..60_000),
    ) {
        let view = build(&nodes);
        let live = LiveCluster::new(view.clone(), Policy::default(), LiveConfig::default())
            .expect("valid");
        // Reservations through the live cluster (kept across updates) and the router.
        for (m, keep) in &reserve_first {
            let Ok(size) = model_size(&view, MODELS[*m], None) else { continue };
            let req = Request::new(MODELS[*m], size.size_mb);
            if *keep {
                let _ = live.route_and_reserve(&req);
            } else if let Ok((d, _)) = live.router().route_and_reserve(&req) {
                let _ = d;
            }
        }
        // An update carries the live cluster's reservations over.
        live.publish(view.clone(), 0);

        let name = MODELS[model];
        let Ok(size) = model_size(&view, name, explicit) else {
            prop_assert!(explicit.is_none());
            return Ok(());
        };
        let snap = live.router().snapshot();
        let policy = live.router().policy();
        let table = check_sized(&snap, &policy, name, &size);
        let routed = live
            .router()
            .route(&Request::new(name, size.size_mb))
            .ok()
            .map(|d| Placement::of(&snap, &d));
        prop_assert_eq!(&table.best, &routed);

        if let Some(p) = routed {
            let node = view.node(&p.node).expect("placed on a node of the view");
            prop_assert!(!node.stale, "placed on a stale node");
            match (p.target, p.fit) {
                (_, FitKind::AlreadyLoaded) => {}
                (Target::Gpu, FitKind::AcrossGpus { .. }) => {
                    let usable: u64 = node
                        .gpus
                        .iter()
                        .filter_map(|g| g.memory_usable_mb)
                        .sum();
                    prop_assert!(size.size_mb <= usable);
                }
                (Target::Gpu, _) => {
                    let g = node
                        .gpus
                        .iter()
                        .find(|g| Some(g.index) == p.gpu)
                        .expect("the chosen GPU exists");
                    prop_assert!(size.size_mb <= g.memory_usable_mb.expect("known total"));
                    if let Some(free) = g.memory_free_mb {
                        prop_assert!(size.size_mb <= free);
                    }
                }
                (Target::Cpu, _) => {
                    if let Some(ram) = known_ram(&view, &p.node) {
                        prop_assert!(size.size_mb <= ram, "{} MB on {} MB of RAM", size.size_mb, ram);
                    }
                }
            }
        }
    }
}
