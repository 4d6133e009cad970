//! Explanations agree with decisions and read like SOLLOL's.

use vramroute_router::{GpuSpec, NodeSpec, Policy, Request, Target};

use crate::common::{neutral, snap};

#[test]
fn sollol_style_reasons() {
    // The GPU Router guide's example: 4 GB GPU, 3276 MiB usable, 2571 MiB free.
    let mut small = neutral("small", &[(4_096, 2_571)]);
    small.gpus[0].name = "GeForce GTX 1650".into();
    let s = snap(vec![small, neutral("cpu", &[])]);
    let p = Policy::default();
    let e = s.explain(&p, &Request::new("llama3.2:3b", 1_900));
    assert_eq!(e.node_id.as_deref(), Some("small"));
    assert_eq!(e.reason, "Fits in 3276MB VRAM (2571MB free)");
    let e = s.explain(&p, &Request::new("llama3.1:8b", 4_700));
    // Only CPUs are left: both compete, the reasons say why.
    let small = e
        .candidates
        .iter()
        .find(|c| c.node_id == "small")
        .expect("candidate");
    assert_eq!(
        small.reason,
        "Model too large (4700MB > 3276MB usable VRAM); running on CPU"
    );
    let cpu = e
        .candidates
        .iter()
        .find(|c| c.node_id == "cpu")
        .expect("candidate");
    assert_eq!(cpu.reason, "Node has no GPU");
    assert_eq!(cpu.target, Target::Cpu);
}

#[test]
fn explanation_lists_candidates_best_first_and_every_rejection() {
    let mut stale = neutral("stale", &[(24_576, 20_000)]);
    stale.report_age_ms = 1_000_000;
    let mut bad = NodeSpec::new("bad");
    bad.gpus.push(GpuSpec::new(0, 8_192, Some(9_000)));
    let s = snap(vec![
        neutral("a", &[(24_576, 6_000)]),
        neutral("b", &[(24_576, 20_000)]),
        stale,
        bad,
    ]);
    let e = s.explain(&Policy::default(), &Request::new("llama3.1:8b", 4_700));
    let d = s
        .route(&Policy::default(), &Request::new("llama3.1:8b", 4_700))
        .expect("routable");
    assert_eq!(e.decision, Some(d));
    assert_eq!(e.candidates[0].node, d.node);
    assert_eq!(
        e.candidates
            .iter()
            .map(|c| c.node_id.as_str())
            .collect::<Vec<_>>(),
        ["b", "a"]
    );
    let rejected: Vec<_> = e
        .rejected
        .iter()
        .map(|r| (r.node_id.as_str(), r.text.as_str()))
        .collect();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0].0, "bad");
    assert!(
        rejected[0]
            .1
            .starts_with("Report invalid: node \"bad\": `gpus[0].memory_free_mib` = 9000"),
        "{}",
        rejected[0].1
    );
    assert_eq!(
        rejected[1],
        ("stale", "Report stale (1000000ms old > 30000ms)")
    );
    let text = e.to_string();
    assert!(
        text.contains("-> b GPU 0: Fits in 19660MB VRAM (20000MB free)"),
        "{text}"
    );
    assert!(text.contains("excellent_gpu=2.0000"), "{text}");
    let json = serde_json::to_value(&e).expect("serializable");
    assert_eq!(json["node_id"], "b");
    assert_eq!(json["rejected"][1]["reason"]["kind"], "stale");
}

#[test]
fn no_route_is_explained() {
    let s = snap(vec![neutral("cpu", &[])]);
    let e = s.explain(&Policy::BinPack, &Request::new("m", 4_700).allow_cpu(false));
    assert_eq!(e.decision, None);
    assert_eq!(
        e.reason,
        "no eligible node can hold 4700MB (on GPU, or on CPU where allowed)"
    );
    assert!(e.to_string().contains("-> no route"));
}
