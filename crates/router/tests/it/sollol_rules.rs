//! Every SOLLOL rule, table-driven, against neutral nodes (score = 100 × factors).

use vramroute_router::{
    Complexity, FitKind, Policy, Request, ResidentModel, SollolParams, Target, TaskKind,
};

use crate::common::{assert_close, chosen, neutral, score_of, snap};

/// A node with a big GPU keeps the cluster out of "all GPUs overwhelmed" mode.
fn anchor() -> vramroute_router::NodeSpec {
    neutral("zz-anchor", &[(81_920, 60_000)])
}

#[test]
fn free_vram_thresholds() {
    // (free MiB of the probe's only GPU, active requests, expected score)
    let cases: &[(u64, u32, f64)] = &[
        (1_500, 0, 100.0 * 0.9), // < 2 GB: overwhelmed, idle ×0.9
        (2_047, 0, 100.0 * 0.9), // 1 MiB under the threshold
        (2_048, 0, 100.0),       // exactly 2 GB: mid-range ×1.0
        (4_096, 0, 100.0),       // not > 4 GB
        (4_097, 0, 150.0),       // > 4 GB ×1.5
        (8_192, 0, 150.0),       // not > 8 GB
        (8_193, 0, 200.0),       // > 8 GB ×2.0
        // overwhelmed and busy: ×0.9 ×0.6, then the active-request penalties: base 1.5
        // (overwhelmed class) × 0.8 for a fast node = 1.2, / 1.2^1 / (1 + 0.15)
        (1_500, 1, 100.0 * 0.9 * 0.6 / 1.2 / 1.15),
    ];
    for &(free, active, expected) in cases {
        let mut probe = neutral("probe", &[(16_384, free)]);
        probe.active_requests = active;
        let s = snap(vec![probe, anchor()]);
        let e = s.explain(&Policy::default(), &Request::new("tiny", 500));
        assert!(!e.cpu_fallback);
        assert_close(
            score_of(&e, "probe"),
            expected,
            &format!("free {free} active {active}"),
        );
    }
}

#[test]
fn gpu_task_on_cpu_node_is_multiplied_by_0_2() {
    let s = snap(vec![neutral("cpu", &[]), anchor()]);
    let e = s.explain(&Policy::default(), &Request::new("m", 4_700));
    assert_close(score_of(&e, "cpu"), 20.0, "cpu node");
    // Same factor when the node has GPUs but none fits.
    let s = snap(vec![neutral("small", &[(4_096, 4_096)]), anchor()]);
    let e = s.explain(&Policy::default(), &Request::new("m", 4_700));
    assert_close(score_of(&e, "small"), 20.0, "gpu too small");
    // A request that does not need a GPU gets no resource factor at all.
    let e = s.explain(
        &Policy::default(),
        &Request::new("m", 4_700).needs_gpu(false),
    );
    assert_close(score_of(&e, "small"), 100.0, "gpu optional");
}

#[test]
fn all_gpus_overwhelmed_lets_cpu_nodes_compete() {
    let nodes = vec![neutral("gpu", &[(16_384, 1_500)]), neutral("cpu", &[])];
    let s = snap(nodes);
    let d = s
        .route(&Policy::default(), &Request::new("tiny", 500))
        .expect("routable");
    // Fallback mode: CPU ×1.0 beats an overwhelmed GPU ×0.7.
    assert!(d.cpu_fallback);
    assert_eq!((s.node(d.node).id.as_str(), d.target), ("cpu", Target::Cpu));
    let e = s.explain(&Policy::default(), &Request::new("tiny", 500));
    assert_close(score_of(&e, "gpu"), 70.0, "overwhelmed gpu in fallback");
    assert_close(score_of(&e, "cpu"), 100.0, "cpu in fallback");
    assert!(
        e.reason.starts_with("All GPUs overwhelmed (< 2048MB free)"),
        "{}",
        e.reason
    );

    // One healthy GPU anywhere: normal mode, the overwhelmed GPU (×0.9) beats CPU (×0.2).
    let s = snap(vec![
        neutral("gpu", &[(16_384, 1_500)]),
        neutral("cpu", &[]),
        anchor(),
    ]);
    let e = s.explain(&Policy::default(), &Request::new("tiny", 500));
    assert!(!e.cpu_fallback);
    assert!(score_of(&e, "gpu") > score_of(&e, "cpu"));
    // A stale big GPU does not count.
    let mut stale = anchor();
    stale.report_age_ms = 10_000_000;
    let s = snap(vec![
        neutral("gpu", &[(16_384, 1_500)]),
        neutral("cpu", &[]),
        stale,
    ]);
    assert!(
        s.route(&Policy::default(), &Request::new("tiny", 500))
            .expect("routable")
            .cpu_fallback
    );
}

#[test]
fn warm_model_and_cold_penalty() {
    let mut warm = neutral("b-warm", &[(24_576, 10_000)]);
    warm.loaded_models
        .push(ResidentModel::new("llama3.1:8b", 4_700, 4_700));
    let mut other = neutral("c-other", &[(24_576, 10_000)]);
    other
        .loaded_models
        .push(ResidentModel::new("mistral:7b", 4_100, 4_100));
    let s = snap(vec![neutral("a-cold", &[(24_576, 10_000)]), warm, other]);
    let e = s.explain(&Policy::default(), &Request::new("llama3.1:8b", 4_700));
    assert_close(score_of(&e, "a-cold"), 200.0, "cold, nothing loaded");
    assert_close(score_of(&e, "b-warm"), 300.0, "warm ×1.5");
    assert_close(score_of(&e, "c-other"), 190.0, "other model loaded ×0.95");
    let d = e.decision.expect("routed");
    assert_eq!(
        (e.node_id.as_deref(), d.fit, d.gpu),
        (Some("b-warm"), FitKind::AlreadyLoaded, Some(0))
    );
    assert!(!d.needs_load());
    // `name` and `name:latest` are the same model.
    let mut latest = neutral("d", &[(24_576, 10_000)]);
    latest
        .loaded_models
        .push(ResidentModel::new("qwen2.5", 900, 900));
    let s = snap(vec![neutral("a", &[(24_576, 10_000)]), latest]);
    assert_eq!(
        chosen(&s, &Policy::default(), &Request::new("qwen2.5:latest", 900)).as_deref(),
        Some("d")
    );
}

#[test]
fn performance_factors() {
    type Tweak = fn(&mut vramroute_router::NodeSpec);
    // (tweak of a neutral node with an excellent GPU (×2), request priority, complexity, expected)
    let cases: &[(&str, Tweak, u8, Complexity, f64)] = &[
        (
            "success rate ×0.5",
            |n| n.success_rate = Some(0.5),
            5,
            Complexity::Medium,
            100.0,
        ),
        (
            "fast latency 100 ms, prio 5",
            |n| n.latency_ms = Some(100.0),
            5,
            Complexity::Medium,
            200.0 / (1.0 + 0.1 * 1.5),
        ),
        (
            "medium latency 500 ms",
            |n| n.latency_ms = Some(500.0),
            5,
            Complexity::Medium,
            200.0 / (1.0 + 5.0 * 1.5),
        ),
        (
            "slow latency 2000 ms",
            |n| n.latency_ms = Some(2000.0),
            5,
            Complexity::Medium,
            200.0 / (1.0 + 20.0 * 1.5),
        ),
        (
            "latency weight at prio 10",
            |n| n.latency_ms = Some(500.0),
            10,
            Complexity::Medium,
            200.0 / (1.0 + 5.0 * 2.0),
        ),
        (
            "cpu load 50 %",
            |n| n.cpu_load_percent = Some(50.0),
            5,
            Complexity::Medium,
            200.0 / 1.75,
        ),
        (
            "cpu load 50 %, high priority",
            |n| n.cpu_load_percent = Some(50.0),
            8,
            Complexity::Medium,
            200.0 / 2.5,
        ),
        (
            "complex on busy cpu",
            |n| n.cpu_load_percent = Some(90.0),
            5,
            Complexity::Complex,
            200.0 * 0.3 / 2.35,
        ),
        (
            "complex on idle cpu",
            |n| n.cpu_load_percent = Some(10.0),
            5,
            Complexity::Complex,
            200.0 * 1.3 / 1.15,
        ),
        (
            "simple on very busy cpu",
            |n| n.cpu_load_percent = Some(95.0),
            5,
            Complexity::Simple,
            200.0 * 0.7 / 2.425,
        ),
        // 2 requests, large GPU, fast node: base max(1.15 × 0.8, 1.05) = 1.05.
        (
            "two active requests",
            |n| n.active_requests = 2,
            5,
            Complexity::Medium,
            200.0 / (1.05 * 1.05) / 1.3,
        ),
        // slow node (> 5 s): base min(1.15 × 1.3, 2.0) = 1.495, latency penalty 60 × 1.5.
        (
            "active on slow node",
            |n| {
                n.active_requests = 1;
                n.latency_ms = Some(6000.0)
            },
            5,
            Complexity::Medium,
            200.0 / (1.0 + 90.0) / 1.495 / 1.15,
        ),
        (
            "top priority node",
            |n| n.priority = Some(0),
            5,
            Complexity::Medium,
            240.0,
        ),
        (
            "top node, high-priority request",
            |n| n.priority = Some(0),
            7,
            Complexity::Medium,
            300.0,
        ),
        (
            "other node priority",
            |n| n.priority = Some(3),
            7,
            Complexity::Medium,
            200.0,
        ),
        (
            "8 cpus",
            |n| n.cpu_count = Some(8),
            5,
            Complexity::Medium,
            200.0 * 1.4,
        ),
        (
            "16 cpus capped",
            |n| n.cpu_count = Some(16),
            5,
            Complexity::Medium,
            300.0,
        ),
        (
            "8 cpus, complex work",
            |n| n.cpu_count = Some(8),
            5,
            Complexity::Complex,
            200.0 * 1.4 * 1.2 * 1.3,
        ),
        (
            "preferred task",
            |n| n.preferred_tasks.push(TaskKind::Generation),
            5,
            Complexity::Medium,
            260.0,
        ),
        // latency 200 ms (medium band: min(200 / 100, 10) × 1.5), load 0.5, success 1.0
        (
            "unknowns use SOLLOL defaults",
            |n| {
                n.latency_ms = None;
                n.cpu_load_percent = None;
                n.success_rate = None
            },
            5,
            Complexity::Medium,
            200.0 / (1.0 + 2.0 * 1.5) / 1.75,
        ),
    ];
    for &(what, tweak, priority, complexity, expected) in cases {
        let mut probe = neutral("probe", &[(24_576, 10_000)]);
        tweak(&mut probe);
        let s = snap(vec![probe]);
        let req = Request::new("m", 4_700)
            .priority(priority)
            .complexity(complexity);
        let d = s.route(&Policy::default(), &req).expect("routable");
        assert_close(d.score, expected, what);
        // And the explanation's terms multiply to the same score.
        let e = s.explain(&Policy::default(), &req);
        let product: f64 = e.candidates[0].terms.iter().map(|t| t.value).product();
        assert!(
            (product - d.score).abs() < 1e-9 * d.score,
            "{what}: terms {product} vs {}",
            d.score
        );
    }
}

#[test]
fn affinity_multiplies_preferred_nodes() {
    let mut fast = neutral("fast", &[(24_576, 10_000)]);
    fast.labels.push("fast".into());
    let s = snap(vec![neutral("a", &[(24_576, 20_000)]), fast]);
    let policy = Policy::default();
    assert_eq!(
        chosen(&s, &policy, &Request::new("m", 4_700)).as_deref(),
        Some("a")
    );
    let req = Request::new("m", 4_700).prefer_labels(&["fast"]);
    assert_eq!(chosen(&s, &policy, &req).as_deref(), Some("fast"));
    let e = s.explain(&policy, &req);
    assert_close(score_of(&e, "fast"), 400.0, "affinity ×2");
    let req = Request::new("m", 4_700).prefer_nodes(&["fast"]);
    assert_eq!(chosen(&s, &policy, &req).as_deref(), Some("fast"));
}

#[test]
fn every_constant_is_configurable() {
    let params = {
        let mut v = SollolParams::default();
        v.excellent_multiplier = 0.5;
        v
    };
    let s = snap(vec![
        neutral("big", &[(24_576, 20_000)]),
        neutral("mid", &[(24_576, 3_000)]),
    ]);
    assert_eq!(
        chosen(&s, &Policy::default(), &Request::new("m", 2_500)).as_deref(),
        Some("big")
    );
    assert_eq!(
        chosen(&s, &Policy::Sollol(params), &Request::new("m", 2_500)).as_deref(),
        Some("mid")
    );
    let params = {
        let mut v = SollolParams::default();
        v.overwhelmed_below_mib = 4_000;
        v
    };
    let e = s.explain(&Policy::Sollol(params), &Request::new("m", 2_500));
    assert_close(score_of(&e, "mid"), 90.0, "moved threshold");
}
