//! A 3-master Redis Cluster started by the test.

use std::time::{Duration, Instant};

use vramroute_registry::testing::RedisCluster;
use vramroute_registry::{Change, PushMode, RedisRegistry, Registry};

use vramroute_registry::testing::fixtures::GPU_STATS_NVIDIA;

use crate::common::{cfg, node, rpc_record};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_master_cluster_round_trip() {
    let cluster = RedisCluster::start().unwrap();
    let reg = RedisRegistry::connect(&cluster.url(), cfg()).await.unwrap();
    assert!(reg.is_cluster());
    let seeds = cluster.seed_urls();
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    let other = RedisRegistry::connect_cluster(&seeds, cfg()).await.unwrap();
    let mut changes = other.watch().await.unwrap();
    assert_eq!(changes.mode(), PushMode::ChannelAndPolling);

    for i in 0..30 {
        reg.publish_stats(&node(i)).await.unwrap();
    }
    for i in 0..5 {
        reg.register(&format!("10.0.0.{i}"), 50052, &rpc_record())
            .await
            .unwrap();
    }
    // Keys really are spread over the masters.
    let spread = cluster
        .nodes()
        .iter()
        .filter(|n| n.cli(&["DBSIZE"]).unwrap().trim() != "0")
        .count();
    assert_eq!(spread, 3, "keys land on every master");
    // A SOLLOL writer (redis-cli -c follows the redirect), found by the per-master SCAN.
    cluster
        .cli(&[
            "SETEX",
            "sollol:gpu:10.1.2.3:11434",
            "120",
            GPU_STATS_NVIDIA,
        ])
        .unwrap();
    // `other` swept at its first discovery (inside watch); its polling fallback sweeps
    // every poll_interval, so the new key shows up within a few hundred ms.
    let found = crate::common::eventually(Duration::from_secs(3), || async {
        other.discover().await.unwrap().stats.len() == 31
    })
    .await;
    assert!(found, "SOLLOL-written key not found by the per-master SCAN");
    let fresh = RedisRegistry::connect(&cluster.url(), cfg()).await.unwrap();
    assert_eq!(
        fresh.discover().await.unwrap().stats.len(),
        31,
        "first discovery sweeps"
    );
    let view = other.discover().await.unwrap();
    assert_eq!(view.stats.len(), 31);
    assert_eq!(view.rpc_nodes.len(), 5);
    assert!(view.stats_of("10.1.2.3:11434").is_some());
    assert!(view.skipped.is_empty());

    // Push of our writes through the cluster-wide channel.
    let rec = node(99);
    let start = Instant::now();
    reg.publish_stats(&rec).await.unwrap();
    let mut got = None;
    while start.elapsed() < Duration::from_secs(2) {
        if changes.recv_timeout(Duration::from_millis(200)).await
            == Some(Change::Updated(rec.node_id.to_string()))
        {
            got = Some(start.elapsed());
            break;
        }
    }
    let latency = got.expect("no push in cluster mode");
    assert!(
        latency < Duration::from_millis(100),
        "push took {latency:?}"
    );

    reg.deregister(&node(0).node_id, Some(("10.0.0.0", 50052)))
        .await
        .unwrap();
    let view = other.discover().await.unwrap();
    assert_eq!((view.stats.len(), view.rpc_nodes.len()), (31, 4));
    let history = reg.history(5).await.unwrap();
    assert_eq!(history.len(), 5);

    // Delta reads in cluster mode (the log, the index and the records live on different
    // masters) see a change and equal a full read.
    let mut changed = node(5);
    changed.gpus[0].memory_free_mb = Some(77);
    reg.publish_stats(&changed).await.unwrap();
    let delta = other.discover().await.unwrap();
    assert_eq!(delta.stats_of(&changed.node_id), Some(&changed));
    let full = RedisRegistry::connect(&cluster.url(), cfg())
        .await
        .unwrap()
        .discover()
        .await
        .unwrap();
    assert_eq!(delta, full);

    // A value far over the size cap (10 MiB) is skipped without being read: a cluster
    // reads with a bounded GETRANGE (then STRLEN for its length), so at most the cap.
    cluster
        .cli(&["SETRANGE", "sollol:gpu:big:11434", "10485759", "x"])
        .unwrap();
    let fresh = RedisRegistry::connect(&cluster.url(), cfg()).await.unwrap();
    let view = fresh.discover().await.unwrap();
    assert_eq!(view.stats.len(), full.stats.len());
    assert_eq!(view.skipped.len(), 1, "{:?}", view.skipped);
    assert_eq!(view.skipped[0].key, "sollol:gpu:big:11434");
    assert!(
        view.skipped[0].reason.contains("10485760 bytes"),
        "{:?}",
        view.skipped
    );
}

/// Change push in cluster mode reaches the watcher for a write to every master, each
/// within 100 ms of the write's return, while the watcher's polling fallback (a SCAN of
/// every master and a discovery of 1,000 records every 300 ms) runs beside it: PUBLISH
/// is cluster-wide, so one subscription on one master hears every write whichever
/// master holds the key, and the poll's work never holds back the messages (it did: a
/// push waited for the sweep and the discovery in front of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_push_sees_writes_on_every_master_promptly() {
    let cluster = RedisCluster::start().unwrap();
    let writer = RedisRegistry::connect(&cluster.url(), cfg()).await.unwrap();
    // Enough nodes that every master holds many keys, and a sweep/discovery has work.
    for chunk in (0..1000).collect::<Vec<_>>().chunks(50) {
        let writes = chunk.iter().map(|&i| {
            let writer = writer.clone();
            async move { writer.publish_stats(&node(i)).await }
        });
        for r in futures_util::future::join_all(writes).await {
            r.unwrap();
        }
    }
    let watcher = RedisRegistry::connect(&cluster.url(), cfg()).await.unwrap();
    let mut changes = watcher.watch().await.unwrap();
    // Which master holds a node's key (the others answer MOVED).
    let owner = |id: &str| -> Option<usize> {
        let key = format!("sollol:gpu:{id}");
        cluster
            .nodes()
            .iter()
            .position(|n| n.cli(&["EXISTS", &key]).is_ok_and(|r| r.trim() == "1"))
    };
    let mut late = Vec::new();
    let mut masters = std::collections::BTreeSet::new();
    let mut worst = Duration::ZERO;
    // 60 writes over ≥ 3 s: many of the watcher's 300 ms polls run in between.
    for i in 0..60 {
        let rec = node(i * 5);
        writer.publish_stats(&rec).await.unwrap();
        // The PUBLISH is the write's last command: from here on the message is on its way.
        let start = Instant::now();
        let mut got = None;
        while start.elapsed() < Duration::from_secs(3) {
            match changes.recv_timeout(Duration::from_millis(50)).await {
                Some(Change::Updated(id)) if id == rec.node_id => {
                    got = Some(start.elapsed());
                    break;
                }
                _ => {}
            }
        }
        let took = got.unwrap_or(Duration::from_secs(3));
        masters.insert(owner(&rec.node_id).expect("a master holds the key"));
        worst = worst.max(took);
        if took > Duration::from_millis(100) {
            late.push((rec.node_id.clone(), took));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(masters.len(), 3, "the writes landed on every master");
    assert!(late.is_empty(), "late pushes (worst {worst:?}): {late:?}");
}

/// A read of many keys goes to each master as one pipeline (grouped by the slot ranges
/// of `CLUSTER SLOTS`); when slots have moved to another master since the reader
/// learnt the topology, the commands a master answers with `MOVED` are sent again on
/// their own, so every record is still read, equal to a fresh reader's full read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_reads_follow_slots_that_moved_between_masters() {
    const NODES: usize = 400;
    let cluster = RedisCluster::start().unwrap();
    let writer = RedisRegistry::connect(&cluster.url(), cfg()).await.unwrap();
    let publishes = (0..NODES).map(|i| {
        let writer = &writer;
        async move { writer.publish_stats(&node(i)).await }
    });
    for r in futures_util::future::join_all(publishes).await {
        r.unwrap();
    }
    let reader = RedisRegistry::connect(&cluster.url(), cfg()).await.unwrap();
    assert_eq!(reader.discover().await.unwrap().stats.len(), NODES);

    let keys_on_first = || -> u64 {
        let n = cluster.nodes()[0].cli(&["DBSIZE"]).unwrap();
        n.trim().parse().unwrap()
    };
    let before = keys_on_first();
    cluster.reshard(0, 1, 400).unwrap();
    assert!(keys_on_first() < before, "the moved slots held keys");

    // Every record changes, so the reader's next read fetches every key again, with
    // the topology it learnt before the move.
    let publishes = (0..NODES).map(|i| {
        let writer = &writer;
        async move {
            let mut rec = node(i);
            rec.gpus[0].memory_free_mb = Some(1000 + i as u64);
            writer.publish_stats(&rec).await
        }
    });
    for r in futures_util::future::join_all(publishes).await {
        r.unwrap();
    }
    let view = reader.discover().await.unwrap();
    assert_eq!(view.stats.len(), NODES);
    assert!(view.skipped.is_empty(), "{:?}", view.skipped);
    for i in 0..NODES {
        let rec = view.stats_of(&node(i).node_id).expect("every node read");
        assert_eq!(rec.gpus[0].memory_free_mb, Some(1000 + i as u64));
    }
    let fresh = RedisRegistry::connect(&cluster.url(), cfg()).await.unwrap();
    assert_eq!(fresh.discover().await.unwrap(), view);
}

/// Commands the masters answered since their stats were reset, summed: (all commands,
/// `CLUSTER SLOTS`), from `INFO commandstats`.
fn commands_since_reset(cluster: &RedisCluster) -> (u64, u64) {
    let (mut all, mut slots) = (0, 0);
    for n in cluster.nodes() {
        let info = n.cli(&["INFO", "commandstats"]).unwrap();
        for line in info.lines() {
            let Some((name, rest)) = line.trim().split_once(":calls=") else {
                continue;
            };
            let calls: u64 = rest.split(',').next().unwrap().parse().unwrap();
            all += calls;
            if name == "cmdstat_cluster|slots" {
                slots += calls;
            }
        }
    }
    (all, slots)
}

fn reset_command_stats(cluster: &RedisCluster) {
    for n in cluster.nodes() {
        n.cli(&["CONFIG", "RESETSTAT"]).unwrap();
    }
}

/// Delta reads keep the slot map their connection asked for: the reader's commands per
/// read, counted by the masters, with no `CLUSTER SLOTS` among them once a map is kept.
/// Prints the counts (the figures in docs/scale.md, "Redis Cluster: the slot map
/// cached").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_reads_keep_the_slot_map() {
    const NODES: usize = 1000;
    const READS: usize = 20;
    const CHANGED: usize = 50;
    let cluster = RedisCluster::start().unwrap();
    let writer = RedisRegistry::connect(&cluster.url(), cfg()).await.unwrap();
    let publish_all = |round: usize| {
        let writer = &writer;
        async move {
            let publishes = (0..NODES)
                .filter(|i| round == 0 || i % (NODES / CHANGED) == round % (NODES / CHANGED))
                .map(|i| async move {
                    let mut rec = node(i);
                    rec.gpus[0].memory_free_mb = Some(1000 + (i + round) as u64);
                    writer.publish_stats(&rec).await
                });
            for r in futures_util::future::join_all(publishes).await {
                r.unwrap();
            }
        }
    };
    publish_all(0).await;
    let reader = RedisRegistry::connect(&cluster.url(), cfg()).await.unwrap();
    assert_eq!(reader.discover().await.unwrap().stats.len(), NODES);

    let (mut commands, mut slot_maps) = (0, 0);
    for round in 1..=READS {
        publish_all(round).await;
        reset_command_stats(&cluster);
        let view = reader.discover().await.unwrap();
        let (all, slots) = commands_since_reset(&cluster);
        // `CONFIG RESETSTAT` itself is not counted; `INFO` is, once per master.
        commands += all - cluster.nodes().len() as u64;
        slot_maps += slots;
        assert_eq!(view.stats.len(), NODES);
        let i = round % (NODES / CHANGED);
        let rec = view.stats_of(&node(i).node_id).unwrap();
        assert_eq!(rec.gpus[0].memory_free_mb, Some(1000 + (i + round) as u64));
    }
    println!(
        "{READS} delta reads of {CHANGED} changed records among {NODES}: {commands} commands \
         ({:.1} per read), {slot_maps} CLUSTER SLOTS ({:.2} per read)",
        commands as f64 / READS as f64,
        slot_maps as f64 / READS as f64
    );
    assert_eq!(slot_maps, 0, "a kept slot map is not asked again");
}
