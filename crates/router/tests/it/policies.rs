//! binpack, spread and sollol side by side; ties; parsing.

use vramroute_router::{FitKind, Policy, Request, ResidentModel, SollolParams};

use crate::common::{chosen, neutral, snap};

#[test]
fn policy_table() {
    // Free VRAM 5000 / 9000 / 20000 on 24 GB GPUs; a 4700 MiB model fits all three.
    let nodes = || {
        vec![
            neutral("a-20g", &[(24_576, 20_000)]),
            neutral("b-9g", &[(24_576, 9_000)]),
            neutral("c-5g", &[(24_576, 5_000)]),
            neutral("d-cpu", &[]),
        ]
    };
    let s = snap(nodes());
    let req = Request::new("llama3.1:8b", 4_700);
    let cases: &[(Policy, &str)] = &[
        (Policy::BinPack, "c-5g"), // fullest GPU that still fits
        (Policy::Spread, "a-20g"), // most free VRAM
        // sollol: 20000 and 9000 are both "excellent" (×2.0): tie, lowest id wins.
        (Policy::default(), "a-20g"),
    ];
    for (policy, want) in cases {
        assert_eq!(chosen(&s, policy, &req).as_deref(), Some(*want), "{policy}");
    }
    // Remove the 20 GB node: sollol's tie now goes to b, binpack still c.
    let s = snap(nodes().into_iter().filter(|n| n.id != "a-20g").collect());
    assert_eq!(
        chosen(&s, &Policy::default(), &req).as_deref(),
        Some("b-9g")
    );
    assert_eq!(chosen(&s, &Policy::BinPack, &req).as_deref(), Some("c-5g"));
    // Nothing fits on a GPU: every policy falls back to the CPU node... or to any node's CPU.
    let big = Request::new("llama3.1:70b", 40_000);
    for policy in [Policy::BinPack, Policy::Spread, Policy::default()] {
        let d = s.route(&policy, &big).expect("cpu fallback");
        assert_eq!(d.target, vramroute_router::Target::Cpu, "{policy}");
    }
}

#[test]
fn binpack_and_spread_prefer_warm_and_gpu() {
    let mut warm = neutral("z-warm", &[(24_576, 20_000)]);
    warm.loaded_models
        .push(ResidentModel::new("llama3.1:8b", 4_700, 4_700));
    let s = snap(vec![
        neutral("a", &[(24_576, 5_000)]),
        warm,
        neutral("b", &[(81_920, 70_000)]),
    ]);
    let req = Request::new("llama3.1:8b", 4_700);
    for policy in [Policy::BinPack, Policy::Spread] {
        let d = s.route(&policy, &req).expect("routable");
        assert_eq!(
            (s.node(d.node).id.as_str(), d.fit),
            ("z-warm", FitKind::AlreadyLoaded),
            "{policy}"
        );
    }
    // A GPU placement beats a CPU one even with more free RAM.
    let s = snap(vec![
        neutral("a-cpu", &[]),
        neutral("b-gpu", &[(8_192, 5_000)]),
    ]);
    for policy in [Policy::BinPack, Policy::Spread] {
        assert_eq!(
            chosen(&s, &policy, &req).as_deref(),
            Some("b-gpu"),
            "{policy}"
        );
    }
}

#[test]
fn parse_and_serde() {
    assert_eq!(
        "sollol".parse::<Policy>().expect("known"),
        Policy::default()
    );
    assert_eq!(
        " BinPack ".parse::<Policy>().expect("known"),
        Policy::BinPack
    );
    assert_eq!("spread".parse::<Policy>().expect("known"), Policy::Spread);
    let err = "fastest".parse::<Policy>().expect_err("unknown");
    assert!(
        err.to_string()
            .contains("\"sollol\", \"binpack\" or \"spread\""),
        "{err}"
    );

    let p: Policy = serde_json::from_str("\"spread\"").expect("string form");
    assert_eq!(p, Policy::Spread);
    let p: Policy = serde_json::from_str(r#"{"kind":"binpack"}"#).expect("map form");
    assert_eq!(p, Policy::BinPack);
    let p: Policy = serde_json::from_str(r#"{"kind":"sollol","gpu_task_on_cpu_multiplier":0.1}"#)
        .expect("partial");
    assert_eq!(
        p,
        Policy::Sollol({
            let mut v = SollolParams::default();
            v.gpu_task_on_cpu_multiplier = 0.1;
            v
        })
    );
    // Round trip.
    let json = serde_json::to_string(&p).expect("serializes");
    assert_eq!(serde_json::from_str::<Policy>(&json).expect("parses"), p);
    // Typos and bad values are errors, not silently ignored.
    assert!(serde_json::from_str::<Policy>(r#"{"kind":"sollol","warm_multiplyer":2}"#).is_err());
    let err = serde_json::from_str::<Policy>(r#"{"kind":"sollol","good_above_mib":100}"#)
        .expect_err("unordered");
    assert!(err.to_string().contains("overwhelmed_below_mib"), "{err}");
}
