//! Incremental discovery: only records named by the change log since the last discovery
//! (or written by others: keyspace events, SCAN) are read; the rest is reused (shared,
//! not fetched), and the view stays exactly what a full read gives — also when the log
//! was trimmed past a reader or reset, or the reader paused too long.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vramroute_registry::testing::RedisServer;
use vramroute_registry::{RedisRegistry, Registry, RegistryConfig, ScanStrategy};

use vramroute_registry::testing::fixtures::GPU_STATS_NVIDIA;

use crate::common::{cfg, command_calls, deadline_in, node, rpc_record};

fn no_scan() -> RegistryConfig {
    {
        let mut registry_config = cfg();
        registry_config.scan = ScanStrategy::Never;
        registry_config
    }
}

/// Record keys read so far (each read is one bounded `GETRANGE`; junk costs a
/// `STRLEN`).
fn mgets(server: &RedisServer) -> u64 {
    calls(server, "getrange") + calls(server, "strlen")
}

fn calls(server: &RedisServer, cmd: &str) -> u64 {
    command_calls(&server.cli(&["INFO", "commandstats"]).unwrap(), cmd)
}

/// Full reads so far (each reads the change-log cursor with one `XREVRANGE`).
fn full_reads(server: &RedisServer) -> u64 {
    calls(server, "xrevrange")
}

#[tokio::test]
async fn repeated_discovery_returns_the_same_shared_view_without_reading_records() {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), no_scan())
        .await
        .unwrap();
    for i in 0..20 {
        reg.publish_stats(&node(i)).await.unwrap();
    }
    reg.register("10.0.0.1", 50052, &rpc_record())
        .await
        .unwrap();
    let first = reg.discover().await.unwrap();
    assert_eq!((first.stats.len(), first.rpc_nodes.len()), (20, 1));
    let before = mgets(&server);
    for _ in 0..3 {
        let again = reg.discover().await.unwrap();
        assert_eq!(again, first);
        // The same allocations: nothing was read or decoded again.
        assert!(again
            .stats
            .iter()
            .zip(&first.stats)
            .all(|(a, b)| Arc::ptr_eq(&a.1, &b.1)));
        assert!(Arc::ptr_eq(
            &again.rpc_nodes[0].record,
            &first.rpc_nodes[0].record
        ));
    }
    assert_eq!(
        mgets(&server),
        before,
        "no record read when nothing changed"
    );
    // A cleared cache reads everything and gives the same view.
    reg.clear_decode_cache();
    assert_eq!(reg.discover().await.unwrap(), first);
    assert_eq!(mgets(&server), before + 21);
}

#[tokio::test]
async fn republished_records_are_seen_and_only_they_are_read() {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), no_scan())
        .await
        .unwrap();
    for i in 0..10 {
        reg.publish_stats(&node(i)).await.unwrap();
    }
    reg.register("10.0.0.1", 50052, &rpc_record())
        .await
        .unwrap();
    let first = reg.discover().await.unwrap();
    // Another registry (another coordinator's reporter) republishes one node.
    let writer = RedisRegistry::connect(&server.url(), no_scan())
        .await
        .unwrap();
    let mut changed = node(3);
    changed.gpus[0].memory_free_mb = Some(1234);
    writer.publish_stats(&changed).await.unwrap();
    let mut rpc = rpc_record();
    rpc.cpu_ram_mb += 1;
    writer.register("10.0.0.1", 50052, &rpc).await.unwrap();
    let before = server.cli(&["INFO", "commandstats"]).unwrap();
    let view = reg.discover().await.unwrap();
    let after = server.cli(&["INFO", "commandstats"]).unwrap();
    assert_eq!(view.stats_of(&changed.node_id), Some(&changed));
    assert_eq!(view.rpc_node("10.0.0.1", 50052), Some(&rpc));
    assert_eq!(
        command_calls(&after, "getrange") - command_calls(&before, "getrange"),
        2
    );
    // Every other record is the one read before.
    for ((id, a), (_, b)) in view.stats.iter().zip(&first.stats) {
        assert_eq!(Arc::ptr_eq(a, b), *id != changed.node_id, "{id}");
    }
}

#[tokio::test]
async fn deregistered_nodes_disappear() {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), cfg()).await.unwrap();
    reg.publish_stats(&node(1)).await.unwrap();
    reg.publish_stats(&node(2)).await.unwrap();
    reg.register("10.0.0.1", 50052, &rpc_record())
        .await
        .unwrap();
    assert_eq!(reg.discover().await.unwrap().stats.len(), 2);
    assert_eq!(reg.discover().await.unwrap().stats.len(), 2);
    reg.deregister(&node(1).node_id, Some(("10.0.0.1", 50052)))
        .await
        .unwrap();
    let view = reg.discover().await.unwrap();
    let ids: Vec<&str> = view.stats.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [node(2).node_id.as_str()]);
    assert!(view.rpc_nodes.is_empty());
}

#[tokio::test]
async fn expired_index_entries_are_neither_read_nor_returned() {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), no_scan())
        .await
        .unwrap();
    reg.publish_stats(&node(1)).await.unwrap();
    reg.publish_stats(&node(2)).await.unwrap();
    assert_eq!(reg.discover().await.unwrap().stats.len(), 2);
    // Node 1's deadline passes (its key is left in place to show it is not read).
    let past = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 1000;
    server
        .cli(&[
            "ZADD",
            "vramroute:index:gpu",
            &past.to_string(),
            &node(1).node_id,
        ])
        .unwrap();
    let before = mgets(&server);
    let view = reg.discover().await.unwrap();
    let ids: Vec<&str> = view.stats.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [node(2).node_id.as_str()]);
    assert_eq!(mgets(&server), before);
    // A real expiry: short TTL, nothing read, nothing returned.
    let short = {
        let mut registry_config = no_scan();
        registry_config.stats_ttl = Duration::from_secs(1);
        registry_config
    };
    let writer = RedisRegistry::connect(&server.url(), short).await.unwrap();
    writer.publish_stats(&node(3)).await.unwrap();
    assert_eq!(reg.discover().await.unwrap().stats.len(), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let view = reg.discover().await.unwrap();
    let ids: Vec<&str> = view.stats.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [node(2).node_id.as_str()]);
}

#[tokio::test]
async fn raw_sollol_writes_are_read_every_time() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = cfg();
        registry_config.scan = ScanStrategy::EveryDiscover;
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config).await.unwrap();
    reg.publish_stats(&node(1)).await.unwrap();
    let key = "sollol:gpu:10.1.2.3:11434";
    let nvidia = GPU_STATS_NVIDIA;
    server.cli(&["SETEX", key, "60", nvidia]).unwrap();
    let view = reg.discover().await.unwrap();
    assert_eq!(view.stats.len(), 2);
    assert_eq!(
        view.stats_of("10.1.2.3:11434").unwrap().gpus[0].memory_free_mb,
        Some(18000)
    );
    // SOLLOL overwrites its record (no index, no score): seen on the next discovery.
    let updated = nvidia.replace("\"memory_free_mb\": 18000", "\"memory_free_mb\": 17000");
    assert_ne!(updated, nvidia);
    server.cli(&["SETEX", key, "60", &updated]).unwrap();
    let view = reg.discover().await.unwrap();
    assert_eq!(
        view.stats_of("10.1.2.3:11434").unwrap().gpus[0].memory_free_mb,
        Some(17000)
    );
    // And with periodic sweeps (the default), between two sweeps too.
    let reg = RedisRegistry::connect(&server.url(), cfg()).await.unwrap();
    assert_eq!(reg.discover().await.unwrap().stats.len(), 2);
    server.cli(&["SETEX", key, "60", nvidia]).unwrap();
    let view = reg.discover().await.unwrap();
    assert_eq!(
        view.stats_of("10.1.2.3:11434").unwrap().gpus[0].memory_free_mb,
        Some(18000)
    );
    server.cli(&["DEL", key]).unwrap();
    assert_eq!(reg.discover().await.unwrap().stats.len(), 1);
}

#[tokio::test]
async fn bad_records_stay_reported_while_unchanged() {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), no_scan())
        .await
        .unwrap();
    reg.publish_stats(&node(1)).await.unwrap();
    let bad = node(2);
    let key = format!("sollol:gpu:{}", bad.node_id);
    // Indexed like ours, value bad.
    server.cli(&["SET", &key, "{not json"]).unwrap();
    server
        .cli(&[
            "ZADD",
            "vramroute:index:gpu",
            &deadline_in(120),
            &bad.node_id,
        ])
        .unwrap();
    let before_mget = mgets(&server);
    for round in 0..4 {
        let before = reg.skipped_records_total();
        let view = reg.discover().await.unwrap();
        assert_eq!(view.stats.len(), 1, "round {round}");
        assert_eq!(view.skipped.len(), 1, "round {round}");
        assert_eq!(view.skipped[0].key, key);
        assert!(!view.skipped[0].reason.is_empty());
        assert_eq!(reg.skipped_records_total(), before + 1);
    }
    // Read once only (the outcome is kept while the change log names no write): the
    // first, full read read both keys.
    assert_eq!(mgets(&server), before_mget + 2);
    // Fixed by a writer: gone from the skipped list.
    reg.publish_stats(&bad).await.unwrap();
    let view = reg.discover().await.unwrap();
    assert_eq!(view.stats.len(), 2);
    assert!(view.skipped.is_empty());
}

#[tokio::test]
async fn third_party_writes_to_indexed_keys_are_seen_through_keyspace_events() {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), no_scan())
        .await
        .unwrap();
    let mut stream = reg.watch().await.unwrap();
    let a = node(1);
    reg.publish_stats(&a).await.unwrap();
    assert_eq!(reg.discover().await.unwrap().stats_of(&a.node_id), Some(&a));
    while stream
        .recv_timeout(Duration::from_millis(200))
        .await
        .is_some()
    {}
    // A raw overwrite of our key that leaves the index score as it was.
    let mut b = a.clone();
    b.gpus[0].memory_free_mb = Some(42);
    server
        .cli(&["SET", &format!("sollol:gpu:{}", a.node_id), &b.to_json()])
        .unwrap();
    assert!(stream.recv_timeout(Duration::from_secs(2)).await.is_some());
    assert_eq!(reg.discover().await.unwrap().stats_of(&a.node_id), Some(&b));
}

#[tokio::test]
async fn a_trimmed_or_reset_change_log_falls_back_to_a_full_read() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = no_scan();
        registry_config.change_log_maxlen = 10;
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config.clone())
        .await
        .unwrap();
    for i in 0..5 {
        reg.publish_stats(&node(i)).await.unwrap();
    }
    assert_eq!(reg.discover().await.unwrap().stats.len(), 5);
    assert_eq!(full_reads(&server), 1);
    // A few changes: read from the log.
    let writer = RedisRegistry::connect(&server.url(), config).await.unwrap();
    let mut latest: Vec<_> = (0..5).map(node).collect();
    latest[2].gpus[0].memory_free_mb = Some(2);
    writer.publish_stats(&latest[2]).await.unwrap();
    assert_eq!(
        reg.discover().await.unwrap().stats_of(&latest[2].node_id),
        Some(&latest[2])
    );
    assert_eq!(full_reads(&server), 1);
    // Far more writes than the log keeps: the reader's cursor entry is trimmed away.
    for round in 0..60u64 {
        for r in &mut latest {
            r.gpus[0].memory_free_mb = Some(round);
            writer.publish_stats(r).await.unwrap();
        }
    }
    let len: u64 = server
        .cli(&["XLEN", "vramroute:changes"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(len < 300, "the log was trimmed (XLEN {len})");
    let view = reg.discover().await.unwrap();
    assert_eq!(full_reads(&server), 2);
    for r in &latest {
        assert_eq!(view.stats_of(&r.node_id), Some(r));
    }
    // The log is deleted (as by FLUSHALL or a restart without persistence), then written.
    server.cli(&["DEL", "vramroute:changes"]).unwrap();
    latest[0].gpus[0].memory_free_mb = Some(7);
    writer.publish_stats(&latest[0]).await.unwrap();
    let view = reg.discover().await.unwrap();
    assert_eq!(full_reads(&server), 3);
    assert_eq!(view.stats_of(&latest[0].node_id), Some(&latest[0]));
    // And back to reading changes only.
    let before = mgets(&server);
    assert_eq!(reg.discover().await.unwrap(), view);
    assert_eq!((full_reads(&server), mgets(&server)), (3, before));
}

#[tokio::test]
async fn a_reader_that_paused_past_half_the_prune_grace_reads_everything() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = no_scan();
        registry_config.index_prune_grace = Duration::from_millis(400);
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config).await.unwrap();
    reg.publish_stats(&node(1)).await.unwrap();
    let first = reg.discover().await.unwrap();
    assert_eq!(reg.discover().await.unwrap(), first);
    assert_eq!(full_reads(&server), 1);
    // Expired index entries may have been pruned unseen since: a full read.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(reg.discover().await.unwrap(), first);
    assert_eq!(full_reads(&server), 2);
}

/// A small deterministic generator (xorshift), so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test]
async fn delta_reads_equal_full_reads_over_random_writes() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = no_scan();
        // Small, so the log is trimmed past the reader now and then.
        registry_config.change_log_maxlen = 40;
        registry_config
    };
    let reader = RedisRegistry::connect(&server.url(), config.clone())
        .await
        .unwrap();
    let writers = [
        RedisRegistry::connect(&server.url(), config.clone())
            .await
            .unwrap(),
        RedisRegistry::connect(&server.url(), config.clone())
            .await
            .unwrap(),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let before = full_reads(&server);
    let steps = 150;
    for step in 0..steps {
        // 1–30 writes between two discoveries, by either writer; now and then 150–200,
        // more than the log keeps.
        let writes = if rng.below(10) == 0 {
            150 + rng.below(50)
        } else {
            1 + rng.below(30)
        };
        for _ in 0..writes {
            let w = &writers[rng.below(2) as usize];
            let i = rng.below(12) as usize;
            let host = format!("10.0.0.{i}");
            match rng.below(10) {
                0..=4 => {
                    let mut r = node(i);
                    r.gpus[0].memory_free_mb = Some(rng.below(24_000));
                    w.publish_stats(&r).await.unwrap();
                }
                5..=6 => {
                    let mut r = rpc_record();
                    r.cpu_ram_mb = rng.below(64_000);
                    w.register(&host, 50052, &r).await.unwrap();
                }
                7 => w
                    .deregister(&node(i).node_id, Some((&host, 50052)))
                    .await
                    .unwrap(),
                8 => w.deregister(&node(i).node_id, None).await.unwrap(),
                9 if rng.below(2) == 0 => {
                    // What a publish and a deregister of one node, interleaved, can
                    // leave: DEL, SET, ZADD, ZREM, XADD, XADD — the key back, no index
                    // entry, two log entries.
                    let id = node(i).node_id;
                    server
                        .cli(&["SET", &format!("sollol:gpu:{id}"), &node(i).to_json()])
                        .unwrap();
                    server.cli(&["ZREM", "vramroute:index:gpu", &id]).unwrap();
                    for _ in 0..2 {
                        server
                            .cli(&["XADD", "vramroute:changes", "*", "gpu", &id])
                            .unwrap();
                    }
                }
                _ => {
                    // What an expiry leaves: the key gone, the index entry in the past.
                    let id = node(i).node_id;
                    server.cli(&["DEL", &format!("sollol:gpu:{id}")]).unwrap();
                    server
                        .cli(&["ZADD", "vramroute:index:gpu", "1000", &id])
                        .unwrap();
                }
            }
        }
        let delta = reader.discover().await.unwrap();
        let fresh = RedisRegistry::connect(&server.url(), no_scan())
            .await
            .unwrap();
        let full = fresh.discover().await.unwrap();
        assert_eq!(delta, full, "step {step}");
    }
    // Both kinds of read happened (each fresh registry did one full read per step).
    let reader_full_reads = full_reads(&server) - before - steps;
    eprintln!("the reader did {reader_full_reads} full reads in {steps} discoveries");
    assert!(
        (2..steps / 2).contains(&reader_full_reads),
        "the reader did {reader_full_reads} full reads in {steps} discoveries"
    );
}

#[tokio::test]
async fn writes_that_bypass_the_log_are_seen_within_the_full_read_interval() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = no_scan();
        registry_config.full_read_interval = Duration::from_millis(300);
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config).await.unwrap();
    reg.publish_stats(&node(1)).await.unwrap();
    reg.publish_stats(&node(2)).await.unwrap();
    assert_eq!(reg.discover().await.unwrap().stats.len(), 2);
    // A raw DEL of one of our keys: no log entry, no keyspace watch running.
    server
        .cli(&["DEL", &format!("sollol:gpu:{}", node(1).node_id)])
        .unwrap();
    assert_eq!(reg.discover().await.unwrap().stats.len(), 2);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let view = reg.discover().await.unwrap();
    let ids: Vec<&str> = view.stats.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [node(2).node_id.as_str()]);
    // Seen by the delta read's audit: one full read, the first.
    assert_eq!(full_reads(&server), 1);
}

/// What no log announces — a raw rewrite, a raw `DEL`, a record written and indexed
/// without a log entry — is seen by discoveries that each read a share of the records
/// again (the share of `full_read_interval` since the last one), never by one that
/// reads them all: a full read of a big cluster would hold up every change behind it.
/// Each discovery reads at most the share due since the previous one began.
#[tokio::test]
async fn writes_that_bypass_the_log_are_seen_by_shares_not_by_a_full_read() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = no_scan();
        registry_config.full_read_interval = Duration::from_secs(1);
        registry_config
    };
    let reg = RedisRegistry::connect(&server.url(), config).await.unwrap();
    let n = 200;
    for i in 0..n {
        reg.publish_stats(&node(i)).await.unwrap();
    }
    // The first discovery began here: the share due to the next one counts from it.
    let mut last_start = std::time::Instant::now();
    assert_eq!(reg.discover().await.unwrap().stats.len(), n);
    let key = |i: usize| format!("sollol:gpu:{}", node(i).node_id);
    let mut rewritten = node(7);
    rewritten.gpus[0].memory_free_mb = Some(1234);
    server.cli(&["SET", &key(7), &rewritten.to_json()]).unwrap();
    server.cli(&["DEL", &key(9)]).unwrap();
    let newcomer = node(n + 5);
    server
        .cli(&["SET", &key(n + 5), &newcomer.to_json()])
        .unwrap();
    let deadline = (SystemTime::now() + Duration::from_secs(600))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    server
        .cli(&["ZADD", "vramroute:index:gpu", &deadline, &newcomer.node_id])
        .unwrap();
    let interval = 1.0;
    let mut seen = false;
    // Bounded: 60 discoveries, 50 ms apart (≈ 3 s; the interval is 1 s).
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = mgets(&server);
        let start = std::time::Instant::now();
        let view = reg.discover().await.unwrap();
        // At most the share of the records due since the previous discovery began, plus
        // the carried fraction, the newcomer the listing finds and the two other raw
        // writes: never the whole cluster (unless the machine stalled for the interval).
        let read = mgets(&server) - before;
        let gap = last_start.elapsed().as_secs_f64();
        last_start = start;
        let due = (n as f64 * gap / interval).ceil() as u64 + 4;
        assert!(
            read <= due,
            "one discovery read {read} of {n} records, {due} due after {gap:.3} s"
        );
        let free_7 = view
            .stats
            .iter()
            .find(|(id, _)| **id == *node(7).node_id)
            .and_then(|(_, r)| r.gpus[0].memory_free_mb);
        let has = |i: usize| view.stats.iter().any(|(id, _)| **id == *node(i).node_id);
        if free_7 == Some(1234) && !has(9) && has(n + 5) {
            assert_eq!(view.stats.len(), n);
            seen = true;
            break;
        }
    }
    assert!(seen, "the raw writes were not all seen within 3 s");
    assert_eq!(
        full_reads(&server),
        1,
        "only the first discovery reads everything"
    );
}

/// With `full_read_interval` zero every delta read audits every kept record and lists the
/// indexes: over random writes that no log announces (raw rewrites, `DEL`s, `ZREM`s,
/// `ZADD`s, SOLLOL-style keys SCAN finds) mixed with our writers', each discovery's view
/// equals a fresh registry's full read, without the reader doing another full read.
#[tokio::test]
async fn audited_delta_reads_equal_full_reads_over_unlogged_writes() {
    let server = RedisServer::start().unwrap();
    let config = {
        let mut registry_config = cfg();
        registry_config.scan = ScanStrategy::EveryDiscover;
        registry_config.full_read_interval = Duration::ZERO;
        registry_config
    };
    let reader = RedisRegistry::connect(&server.url(), config.clone())
        .await
        .unwrap();
    let writer = RedisRegistry::connect(&server.url(), config.clone())
        .await
        .unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let key = |i: usize| format!("sollol:gpu:{}", node(i).node_id);
    let steps = 60;
    for step in 0..steps {
        for _ in 0..1 + rng.below(8) {
            let i = rng.below(10) as usize;
            let id = node(i).node_id.to_string();
            let mut r = node(i);
            r.gpus[0].memory_free_mb = Some(rng.below(24_000));
            match rng.below(8) {
                0..=2 => writer.publish_stats(&r).await.unwrap(),
                3 => writer.deregister(&id, None).await.unwrap(),
                // Behind the log's back: a rewrite, a delete, an index entry removed or
                // added, a record SCAN finds.
                4 => drop(server.cli(&["SET", &key(i), &r.to_json()]).unwrap()),
                5 => drop(server.cli(&["DEL", &key(i)]).unwrap()),
                6 => drop(server.cli(&["ZREM", "vramroute:index:gpu", &id]).unwrap()),
                _ => drop(
                    server
                        .cli(&["ZADD", "vramroute:index:gpu", &deadline_in(600), &id])
                        .unwrap(),
                ),
            }
        }
        let delta = reader.discover().await.unwrap();
        let fresh = RedisRegistry::connect(&server.url(), config.clone())
            .await
            .unwrap();
        let full = fresh.discover().await.unwrap();
        assert_eq!(delta, full, "step {step}");
    }
    // One full read each: the reader's first, and every fresh registry's.
    assert_eq!(full_reads(&server), steps + 1);
}
