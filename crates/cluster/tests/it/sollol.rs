//! Nodes that only SOLLOL wrote (stats without RAM figures, plus a registration).

use vramroute_cluster::{check, route, RouteQuery, StatusView};
use vramroute_router::{Policy, Snapshot, SnapshotConfig, Target};

use crate::common::{cluster, gpu, registration, stats, NOW};

/// SOLLOL registered 19,284 MB of usable RAM for 10.1.2.5: a 40,000 MB model must not
/// land on that node's CPU (it used to: the view ignored `cpu_ram_mb`).
#[test]
fn a_model_larger_than_the_registered_ram_is_not_placed_on_the_cpu() {
    let c = cluster(
        vec![
            stats(
                "10.1.2.5:11434",
                vec![gpu(0, Some(8192), Some(7000))],
                None,
                vec![],
                1.0,
            ),
            stats("10.1.2.6:11434", vec![], None, vec![], 1.0),
        ],
        vec![
            registration("10.1.2.5", 19_284, &[6553]),
            registration("10.1.2.6", 60_000, &[]),
        ],
    );
    let view = StatusView::from_cluster(&c, "test".into(), NOW, 30.0, 0.8);
    assert_eq!(
        view.node("10.1.2.5:11434")
            .and_then(|n| n.cpu_ram_registered_mb),
        Some(19_284)
    );
    let cfg = SnapshotConfig::default();
    let snap = Snapshot::build(view.node_specs(&cfg), &cfg).expect("valid");
    let policy = Policy::default();
    let a = route(
        &view,
        &snap,
        &policy,
        &RouteQuery::new("llama3.1:70b", None),
    )
    .expect("known");
    assert_eq!(a.size_mb, 40_000);
    let p = a.placement.expect("the 60,000 MB node takes it on its CPU");
    assert_eq!((p.node.as_str(), p.target), ("10.1.2.6:11434", Target::Cpu));

    let table = check(&view, &snap, &policy, "llama3.1:70b", None).expect("known");
    let small = table
        .nodes
        .iter()
        .find(|n| n.node == "10.1.2.5:11434")
        .expect("row");
    assert_eq!(small.fits, None, "{}", small.reason);
    assert!(small.reason.contains("usable RAM"), "{}", small.reason);
    assert_eq!(table.best, Some(p));

    // Without the roomy node, nothing takes it: a "no route", not the small node.
    let c = cluster(
        vec![stats(
            "10.1.2.5:11434",
            vec![gpu(0, Some(8192), Some(7000))],
            None,
            vec![],
            1.0,
        )],
        vec![registration("10.1.2.5", 19_284, &[6553])],
    );
    let view = StatusView::from_cluster(&c, "test".into(), NOW, 30.0, 0.8);
    let snap = Snapshot::build(view.node_specs(&cfg), &cfg).expect("valid");
    let a = route(
        &view,
        &snap,
        &policy,
        &RouteQuery::new("llama3.1:70b", None),
    )
    .expect("known");
    assert_eq!(a.placement, None, "{}", a.reason);
    // A model that fits the registered RAM still goes to the CPU there.
    let a = route(
        &view,
        &snap,
        &policy,
        &RouteQuery::new("mixtral:8x7b", Some(15_000)),
    )
    .expect("sized");
    assert_eq!(a.placement.map(|p| p.target), Some(Target::Cpu));
}

/// A loaded model of unknown size stays unknown (it used to be handed over as 0 MiB).
#[test]
fn a_loaded_model_of_unknown_size_is_not_zero() {
    let loaded = vramroute_registry::LoadedModel::new("custom:latest", None, None);
    let c = cluster(
        vec![stats(
            "10.1.2.7:11434",
            vec![gpu(0, Some(24576), Some(20000))],
            Some((64_000, Some(50_000))),
            vec![loaded],
            1.0,
        )],
        vec![],
    );
    let view = StatusView::from_cluster(&c, "test".into(), NOW, 30.0, 0.8);
    let specs = view.node_specs(&SnapshotConfig::default());
    let m = &specs[0].loaded_models[0];
    assert_eq!((m.size_mib, m.vram_mib), (None, None));
    // Its size is unknown to every source: no guess.
    assert!(vramroute_cluster::model_size(&view, "custom", None).is_err());
}

/// A report stamped in 2099 with no expiry used to be "0 s old", never stale, and routed
/// to; now it is stale with a note, and the router passes it over.
#[test]
fn a_report_from_the_future_is_not_routed_to() {
    let c = cluster(
        vec![
            stats(
                "10.1.2.8:11434",
                vec![gpu(0, Some(24576), Some(24000))],
                None,
                vec![],
                -4_000_000_000.0,
            ),
            stats(
                "10.1.2.9:11434",
                vec![gpu(0, Some(8192), Some(7000))],
                None,
                vec![],
                1.0,
            ),
        ],
        vec![],
    );
    let view = StatusView::from_cluster(&c, "test".into(), NOW, 30.0, 0.8);
    let future = view.node("10.1.2.8:11434").expect("shown");
    assert!(future.stale);
    assert!(
        future
            .note
            .as_deref()
            .unwrap_or("")
            .contains("in the future"),
        "{future:?}"
    );
    let cfg = SnapshotConfig::default();
    let snap = Snapshot::build(view.node_specs(&cfg), &cfg).expect("valid");
    let a = route(
        &view,
        &snap,
        &Policy::default(),
        &RouteQuery::new("llama3.2:3b", None),
    )
    .expect("known");
    assert_eq!(
        a.placement.map(|p| p.node),
        Some("10.1.2.9:11434".to_owned())
    );
    // Within the allowed skew a report is fresh (clocks differ a little).
    let c = cluster(
        vec![stats(
            "10.1.2.8:11434",
            vec![gpu(0, Some(24576), Some(24000))],
            None,
            vec![],
            -30.0,
        )],
        vec![],
    );
    let view = StatusView::from_cluster(&c, "test".into(), NOW, 30.0, 0.8);
    assert!(!view.nodes[0].stale);
}

/// The reporter lists the GPU to route to first (for SOLLOL's `gpus[0]` readers); our
/// view and router key GPUs by `index`, so the list's order changes no decision.
#[test]
fn gpu_list_order_changes_no_routing_decision() {
    let gpus = vec![
        gpu(0, Some(8_192), Some(7_000)),
        gpu(1, Some(24_576), Some(20_000)),
    ];
    let mut reversed = gpus.clone();
    reversed.reverse();
    let decide = |gpus: Vec<vramroute_registry::GpuStat>| {
        let c = cluster(
            vec![stats(
                "10.1.2.7:11434",
                gpus,
                Some((64_000, Some(50_000))),
                vec![],
                1.0,
            )],
            vec![],
        );
        let view = StatusView::from_cluster(&c, "test".into(), NOW, 30.0, 0.8);
        let cfg = SnapshotConfig::default();
        let snap = Snapshot::build(view.node_specs(&cfg), &cfg).expect("valid");
        let policy = Policy::default();
        let mut out = Vec::new();
        for model in ["llama3.2:3b", "codellama:13b", "llama3.1:8b"] {
            let a = route(&view, &snap, &policy, &RouteQuery::new(model, None)).expect("known");
            let p = a.placement.expect("fits");
            out.push((model, p.target, p.gpu));
        }
        out
    };
    let in_pci_order = decide(gpus);
    assert_eq!(in_pci_order, decide(reversed));
    // And it is the big GPU (index 1) that takes the 13B model.
    assert_eq!(in_pci_order[1], ("codellama:13b", Target::Gpu, Some(1)));
}
