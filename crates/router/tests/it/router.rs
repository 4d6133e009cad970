//! The shared Router: concurrent routing while snapshots are swapped.

use std::sync::Arc;

use vramroute_router::{NodeStatus, Policy, Request, Router, Snapshot, SnapshotConfig};

use crate::common::neutral;

#[test]
fn update_swaps_while_threads_route() {
    let cfg = SnapshotConfig::default();
    let build =
        |free: u64| Snapshot::build(vec![neutral("a", &[(24_576, free)])], &cfg).expect("valid");
    let router = Router::new(build(20_000), Policy::default()).expect("valid");
    let req = Request::new("llama3.1:8b", 4_700).allow_cpu(false);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..2_000 {
                    // Either snapshot is fine, but never a torn one: the GPU either fits or not.
                    if let Ok(d) = router.route(&req) {
                        assert_eq!(d.gpu, Some(0));
                    }
                }
            });
        }
        for i in 0..200 {
            router.update(build(if i % 2 == 0 { 1_000 } else { 20_000 }));
        }
    });
    router.update(build(1_000));
    assert!(router.route(&req).is_err());
    let id = router.snapshot().id();
    router.update_keep_reservations(build(20_000));
    assert_ne!(router.snapshot().id(), id);
    assert!(router.route(&req).is_ok());
}

/// A snapshot swapped out while a routing thread still holds it is not freed by that
/// thread when it lets go: the router keeps it until the next update and frees it there.
#[test]
fn replaced_snapshots_are_freed_by_the_next_update() {
    let cfg = SnapshotConfig::default();
    let build =
        |free: u64| Snapshot::build(vec![neutral("a", &[(24_576, free)])], &cfg).expect("valid");
    let router = Router::new(build(20_000), Policy::default()).expect("valid");
    for update_keep in [false, true] {
        let held = router.snapshot();
        let weak = Arc::downgrade(&held);
        let update = |s: Snapshot| {
            if update_keep {
                router.update_keep_reservations(s);
            } else {
                router.update(s);
            }
        };
        update(build(1_000));
        // The "routing thread" lets go after the swap: not the last reference.
        drop(held);
        assert!(weak.upgrade().is_some(), "freed by the reader");
        update(build(20_000));
        assert!(weak.upgrade().is_none(), "kept past the next update");
    }
}

/// `build_shared` takes each node's age from its argument, not from the shared spec,
/// and shares the specs themselves.
#[test]
fn shared_specs_take_their_age_from_the_build() {
    let cfg = SnapshotConfig::default();
    let a = Arc::new(neutral("a", &[(24_576, 20_000)]));
    let b = Arc::new(neutral("b", &[(24_576, 20_000)]));
    let snap = Snapshot::build_shared(
        vec![
            (Arc::clone(&b), cfg.stale_after_ms + 1),
            (Arc::clone(&a), 5),
        ],
        &cfg,
    )
    .expect("valid");
    let (ia, ib) = (
        snap.node_index("a").expect("a"),
        snap.node_index("b").expect("b"),
    );
    assert!(Arc::ptr_eq(&snap.nodes()[ia.get()], &a));
    assert_eq!(snap.node_status(ia).expect("a"), &NodeStatus::Eligible);
    assert!(matches!(
        snap.node_status(ib).expect("b"),
        NodeStatus::Stale { age_ms, .. } if *age_ms == cfg.stale_after_ms + 1
    ));
    let router = Router::new(snap, Policy::default()).expect("valid");
    let d = router
        .route(&Request::new("llama3.1:8b", 4_700))
        .expect("a fits");
    assert_eq!(router.snapshot().node(d.node).id, "a");
    let dup = Snapshot::build_shared(vec![(Arc::clone(&a), 0), (a, 0)], &cfg);
    assert!(dup.is_err(), "duplicate ids are refused");
}

#[test]
fn set_policy_validates_and_reserve_node_by_id() {
    let cfg = SnapshotConfig::default();
    let nodes = vec![
        neutral("a", &[(24_576, 20_000)]),
        neutral("b", &[(24_576, 6_000)]),
    ];
    let router = Router::new(
        Snapshot::build(nodes, &cfg).expect("valid"),
        Policy::default(),
    )
    .expect("valid");
    let bad = Policy::Sollol({
        let mut v = vramroute_router::SollolParams::default();
        v.warm_multiplier = f64::NAN;
        v
    });
    assert!(router.set_policy(bad).is_err());
    assert_eq!(*router.policy(), Policy::default());
    router.set_policy(Policy::BinPack).expect("valid");
    let req = Request::new("m", 4_700);
    let d = router.route(&req).expect("fits");
    assert_eq!(router.snapshot().node(d.node).id, "b");
    router
        .reserve_node("b", Some(0), 2_000)
        .expect("known node");
    assert_eq!(
        router
            .snapshot()
            .node(router.route(&req).expect("fits").node)
            .id,
        "a"
    );
    assert!(router.reserve_node("zz", None, 1).is_err());
    let e = router.explain(&req);
    assert_eq!(e.policy, "binpack");
}
