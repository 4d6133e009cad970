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

use vramroute_registry::{
    is_unchanged_rpc, is_unchanged_stats, unchanged_rpc, unchanged_stats, ClusterView,
    GpuStatsRecord, RpcNodeEntry, RpcNodeRecord, SmolStr,
};
use vramroute_router::{NodeSpec, SnapshotConfig};

use crate::live::LiveConfig;
use crate::specs::{node_spec, spec_age_ms};
use crate::view::{
    node_view, own_rpc, registered, rpc_view, with_registration, NodeView, OllamaNodeInfo,
    Registered, Registrations, RpcBackendView, SkippedView, StatusView, Totals, FUTURE_SKEW_S,
};

/// The hosts whose registrations came, went or changed in an update (sorted), or
/// `None`: not known (a read out of order), so every host counts as touched. A node
/// whose record is unchanged and whose registration's host was not touched keeps the
/// registration its row took, without looking it up again.
struct Touched(Option<Vec<SmolStr>>);

impl Touched {
    fn hosts(known: bool, mut hosts: Vec<SmolStr>) -> Touched {
        if !known {
            return Touched(None);
        }
        hosts.sort_unstable();
        hosts.dedup();
        Touched(Some(hosts))
    }

    fn includes(&self, host: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|h| h.binary_search_by(|x| x.as_str().cmp(host)).is_ok())
    }
}

/// What a lost-track reason adds when rows could not be matched (`matching` false).
fn out_of_order(matching: bool) -> &'static str {
    if matching {
        ""
    } else {
        " (this read or the last was not in order)"
    }
}

/// What one node's record gave last time.
struct Row {
    /// The record the row was built from, to recognise it in the next read (the same
    /// `Arc`). From a changes-only read ([`ClusterView::changes_only`]) the registry's
    /// marker instead: the next read says itself whether the record changed, and the
    /// builder keeps no record (except one dated in the future, built again from it).
    record: Arc<GpuStatsRecord>,
    /// The record's own rpc-server endpoint (`rpc_host`, `rpc_port`): how its
    /// registration is found ([`Registrations::of_endpoint`]) without the record.
    own_rpc: Option<(SmolStr, u16)>,
    /// What the row took from its registration (host, port, usable RAM); the host as a
    /// `SmolStr` (an address fits inline: no heap block per row).
    registration: Option<Registered>,
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
    /// As [`Row::record`] (a changes-only read: the marker).
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
    /// One per registration of the last read, in its order.
    backends: Vec<Backend>,
    /// The backends are in (host, port) order (the last read was sorted).
    backends_sorted: bool,
    /// The settings the rows were built with (others: everything is rebuilt).
    built_with: Option<(f64, f64, SnapshotConfig)>,
    /// The rows are in id order (the last read was sorted): they can be matched.
    rows_sorted: bool,
    /// See [`ViewBuilder::take_lost_track`]: why (the first cause), if it did.
    lost_track: Option<String>,
    /// The last changes-only read applied (its `ClusterView::sequence`).
    last_read: Option<u64>,
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
        let changes_only = cluster.changes_only;
        // A changes-only read's markers refer to the read before it: that one must be
        // the last applied here (or this one, applied again).
        if let Some(since) = cluster.changes_since.filter(|_| changes_only) {
            if self.last_read != Some(since) && self.last_read != Some(cluster.sequence) {
                self.lost_track.get_or_insert_with(|| {
                    format!(
                        "read {} follows read {since}, but the last read applied was {}",
                        cluster.sequence,
                        self.last_read.map_or("none".to_owned(), |r| r.to_string())
                    )
                });
                return SpecUpdate {
                    specs: Vec::new(),
                    members_changed: true,
                };
            }
        }
        self.last_read = changes_only.then_some(cluster.sequence);
        // The backends first: with changes only, a node's registration may be known
        // only from its backend's row.
        let (mut lost_track, touched) = self.update_backends(cluster);
        let backends = &self.backends;
        let backends_sorted = self.backends_sorted;
        let registrations = Registrations::of(&cluster.rpc_nodes);
        // What a node takes from the registration `e`: from the record, or (a record
        // handed back as unchanged) from the row its backend kept.
        let registration_of = |e: &RpcNodeEntry| -> Option<Registered> {
            if !(changes_only && is_unchanged_rpc(&e.record)) {
                return Some(registered(e));
            }
            let key = (e.host.as_str(), e.port);
            let b = if backends_sorted {
                backends
                    .binary_search_by(|b| (b.view.host.as_str(), b.view.port).cmp(&key))
                    .ok()
                    .map(|i| &backends[i])
            } else {
                backends
                    .iter()
                    .find(|b| (b.view.host.as_str(), b.view.port) == key)
            };
            b.and_then(|b| b.view.cpu_ram_mb)
                .map(|ram| (e.host.clone(), e.port, ram))
        };
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
            // Rows of ids that left (or, for unsorted input, everything) are dropped.
            let mut kept = None;
            if matching {
                // One comparison of ids a step.
                while let Some(o) = old.peek() {
                    match o.node.id.as_str().cmp(id.as_str()) {
                        std::cmp::Ordering::Less => {
                            old.next();
                        }
                        std::cmp::Ordering::Equal => {
                            kept = old.next();
                            same_ids += 1;
                            break;
                        }
                        std::cmp::Ordering::Greater => break,
                    }
                }
            }
            // A changes-only read's unchanged record: the row built from it stands in.
            let unchanged = changes_only && is_unchanged_stats(r);
            let row = match kept {
                None if unchanged => {
                    lost_track.get_or_insert_with(|| {
                        format!(
                            "node {id} was handed back unchanged{}",
                            out_of_order(matching)
                        )
                    });
                    continue;
                }
                // Built again from the record it kept (dated in the future).
                Some(row) if unchanged && row.future => {
                    let record = Arc::clone(&row.record);
                    let own = own_rpc(&record);
                    let registration = registrations
                        .of_endpoint(id, own.as_ref())
                        .and_then(registration_of);
                    build_row(id, &record, own, registration, now, config, changes_only)
                }
                Some(mut row) if unchanged => {
                    if touched.includes(Registrations::host_for(id, row.own_rpc.as_ref())) {
                        let registration = registrations
                            .of_endpoint(id, row.own_rpc.as_ref())
                            .and_then(registration_of);
                        row.registered(registration, snap_cfg);
                    }
                    row.aged(now, stale_after_s);
                    row
                }
                kept => {
                    let own = own_rpc(r);
                    let from_future = r.timestamp - now > FUTURE_SKEW_S;
                    let same = kept.as_ref().is_some_and(|row| {
                        Arc::ptr_eq(&row.record, r) && !from_future && !row.future
                    });
                    let lookup = || {
                        registrations
                            .of_endpoint(id, own.as_ref())
                            .and_then(registration_of)
                    };
                    // Looked up unless the record is the same and no registration of
                    // its host came, went or changed.
                    let registration = (!same
                        || touched.includes(Registrations::host_for(id, own.as_ref())))
                    .then(lookup);
                    match (kept, registration) {
                        (Some(mut row), None) if same => {
                            row.aged(now, stale_after_s);
                            row
                        }
                        (Some(mut row), Some(registration))
                            if same && row.registration == registration =>
                        {
                            row.aged(now, stale_after_s);
                            row
                        }
                        (_, registration) => {
                            let registration = registration.unwrap_or_else(lookup);
                            build_row(id, r, own, registration, now, config, changes_only)
                        }
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
        if self.lost_track.is_none() {
            self.lost_track = lost_track;
        }
        SpecUpdate {
            specs,
            members_changed,
        }
    }

    /// Whether an update since the last call was given a changes-only read
    /// ([`ClusterView::changes_only`]) that follows a read this builder did not apply
    /// (nothing was updated), or that handed back a record as unchanged which the
    /// builder has no row for (its settings changed): that node or backend was left out. The registry should then forget what it kept
    /// ([`Registry::forget_discovered`](vramroute_registry::Registry::forget_discovered)),
    /// so that its next read hands back every record.
    pub fn take_lost_track(&mut self) -> bool {
        self.take_lost_track_reason().is_some()
    }

    /// [`take_lost_track`](Self::take_lost_track) with what happened (for the log): a
    /// read that does not follow the last one applied, or the first node or
    /// registration handed back unchanged without a row.
    pub fn take_lost_track_reason(&mut self) -> Option<String> {
        self.lost_track.take()
    }

    /// Brings the backends' rows up to `cluster`'s registrations; whether one was
    /// handed back as unchanged without a row (left out; the first, said), and the
    /// hosts whose registrations changed.
    fn update_backends(&mut self, cluster: &ClusterView) -> (Option<String>, Touched) {
        let changes_only = cluster.changes_only;
        let sorted = cluster
            .rpc_nodes
            .windows(2)
            .all(|w| (&w[0].host, w[0].port) < (&w[1].host, w[1].port));
        let matching = sorted && self.backends_sorted;
        let old = std::mem::take(&mut self.backends);
        let mut old = old.into_iter().peekable();
        let mut rows = Vec::with_capacity(cluster.rpc_nodes.len());
        let mut lost_track = None;
        // Hosts with a registration that came, went or changed: only when both reads
        // are in order are the two compared (else every host counts as touched).
        let mut touched = Vec::new();
        for e in &cluster.rpc_nodes {
            let mut kept = None;
            if matching {
                let key = (e.host.as_str(), e.port);
                while let Some(gone) = old.next_if(|o| (o.view.host.as_str(), o.view.port) < key) {
                    touched.push(gone.view.host.clone());
                }
                if old
                    .peek()
                    .is_some_and(|o| (o.view.host.as_str(), o.view.port) == key)
                {
                    kept = old.next();
                }
            }
            let unchanged = changes_only && is_unchanged_rpc(&e.record);
            let b = match kept {
                Some(b) if unchanged || Arc::ptr_eq(&b.record, &e.record) => {
                    rows.push(b);
                    continue;
                }
                None if unchanged => {
                    lost_track.get_or_insert_with(|| {
                        format!(
                            "registration {}:{} was handed back unchanged{}",
                            e.host,
                            e.port,
                            out_of_order(matching)
                        )
                    });
                    touched.push(e.host.clone());
                    continue;
                }
                _ => Backend {
                    record: if changes_only {
                        Arc::clone(unchanged_rpc())
                    } else {
                        Arc::clone(&e.record)
                    },
                    view: rpc_view(&e.host, e.port, &e.record),
                },
            };
            // New, or changed.
            touched.push(e.host.clone());
            rows.push(b);
        }
        touched.extend(old.map(|gone| gone.view.host.clone()));
        self.backends = rows;
        self.backends_sorted = sorted;
        (lost_track, Touched::hosts(matching, touched))
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

    /// The rpc backends of `cluster` (registrations, then router metadata): the views
    /// [`update`](Self::update) left for its registrations.
    fn backends(&self, cluster: &ClusterView) -> Vec<RpcBackendView> {
        let mut out: Vec<RpcBackendView> = self.backends.iter().map(|b| b.view.clone()).collect();
        if let Some(meta) = &cluster.metadata {
            crate::view::merge_metadata(&mut out, meta);
        }
        out
    }
}

impl Row {
    /// Brings the row to `registration` (its record unchanged): what the node takes
    /// from it, and the spec made again when that changed.
    fn registered(&mut self, registration: Option<Registered>, snap_cfg: &SnapshotConfig) {
        if registration != self.registration {
            with_registration(
                &mut self.node,
                self.own_rpc.is_some(),
                registration.as_ref(),
            );
            self.spec = Arc::new(node_spec(&self.node, snap_cfg));
            self.registration = registration;
        }
    }

    /// The row at `now`: its report age and staleness brought up to date.
    fn aged(&mut self, now: f64, stale_after_s: f64) {
        let age_s = (now - self.node.timestamp).max(0.0);
        self.node.age_s = age_s;
        self.node.stale = age_s > stale_after_s;
    }
}

/// A node's row from its record `r` (whose own rpc-server endpoint is `own_rpc`) and
/// `registration`, at `now`; with changes only, keeping the registry's marker instead
/// of the record (unless it is dated in the future: it is built again from it).
fn build_row(
    id: &str,
    r: &Arc<GpuStatsRecord>,
    own_rpc: Option<(SmolStr, u16)>,
    registration: Option<Registered>,
    now: f64,
    config: &LiveConfig,
    changes_only: bool,
) -> Row {
    let margin = config.snapshot.vram_safety_margin;
    let node = node_view(
        id,
        r,
        registration.as_ref(),
        now,
        config.stale_after_s,
        margin,
    );
    let spec = Arc::new(node_spec(&node, &config.snapshot));
    let future = r.timestamp - now > FUTURE_SKEW_S;
    Row {
        record: if changes_only && !future {
            Arc::clone(unchanged_stats())
        } else {
            Arc::clone(r)
        },
        own_rpc,
        registration,
        node,
        spec,
        future,
    }
}

#[cfg(test)]
#[path = "rows_tests.rs"]
mod tests;
