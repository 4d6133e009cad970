//! Invalid configurations and inputs.

use vramroute_router::{
    Error, GpuSpec, NodeSpec, NodeStatus, Policy, Request, Snapshot, SnapshotConfig, SollolParams,
};

use crate::common::neutral;

#[test]
fn margins_must_be_in_0_1() {
    for bad in [0.0, -0.1, 1.01, f64::NAN, f64::INFINITY] {
        let cfg = SnapshotConfig::default().with_vram_safety_margin(bad);
        let err = Snapshot::build(vec![], &cfg).expect_err("bad margin");
        assert!(
            matches!(
                err,
                Error::InvalidConfig {
                    field: "vram_safety_margin",
                    ..
                }
            ),
            "{err}"
        );
    }
    let cfg = SnapshotConfig::default().with_vram_safety_margin(1.0);
    assert!(Snapshot::build(vec![], &cfg).is_ok());
}

#[test]
fn policy_constants_are_checked() {
    let cases: Vec<(SollolParams, &str)> = vec![
        (
            {
                let mut v = SollolParams::default();
                v.warm_multiplier = -1.0;
                v
            },
            "warm_multiplier",
        ),
        (
            {
                let mut v = SollolParams::default();
                v.good_multiplier = f64::NAN;
                v
            },
            "good_multiplier",
        ),
        (
            {
                let mut v = SollolParams::default();
                v.default_cpu_load = 1.5;
                v
            },
            "default_cpu_load",
        ),
        (
            {
                let mut v = SollolParams::default();
                v.active_base_small = 0.5;
                v
            },
            "active_base_small",
        ),
        (
            {
                let mut v = SollolParams::default();
                v.excellent_above_mib = 1_000;
                v
            },
            "good_above_mib",
        ),
        (
            {
                let mut v = SollolParams::default();
                v.latency_scale_ms = 0.0;
                v
            },
            "latency_scale_ms",
        ),
    ];
    for (params, field) in cases {
        let err = Policy::Sollol(params).validate().expect_err(field);
        assert!(
            matches!(err, Error::InvalidConfig { field: f, .. } if f == field),
            "{field}: {err}"
        );
    }
    assert!(Policy::default().validate().is_ok());
}

#[test]
fn impossible_node_values_make_the_node_invalid_not_the_snapshot() {
    type Break = fn(&mut NodeSpec);
    let cases: &[(&str, Break)] = &[
        ("latency_ms", |n| n.latency_ms = Some(f64::NAN)),
        ("latency_ms", |n| n.latency_ms = Some(-1.0)),
        ("success_rate", |n| n.success_rate = Some(1.5)),
        ("cpu_load_percent", |n| n.cpu_load_percent = Some(250.0)),
        ("gpus[0].memory_free_mib", |n| {
            n.gpus[0].memory_free_mib = Some(30_000)
        }),
        ("gpus[0].memory_total_mib", |n| {
            n.gpus[0].memory_total_mib = u64::MAX
        }),
        ("gpus[1].index", |n| n.gpus.push(GpuSpec::new(0, 100, None))),
        ("ram_free_mib", |n| n.ram_free_mib = Some(1_000_000)),
        ("loaded_models[0].gpu", |n| {
            let mut m = vramroute_router::ResidentModel::new("x", 1, 1);
            m.gpu = Some(7);
            n.loaded_models.push(m);
        }),
    ];
    for &(field, breaker) in cases {
        let mut bad = neutral("bad", &[(24_576, 20_000)]);
        breaker(&mut bad);
        let s = Snapshot::build(
            vec![bad, neutral("ok", &[(8_192, 6_000)])],
            &SnapshotConfig::default(),
        )
        .expect("one bad node does not fail the build");
        let idx = s.node_index("bad").expect("kept");
        match s.node_status(idx).expect("in range") {
            NodeStatus::Invalid(e) => match &**e {
                Error::InvalidNode { field: f, .. } => assert_eq!(f, field),
                other => panic!("{field}: {other}"),
            },
            other => panic!("{field}: {other:?}"),
        }
        let d = s
            .route(&Policy::default(), &Request::new("m", 100))
            .expect("ok node");
        assert_eq!(s.node(d.node).id, "ok", "{field}");
    }
}

#[test]
fn duplicate_ids_and_label_limit() {
    let err = Snapshot::build(
        vec![neutral("a", &[]), neutral("a", &[])],
        &SnapshotConfig::default(),
    )
    .expect_err("duplicate");
    assert_eq!(err, Error::DuplicateNode { node: "a".into() });
    let mut n = neutral("a", &[]);
    n.labels = (0..65).map(|i| format!("l{i}")).collect();
    let err = Snapshot::build(vec![n], &SnapshotConfig::default()).expect_err("too many labels");
    assert!(matches!(err, Error::TooManyLabels { count: 65, max: 64 }));
}

#[test]
fn label_filters() {
    let mut gpu = neutral("gpu", &[(24_576, 20_000)]);
    gpu.labels = vec!["rack-1".into(), "nvidia".into()];
    let mut other = neutral("other", &[(24_576, 10_000)]);
    other.labels = vec!["rack-2".into()];
    let s = Snapshot::build(vec![gpu, other], &SnapshotConfig::default()).expect("valid");
    let p = Policy::default();
    let id = |req: Request<'_>| s.route(&p, &req).ok().map(|d| s.node(d.node).id.clone());
    assert_eq!(id(Request::new("m", 4_700)).as_deref(), Some("gpu"));
    assert_eq!(
        id(Request::new("m", 4_700).require_labels(&["rack-2"])).as_deref(),
        Some("other")
    );
    assert_eq!(
        id(Request::new("m", 4_700).exclude_labels(&["nvidia"])).as_deref(),
        Some("other")
    );
    assert_eq!(
        id(Request::new("m", 4_700).exclude_nodes(&["gpu"])).as_deref(),
        Some("other")
    );
    assert_eq!(
        id(Request::new("m", 4_700).require_labels(&["rack-9"])),
        None
    );
    // More than 16 excluded ids still work (slow path).
    let many: Vec<&str> = std::iter::repeat_n("nope", 20).chain(["gpu"]).collect();
    assert_eq!(
        id(Request::new("m", 4_700).exclude_nodes(&many)).as_deref(),
        Some("other")
    );
}

/// The snapshot keeps a status per node: an invalid node's error is boxed so that the
/// others cost 24 bytes, not the ~90 of an [`Error`].
#[test]
fn a_node_status_is_small() {
    assert!(std::mem::size_of::<NodeStatus>() <= 24);
}
