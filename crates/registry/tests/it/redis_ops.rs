//! Writes, expiry, deregistration, discovery and bad records on a real redis-server.

use std::time::Duration;

use vramroute_registry::testing::RedisServer;
use vramroute_registry::{RedisRegistry, Registry, RouterMetadata, RpcBackend, ScanStrategy};

use vramroute_registry::testing::fixtures::{GPU_STATS_CPU_ONLY, GPU_STATS_NVIDIA, RPC_NODE_GPU};

use crate::common::{cfg, command_calls, deadline_in, eventually, node, rpc_record};

#[tokio::test]
async fn records_expire_after_their_ttl() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = cfg();
        registry_config.stats_ttl = Duration::from_secs(1);
        registry_config.registration_ttl = Duration::from_secs(2);
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config).await.unwrap();
    reg.publish_stats(&node(1)).await.unwrap();
    reg.register("10.0.0.1", 50052, &rpc_record())
        .await
        .unwrap();
    let ttl = reg.pttl("sollol:gpu:10.0.0.1:11434").await.unwrap();
    assert!((1..=1000).contains(&ttl), "PTTL {ttl}");
    let ttl = reg.pttl("sollol:rpc:node:10.0.0.1:50052").await.unwrap();
    assert!((1000..=2000).contains(&ttl), "PTTL {ttl}");
    let view = reg.discover().await.unwrap();
    assert_eq!((view.stats.len(), view.rpc_nodes.len()), (1, 1));
    let gone = eventually(Duration::from_secs(4), || async {
        reg.discover().await.unwrap().stats.is_empty()
    })
    .await;
    assert!(gone, "stats record did not expire");
    assert_eq!(
        reg.discover().await.unwrap().rpc_nodes.len(),
        1,
        "registration outlives stats"
    );
    let gone = eventually(Duration::from_secs(4), || async {
        reg.discover().await.unwrap().rpc_nodes.is_empty()
    })
    .await;
    assert!(gone, "registration did not expire");
}

#[tokio::test]
async fn deregister_removes_keys_and_index_entries_at_once() {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), cfg()).await.unwrap();
    let (a, b) = (node(1), node(2));
    reg.publish_stats(&a).await.unwrap();
    reg.publish_stats(&b).await.unwrap();
    reg.register("10.0.0.1", 50052, &rpc_record())
        .await
        .unwrap();
    reg.deregister(&a.node_id, Some(("10.0.0.1", 50052)))
        .await
        .unwrap();
    assert_eq!(
        server
            .cli(&["EXISTS", "sollol:gpu:10.0.0.1:11434"])
            .unwrap()
            .trim(),
        "0"
    );
    assert_eq!(
        server
            .cli(&["EXISTS", "sollol:rpc:node:10.0.0.1:50052"])
            .unwrap()
            .trim(),
        "0"
    );
    assert_eq!(
        server
            .cli(&["ZSCORE", "vramroute:index:gpu", &a.node_id])
            .unwrap()
            .trim(),
        ""
    );
    assert_eq!(
        server
            .cli(&["ZSCORE", "vramroute:index:rpc", "10.0.0.1:50052"])
            .unwrap()
            .trim(),
        ""
    );
    let view = reg.discover().await.unwrap();
    let ids: Vec<&str> = view.stats.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [b.node_id.as_str()]);
    assert!(view.rpc_nodes.is_empty());
}

#[tokio::test]
async fn discovery_uses_a_constant_number_of_round_trips() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = cfg();
        registry_config.scan = ScanStrategy::Never;
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config).await.unwrap();
    for i in 0..300 {
        reg.publish_stats(&node(i)).await.unwrap();
    }
    for i in 0..40 {
        reg.register(&format!("10.0.0.{i}"), 50052, &rpc_record())
            .await
            .unwrap();
    }
    let before = server.cli(&["INFO", "commandstats"]).unwrap();
    let view = reg.discover().await.unwrap();
    let after = server.cli(&["INFO", "commandstats"]).unwrap();
    assert_eq!(view.stats.len(), 300);
    assert_eq!(view.rpc_nodes.len(), 40);
    let delta = |c: &str| command_calls(&after, c) - command_calls(&before, c);
    assert_eq!(delta("eval"), 2, "two index prunes");
    assert_eq!(delta("getrange"), 340, "one bounded read per record");
    assert_eq!(
        delta("strlen"),
        0,
        "no value over the cap, no junk: no length asked"
    );
    assert_eq!(delta("get"), 1, "the metadata");
    assert_eq!(delta("zrangebyscore"), 2, "live ids of both indexes");
    assert_eq!(delta("xrevrange"), 1, "the change-log cursor");
    assert_eq!(delta("scan") + delta("keys"), 0);
    // Sorted, as documented.
    assert!(view.stats.windows(2).all(|w| w[0].0 < w[1].0));
    // The next discovery reads only the changes: two logged writes, two records read.
    let seventh = node(7);
    reg.publish_stats(&seventh).await.unwrap();
    reg.register("10.0.0.3", 50052, &rpc_record())
        .await
        .unwrap();
    let before = server.cli(&["INFO", "commandstats"]).unwrap();
    let again = reg.discover().await.unwrap();
    let after = server.cli(&["INFO", "commandstats"]).unwrap();
    assert_eq!(again.stats_of(&seventh.node_id), Some(&seventh));
    assert_eq!((again.stats.len(), again.rpc_nodes.len()), (300, 40));
    let delta = |c: &str| command_calls(&after, c) - command_calls(&before, c);
    assert_eq!(delta("xrange"), 1, "the change log");
    assert_eq!(delta("zrangebyscore"), 2, "expired entries of both indexes");
    assert_eq!(
        delta("strlen") + delta("getrange"),
        2,
        "the two changed records"
    );
    assert_eq!(delta("zscore"), 2, "their index entries");
    assert_eq!(delta("get"), 1, "the metadata");
    assert_eq!(delta("xrevrange") + delta("scan") + delta("keys"), 0);
}

#[tokio::test]
async fn bad_records_are_skipped_and_good_ones_kept() {
    let server = RedisServer::start().unwrap();
    let good_a = GPU_STATS_NVIDIA;
    let good_b = GPU_STATS_CPU_ONLY;
    let huge_list = format!(
        r#"{{"vendor": "nvidia", "gpus": [{}], "timestamp": 1.0}}"#,
        vec![r#"{"index": 0, "name": "x"}"#; 300].join(", ")
    );
    let huge_string = format!(
        r#"{{"vendor": "{}", "gpus": [], "timestamp": 1.0}}"#,
        "x".repeat(5000)
    );
    let huge_value = format!(
        r#"{{"vendor": "none", "gpus": [], "timestamp": 1.0, "pad": "{}"}}"#,
        "x".repeat(120_000)
    );
    let bad = [
        ("bad-json", "{not json".to_owned()),
        ("missing", r#"{"vendor": "nvidia", "timestamp": 1.0}"#.to_owned()),
        ("wrong-type", r#"{"vendor": "nvidia", "gpus": "many", "timestamp": 1.0}"#.to_owned()),
        ("negative", r#"{"vendor": "nvidia", "gpus": [{"index": 0, "name": "x", "memory_free_mb": -5}], "timestamp": 1.0}"#.to_owned()),
        ("absurd", r#"{"vendor": "nvidia", "gpus": [{"index": 0, "name": "x", "memory_total_mb": 1e30}], "timestamp": 1.0}"#.to_owned()),
        ("absurd-int", r#"{"vendor": "nvidia", "gpus": [{"index": 0, "name": "x", "memory_total_mb": 18446744073709551615}], "timestamp": 1.0}"#.to_owned()),
        ("nan-time", r#"{"vendor": "none", "gpus": [], "timestamp": NaN}"#.to_owned()),
        ("huge-list", huge_list),
        ("huge-string", huge_string),
        ("huge-value", huge_value),
        ("not-object", "[1, 2]".to_owned()),
    ];
    for (id, value) in &bad {
        server
            .cli(&["SET", &format!("sollol:gpu:{id}"), value])
            .unwrap();
    }
    server
        .cli(&["SET", "sollol:gpu:10.1.2.3:11434", good_a])
        .unwrap();
    server
        .cli(&["SET", "sollol:gpu:10.1.2.4:11434", good_b])
        .unwrap();
    server
        .cli(&[
            "SET",
            "sollol:rpc:node:10.9.9.9:50052",
            r#"{"has_gpu": "yes"}"#,
        ])
        .unwrap();
    server
        .cli(&["SET", "sollol:rpc:node:10.1.2.3:50052", RPC_NODE_GPU])
        .unwrap();
    server
        .cli(&["SET", "sollol:router:metadata", "garbage"])
        .unwrap();
    let mut config = cfg();
    config.limits.max_record_bytes = 100_000;
    let reg = RedisRegistry::connect(&server.url(), config).await.unwrap();
    let view = reg.discover().await.unwrap();
    let ids: Vec<&str> = view.stats.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["10.1.2.3:11434", "10.1.2.4:11434"]);
    assert_eq!(view.rpc_nodes.len(), 1);
    assert!(view.metadata.is_none());
    let mut skipped: Vec<&str> = view.skipped.iter().map(|s| s.key.as_str()).collect();
    skipped.sort_unstable();
    let mut want: Vec<String> = bad
        .iter()
        .map(|(id, _)| format!("sollol:gpu:{id}"))
        .collect();
    want.push("sollol:rpc:node:10.9.9.9:50052".into());
    want.push("sollol:router:metadata".into());
    want.sort_unstable();
    assert_eq!(skipped, want);
    for s in &view.skipped {
        assert!(!s.reason.is_empty());
        assert!(s.reason.len() < 500, "reason stays short: {}", s.reason);
    }
    let reason = |id: &str| {
        view.skipped
            .iter()
            .find(|s| s.key == format!("sollol:gpu:{id}"))
            .map(|s| s.reason.clone())
            .unwrap()
    };
    assert!(reason("missing").contains("gpus"), "{}", reason("missing"));
    assert!(
        reason("negative").contains("memory_free_mb") || reason("negative").contains("-5"),
        "{}",
        reason("negative")
    );
    assert!(
        reason("absurd-int").contains("absurd"),
        "{}",
        reason("absurd-int")
    );
    assert!(
        reason("huge-list").contains("300"),
        "{}",
        reason("huge-list")
    );
    assert_eq!(reg.skipped_records_total(), want.len() as u64);
}

#[tokio::test]
async fn refuses_to_write_what_it_would_not_read() {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), cfg()).await.unwrap();
    let mut r = node(1);
    r.timestamp = f64::NAN;
    assert!(reg.publish_stats(&r).await.is_err());
    let mut r = node(1);
    r.node_id = "bad id*".into();
    assert!(reg.publish_stats(&r).await.is_err());
    let mut rec = rpc_record();
    rec.gpu_vram_mb.pop();
    assert!(reg.register("10.0.0.1", 50052, &rec).await.is_err());
    assert_eq!(server.cli(&["DBSIZE"]).unwrap().trim(), "0");
}

#[tokio::test]
async fn router_metadata_and_locks() {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), cfg()).await.unwrap();
    assert_eq!(reg.router_metadata().await.unwrap(), None);
    let meta = RouterMetadata::new(vec![RpcBackend {
        host: "10.0.0.1".into(),
        port: 50052,
    }]);
    reg.set_router_metadata(&meta).await.unwrap();
    assert_eq!(
        server
            .cli(&["GET", "sollol:router:metadata"])
            .unwrap()
            .trim(),
        r#"{"rpc_backends": [{"host": "10.0.0.1", "port": 50052}]}"#
    );
    assert_eq!(reg.router_metadata().await.unwrap(), Some(meta));

    let ttl = Duration::from_millis(500);
    assert!(reg.try_lock("optimize", "a", ttl).await.unwrap());
    assert!(!reg.try_lock("optimize", "b", ttl).await.unwrap());
    assert!(
        reg.try_lock("optimize", "a", ttl).await.unwrap(),
        "holder refreshes"
    );
    assert!(!reg.unlock("optimize", "b").await.unwrap());
    assert!(reg.unlock("optimize", "a").await.unwrap());
    assert!(reg.try_lock("optimize", "b", ttl).await.unwrap());
    let expired = eventually(Duration::from_secs(3), || async {
        reg.try_lock("optimize", "c", ttl).await.unwrap()
    })
    .await;
    assert!(expired, "lock expires");
    assert!(
        server
            .cli(&["EXISTS", "vramroute:lock:optimize"])
            .unwrap()
            .trim()
            == "1"
    );
}

#[tokio::test]
async fn stream_is_capped_near_maxlen() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = cfg();
        registry_config.stream_maxlen = 100;
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config).await.unwrap();
    for i in 0..400 {
        reg.publish_stats(&node(i % 7)).await.unwrap();
    }
    let len: usize = server
        .cli(&["XLEN", "sollol:gpu:stats"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((100..300).contains(&len), "XLEN {len} with MAXLEN ~ 100");
}

#[tokio::test]
async fn unix_socket_and_database_number() {
    let server = RedisServer::builder().unix_socket().start().unwrap();
    let url = format!("redis+unix://{}?db=3", server.socket_path().display());
    let reg = RedisRegistry::connect(&url, cfg()).await.unwrap();
    reg.publish_stats(&node(5)).await.unwrap();
    assert_eq!(reg.discover().await.unwrap().stats.len(), 1);
    assert_eq!(
        server
            .cli(&["-n", "3", "EXISTS", "sollol:gpu:10.0.0.5:11434"])
            .unwrap()
            .trim(),
        "1"
    );
    assert_eq!(
        server
            .cli(&["-n", "0", "EXISTS", "sollol:gpu:10.0.0.5:11434"])
            .unwrap()
            .trim(),
        "0"
    );
}

#[tokio::test]
async fn index_entries_of_vanished_keys_are_pruned() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = cfg();
        registry_config.index_prune_grace = Duration::ZERO;
        registry_config.stats_ttl = Duration::from_secs(1);
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config).await.unwrap();
    reg.publish_stats(&node(1)).await.unwrap();
    assert_eq!(
        server
            .cli(&["ZCARD", "vramroute:index:gpu"])
            .unwrap()
            .trim(),
        "1"
    );
    let pruned = eventually(Duration::from_secs(4), || async {
        reg.discover().await.unwrap();
        server
            .cli(&["ZCARD", "vramroute:index:gpu"])
            .unwrap()
            .trim()
            == "0"
    })
    .await;
    assert!(pruned);
}

#[tokio::test]
async fn repeated_discovery_sees_every_change_despite_the_decode_cache() {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), cfg()).await.unwrap();
    let mut a = node(1);
    reg.publish_stats(&a).await.unwrap();
    reg.publish_stats(&node(2)).await.unwrap();
    reg.register("10.0.0.1", 50052, &rpc_record())
        .await
        .unwrap();
    let first = reg.discover().await.unwrap();
    // Unchanged records, read again and again (decoded, then kept, then reused).
    for _ in 0..3 {
        assert_eq!(reg.discover().await.unwrap(), first);
    }
    // A changed record is decoded again.
    a.gpus[0].memory_free_mb = Some(1234);
    reg.publish_stats(&a).await.unwrap();
    let view = reg.discover().await.unwrap();
    assert_eq!(view.stats_of(&a.node_id), Some(&a));
    // A record turned bad (by a writer that keeps the index and the change log, as ours
    // do) is skipped, every time, and counted every time.
    let key = format!("sollol:gpu:{}", a.node_id);
    server.cli(&["SET", &key, "{not json"]).unwrap();
    server
        .cli(&["ZADD", "vramroute:index:gpu", &deadline_in(120), &a.node_id])
        .unwrap();
    server
        .cli(&["XADD", "vramroute:changes", "*", "gpu", &a.node_id])
        .unwrap();
    for _ in 0..3 {
        let before = reg.skipped_records_total();
        let view = reg.discover().await.unwrap();
        assert!(view.stats_of(&a.node_id).is_none());
        assert_eq!(view.skipped.len(), 1);
        assert_eq!(view.skipped[0].key, key);
        assert_eq!(reg.skipped_records_total(), before + 1);
    }
    // Good again; a deleted record disappears; a cleared cache changes nothing.
    reg.publish_stats(&a).await.unwrap();
    reg.deregister(&node(2).node_id, None).await.unwrap();
    let view = reg.discover().await.unwrap();
    assert_eq!(view.stats.len(), 1);
    assert_eq!(view.stats_of(&a.node_id), Some(&a));
    assert!(view.skipped.is_empty());
    reg.clear_decode_cache();
    assert_eq!(reg.discover().await.unwrap(), view);
}

#[tokio::test]
async fn absurd_durations_neither_panic_nor_break_writes() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = cfg();
        registry_config.stats_ttl = Duration::MAX;
        registry_config.registration_ttl = Duration::MAX;
        registry_config.index_prune_grace = Duration::MAX;
        registry_config.full_read_interval = Duration::MAX;
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config.clone())
        .await
        .unwrap();
    reg.publish_stats(&node(1)).await.unwrap();
    reg.register("10.0.0.1", 50052, &rpc_record())
        .await
        .unwrap();
    for _ in 0..2 {
        let view = reg.discover().await.unwrap();
        assert_eq!((view.stats.len(), view.rpc_nodes.len()), (1, 1));
    }
    // Capped at 2^53 ms, far beyond any deployment.
    let pttl: i64 = server
        .cli(&["PTTL", &format!("sollol:gpu:{}", node(1).node_id)])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pttl > 1 << 52, "PTTL {pttl}");
    // The memory backend too.
    let mem = vramroute_registry::MemoryRegistry::new(config);
    mem.publish_stats(&node(1)).await.unwrap();
    mem.register("10.0.0.1", 50052, &rpc_record())
        .await
        .unwrap();
    assert_eq!(mem.discover().await.unwrap().stats.len(), 1);
}

#[test]
fn router_metadata_follows_registrations_and_keeps_others_entries() {
    let b = |host: &str, port: u16| RpcBackend {
        host: host.into(),
        port,
    };
    // Nothing there yet: the registered backends, sorted, remembered as ours.
    let first =
        RouterMetadata::with_registered(None, &[b("10.0.0.2", 50052), b("10.0.0.1", 50052)]);
    assert_eq!(
        first.to_json(),
        r#"{"rpc_backends": [{"host": "10.0.0.1", "port": 50052}, {"host": "10.0.0.2", "port": 50052}], "vramroute_registered": [{"host": "10.0.0.1", "port": 50052}, {"host": "10.0.0.2", "port": 50052}]}"#
    );
    // SOLLOL's tools add a static backend and a key of their own; 10.0.0.2 deregisters.
    let mut theirs = first.clone();
    theirs.rpc_backends.insert(0, b("10.9.9.9", 50052));
    theirs
        .extra
        .insert("updated_by".into(), serde_json::json!("sollol"));
    let next = RouterMetadata::with_registered(Some(&theirs), &[b("10.0.0.1", 50052)]);
    assert_eq!(
        next.rpc_backends,
        [b("10.9.9.9", 50052), b("10.0.0.1", 50052)]
    );
    assert_eq!(next.extra["updated_by"], "sollol");
    // Stable: the same registrations give the same metadata (no rewrite needed).
    assert_eq!(
        RouterMetadata::with_registered(Some(&next), &[b("10.0.0.1", 50052)]),
        next
    );
    // A malformed list of ours is treated as empty: nothing of anyone's is dropped.
    let mut bad = next.clone();
    bad.extra
        .insert("vramroute_registered".into(), serde_json::json!("garbage"));
    let kept = RouterMetadata::with_registered(Some(&bad), &[]);
    assert_eq!(
        kept.rpc_backends,
        [b("10.9.9.9", 50052), b("10.0.0.1", 50052)]
    );
}
