//! A follower of a changes-only registry (`RegistryConfig::changes_only`, what the
//! daemon runs) against a real redis-server: after every round of writes, the view and
//! specs its `ViewBuilder` makes from the registry's changes equal a fresh view of what
//! an ordinary registry reads, with delta reads and with full reads.

use std::sync::Arc;
use std::time::Duration;

use vramroute_cluster::{LiveConfig, ViewBuilder};
use vramroute_registry::testing::RedisServer;
use vramroute_registry::{
    is_unchanged_rpc, is_unchanged_stats, GpuStatsRecord, RedisRegistry, Registry, RegistryConfig,
};
use vramroute_router::NodeSpec;

use crate::common::{gpu, registration};

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn host(i: u64) -> String {
    format!("127.0.{}.{}", i / 200, 1 + i % 200)
}

fn record(rng: &mut Rng, i: u64, now: f64) -> GpuStatsRecord {
    let id = format!("{}:11434", host(i));
    let mut r = GpuStatsRecord::new(id.as_str(), "nvidia", now - rng.below(20) as f64);
    r.gpus = (0..rng.below(3))
        .map(|g| {
            let g = u32::try_from(g).expect("few GPUs");
            gpu(g, Some(24_576), Some(1_000 + rng.below(20_000)))
        })
        .collect();
    if rng.below(3) == 0 {
        // Names its rpc-server itself (else: the registration of its host, if any).
        r.rpc_host = Some(host(i).into());
        r.rpc_port = Some(50052);
    }
    if rng.below(10) == 0 {
        r.timestamp = now + 3600.0; // dated in the future
    }
    r
}

async fn follow_and_compare(full_read_interval: Duration) {
    let redis = RedisServer::start().expect("redis-server starts");
    let writer = RedisRegistry::new_lazy(&redis.url(), RegistryConfig::default()).expect("url");
    let mut lean_config = RegistryConfig::default();
    lean_config.changes_only = true;
    lean_config.full_read_interval = full_read_interval;
    let lean = RedisRegistry::new_lazy(&redis.url(), lean_config).expect("url");
    let plain = RedisRegistry::new_lazy(&redis.url(), RegistryConfig::default()).expect("url");
    let config = LiveConfig::default();
    let mut builder = ViewBuilder::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let now = vramroute_cluster::unix_now();
    let mut nodes: Vec<u64> = (0..40).collect();
    let (mut markers, mut changed) = (0usize, 0usize);
    for round in 0..10u32 {
        if round > 0 {
            // Nodes leave (deregistering) and join.
            for i in nodes.clone() {
                if rng.below(12) == 0 {
                    let id = format!("{}:11434", host(i));
                    writer.deregister(&id, None).await.expect("deregister");
                    nodes.retain(|&n| n != i);
                }
            }
            for _ in 0..rng.below(3) {
                nodes.push(40 + rng.below(400));
            }
            nodes.sort_unstable();
            nodes.dedup();
        }
        for &i in &nodes {
            // A quarter of the nodes report each round (a new record), the rest not.
            if round == 0 || rng.below(4) == 0 {
                let r = record(&mut rng, i, now);
                writer.publish_stats(&r).await.expect("publish");
            }
            // Registrations come, change, are rewritten as they were, and go.
            match rng.below(8) {
                0 => {
                    let e = registration(&host(i), 16_000 + rng.below(4) * 1000, &[8_000]);
                    writer
                        .register(&e.host, e.port, &e.record)
                        .await
                        .expect("register");
                }
                1 => {
                    let e = registration(&host(i), 16_000, &[8_000]);
                    writer
                        .register(&e.host, e.port, &e.record)
                        .await
                        .expect("register");
                }
                2 if round > 0 => {
                    let id = format!("{}:11434", host(i));
                    writer
                        .deregister(&id, Some((&host(i), 50052)))
                        .await
                        .expect("deregister");
                    let r = record(&mut rng, i, now);
                    writer.publish_stats(&r).await.expect("publish");
                }
                _ => {}
            }
        }
        let given = lean.discover().await.expect("changes-only read");
        assert!(given.changes_only);
        markers += given
            .stats
            .iter()
            .filter(|(_, r)| is_unchanged_stats(r))
            .count()
            + given
                .rpc_nodes
                .iter()
                .filter(|e| is_unchanged_rpc(&e.record))
                .count();
        changed += given
            .stats
            .iter()
            .filter(|(_, r)| !is_unchanged_stats(r))
            .count();
        // The reference: a cold read, every record decoded from its bytes.
        plain.forget_discovered();
        let everything = plain.discover().await.expect("plain read");
        assert!(!everything.changes_only);
        assert_eq!(given.stats.len(), everything.stats.len(), "round {round}");
        let at = now + f64::from(round);
        let built = builder.build(&config, &given, &[], "t".into(), at);
        assert!(!builder.take_lost_track(), "round {round}");
        let fresh = config.view_of(&everything, &[], "t".into(), at);
        assert!(!fresh.nodes.is_empty());
        assert_eq!(built.view, fresh, "round {round}");
        let specs = fresh.node_specs(&config.snapshot);
        assert_eq!(built.specs.len(), specs.len());
        for ((b, age), f) in built.specs.iter().zip(&specs) {
            assert_eq!(*age, f.report_age_ms, "{}", f.id);
            let mut b = NodeSpec::clone(b);
            b.report_age_ms = f.report_age_ms;
            assert_eq!(&b, f, "round {round}");
        }
    }
    assert!(markers > 200, "records handed back as unchanged: {markers}");
    assert!(changed > 100, "records handed back: {changed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changes_only_follower_sees_what_a_full_reader_sees_with_delta_reads() {
    follow_and_compare(Duration::from_secs(3600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changes_only_follower_sees_what_a_full_reader_sees_with_full_reads() {
    follow_and_compare(Duration::ZERO).await;
}

/// A registry that forgot what it kept hands back every record again, which the
/// follower takes as it took the first read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgetful_registry_hands_back_every_record() {
    let redis = RedisServer::start().expect("redis-server starts");
    let writer = RedisRegistry::new_lazy(&redis.url(), RegistryConfig::default()).expect("url");
    let mut lean_config = RegistryConfig::default();
    lean_config.changes_only = true;
    let lean = Arc::new(RedisRegistry::new_lazy(&redis.url(), lean_config).expect("url"));
    let mut rng = Rng(5);
    let now = vramroute_cluster::unix_now();
    for i in 0..5 {
        let mut r = record(&mut rng, i, now);
        r.timestamp = now;
        writer.publish_stats(&r).await.expect("publish");
    }
    let first = lean.discover().await.expect("read");
    assert!(first.stats.iter().all(|(_, r)| !is_unchanged_stats(r)));
    let second = lean.discover().await.expect("read");
    assert_eq!(second.stats.len(), 5);
    assert!(second.stats.iter().all(|(_, r)| is_unchanged_stats(r)));
    lean.forget_discovered();
    let third = lean.discover().await.expect("read");
    assert_eq!(third.stats, first.stats);
}

/// A follower that misses one of a changes-only registry's reads (someone else called
/// `discover` on it) notices at its next read instead of keeping stale rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_the_follower_missed_is_noticed() {
    let redis = RedisServer::start().expect("redis-server starts");
    let writer = RedisRegistry::new_lazy(&redis.url(), RegistryConfig::default()).expect("url");
    let mut lean_config = RegistryConfig::default();
    lean_config.changes_only = true;
    let lean = RedisRegistry::new_lazy(&redis.url(), lean_config).expect("url");
    let config = LiveConfig::default();
    let mut rng = Rng(11);
    let now = vramroute_cluster::unix_now();
    let publish = |r: GpuStatsRecord| {
        let writer = &writer;
        async move { writer.publish_stats(&r).await.expect("publish") }
    };
    for i in 0..4 {
        publish(record(&mut rng, i, now)).await;
    }
    let mut builder = ViewBuilder::new();
    let first = lean.discover().await.expect("read");
    builder.update(&config, &first, now);
    assert!(!builder.take_lost_track());
    // Node 0 reports; another caller reads it (its new record went there, not here).
    let mut changed = record(&mut rng, 0, now);
    changed.timestamp = now;
    changed.gpus = vec![gpu(0, Some(24_576), Some(123))];
    publish(changed).await;
    let elsewhere = lean.discover().await.expect("read");
    assert_eq!(elsewhere.changes_since, Some(first.sequence));
    let next = lean.discover().await.expect("read");
    assert!(next.stats.iter().all(|(_, r)| is_unchanged_stats(r)));
    assert!(builder.update(&config, &next, now).specs.is_empty());
    assert!(builder.take_lost_track(), "the missed read is noticed");
    // Forgotten and read again: node 0's new record is there.
    lean.forget_discovered();
    let again = lean.discover().await.expect("read");
    assert_eq!(again.changes_since, None);
    let update = builder.update(&config, &again, now);
    assert!(!builder.take_lost_track());
    let node0 = update
        .specs
        .iter()
        .find(|(s, _)| s.id == format!("{}:11434", host(0)))
        .expect("node 0");
    assert_eq!(node0.0.gpus[0].memory_free_mib, Some(123));
}
