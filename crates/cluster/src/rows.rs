//! Views built incrementally: a [`ViewBuilder`] keeps, per node, the view row and the
//! router's node spec that its stats record gave, and reuses both for as long as
//! discovery hands back the same record (the same `Arc`: a delta read shares every
//! unchanged record with the previous read) and the same registration. Per read
//! ([`ViewBuilder::update`]), an unchanged node costs its report age brought up to date
//! and one reference count for its spec; only changed, new and (clock-skewed)
//! future-dated nodes are built from their records. A view ([`ViewBuilder::view`]),
//! when one is wanted, costs per node its age and a reference count: the view's rows
//! share their [`NodeFacts`](crate::NodeFacts) (and each registration's
//! [`RpcBackendFacts`](crate::RpcBackendFacts)) with the builder, so an unchanged
//! node's strings exist once however many views hold it. The result equals
//! [`LiveConfig::view_of`] and [`StatusView::node_specs`]
//! (`incremental_views_equal_fresh_ones`).

use std::sync::Arc;

use vramroute_registry::{ClusterView, GpuStatsRecord, RpcNodeEntry, RpcNodeRecord, SmolStr};
use vramroute_router::{NodeSpec, SnapshotConfig};

use crate::live::LiveConfig;
use crate::specs::{node_spec, spec_age_ms};
use crate::view::{
    node_view, rpc_view, NodeView, OllamaNodeInfo, Registrations, RpcBackendView, SkippedView,
    StatusView, Totals, FUTURE_SKEW_S,
};

/// What one node's record gave last time.
struct Row {
    record: Arc<GpuStatsRecord>,
    /// The registration the row was built with: (host, port, record); the host as a
    /// `SmolStr` (an address fits inline: no heap block per row).
    registration: Option<(SmolStr, u16, Arc<RpcNodeRecord>)>,
    /// Its facts are shared with every view built while the record is unchanged.
    node: NodeView,
    /// The node's spec without measured load; its `report_age_ms` is the age when it
    /// was built (the snapshot is given the current one).
    spec: Arc<NodeSpec>,
    /// Built from a report dated in the future (its note says so): never reused.
    future: bool,
}

/// What one registration gave last time.
struct Backend {
    record: Arc<RpcNodeRecord>,
    view: RpcBackendView,
}

/// A view and the router's input for it, as [`ViewBuilder::build`] makes them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuiltView {
    /// The view ([`LiveConfig::view_of`] of the same records).
    pub view: StatusView,
    /// Every node with a registry record: its spec (shared with the previous build
    /// when unchanged, without measured load) and its report age for the router, ms.
    pub specs: Vec<(Arc<NodeSpec>, u64)>,
}

/// Builds views from successive registry reads, reusing per node what an unchanged
/// record gave the previous time (see the module docs). One per follower.
#[derive(Default)]
pub struct ViewBuilder {
    rows: Vec<Row>,
    backends: Vec<Backend>,
    /// The settings the rows were built with (others: everything is rebuilt).
    built_with: Option<(f64, f64, SnapshotConfig)>,
    /// The rows are in id order (the last read was sorted): they can be matched.
    rows_sorted: bool,
}

/// What [`ViewBuilder::update`] gives the router.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SpecUpdate {
    /// Every node with a registry record, in the read's order: its spec (shared with
    /// the previous update when unchanged, without measured load) and its report age
    /// for the router, ms.
    pub specs: Vec<(Arc<NodeSpec>, u64)>,
    /// Whether the set of node ids differs from the previous update's (always true
    /// when either read was unsorted: ids are not compared then).
    pub members_changed: bool,
}

impl std::fmt::Debug for ViewBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewBuilder")
            .field("rows", &self.rows.len())
            .field("backends", &self.backends.len())
            .finish_non_exhaustive()
    }
}

fn same_registration(
    kept: Option<&(SmolStr, u16, Arc<RpcNodeRecord>)>,
    now: Option<&RpcNodeEntry>,
) -> bool {
    match (kept, now) {
        (None, None) => true,
        (Some((h, p, r)), Some(e)) => *p == e.port && *h == e.host && Arc::ptr_eq(r, &e.record),
        _ => false,
    }
}

impl ViewBuilder {
    /// An empty builder: the first build makes every row.
    pub fn new() -> Self {
        ViewBuilder::default()
    }

    /// The view of `cluster` (plus Ollama answers) at `now`, Unix seconds, with the
    /// router's node specs: what [`LiveConfig::view_of`] and then
    /// [`StatusView::node_specs`] give, at the cost of the changed nodes (plus a reference
    /// count per unchanged node's row): [`update`](Self::update) then
    /// [`view`](Self::view).
    pub fn build(
        &mut self,
        config: &LiveConfig,
        cluster: &ClusterView,
        ollama: &[OllamaNodeInfo],
        source: String,
        now: f64,
    ) -> BuiltView {
        let update = self.update(config, cluster, now);
        let mut view = self.view(config, cluster, source, now);
        let specs = if ollama.is_empty() {
            update.specs
        } else {
            // Ollama's answers change the nodes' loaded models: specs from the merged
            // view (a configuration with `nodes:`, small clusters).
            view.merge_ollama(ollama);
            view.recompute_totals();
            view.node_specs(&config.snapshot)
                .into_iter()
                .map(|s| {
                    let age = s.report_age_ms;
                    (Arc::new(s), age)
                })
                .collect()
        };
        BuiltView { view, specs }
    }

    /// Brings the rows up to `cluster` at `now`, Unix seconds, and returns the
    /// router's node specs (what [`StatusView::node_specs`] of
    /// [`LiveConfig::view_of`] without Ollama answers gives, without measured load),
    /// without building a view: the cost of the changed nodes plus, per unchanged
    /// node, its age brought up to date and one reference count.
    pub fn update(&mut self, config: &LiveConfig, cluster: &ClusterView, now: f64) -> SpecUpdate {
        let margin = config.snapshot.vram_safety_margin;
        let stale_after_s = config.stale_after_s;
        let settings = (stale_after_s, margin, config.snapshot.clone());
        if self.built_with.as_ref() != Some(&settings) {
            self.rows.clear();
            self.backends.clear();
            self.built_with = Some(settings);
        }
        let snap_cfg = &config.snapshot;
        let registrations = Registrations::of(&cluster.rpc_nodes);
        let sorted = cluster.stats.windows(2).all(|w| w[0].0 < w[1].0);
        // Rows are matched by id in one merge pass, which needs both sides sorted.
        let matching = sorted && self.rows_sorted;
        let old = std::mem::take(&mut self.rows);
        let old_len = old.len();
        let mut same_ids = 0usize;
        let mut old = old.into_iter().peekable();
        let mut rows = Vec::with_capacity(cluster.stats.len());
        let mut specs = Vec::with_capacity(cluster.stats.len());
        for (id, r) in &cluster.stats {
            let registration = registrations.of_node(id, r);
            // Rows of ids that left (or, for unsorted input, everything) are dropped.
            let mut kept = None;
            if matching {
                while old.peek().is_some_and(|o| o.node.id < *id) {
                    old.next();
                }
                if old.peek().is_some_and(|o| o.node.id == *id) {
                    kept = old.next();
                    same_ids += 1;
                }
            }
            let from_future = r.timestamp - now > FUTURE_SKEW_S;
            let row = match kept {
                Some(mut row)
                    if Arc::ptr_eq(&row.record, r)
                        && same_registration(row.registration.as_ref(), registration)
                        && !from_future
                        && !row.future =>
                {
                    let age_s = (now - r.timestamp).max(0.0);
                    row.node.age_s = age_s;
                    row.node.stale = age_s > stale_after_s;
                    row
                }
                _ => {
                    let node = node_view(id, r, registration, now, stale_after_s, margin);
                    let spec = Arc::new(node_spec(&node, snap_cfg));
                    Row {
                        record: Arc::clone(r),
                        registration: registration
                            .map(|e| (SmolStr::from(&e.host), e.port, Arc::clone(&e.record))),
                        node,
                        spec,
                        future: from_future,
                    }
                }
            };
            specs.push((Arc::clone(&row.spec), spec_age_ms(&row.node, snap_cfg)));
            rows.push(row);
        }
        drop(old);
        let members_changed = !matching || same_ids != old_len || same_ids != rows.len();
        self.rows = rows;
        self.rows_sorted = sorted;
        SpecUpdate {
            specs,
            members_changed,
        }
    }

    /// The view of `cluster` at `now` (without Ollama answers) from the rows the last
    /// [`update`](Self::update) — of the same `cluster` and `now` — left: per node its
    /// age and one reference count (the view shares each row's [`NodeFacts`]
    /// with the builder and with earlier views of the same record).
    pub fn view(
        &mut self,
        config: &LiveConfig,
        cluster: &ClusterView,
        source: String,
        now: f64,
    ) -> StatusView {
        let nodes = self.rows.iter().map(|row| row.node.clone()).collect();
        let mut view = StatusView {
            source,
            generated_at: now,
            stale_after_s: config.stale_after_s,
            vram_safety_margin: config.snapshot.vram_safety_margin,
            nodes,
            rpc_backends: self.backends(cluster),
            totals: Totals::default(),
            skipped: SkippedView::all_of(cluster),
            warnings: Vec::new(),
            model_sizes: config.model_sizes.clone(),
        };
        view.recompute_totals();
        view
    }

    /// The rpc backends of `cluster` (registrations, then router metadata), reusing
    /// the view of each registration whose record is unchanged.
    fn backends(&mut self, cluster: &ClusterView) -> Vec<RpcBackendView> {
        let sorted = cluster
            .rpc_nodes
            .windows(2)
            .all(|w| (&w[0].host, w[0].port) < (&w[1].host, w[1].port));
        let old = std::mem::take(&mut self.backends);
        let mut old = old.into_iter().peekable();
        let mut kept_rows = Vec::with_capacity(cluster.rpc_nodes.len());
        let mut out: Vec<RpcBackendView> = Vec::with_capacity(cluster.rpc_nodes.len());
        for e in &cluster.rpc_nodes {
            let mut kept = None;
            if sorted {
                let key = (e.host.as_str(), e.port);
                while old
                    .peek()
                    .is_some_and(|o| (o.view.host.as_str(), o.view.port) < key)
                {
                    old.next();
                }
                if old
                    .peek()
                    .is_some_and(|o| (o.view.host.as_str(), o.view.port) == key)
                {
                    kept = old.next();
                }
            }
            let b = match kept {
                Some(b) if Arc::ptr_eq(&b.record, &e.record) => b,
                _ => Backend {
                    record: Arc::clone(&e.record),
                    view: rpc_view(&e.host, e.port, &e.record),
                },
            };
            out.push(b.view.clone());
            kept_rows.push(b);
        }
        self.backends = if sorted { kept_rows } else { Vec::new() };
        if let Some(meta) = &cluster.metadata {
            crate::view::merge_metadata(&mut out, meta);
        }
        out
    }
}

#[cfg(test)]
mod tests {
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
    fn churn(
        rng: &mut Rng,
        ids: &mut Vec<u64>,
        cluster: &mut ClusterView,
        now: &mut f64,
        round: u32,
    ) {
        if round > 0 {
            ids.retain(|_| rng.below(15) != 0);
            for _ in 0..rng.below(3) {
                ids.push(100 + rng.below(1000));
            }
            ids.sort_unstable();
            ids.dedup();
            *now += rng.below(8) as f64;
        }
        let old: std::collections::HashMap<String, Arc<GpuStatsRecord>> =
            cluster.stats.drain(..).collect();
        for &i in ids.iter() {
            let id = format!("{}:11434", host(i));
            let r = match old.get(&id) {
                Some(r) if rng.below(4) != 0 => Arc::clone(r),
                _ => Arc::new(record(rng, &id, *now)),
            };
            cluster.stats.push((id, r));
        }
        cluster.stats.sort_by(|a, b| a.0.cmp(&b.0));
        let old_regs = std::mem::take(&mut cluster.rpc_nodes);
        for &i in ids.iter() {
            if rng.below(3) == 0 {
                continue;
            }
            let h = host(i);
            let kept = old_regs.iter().find(|e| e.host == h);
            let rec = match kept {
                Some(e) if rng.below(5) != 0 => Arc::clone(&e.record),
                _ => Arc::new(registration(rng)),
            };
            cluster.rpc_nodes.push(RpcNodeEntry::new(h, 50052, rec));
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
                let specs = fresh.node_specs(&config.snapshot);
                assert_eq!(built.specs.len(), specs.len());
                for ((b, age), f) in built.specs.iter().zip(&specs) {
                    assert_eq!(*age, f.report_age_ms, "{}", f.id);
                    let mut b = NodeSpec::clone(b);
                    b.report_age_ms = f.report_age_ms;
                    assert_eq!(&b, f);
                }
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
            let lazy = LiveCluster::new(start.clone(), Policy::default(), lazy_cfg.clone())
                .expect("valid");
            let eager =
                LiveCluster::new(start, Policy::default(), eager_cfg.clone()).expect("valid");
            let mut in_flight = Vec::new();
            let mut last_ids: Option<Vec<String>> = None;
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
                let ids_now: Vec<String> = cluster.stats.iter().map(|(id, _)| id.clone()).collect();
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
}
