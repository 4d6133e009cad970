//! Fit checks: exact fit, 1 MiB over, unknown free, zero GPUs, every GPU, splits, RAM.

use vramroute_router::{
    FitKind, FreeSource, GpuSpec, NoRoute, NodeSpec, NodeStatus, Policy, RejectReason, Request,
    ResidentModel, Target,
};

use crate::common::{neutral, snap};

fn gpu_only(req: Request<'_>) -> Request<'_> {
    req.allow_cpu(false)
}

#[test]
fn exact_fit_and_one_mib_over() {
    // Free is the limit: usable ⌊10000 × 0.8⌋ = 8000, free 4000.
    let s = snap(vec![neutral("n", &[(10_000, 4_000)])]);
    let p = Policy::default();
    let d = s
        .route(&p, &gpu_only(Request::new("m", 4_000)))
        .expect("exact fit");
    assert_eq!(
        (d.target, d.gpu, d.fit),
        (Target::Gpu, Some(0), FitKind::SingleGpu)
    );
    assert_eq!(
        s.route(&p, &gpu_only(Request::new("m", 4_001))),
        Err(NoRoute::NothingFits { size_mib: 4_001 })
    );
    let e = s.explain(&p, &gpu_only(Request::new("m", 4_001)));
    assert_eq!(
        e.rejected[0].text,
        "Not enough free VRAM (4001MB needed, 4000MB free); CPU placement not allowed"
    );

    // Usable is the limit even with more free: ⌊5000 × 0.8⌋ = 4000.
    let s = snap(vec![neutral("n", &[(5_000, 5_000)])]);
    assert!(s.route(&p, &gpu_only(Request::new("m", 4_000))).is_ok());
    let e = s.explain(&p, &gpu_only(Request::new("m", 4_001)));
    assert_eq!(
        e.rejected[0].text,
        "Model too large (4001MB > 4000MB usable VRAM); CPU placement not allowed"
    );
    assert_eq!(
        e.rejected[0].reason,
        RejectReason::DoesNotFit {
            gpu: Some(vramroute_router::GpuMiss::TooLarge {
                size_mib: 4_001,
                usable_mib: 4_000
            }),
            cpu: vramroute_router::CpuMiss::NotAllowed
        }
    );
}

#[test]
fn unknown_free_is_derived_never_zero() {
    // Free and used unknown: usable − VRAM of the models on that GPU.
    let mut n = NodeSpec::new("n");
    n.gpus.push(GpuSpec::new(0, 10_000, None));
    let mut m = ResidentModel::new("mistral:7b", 3_000, 3_000);
    m.gpu = Some(0);
    n.loaded_models.push(m);
    let s = snap(vec![n.clone()]);
    let ni = s.node_index("n").expect("present");
    assert_eq!(
        s.free_source(ni, 0).expect("gpu"),
        Some(FreeSource::UsableMinusLoaded)
    );
    assert_eq!(
        s.gpu_capacity_mib(ni, 0).expect("gpu"),
        Some((8_000, 5_000))
    );
    let p = Policy::default();
    assert!(s.route(&p, &gpu_only(Request::new("m", 5_000))).is_ok());
    assert!(s.route(&p, &gpu_only(Request::new("m", 5_001))).is_err());
    // Free unknown, used known: total − used.
    n.gpus[0].memory_used_mib = Some(6_500);
    let s = snap(vec![n]);
    let ni = s.node_index("n").expect("present");
    assert_eq!(
        s.free_source(ni, 0).expect("gpu"),
        Some(FreeSource::TotalMinusUsed)
    );
    assert_eq!(
        s.gpu_capacity_mib(ni, 0).expect("gpu"),
        Some((8_000, 3_500))
    );
}

#[test]
fn zero_gpus() {
    let s = snap(vec![neutral("cpu", &[])]);
    let p = Policy::default();
    let d = s.route(&p, &Request::new("m", 4_700)).expect("cpu allowed");
    assert_eq!(
        (d.target, d.gpu, d.fit),
        (Target::Cpu, None, FitKind::CpuNoGpu)
    );
    // No GPU anywhere counts as "all GPUs overwhelmed" (SOLLOL), so CPU nodes compete.
    assert!(d.cpu_fallback);
    assert_eq!(
        s.explain(&p, &Request::new("m", 4_700)).reason,
        "All GPUs overwhelmed (< 2048MB free), CPU nodes compete; Node has no GPU"
    );
    let e = s.explain(&p, &gpu_only(Request::new("m", 4_700)));
    assert_eq!(e.no_route, Some(NoRoute::NothingFits { size_mib: 4_700 }));
    assert_eq!(
        e.rejected[0].text,
        "Node has no GPU; CPU placement not allowed"
    );
}

#[test]
fn cpu_placement_needs_ram() {
    let mut n = neutral("cpu", &[]);
    n.ram_total_mib = Some(8_000); // usable 6400
    n.ram_free_mib = Some(7_000);
    let s = snap(vec![n]);
    let p = Policy::default();
    assert!(s.route(&p, &Request::new("m", 6_400)).is_ok());
    let e = s.explain(&p, &Request::new("m", 6_401));
    assert_eq!(
        e.rejected[0].text,
        "Node has no GPU; Model too large for RAM (6401MB > 6400MB usable RAM)"
    );
    // Unknown RAM does not block (SOLLOL falls back to any healthy node).
    let s = snap(vec![NodeSpec::new("unknown")]);
    assert!(s.route(&p, &Request::new("m", 100_000)).is_ok());
}

#[test]
fn all_stale_unhealthy_or_empty() {
    let p = Policy::default();
    assert_eq!(
        snap(vec![]).route(&p, &Request::new("m", 1)),
        Err(NoRoute::EmptySnapshot)
    );
    let mut stale = neutral("stale", &[(24_576, 20_000)]);
    stale.report_age_ms = 30_001;
    let mut sick = neutral("sick", &[(24_576, 20_000)]);
    sick.healthy = false;
    let s = snap(vec![stale, sick]);
    for req in [Request::new("m", 4_700), Request::new("m", 100)] {
        assert_eq!(s.route(&p, &req), Err(NoRoute::NoEligibleNode));
    }
    let e = s.explain(&p, &Request::new("m", 4_700));
    assert_eq!(e.rejected[0].reason, RejectReason::Unhealthy);
    assert_eq!(e.rejected[1].text, "Report stale (30001ms old > 30000ms)");
    // Exactly at the limit is fresh.
    let mut edge = neutral("edge", &[(24_576, 20_000)]);
    edge.report_age_ms = 30_000;
    assert!(snap(vec![edge])
        .route(&p, &Request::new("m", 4_700))
        .is_ok());
}

#[test]
fn every_gpu_is_checked_not_only_gpu_0() {
    let s = snap(vec![neutral(
        "n",
        &[(8_192, 1_000), (24_576, 20_000), (8_192, 8_000)],
    )]);
    for policy in [Policy::default(), Policy::Spread] {
        let d = s
            .route(&policy, &Request::new("m", 4_700))
            .expect("fits GPU 1");
        assert_eq!(d.gpu, Some(1), "{policy}");
    }
    // binpack picks the fullest GPU that fits: GPU 2 (8000 free, usable 6553).
    assert_eq!(
        s.route(&Policy::BinPack, &Request::new("m", 4_700))
            .expect("fits")
            .gpu,
        Some(2)
    );
}

#[test]
fn split_across_gpus_only_when_allowed() {
    let s = snap(vec![neutral("n", &[(8_192, 6_000), (8_192, 6_000)])]);
    let p = Policy::default();
    let req = Request::new("codellama:13b", 9_000);
    assert_eq!(s.route(&p, &req).expect("cpu").target, Target::Cpu);
    let d = s.route(&p, &req.allow_multi_gpu(true)).expect("split");
    assert_eq!(
        (d.target, d.gpu, d.fit),
        (Target::Gpu, None, FitKind::AcrossGpus { gpu_count: 2 })
    );
    // 2 × min(6553 usable, 6000 free) = 12000 is the limit.
    assert!(s
        .route(
            &p,
            &Request::new("m", 12_001)
                .allow_multi_gpu(true)
                .allow_cpu(false)
        )
        .is_err());
}

#[test]
fn an_invalid_node_before_a_valid_one_leaves_its_models_where_they_are() {
    // The invalid node's loaded models are passed over, not handed to the next node.
    let mut bad = neutral("a-bad", &[(10_000, 20_000)]);
    bad.loaded_models
        .push(ResidentModel::new("other:1b", 1_000, 1_000));
    let mut good = neutral("b", &[(10_000, 9_000)]);
    let mut m = ResidentModel::new("Mistral:7B", 3_000, 3_000);
    m.gpu = Some(0);
    good.loaded_models.push(m);
    let s = snap(vec![bad, good]);
    assert!(matches!(
        s.node_status(s.node_index("a-bad").expect("present"))
            .expect("a node"),
        NodeStatus::Invalid(_)
    ));
    let d = s
        .route(&Policy::default(), &Request::new("mistral:7b", 3_000))
        .expect("routed");
    assert_eq!(
        (s.node(d.node).id.as_str(), d.fit),
        ("b", FitKind::AlreadyLoaded)
    );
}
