//! Tests of `rows`.

use super::*;
use std::time::Duration;
use vramroute_registry::{GpuStat, LoadedModel, RouterMetadata, RpcBackend};
use vramroute_router::{Decision, NoRoute, Policy, Request, Snapshot};

use crate::live::LiveCluster;

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

fn record(rng: &mut Rng, id: &str, now: f64) -> GpuStatsRecord {
    let mut r = GpuStatsRecord::default();
    r.node_id = id.into();
    r.vendor = "nvidia".into();
    r.timestamp = match rng.below(20) {
        0 => now + 3600.0, // from the future
        1 => now - 100.0,  // stale
        _ => now - rng.below(25) as f64,
    };
    if rng.below(2) == 0 {
        r.reporter_version = Some("0.1.0".into());
        r.cpu_ram_total_mb = Some(64_000);
        r.cpu_ram_free_mb = Some(rng.below(64_000));
    }
    if rng.below(3) == 0 {
        r.rpc_host = Some(id.rsplit_once(':').map_or(id, |x| x.0).into());
        r.rpc_port = Some(50052);
    }
    for i in 0..rng.below(3) {
        let mut g = GpuStat::default();
        g.index = 1 - i as u32; // out of order when two
        g.name = "RTX 4090".into();
        g.memory_total_mb = (rng.below(5) != 0).then_some(24_576);
        g.memory_free_mb = Some(rng.below(24_576));
        r.gpus.push(g);
    }
    if rng.below(2) == 0 {
        let mut m = LoadedModel::default();
        m.name = "llama3.1:8b".into();
        m.size_mb = Some(4_700);
        r.loaded_models = Some(vec![m]);
    }
    r
}

fn registration(rng: &mut Rng) -> RpcNodeRecord {
    let mut r = RpcNodeRecord::default();
    r.cpu_ram_mb = 1_000 + rng.below(30_000);
    r.device_config = "cpu".into();
    r.total_parallel_workers = 1;
    r
}

fn host(i: u64) -> String {
    format!("10.0.{}.{}", i / 200, i % 200)
}

/// One churned read after `cluster` (round 0: the first read): some nodes leave,
/// some join, some records and registrations change, time passes.
fn churn(rng: &mut Rng, ids: &mut Vec<u64>, cluster: &mut ClusterView, now: &mut f64, round: u32) {
    if round > 0 {
        ids.retain(|_| rng.below(15) != 0);
        for _ in 0..rng.below(3) {
            ids.push(100 + rng.below(1000));
        }
        ids.sort_unstable();
        ids.dedup();
        *now += rng.below(8) as f64;
    }
    let old: std::collections::HashMap<SmolStr, Arc<GpuStatsRecord>> =
        cluster.stats.drain(..).collect();
    for &i in ids.iter() {
        let id = format!("{}:11434", host(i));
        let r = match old.get(id.as_str()) {
            Some(r) if rng.below(4) != 0 => Arc::clone(r),
            _ => Arc::new(record(rng, &id, *now)),
        };
        cluster.stats.push((id.into(), r));
    }
    cluster.stats.sort_by(|a, b| a.0.cmp(&b.0));
    let old_regs = std::mem::take(&mut cluster.rpc_nodes);
    for &i in ids.iter() {
        let h = host(i);
        // The node's own port (most hosts), and on some hosts a second rpc-server: a
        // node naming no endpoint takes the first of its host, which changes when the
        // first comes or goes.
        for (port, one_in) in [(50052, 3), (50053, 4)] {
            let present = match port {
                50052 => rng.below(one_in) != 0,
                _ => rng.below(one_in) == 0,
            };
            if !present {
                continue;
            }
            let kept = old_regs.iter().find(|e| e.host == h && e.port == port);
            let rec = match kept {
                Some(e) if rng.below(5) != 0 => Arc::clone(&e.record),
                _ => Arc::new(registration(rng)),
            };
            cluster
                .rpc_nodes
                .push(RpcNodeEntry::new(h.clone(), port, rec));
        }
    }
    cluster
        .rpc_nodes
        .sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    cluster.metadata = (round.is_multiple_of(3) && !ids.is_empty()).then(|| {
        let mut m = RouterMetadata::default();
        m.rpc_backends = vec![
            RpcBackend {
                host: host(ids[0]),
                port: 50052,
            },
            RpcBackend {
                host: "10.9.9.9".to_owned(),
                port: 50052,
            },
        ];
        m
    });
}

/// Along chains of churned reads (records replaced, nodes joining and leaving,
/// registrations coming and going, time passing so reports go stale), the builder
/// gives exactly the fresh view and specs, and shares the specs of unchanged nodes.
/// `specs` (shared, with their ages) are `fresh`'s node specs.
fn same_specs(specs: &[(Arc<NodeSpec>, u64)], fresh: &StatusView, config: &LiveConfig) {
    let want = fresh.node_specs(&config.snapshot);
    assert_eq!(specs.len(), want.len());
    for ((b, age), f) in specs.iter().zip(&want) {
        assert_eq!(*age, f.report_age_ms, "{}", f.id);
        let mut b = NodeSpec::clone(b);
        b.report_age_ms = f.report_age_ms;
        assert_eq!(&b, f);
    }
}

#[test]
fn incremental_views_equal_fresh_ones() {
    let config = LiveConfig::default();
    let (mut shared, mut shared_rows) = (0, 0);
    for seed in 1..25u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut now = 1.8e9;
        let mut ids: Vec<u64> = (0..30).collect();
        let mut cluster = ClusterView::default();
        let mut builder = ViewBuilder::new();
        let mut prev: Vec<(Arc<NodeSpec>, u64)> = Vec::new();
        let mut prev_view: Option<StatusView> = None;
        for round in 0..10 {
            churn(&mut rng, &mut ids, &mut cluster, &mut now, round);
            let fresh = config.view_of(&cluster, &[], "t".into(), now);
            let built = builder.build(&config, &cluster, &[], "t".into(), now);
            assert_eq!(built.view, fresh, "seed {seed} round {round}");
            same_specs(&built.specs, &fresh, &config);
            shared += built
                .specs
                .iter()
                .filter(|(s, _)| prev.iter().any(|(p, _)| Arc::ptr_eq(p, s)))
                .count();
            prev = built.specs;
            // Unchanged nodes' rows are the previous view's, not copies.
            if let Some(p) = &prev_view {
                shared_rows += built
                    .view
                    .nodes
                    .iter()
                    .filter(|n| p.nodes.iter().any(|o| Arc::ptr_eq(o.facts(), n.facts())))
                    .count();
            }
            prev_view = Some(built.view);
        }
    }
    assert!(shared > 1000, "unchanged specs were shared: {shared}");
    assert!(
        shared_rows > 1000,
        "unchanged rows were shared: {shared_rows}"
    );
}

/// What a changes-only registry hands back for `now` after it handed back `before`:
/// a record equal to the one of the same id (key) before is the marker.
fn changes_only(before: &ClusterView, now: &ClusterView) -> ClusterView {
    let mut lean = now.clone();
    lean.changes_only = true;
    lean.changes_since = (before.sequence > 0).then_some(before.sequence);
    for (id, r) in &mut lean.stats {
        let same = before
            .stats
            .iter()
            .any(|(i, b)| i == id && (Arc::ptr_eq(b, r) || **b == **r));
        if same {
            *r = Arc::clone(unchanged_stats());
        }
    }
    for e in &mut lean.rpc_nodes {
        let same = before.rpc_nodes.iter().any(|b| {
            b.host == e.host
                && b.port == e.port
                && (Arc::ptr_eq(&b.record, &e.record) || *b.record == *e.record)
        });
        if same {
            e.record = Arc::clone(unchanged_rpc());
        }
    }
    lean
}

#[test]
fn changes_only_views_equal_fresh_ones_and_keep_no_record() {
    let config = LiveConfig::default();
    let (mut markers, mut kept_rows, mut patched) = (0usize, 0usize, 0usize);
    for seed in 1..25u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut now = 1.8e9;
        let mut ids: Vec<u64> = (0..30).collect();
        let mut cluster = ClusterView::default();
        let mut before = ClusterView::default();
        let mut builder = ViewBuilder::new();
        let mut before_view: Option<StatusView> = None;
        for round in 0..10 {
            churn(&mut rng, &mut ids, &mut cluster, &mut now, round);
            // The reads are numbered as a registry numbers them.
            let lean_sequence = u64::from(round) + 1;
            cluster.sequence = lean_sequence;
            let lean = changes_only(&before, &cluster);
            markers += lean
                .stats
                .iter()
                .filter(|(_, r)| is_unchanged_stats(r))
                .count();
            let fresh = config.view_of(&cluster, &[], "t".into(), now);
            // Every other round: the router's update alone, then a view (as a
            // follower that builds views at most every `view_interval` does).
            if round % 2 == 1 {
                let again = changes_only(&before, &cluster);
                builder.update(&config, &again, now - 1.0);
            }
            let built = builder.build(&config, &lean, &[], "t".into(), now);
            assert!(!builder.take_lost_track(), "seed {seed} round {round}");
            assert_eq!(built.view, fresh, "seed {seed} round {round}");
            same_specs(&built.specs, &fresh, &config);
            // Nodes handed back unchanged that are in the view (kept rows).
            kept_rows += lean
                .stats
                .iter()
                .filter(|(id, r)| {
                    is_unchanged_stats(r)
                        && before.stats_of(id).is_some()
                        && fresh.nodes.iter().any(|n| n.id == *id)
                })
                .count();
            // Unchanged records whose node's registration changed (rows patched).
            if let Some(b) = &before_view {
                let reg = |v: &StatusView, id: &str| {
                    v.nodes
                        .iter()
                        .find(|n| n.id == id)
                        .map(|n| (n.cpu_ram_registered_mb, n.rpc.clone()))
                };
                patched += lean
                    .stats
                    .iter()
                    .filter(|(id, r)| {
                        is_unchanged_stats(r)
                            && reg(b, id).is_some()
                            && reg(b, id) != reg(&fresh, id)
                    })
                    .count();
            }
            before_view = Some(fresh);
            // The builder holds no record but those dated in the future.
            for row in &builder.rows {
                assert_eq!(
                    is_unchanged_stats(&row.record),
                    !row.future,
                    "{}",
                    row.node.id
                );
            }
            assert!(builder.backends.iter().all(|b| is_unchanged_rpc(&b.record)));
            before = cluster.clone();
            before.sequence = lean_sequence;
        }
    }
    assert!(
        markers > 1000,
        "records handed back as unchanged: {markers}"
    );
    assert!(
        kept_rows > 1000,
        "rows kept for unchanged records: {kept_rows}"
    );
    assert!(
        patched > 20,
        "unchanged records whose registration changed: {patched}"
    );
}

#[test]
fn a_marker_without_a_row_is_left_out_and_reported() {
    let config = LiveConfig::default();
    let now = 1.8e9;
    let mut rng = Rng(7);
    let mut cluster = ClusterView::default();
    for i in 0..3u64 {
        let id = format!("{}:11434", host(i));
        let mut r = record(&mut rng, &id, now);
        r.timestamp = now - 1.0;
        cluster.stats.push((id.into(), Arc::new(r)));
    }
    cluster.stats.sort_by(|a, b| a.0.cmp(&b.0));
    let mut builder = ViewBuilder::new();
    // A builder that never saw the records is handed two of them as unchanged.
    let mut lean = cluster.clone();
    lean.changes_only = true;
    lean.stats[0].1 = Arc::clone(unchanged_stats());
    lean.stats[2].1 = Arc::clone(unchanged_stats());
    let update = builder.update(&config, &lean, now);
    assert_eq!(update.specs.len(), 1);
    assert_eq!(update.specs[0].0.id, lean.stats[1].0);
    assert!(builder.take_lost_track());
    assert!(!builder.take_lost_track(), "reported once");
    // Every record itself again (what a registry that forgot hands back): all there.
    let mut full = cluster.clone();
    full.changes_only = true;
    full.sequence = 1;
    let update = builder.update(&config, &full, now);
    assert_eq!(update.specs.len(), 3);
    assert!(!builder.take_lost_track());
    // A read that follows one this builder did not apply (read 2 went elsewhere):
    // refused whole, even where its markers have rows.
    let mut all_unchanged = full.clone();
    for (_, r) in &mut all_unchanged.stats {
        *r = Arc::clone(unchanged_stats());
    }
    all_unchanged.sequence = 3;
    all_unchanged.changes_since = Some(2);
    assert!(builder
        .update(&config, &all_unchanged, now)
        .specs
        .is_empty());
    assert!(builder.take_lost_track());
    // The read that does follow it: every row kept.
    all_unchanged.sequence = 2;
    all_unchanged.changes_since = Some(1);
    assert_eq!(builder.update(&config, &all_unchanged, now).specs.len(), 3);
    // And the same read again (a follower republishing it).
    assert_eq!(builder.update(&config, &all_unchanged, now).specs.len(), 3);
    assert!(!builder.take_lost_track());
}

/// A node's state in a snapshot, with the spec's build-time age left out (a shared
/// spec keeps the age it was made with; the snapshot's own is in the status).
fn node_state(snap: &Snapshot, i: usize) -> String {
    let spec = &snap.nodes()[i];
    let idx = snap.node_index(&spec.id).expect("listed");
    let mut s = NodeSpec::clone(spec);
    s.report_age_ms = 0;
    let rooms: Vec<_> = spec
        .gpus
        .iter()
        .map(|g| snap.gpu_capacity_mib(idx, g.index).ok())
        .collect();
    format!("{s:?} {:?} {rooms:?}", snap.node_status(idx).ok())
}

fn decision(snap: &Snapshot, d: Result<Decision, NoRoute>) -> String {
    match d {
        Ok(d) => format!(
            "{} {:?} {:?} {:?} {} {}",
            snap.node(d.node).id,
            d.target,
            d.gpu,
            d.fit,
            d.score,
            d.cpu_fallback
        ),
        Err(e) => format!("{e:?}"),
    }
}

/// A follower that updates its router from the records and builds no view between
/// joins and leaves routes exactly as one that publishes `view_of` every time:
/// along churned reads, with measured load and reservations (held, re-applied,
/// and marking their model loading) on both, the snapshots' nodes, statuses and
/// free memory and the decisions for a range of sizes are the same. Its view is
/// `view_of` of the first read, then lags (an hour's interval: never rebuilt).
#[test]
fn router_from_records_equals_router_from_views() {
    let lazy_cfg = LiveConfig {
        view_interval: Duration::from_secs(3600),
        ..LiveConfig::default()
    };
    let eager_cfg = LiveConfig {
        view_interval: Duration::ZERO,
        ..LiveConfig::default()
    };
    let (mut lagging, mut reserved) = (0, 0);
    for seed in 1..17u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut now = 1.8e9;
        let mut ids: Vec<u64> = (0..30).collect();
        let mut cluster = ClusterView::default();
        churn(&mut rng, &mut ids, &mut cluster, &mut now, 0);
        let start = eager_cfg.view_of(&cluster, &[], "t".into(), now);
        let lazy =
            LiveCluster::new(start.clone(), Policy::default(), lazy_cfg.clone()).expect("valid");
        let eager = LiveCluster::new(start, Policy::default(), eager_cfg.clone()).expect("valid");
        let mut in_flight = Vec::new();
        let mut last_ids: Option<Vec<SmolStr>> = None;
        let mut first_at = f64::NAN;
        for round in 0..12 {
            if round > 0 {
                churn(&mut rng, &mut ids, &mut cluster, &mut now, round);
            }
            if round == 2 || round == 6 {
                // Load measured on the first nodes, on both.
                for (id, _) in cluster.stats.iter().take(3) {
                    in_flight.push(lazy.signals().begin(id));
                    in_flight.push(eager.signals().begin(id));
                }
            }
            lazy.publish_records(&cluster, &[], "t".into(), now, 0);
            eager.publish(eager_cfg.view_of(&cluster, &[], "t".into(), now), 0);
            let (a, b) = (lazy.router().snapshot(), eager.router().snapshot());
            assert_eq!(a.len(), b.len(), "seed {seed} round {round}");
            for i in 0..a.len() {
                assert_eq!(
                    node_state(&a, i),
                    node_state(&b, i),
                    "seed {seed} round {round}"
                );
            }
            for mib in [500, 4_000, 12_000, 20_000, 40_000, 70_000] {
                for model in ["llama3.1:8b", "other"] {
                    let req = Request::new(model, mib);
                    assert_eq!(
                        decision(&a, lazy.router().route(&req)),
                        decision(&b, eager.router().route(&req)),
                        "seed {seed} round {round} {model} {mib}"
                    );
                }
            }
            if round % 4 == 1 {
                let req = Request::new("big", 6_000 + 1_000 * u64::from(round));
                let x = lazy
                    .route_and_reserve(&req)
                    .map(|(d, r)| (decision(&a, Ok(d)), r.is_some()));
                let y = eager
                    .route_and_reserve(&req)
                    .map(|(d, r)| (decision(&b, Ok(d)), r.is_some()));
                assert_eq!(x.is_ok(), y.is_ok());
                if let (Ok(x), Ok(y)) = (x, y) {
                    assert_eq!(x, y, "seed {seed} round {round}");
                    reserved += usize::from(x.1);
                }
            }
            assert_eq!(lazy.reservations_held(), eager.reservations_held());
            // The lazy view: built on the first read, then (the interval being an
            // hour, a quarter of it for joins and leaves) never again: always the
            // first read's view.
            let ids_now: Vec<SmolStr> = cluster.stats.iter().map(|(id, _)| id.clone()).collect();
            let view = lazy.view();
            if last_ids.is_none() {
                let mut fresh = eager_cfg.view_of(&cluster, &[], "t".into(), now);
                fresh.apply_load(lazy.signals());
                assert_eq!(*view, fresh, "seed {seed} round {round}");
                first_at = now;
            } else {
                assert_eq!(view.generated_at, first_at, "seed {seed} round {round}");
                lagging += usize::from(first_at < now);
            }
            last_ids = Some(ids_now);
            let mut fresh = eager_cfg.view_of(&cluster, &[], "t".into(), now);
            fresh.apply_load(eager.signals());
            assert_eq!(*eager.view(), fresh, "seed {seed} round {round}");
        }
        drop(in_flight);
    }
    assert!(lagging > 5, "some rounds built no view: {lagging}");
    assert!(reserved > 5, "reservations were made and held: {reserved}");
}

#[test]
fn a_row_holds_no_spare_room() {
    // One GPU and one model: a vector grown from an iterator of unknown length would
    // have room for four of each (`Vec`'s first allocation), kept as long as the row.
    let mut rng = Rng(7);
    let mut r = record(&mut rng, "10.0.0.1:11434", 1.8e9);
    r.timestamp = 1.8e9;
    let mut g = GpuStat::default();
    g.name = "RTX 4090".into();
    g.memory_total_mb = Some(24_576);
    g.memory_free_mb = Some(20_000);
    r.gpus = vec![g];
    let mut m = LoadedModel::default();
    m.name = "llama3.1:8b".into();
    m.size_mb = Some(4_700);
    r.loaded_models = Some(vec![m]);
    let view = crate::view_rows::node_view("10.0.0.1:11434", &r, None, 1.8e9, 30.0, 0.9);
    assert_eq!(view.loaded_models.len(), 1);
    assert_eq!(view.loaded_models.capacity(), 1);
    let spec = crate::specs::node_spec(&view, &vramroute_router::SnapshotConfig::default());
    assert_eq!(spec.gpus.len(), 1);
    assert_eq!(spec.gpus.capacity(), 1);
}
