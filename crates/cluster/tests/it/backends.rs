//! rpc backends probed (against loopback servers speaking llama.cpp's RPC bytes) and the
//! planner's choice of backends: dead ones and those of vanished nodes are left out,
//! with the reason.

use std::time::Duration;

use vramroute_cluster::{plan, BackendProber, StatusView};
use vramroute_rpc::testing::FakeRpcServer;

use crate::common::{cluster, registration, stats, NOW};

const GIB: u64 = 1 << 30;

fn server(ip: [u8; 4]) -> FakeRpcServer {
    FakeRpcServer::builder()
        .ip(ip.into())
        .devices(&[(30 * GIB, 32 * GIB)])
        .start()
        .expect("fake rpc-server starts")
}

fn at(mut e: vramroute_registry::RpcNodeEntry, port: u16) -> vramroute_registry::RpcNodeEntry {
    e.port = port;
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_orphaned_backends_are_left_out_with_the_reason() {
    let alive = server([127, 0, 0, 51]);
    let busy = server([127, 0, 0, 52]);
    let dead = server([127, 0, 0, 53]);
    let dead_port = dead.socket_addr().port();
    drop(dead);
    let _attached = busy
        .attach(Duration::from_secs(2))
        .expect("a llama-server attaches");
    let orphan = server([127, 0, 0, 54]);
    let c = cluster(
        vec![
            stats(
                "127.0.0.51:11434",
                vec![],
                Some((32_000, Some(30_000))),
                vec![],
                1.0,
            ),
            stats(
                "127.0.0.52:11434",
                vec![],
                Some((32_000, Some(30_000))),
                vec![],
                1.0,
            ),
            stats(
                "127.0.0.53:11434",
                vec![],
                Some((32_000, Some(30_000))),
                vec![],
                1.0,
            ),
            // 127.0.0.54 has no stats record: killed without deregistering.
        ],
        vec![
            at(
                registration("127.0.0.51", 25_600, &[]),
                alive.socket_addr().port(),
            ),
            at(
                registration("127.0.0.52", 25_600, &[]),
                busy.socket_addr().port(),
            ),
            at(registration("127.0.0.53", 25_600, &[]), dead_port),
            at(
                registration("127.0.0.54", 25_600, &[]),
                orphan.socket_addr().port(),
            ),
        ],
    );
    let mut view = StatusView::from_cluster(&c, "test".into(), NOW + 1.0, 30.0, 0.8);
    let prober = BackendProber::default();
    prober.probe_view(&mut view).await;
    let state = |ip: &str| {
        view.rpc_backends
            .iter()
            .find(|b| b.host == ip)
            .and_then(|b| b.health.as_ref())
            .map(|h| h.state.as_str())
    };
    assert_eq!(state("127.0.0.51"), Some("reachable"));
    assert_eq!(state("127.0.0.52"), Some("busy"));
    assert_eq!(state("127.0.0.53"), Some("unreachable"));
    let first = view.rpc_backends[0].health.clone().expect("probed");
    assert_eq!(first.version, Some((7, 0, 0)));
    assert_eq!(first.devices[0].total_mib(), 32 * 1024);

    let (workers, excluded, warnings) = plan::workers_checked(&view);
    let hosts: Vec<&str> = workers.iter().map(|w| w.host.as_str()).collect();
    assert!(
        hosts.contains(&"127.0.0.51") && hosts.contains(&"127.0.0.52"),
        "{hosts:?}"
    );
    assert!(
        !hosts.contains(&"127.0.0.53") && !hosts.contains(&"127.0.0.54"),
        "{hosts:?}"
    );
    let why = |ip: &str| {
        excluded
            .iter()
            .find(|e| e.backend.starts_with(ip))
            .map(|e| e.reason.clone())
            .unwrap_or_default()
    };
    assert!(why("127.0.0.53").contains("unreachable"), "{excluded:?}");
    assert!(
        why("127.0.0.54").contains("stats record is gone"),
        "{excluded:?}"
    );
    assert!(warnings.iter().any(|w| w.contains("busy")), "{warnings:?}");

    // A second probe within the cache's life asks nobody.
    let seen = alive.connections();
    prober.probe_view(&mut view).await;
    assert_eq!(alive.connections(), seen);

    // Nothing usable: the planner says which backends were left out and why.
    let only_dead = cluster(
        vec![stats(
            "127.0.0.53:11434",
            vec![],
            Some((32_000, None)),
            vec![],
            1.0,
        )],
        vec![at(registration("127.0.0.53", 25_600, &[]), dead_port)],
    );
    let mut view = StatusView::from_cluster(&only_dead, "test".into(), NOW + 1.0, 30.0, 0.8);
    BackendProber::default().probe_view(&mut view).await;
    let est = vramroute_alloc::ModelSizer::new()
        .estimate("llama3.2:3b", 4096)
        .expect("in the table");
    let err = plan::for_view(est, &view, None).expect_err("no backend is usable");
    assert!(err.to_string().contains("unreachable"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_cache_forgets_backends_that_left() {
    // A port nobody listens on: every probe is answered at once (refused).
    let dead_port = {
        let s = server([127, 0, 0, 60]);
        s.socket_addr().port()
    };
    let prober =
        BackendProber::default().with_ttl(Duration::from_millis(10), Duration::from_millis(40));
    // Eight rounds of four backends each, every round new hosts (nodes that left come
    // back under new ids): the cache holds this round's, not every one ever seen.
    for round in 0..8u8 {
        let regs = (0..4u8)
            .map(|i| {
                at(
                    registration(&format!("127.0.{}.{}", 70 + round, 10 + i), 25_600, &[]),
                    dead_port,
                )
            })
            .collect();
        let c = cluster(vec![], regs);
        let mut view = StatusView::from_cluster(&c, "test".into(), NOW + 1.0, 30.0, 0.8);
        assert_eq!(view.rpc_backends.len(), 4);
        prober.probe_view(&mut view).await;
        assert!(view.rpc_backends.iter().all(|b| b.health.is_some()));
        assert_eq!(prober.cached(), 4, "round {round}");
        // Past 2 × busy_ttl: the departed backends' answers can no longer be used.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
