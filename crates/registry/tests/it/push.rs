//! Change push: latency of new records, expiry and deletion noticed, both mechanisms.

use std::time::{Duration, Instant};

use vramroute_registry::testing::RedisServer;
use vramroute_registry::{Change, ChangeStream, KeyspaceEvents, PushMode, RedisRegistry, Registry};

use vramroute_registry::testing::fixtures::{GPU_STATS_CPU_ONLY, GPU_STATS_NVIDIA};

use crate::common::{cfg, node};

/// Waits (bounded) for `want`, ignoring other changes; returns the time it took.
async fn wait_for(stream: &mut ChangeStream, want: &Change, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let left = limit.saturating_sub(start.elapsed());
        match stream.recv_timeout(left).await {
            Some(c) if &c == want => return Some(start.elapsed()),
            Some(_) => continue,
            None => return None,
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_push_is_fast_and_sees_every_writer_and_expiry() {
    let server = RedisServer::start().unwrap();
    let watcher = RedisRegistry::connect(&server.url(), cfg()).await.unwrap();
    let writer = RedisRegistry::connect(&server.url(), {
        let mut registry_config = cfg();
        registry_config.stats_ttl = Duration::from_secs(1);
        registry_config
    })
    .await
    .unwrap();
    let mut changes = watcher.watch().await.unwrap();
    assert_eq!(changes.mode(), PushMode::KeyspaceEvents);
    let flags = server
        .cli(&["CONFIG", "GET", "notify-keyspace-events"])
        .unwrap();
    assert!(flags.contains('K'), "{flags}");

    // Our writer.
    let rec = node(7);
    let start = Instant::now();
    writer.publish_stats(&rec).await.unwrap();
    let got = wait_for(
        &mut changes,
        &Change::Updated(rec.node_id.to_string()),
        Duration::from_secs(2),
    )
    .await;
    let latency = start.elapsed();
    assert!(got.is_some(), "no push for our write");
    assert!(
        latency < Duration::from_millis(100),
        "push took {latency:?}"
    );

    // SOLLOL's writer (a raw SETEX): pushed too, and then discoverable without a SCAN.
    server
        .cli(&[
            "SETEX",
            "sollol:gpu:10.1.2.3:11434",
            "120",
            GPU_STATS_NVIDIA,
        ])
        .unwrap();
    let start = Instant::now();
    let got = wait_for(
        &mut changes,
        &Change::Updated("10.1.2.3:11434".into()),
        Duration::from_secs(2),
    )
    .await;
    assert!(got.is_some(), "no push for a SOLLOL write");
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "push took {:?}",
        start.elapsed()
    );

    // Expiry (1 s TTL) is noticed.
    let got = wait_for(
        &mut changes,
        &Change::Removed(rec.node_id.to_string()),
        Duration::from_secs(4),
    )
    .await;
    assert!(got.is_some(), "expiry not pushed");

    // Deletion (graceful shutdown).
    writer.deregister("10.1.2.3:11434", None).await.unwrap();
    let got = wait_for(
        &mut changes,
        &Change::Removed("10.1.2.3:11434".into()),
        Duration::from_secs(2),
    )
    .await;
    assert!(got.is_some(), "deregistration not pushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_and_polling_fallback_when_keyspace_events_are_off() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = cfg();
        registry_config.keyspace_events = KeyspaceEvents::Off;
        registry_config.stats_ttl = Duration::from_secs(1);
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config).await.unwrap();
    let mut changes = reg.watch().await.unwrap();
    assert_eq!(changes.mode(), PushMode::ChannelAndPolling);
    assert_eq!(
        server
            .cli(&["CONFIG", "GET", "notify-keyspace-events"])
            .unwrap()
            .lines()
            .nth(1)
            .unwrap_or(""),
        ""
    );

    let rec = node(3);
    let start = Instant::now();
    reg.publish_stats(&rec).await.unwrap();
    let got = wait_for(
        &mut changes,
        &Change::Updated(rec.node_id.to_string()),
        Duration::from_secs(2),
    )
    .await;
    assert!(got.is_some());
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "push took {:?}",
        start.elapsed()
    );

    // A SOLLOL write and an expiry are found by polling (poll_interval 300 ms).
    server
        .cli(&[
            "SETEX",
            "sollol:gpu:10.1.2.4:11434",
            "120",
            GPU_STATS_CPU_ONLY,
        ])
        .unwrap();
    let got = wait_for(
        &mut changes,
        &Change::Updated("10.1.2.4:11434".into()),
        Duration::from_secs(3),
    )
    .await;
    assert!(got.is_some(), "polling missed a SOLLOL write");
    let got = wait_for(
        &mut changes,
        &Change::Removed(rec.node_id.to_string()),
        Duration::from_secs(4),
    )
    .await;
    assert!(got.is_some(), "polling missed an expiry");
}

/// The polling fallback discovers on its own clock, beside the caller's discoveries (a
/// coordinator's follow loop). Its reads must neither take what the caller's next delta
/// read rests on (the caller would read everything again) nor make the caller's reads
/// refer to a read the caller never saw (a changes-only follower would refuse them): in
/// a 3-master Cluster, where this fallback is the push, both made a follower re-read
/// 10,000 records every few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_polling_fallback_reads_beside_the_caller_without_taking_its_delta_reads() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = cfg();
        registry_config.keyspace_events = KeyspaceEvents::Off;
        registry_config.poll_interval = Duration::from_millis(10);
        registry_config.changes_only = true;
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config).await.unwrap();
    for i in 0..50 {
        reg.publish_stats(&node(i)).await.unwrap();
    }
    let changes = reg.watch().await.unwrap();
    assert_eq!(changes.mode(), PushMode::ChannelAndPolling);
    let mut last = reg.discover().await.unwrap();
    assert_eq!(last.stats.len(), 50);
    for round in 0..40 {
        reg.publish_stats(&node(round % 50)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(7)).await;
        let view = reg.discover().await.unwrap();
        assert_eq!(
            view.changes_since,
            Some(last.sequence),
            "round {round}: this read does not follow the caller's last one"
        );
        assert_eq!(view.stats.len(), 50, "round {round}");
        last = view;
    }
    drop(changes);
}

/// `GETRANGE` calls the server counted since its stats were last reset (discovery reads
/// each record with one).
fn getrange_calls(server: &RedisServer) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]).unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_getrange:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// The polling fallback reads what no push announces — records no index lists (SOLLOL's
/// writes) and the indexes' ids (expiries) — never again the records our writers changed
/// and announced on the channel: the caller reads those itself. (In a 3-master Cluster at
/// 10,000 nodes, every poll read and decoded again the ≈ 4,000 records written in its 2 s,
/// as much decoding as the follower's own, and kept a second copy of every record.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_polling_fallback_reads_only_what_no_push_announces() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = cfg();
        registry_config.keyspace_events = KeyspaceEvents::Off;
        registry_config.poll_interval = Duration::from_millis(50);
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config).await.unwrap();
    for i in 0..200 {
        reg.publish_stats(&node(i)).await.unwrap();
    }
    server
        .cli(&[
            "SETEX",
            "sollol:gpu:10.1.2.5:11434",
            "120",
            GPU_STATS_CPU_ONLY,
        ])
        .unwrap();
    let mut changes = reg.watch().await.unwrap();
    assert_eq!(changes.mode(), PushMode::ChannelAndPolling);
    // The first polls (a sweep finds the SOLLOL key) prime the poller.
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.cli(&["CONFIG", "RESETSTAT"]).unwrap();
    for i in 0..200 {
        reg.publish_stats(&node(i)).await.unwrap();
    }
    // About ten polls.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reads = getrange_calls(&server);
    assert!(
        (1..100).contains(&reads),
        "{reads} records read by ~10 polls after 200 announced writes: the polls should \
         read the one SOLLOL record each, not our announced ones"
    );
    // A SOLLOL write is still found by polling.
    server
        .cli(&[
            "SETEX",
            "sollol:gpu:10.1.2.5:11434",
            "120",
            GPU_STATS_NVIDIA,
        ])
        .unwrap();
    let got = wait_for(
        &mut changes,
        &Change::Updated("10.1.2.5:11434".into()),
        Duration::from_secs(3),
    )
    .await;
    assert!(got.is_some(), "polling missed a SOLLOL write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_enabled_mode_leaves_server_config_alone() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = cfg();
        registry_config.keyspace_events = KeyspaceEvents::IfEnabled;
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config.clone())
        .await
        .unwrap();
    assert_eq!(
        reg.watch().await.unwrap().mode(),
        PushMode::ChannelAndPolling
    );
    server
        .cli(&["CONFIG", "SET", "notify-keyspace-events", "AK"])
        .unwrap();
    assert_eq!(reg.watch().await.unwrap().mode(), PushMode::KeyspaceEvents);
    assert!(server
        .cli(&["CONFIG", "GET", "notify-keyspace-events"])
        .unwrap()
        .contains("AK"));
}
