//! One key of the wrong Redis type (a hash, list or plain string where a string, sorted
//! set or stream belongs) never fails discovery: every good record is kept, the bad key
//! is reported where it is a record, and after an operator deletes it everything is
//! back to normal (delta reads again).

use vramroute_registry::testing::RedisServer;
use vramroute_registry::{
    keys, ClusterView, RedisRegistry, Registry, RegistryConfig, RouterMetadata, RpcBackend,
    ScanStrategy,
};

use crate::common::{cfg, command_calls, node, rpc_record};

/// No periodic SCAN sweep, so a sweep seen in `INFO commandstats` is the fallback's.
fn no_scan() -> RegistryConfig {
    let mut c = cfg();
    c.scan = ScanStrategy::Never;
    c
}

fn calls(server: &RedisServer, cmd: &str) -> u64 {
    command_calls(&server.cli(&["INFO", "commandstats"]).unwrap(), cmd)
}

/// Two stats records and one registration, written by our writers.
async fn write_good(reg: &RedisRegistry) {
    reg.publish_stats(&node(1)).await.unwrap();
    reg.publish_stats(&node(2)).await.unwrap();
    reg.register("10.0.0.1", 50052, &rpc_record())
        .await
        .unwrap();
}

/// Asserts `view` holds exactly the good records of [`write_good`].
fn assert_good(view: &ClusterView) {
    let ids: Vec<&str> = view.stats.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [node(1).node_id, node(2).node_id], "{view:?}");
    assert_eq!(view.stats[0].1.gpus, node(1).gpus);
    assert_eq!(view.rpc_nodes.len(), 1, "{view:?}");
    assert_eq!(view.rpc_nodes[0].host, "10.0.0.1");
    assert_eq!(*view.rpc_nodes[0].record, rpc_record());
}

/// Asserts the next discovery (nothing written in between) is a delta read: no
/// `XREVRANGE` (full reads read the cursor), no record read (`GETRANGE`), no `SCAN`, same
/// view.
async fn assert_delta_read(server: &RedisServer, reg: &RedisRegistry) {
    let before = (
        calls(server, "xrevrange"),
        calls(server, "getrange"),
        calls(server, "xrange"),
        calls(server, "scan"),
    );
    let view = reg.discover().await.unwrap();
    assert_good(&view);
    assert!(view.skipped.is_empty(), "{:?}", view.skipped);
    let after = (
        calls(server, "xrevrange"),
        calls(server, "getrange"),
        calls(server, "xrange"),
        calls(server, "scan"),
    );
    assert_eq!(
        (after.0, after.1, after.2, after.3),
        (before.0, before.1, before.2 + 1, before.3),
        "(xrevrange, getrange, xrange, scan) before {before:?}"
    );
}

#[tokio::test]
async fn metadata_of_the_wrong_type_is_skipped_and_the_rest_kept() {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), no_scan())
        .await
        .unwrap();
    write_good(&reg).await;
    server
        .cli(&["HSET", keys::ROUTER_METADATA, "a", "b"])
        .unwrap();
    let skipped_before = reg.skipped_records_total();
    // A full read, then a delta read: both survive and report it.
    for round in 0..2 {
        let view = reg.discover().await.unwrap();
        assert_good(&view);
        assert_eq!(view.metadata, None);
        assert_eq!(view.skipped.len(), 1, "round {round}: {:?}", view.skipped);
        assert_eq!(view.skipped[0].key, keys::ROUTER_METADATA);
        assert_eq!(
            view.skipped[0].reason,
            "not a string: hash; SOLLOL's metadata is a JSON string"
        );
        assert_eq!(reg.skipped_records_total(), skipped_before + round + 1);
    }
    // The single read treats it as absent too, and counts it.
    assert_eq!(reg.router_metadata().await.unwrap(), None);
    assert_eq!(reg.skipped_records_total(), skipped_before + 3);

    // The operator deletes it; the router writes it again.
    server.cli(&["DEL", keys::ROUTER_METADATA]).unwrap();
    let meta = RouterMetadata::new(vec![RpcBackend {
        host: "10.0.0.1".into(),
        port: 50052,
    }]);
    reg.set_router_metadata(&meta).await.unwrap();
    let view = reg.discover().await.unwrap();
    assert_good(&view);
    assert_eq!(view.metadata.as_ref(), Some(&meta));
    assert!(view.skipped.is_empty(), "{:?}", view.skipped);
    assert_eq!(reg.router_metadata().await.unwrap(), Some(meta));
}

/// A plain string at one of our keys, before and while our writers write.
async fn our_key_of_the_wrong_type(key: &str) {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), no_scan())
        .await
        .unwrap();
    // Discovery first (the key already bad), then writers (which must not fail), then
    // discovery again: delta reads must not be attempted on a log or index that is not
    // one.
    server.cli(&["SET", key, "oops"]).unwrap();
    let view = reg.discover().await.unwrap();
    assert!(view.stats.is_empty() && view.rpc_nodes.is_empty());
    assert!(view.skipped.is_empty(), "{:?}", view.skipped);
    write_good(&reg).await;
    let reader = RedisRegistry::connect(&server.url(), no_scan())
        .await
        .unwrap();
    for r in [&reg, &reader] {
        for _ in 0..3 {
            let view = r.discover().await.unwrap();
            assert_good(&view);
            assert!(view.skipped.is_empty(), "{key}: {:?}", view.skipped);
        }
    }
    // The key is still the string: the writers did not overwrite it.
    assert_eq!(server.cli(&["TYPE", key]).unwrap().trim(), "string");
    // A deregistration does not fail either, and is seen.
    reg.publish_stats(&node(3)).await.unwrap();
    assert_eq!(reader.discover().await.unwrap().stats.len(), 3);
    reg.deregister(&node(3).node_id, None).await.unwrap();
    assert_good(&reader.discover().await.unwrap());

    // The operator deletes it; our writers recreate it with their next writes.
    server.cli(&["DEL", key]).unwrap();
    write_good(&reg).await;
    let expected = if key == keys::CHANGES {
        "stream"
    } else {
        "zset"
    };
    assert_eq!(server.cli(&["TYPE", key]).unwrap().trim(), expected);
    for r in [&reg, &reader] {
        // A full read (nothing was kept while the key was bad), then delta reads.
        let view = r.discover().await.unwrap();
        assert_good(&view);
        assert!(view.skipped.is_empty(), "{:?}", view.skipped);
        assert_delta_read(&server, r).await;
        assert_delta_read(&server, r).await;
    }
}

#[tokio::test]
async fn a_gpu_index_of_the_wrong_type_falls_back_to_scan() {
    our_key_of_the_wrong_type(keys::INDEX_GPU).await;
}

#[tokio::test]
async fn an_rpc_index_of_the_wrong_type_falls_back_to_scan() {
    our_key_of_the_wrong_type(keys::INDEX_RPC).await;
}

#[tokio::test]
async fn a_change_log_of_the_wrong_type_falls_back_to_full_reads() {
    our_key_of_the_wrong_type(keys::CHANGES).await;
}

#[tokio::test]
async fn an_index_turned_into_a_string_under_a_running_reader() {
    // Delta reads are under way when the index is replaced by a string.
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), no_scan())
        .await
        .unwrap();
    write_good(&reg).await;
    assert_good(&reg.discover().await.unwrap());
    assert_delta_read(&server, &reg).await;
    server.cli(&["DEL", keys::INDEX_GPU]).unwrap();
    server.cli(&["SET", keys::INDEX_GPU, "x"]).unwrap();
    for _ in 0..2 {
        let view = reg.discover().await.unwrap();
        assert_good(&view);
        assert!(view.skipped.is_empty(), "{:?}", view.skipped);
    }
    // A republished record is seen (through the fallback SCAN).
    let mut changed = node(1);
    changed.gpus[0].memory_free_mb = Some(1);
    reg.publish_stats(&changed).await.unwrap();
    let view = reg.discover().await.unwrap();
    assert_eq!(view.stats[0].1.gpus[0].memory_free_mb, Some(1));
    server.cli(&["DEL", keys::INDEX_GPU]).unwrap();
    write_good(&reg).await;
    assert_good(&reg.discover().await.unwrap());
    assert_delta_read(&server, &reg).await;
}

#[tokio::test]
async fn record_keys_of_another_type_are_reported_with_their_type() {
    let server = RedisServer::start().unwrap();
    // The default periodic sweep (the first discovery sweeps) finds unindexed keys.
    let reg = RedisRegistry::connect(&server.url(), cfg()).await.unwrap();
    write_good(&reg).await;
    let gpu_key = keys::gpu_stats_key("10.9.9.9:11434");
    let rpc_key = keys::rpc_node_key("10.9.9.9", 50052);
    server.cli(&["HSET", &gpu_key, "vendor", "nvidia"]).unwrap();
    server.cli(&["LPUSH", &rpc_key, "x"]).unwrap();
    // One of our indexed records overwritten with a set by hand.
    let set_key = keys::gpu_stats_key(&node(2).node_id);
    server.cli(&["DEL", &set_key]).unwrap();
    server.cli(&["SADD", &set_key, "x"]).unwrap();
    let expect = |view: &ClusterView| {
        let ids: Vec<&str> = view.stats.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, [node(1).node_id], "{view:?}");
        assert_eq!(view.rpc_nodes.len(), 1);
        let mut skipped: Vec<(&str, &str)> = view
            .skipped
            .iter()
            .map(|s| (s.key.as_str(), s.reason.as_str()))
            .collect();
        skipped.sort_unstable();
        let mut want = vec![
            (
                gpu_key.as_str(),
                "not a string: hash; SOLLOL's records are JSON strings",
            ),
            (
                set_key.as_str(),
                "not a string: set; SOLLOL's records are JSON strings",
            ),
            (
                rpc_key.as_str(),
                "not a string: list; SOLLOL's records are JSON strings",
            ),
        ];
        want.sort_unstable();
        assert_eq!(skipped, want);
    };
    let before = reg.skipped_records_total();
    // Reported (and counted) by the full read and by the delta reads after it.
    for round in 0..3u64 {
        let types = calls(&server, "type");
        expect(&reg.discover().await.unwrap());
        assert_eq!(reg.skipped_records_total(), before + 3 * (round + 1));
        // One more round trip of TYPE commands, for those keys only, once: then they
        // are remembered as junk (see `bounded`) until they change.
        let want = if round == 0 { 3 } else { 0 };
        assert_eq!(calls(&server, "type"), types + want, "round {round}");
    }
    // The operator deletes them; our writer republishes its record.
    server.cli(&["DEL", &gpu_key, &rpc_key, &set_key]).unwrap();
    reg.publish_stats(&node(2)).await.unwrap();
    let view = reg.discover().await.unwrap();
    assert_good(&view);
    assert!(view.skipped.is_empty(), "{:?}", view.skipped);
    // Back to delta reads with no TYPE at all.
    let types = calls(&server, "type");
    assert_delta_read(&server, &reg).await;
    assert_delta_read(&server, &reg).await;
    assert_eq!(calls(&server, "type"), types);
}
