//! Load: concurrent cold loads spread over GPUs (VRAM reserved until the load shows),
//! and a slow node visibly receives fewer requests (measured latency).

use std::time::Duration;

use vramroute_gateway::{GatewayConfig, NODE_HEADER};

use crate::support::{fake, header, node_id, view, Harness, NodeDef};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_loads_go_to_different_gpus() {
    // mixtral:8x7b is 26,000 MiB (SOLLOL's table): each GPU holds one.
    let slow_load = |b: vramroute_ollama::testing::FakeOllamaBuilder| {
        b.first_byte_delay(Duration::from_millis(400))
    };
    let a = fake(&["mixtral:8x7b"], slow_load);
    let b = fake(&["mixtral:8x7b"], slow_load);
    let h = Harness::start(
        view(&[
            NodeDef {
                fake: &a,
                gpus: vec![(40960, 30000)],
            },
            NodeDef {
                fake: &b,
                gpus: vec![(40960, 30000)],
            },
        ]),
        GatewayConfig::default(),
    )
    .await;
    let body = r#"{"model":"mixtral:8x7b","prompt":"hi","stream":false}"#;
    let (r1, r2) = tokio::join!(
        h.post("/api/generate", body).send(),
        h.post("/api/generate", body).send()
    );
    let (r1, r2) = (r1.expect("answer"), r2.expect("answer"));
    assert_eq!((r1.status().as_u16(), r2.status().as_u16()), (200, 200));
    let nodes = [header(&r1, NODE_HEADER), header(&r2, NODE_HEADER)];
    assert_ne!(nodes[0], nodes[1], "both cold loads were sent to one GPU");
    assert_eq!(a.stats("/api/generate").received, 1);
    assert_eq!(b.stats("/api/generate").received, 1);
    // The reservations last until the nodes' reports show the model (or they expire),
    // and a request for the model now goes warm to a node loading it: no third load.
    assert_eq!(h.live.reservations_held(), 2);
    tokio::time::sleep(Duration::from_millis(120)).await;
    let r = h.post("/api/generate", body).send().await.expect("answer");
    let reason = header(&r, vramroute_gateway::REASON_HEADER);
    assert!(reason.contains("already loaded"), "{reason}");
    let _ = r.bytes().await;
    assert_eq!(h.live.reservations_held(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_node_receives_fewer_requests() {
    let slow = fake(&["llama3.1:8b"], |b| {
        b.first_byte_delay(Duration::from_millis(600))
    });
    let quick = fake(&["llama3.1:8b"], |b| b);
    // Warm on both; the slow node looks better on paper (more free VRAM), so it is
    // tried first: only the measured latency moves requests away from it.
    let mut v = view(&[
        NodeDef {
            fake: &slow,
            gpus: vec![(24576, 20000)],
        },
        NodeDef {
            fake: &quick,
            gpus: vec![(24576, 6000)],
        },
    ]);
    for n in &mut v.nodes {
        n.loaded_models.push(vramroute_cluster::LoadedView::new(
            "llama3.1:8b",
            Some(4700),
            Some(4700),
        ));
    }
    let h = Harness::start(v, GatewayConfig::default()).await;
    for _ in 0..12 {
        let r = h
            .post("/api/generate", r#"{"model":"llama3.1:8b","prompt":"hi"}"#)
            .send()
            .await
            .expect("answer");
        let _ = r.bytes().await;
        // Let the measured latency reach the router (republished every 50 ms).
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    let (s, q) = (
        slow.stats("/api/generate").received,
        quick.stats("/api/generate").received,
    );
    assert_eq!(s + q, 12);
    assert!(
        (1..=2).contains(&s) && q >= 10,
        "slow node got {s}, quick node {q}"
    );
    let load = h.live.signals().get(&node_id(&slow)).expect("measured");
    assert!(load.ttfb_ms.is_some_and(|t| t >= 500.0), "{load:?}");
}

/// The gateway resolves a model's size once per published view (not per request): a
/// new view with another configured size is used from the next request on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_view_s_model_size_is_used_from_the_next_request() {
    let node = fake(&["llama3.1:8b"], |b| b);
    let with_size = |mb: u64| {
        let mut v = view(&[NodeDef {
            fake: &node,
            gpus: vec![(24576, 20000)],
        }]);
        v.model_sizes.insert("llama3.1:8b".to_owned(), mb);
        v
    };
    let h = Harness::start(with_size(5000), GatewayConfig::default()).await;
    h.stop_republishing().await;
    let body = r#"{"model":"llama3.1:8b","prompt":"hi","stream":false}"#;
    let mut seen = Vec::new();
    for mb in [5000, 5000, 6000, 6000, 7000] {
        h.live.publish(with_size(mb), 0);
        // Twice on each view: the second answer comes from the cache.
        for _ in 0..2 {
            let r = h.post("/api/generate", body).send().await.expect("answers");
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await.expect("body");
            let last = h.live.decisions().recent(1);
            seen.push(last.first().and_then(|d| d.size_mb));
        }
    }
    let want: Vec<Option<u64>> = [5000, 5000, 5000, 5000, 6000, 6000, 6000, 6000, 7000, 7000]
        .into_iter()
        .map(Some)
        .collect();
    assert_eq!(seen, want);
}
