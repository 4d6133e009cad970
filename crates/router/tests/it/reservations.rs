//! Reservations keep routed loads counted until the next report.

use vramroute_router::{
    FitKind, GpuSpec, NodeSpec, Policy, Request, Router, Snapshot, SnapshotConfig,
};

use crate::common::{chosen, neutral, snap};

#[test]
fn reserve_moves_the_next_decision() {
    let s = snap(vec![
        neutral("a", &[(24_576, 12_000)]),
        neutral("b", &[(24_576, 10_000)]),
    ]);
    let p = Policy::Spread;
    let req = Request::new("llama3.1:8b", 4_700);
    let d = s.route(&p, &req).expect("fits");
    assert_eq!(s.node(d.node).id, "a");
    let r = s.reserve_decision(&d, 4_700).expect("same snapshot");
    assert_eq!(s.reserved_mib(d.node, Some(0)).expect("gpu"), 4_700);
    assert_eq!(
        chosen(&s, &p, &req).as_deref(),
        Some("b"),
        "a now has 7300 free"
    );
    s.release_reservation(&r).expect("same snapshot");
    assert_eq!(chosen(&s, &p, &req).as_deref(), Some("a"));
    // Release saturates at zero.
    s.release(d.node, Some(0), 1_000_000).expect("gpu");
    assert_eq!(s.reserved_mib(d.node, Some(0)).expect("gpu"), 0);
}

#[test]
fn reservations_apply_to_every_policy_and_path() {
    // 4700 MiB is in the sollol pruning regime, 500 is not: both must see reservations.
    for size in [500, 4_700] {
        for policy in [Policy::default(), Policy::BinPack, Policy::Spread] {
            let s = snap(vec![
                neutral("a", &[(24_576, 20_000)]),
                neutral("b", &[(24_576, 19_000)]),
            ]);
            let a = s.node_index("a").expect("present");
            let req = Request::new("m", size).allow_cpu(false);
            s.reserve(a, Some(0), 20_000 - size + 1).expect("gpu");
            assert_eq!(
                chosen(&s, &policy, &req).as_deref(),
                Some("b"),
                "{policy} size {size}"
            );
        }
    }
}

#[test]
fn cpu_and_split_reservations() {
    let mut cpu = neutral("cpu", &[]);
    cpu.ram_total_mib = Some(20_000);
    cpu.ram_free_mib = Some(10_000);
    let s = snap(vec![cpu]);
    let req = Request::new("m", 6_000);
    let d = s.route(&Policy::default(), &req).expect("fits RAM");
    s.reserve_decision(&d, 6_000).expect("same snapshot");
    assert_eq!(s.reserved_mib(d.node, None).expect("ram"), 6_000);
    assert!(
        s.route(&Policy::default(), &req).is_err(),
        "only 4000 MiB RAM left"
    );

    let s = snap(vec![neutral("n", &[(8_192, 6_000), (8_192, 3_000)])]);
    let d = s
        .route(
            &Policy::default(),
            &Request::new("m", 9_000).allow_multi_gpu(true),
        )
        .expect("split");
    assert_eq!(d.fit, FitKind::AcrossGpus { gpu_count: 2 });
    let r = s.reserve_decision(&d, 9_000).expect("same snapshot");
    assert_eq!(
        r.parts,
        vec![(Some(0), 6_000), (Some(1), 3_000)],
        "proportional to usable free VRAM"
    );
    // Warm starts reserve nothing.
}

#[test]
fn decisions_from_another_snapshot_are_refused() {
    let s1 = snap(vec![neutral("a", &[(24_576, 12_000)])]);
    let s2 = snap(vec![neutral("a", &[(24_576, 12_000)])]);
    let d = s1
        .route(&Policy::default(), &Request::new("m", 4_700))
        .expect("fits");
    let err = s2.reserve_decision(&d, 4_700).expect_err("other snapshot");
    assert!(err.to_string().contains("route_and_reserve"), "{err}");
}

#[test]
fn carried_over_by_node_id_and_gpu_index() {
    let old = snap(vec![
        neutral("a", &[(24_576, 12_000), (24_576, 12_000)]),
        neutral("gone", &[(8_192, 8_000)]),
    ]);
    let a = old.node_index("a").expect("present");
    old.reserve(a, Some(1), 3_000).expect("gpu");
    old.reserve(old.node_index("gone").expect("present"), Some(0), 1_000)
        .expect("gpu");
    let new = snap(vec![
        neutral("0-new", &[]),
        neutral("a", &[(24_576, 12_000), (24_576, 12_000)]),
    ]);
    new.carry_reservations_from(&old);
    let a = new.node_index("a").expect("present");
    assert_eq!(new.reserved_mib(a, Some(1)).expect("gpu"), 3_000);
    assert_eq!(new.reserved_mib(a, Some(0)).expect("gpu"), 0);
}

#[test]
fn route_and_reserve_never_double_books() {
    // Two GPUs that each fit exactly one 4700 MiB model.
    let nodes = vec![
        neutral("a", &[(24_576, 6_000)]),
        neutral("b", &[(24_576, 5_000)]),
    ];
    let router = Router::new(
        Snapshot::build(nodes, &SnapshotConfig::default()).expect("valid"),
        Policy::Spread,
    )
    .expect("valid policy");
    let req = Request::new("m", 4_700).allow_cpu(false);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| router.route_and_reserve(&req).ok()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    let placed: Vec<String> = results
        .iter()
        .flatten()
        .map(|(d, _)| router.snapshot().node(d.node).id.to_string())
        .collect();
    let mut sorted = placed.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec!["a".to_owned(), "b".to_owned()],
        "exactly one load per GPU: {placed:?}"
    );
    // Releasing makes room again.
    let (_, r) = results.iter().flatten().next().expect("one placed");
    router
        .release(r.as_ref().expect("reserved"))
        .expect("release");
    assert!(router.route_and_reserve(&req).is_ok());
}

/// Regression: `route_and_reserve` reserved without marking the node, so the pruned
/// search trusted the node's static bound and skipped it: it picked `b` (11.43) where
/// scoring every node picks the now-overwhelmed `a` (51.43, SOLLOL skips penalties).
#[test]
fn route_and_reserve_marks_the_node_for_the_pruned_search() {
    let mut a = NodeSpec::new("a");
    a.gpus.push(GpuSpec::new(0, 8_000, Some(6_600)));
    a.latency_ms = Some(3_000.0);
    let mut b = NodeSpec::new("b");
    b.gpus.push(GpuSpec::new(0, 24_576, Some(10_000)));
    b.latency_ms = Some(600.0);
    let router = Router::new(
        Snapshot::build(vec![a, b], &SnapshotConfig::default()).expect("valid"),
        Policy::default(),
    )
    .expect("valid policy");
    let big = Request::new("llama3.1:8b", 4_700).exclude_nodes(&["b"]);
    let (d, r) = router.route_and_reserve(&big).expect("fits a");
    let snap = router.snapshot();
    assert_eq!(snap.node(d.node).id, "a");
    assert_eq!(r.expect("reserved").parts, vec![(Some(0), 4_700)]);

    let small = Request::new("qwen2.5-coder:3b", 1_800);
    let full = snap
        .route_exhaustive(&Policy::default(), &small)
        .expect("fits");
    assert_eq!(snap.node(full.node).id, "a");
    assert!((full.score - 51.43).abs() < 0.01, "{}", full.score);
    assert_eq!(router.route(&small), Ok(full));
}
