//! The live cluster against a real redis-server: it follows writes and deregistrations,
//! and keeps its reservations across updates until released.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vramroute_cluster::{LiveCluster, LiveConfig, RegistryFeed};
use vramroute_registry::testing::RedisServer;
use vramroute_registry::{GpuStatsRecord, RedisRegistry, Registry, RegistryConfig};
use vramroute_router::{Policy, Request};

use crate::common::gpu;

fn record(id: &str, free: u64) -> GpuStatsRecord {
    let mut r = GpuStatsRecord::new(id, "nvidia", vramroute_cluster::unix_now());
    r.gpus = vec![gpu(0, Some(24576), Some(free))];
    r
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_registry_and_keeps_reservations() {
    let redis = RedisServer::start().expect("redis-server starts");
    let writer = RedisRegistry::new_lazy(&redis.url(), RegistryConfig::default()).expect("url");
    writer
        .publish_stats(&record("127.0.0.41:11434", 20000))
        .await
        .expect("publish");
    let reader = RedisRegistry::new_lazy(&redis.url(), RegistryConfig::default()).expect("url");
    let feed = Arc::new(RegistryFeed::new(reader, "test redis"));
    let mut cfg = LiveConfig::default();
    cfg.tick = Duration::from_millis(50);
    cfg.reservation_hold = Duration::from_secs(60);
    let live = Arc::new(
        LiveCluster::start(feed.as_ref(), Policy::default(), cfg)
            .await
            .expect("reads the registry"),
    );
    assert_eq!(live.view().nodes.len(), 1);
    let task = tokio::spawn(live.clone().follow(feed));

    // A cold load of 15,000 MiB is reserved on the only GPU ...
    let (d, id) = live
        .route_and_reserve(&Request::new("big", 15_000))
        .expect("fits");
    let id = id.expect("a cold load is reserved");
    assert_eq!(live.router().snapshot().node(d.node).id, "127.0.0.41:11434");
    // ... so a second one does not fit there, also after the next reports.
    writer
        .publish_stats(&record("127.0.0.41:11434", 20000))
        .await
        .expect("publish");
    writer
        .publish_stats(&record("127.0.0.42:11434", 18000))
        .await
        .expect("publish");
    until("the second node", || live.view().nodes.len() == 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d2 = live
        .router()
        .route(&Request::new("big2", 15_000))
        .expect("fits");
    assert_eq!(
        live.router().snapshot().node(d2.node).id,
        "127.0.0.42:11434"
    );
    assert_eq!(live.reservations_held(), 1);

    // Released: the first node has room again.
    live.release(id);
    assert_eq!(live.reservations_held(), 0);
    // The next publish no longer marks the model as loading there.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d3 = live
        .router()
        .route(&Request::new("big3", 15_000))
        .expect("fits");
    assert_eq!(
        live.router().snapshot().node(d3.node).id,
        "127.0.0.41:11434"
    );

    // A deregistered node leaves the view.
    writer
        .deregister("127.0.0.41:11434", None)
        .await
        .expect("deregister");
    until("the node to leave", || live.view().nodes.len() == 1).await;
    assert_eq!(live.health().status, "ok");
    task.abort();
}
