//! VRAM history: the registry's stats stream (what our reporters and SOLLOL's append on
//! every publish, read with [`Registry::history`](vramroute_registry::Registry::history))
//! plus what the live view shows now, as per-node, per-GPU points for charts and scripts
//! (the coordinator's `GET /v1/history` and its dashboard).
//!
//! A point's `memory_used_mb` is the record's used VRAM, or total − free when the reporter
//! left used out (SOLLOL's records carry all three; some only total and free); unknown
//! stays `None`. Entries that do not decode are skipped and counted, never fatal.

use serde::Serialize;
use vramroute_registry::{decode_stream_entry, GpuStat, Limits};

use crate::view::{GpuView, StatusView};

/// The most points one answer holds.
pub const HISTORY_MAX_POINTS: usize = 5000;

/// How many skip reasons an answer lists (the count covers all).
const SKIP_REASONS_KEPT: usize = 5;

/// What to select.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HistoryQuery {
    /// Only this node's points; `None`: every node.
    pub node: Option<String>,
    /// Only points reported at or after this time, Unix seconds.
    pub since: f64,
    /// At most this many points (the newest), capped at [`HISTORY_MAX_POINTS`].
    pub limit: usize,
}

impl HistoryQuery {
    /// Every node's points since `since`, at most `limit`.
    pub fn new(node: Option<String>, since: f64, limit: usize) -> Self {
        HistoryQuery {
            node,
            since,
            limit: limit.min(HISTORY_MAX_POINTS),
        }
    }

    fn wants(&self, node_id: &str, timestamp: f64) -> bool {
        timestamp >= self.since && self.node.as_deref().is_none_or(|n| n == node_id)
    }
}

/// One GPU in a point.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HistoryGpu {
    /// GPU index on the node.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Used VRAM, MiB (used, else total − free).
    pub memory_used_mb: Option<u64>,
    /// Total VRAM, MiB.
    pub memory_total_mb: Option<u64>,
}

impl HistoryGpu {
    fn of(
        index: u32,
        name: &str,
        total: Option<u64>,
        free: Option<u64>,
        used: Option<u64>,
    ) -> Self {
        HistoryGpu {
            index,
            name: name.to_owned(),
            memory_used_mb: used.or_else(|| Some(total?.saturating_sub(free?))),
            memory_total_mb: total,
        }
    }

    fn from_stat(g: &GpuStat) -> Self {
        Self::of(
            g.index,
            &g.name,
            g.memory_total_mb,
            g.memory_free_mb,
            g.memory_used_mb,
        )
    }

    fn from_view(g: &GpuView) -> Self {
        Self::of(
            g.index,
            &g.name,
            g.memory_total_mb,
            g.memory_free_mb,
            g.memory_used_mb,
        )
    }
}

/// One node's report at one time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HistoryPoint {
    /// The stream entry's id; `None` for a point of the live view.
    pub id: Option<String>,
    /// The node.
    pub node_id: String,
    /// When the node reported it, Unix seconds.
    pub timestamp: f64,
    /// GPU vendor as reported.
    pub vendor: String,
    /// The node's GPUs.
    pub gpus: Vec<HistoryGpu>,
    /// Used VRAM over the node's GPUs whose used VRAM is known, MiB (`None`: none is).
    pub node_used_mb: Option<u64>,
}

impl HistoryPoint {
    fn new(
        id: Option<String>,
        node_id: &str,
        timestamp: f64,
        vendor: &str,
        gpus: Vec<HistoryGpu>,
    ) -> Self {
        let known: Vec<u64> = gpus.iter().filter_map(|g| g.memory_used_mb).collect();
        HistoryPoint {
            id,
            node_id: node_id.to_owned(),
            timestamp,
            vendor: vendor.to_owned(),
            node_used_mb: (!known.is_empty()).then(|| known.iter().sum()),
            gpus,
        }
    }
}

/// The selected history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HistoryAnswer {
    /// The query's node filter.
    pub node: Option<String>,
    /// The query's start, Unix seconds.
    pub since: f64,
    /// Stream points, oldest first.
    pub points: Vec<HistoryPoint>,
    /// Older matching points were left out to keep the answer within its limit.
    pub truncated: bool,
    /// Stream entries read.
    pub read: usize,
    /// Stream entries that did not decode.
    pub skipped: usize,
    /// Why (the first few).
    pub skipped_reasons: Vec<String>,
    /// What the live view shows now, one point per (matching) node.
    pub live: Vec<HistoryPoint>,
}

/// Selects from `entries` (the stream, oldest first, as `(id, fields)`) the points
/// `query` asks for, plus the live view's current point of each matching node.
pub fn history(
    entries: &[(String, Vec<(String, String)>)],
    view: &StatusView,
    query: &HistoryQuery,
    limits: &Limits,
) -> HistoryAnswer {
    let mut points = Vec::new();
    let mut skipped = 0;
    let mut skipped_reasons = Vec::new();
    for (id, fields) in entries {
        match decode_stream_entry(fields, limits) {
            Ok(r) if query.wants(&r.node_id, r.timestamp) => points.push(HistoryPoint::new(
                Some(id.clone()),
                &r.node_id,
                r.timestamp,
                &r.vendor,
                r.gpus.iter().map(HistoryGpu::from_stat).collect(),
            )),
            Ok(_) => {}
            Err(why) => {
                skipped += 1;
                if skipped_reasons.len() < SKIP_REASONS_KEPT {
                    skipped_reasons.push(format!("entry {id}: {why}"));
                }
            }
        }
    }
    // Stream order is write order; a node's clock may disagree with Redis's.
    points.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
    let limit = query.limit.min(HISTORY_MAX_POINTS);
    let truncated = points.len() > limit;
    if truncated {
        points.drain(..points.len() - limit);
    }
    let live = view
        .nodes
        .iter()
        .filter(|n| query.node.as_deref().is_none_or(|id| id == n.id))
        .map(|n| {
            HistoryPoint::new(
                None,
                &n.id,
                n.timestamp,
                &n.vendor,
                n.gpus.iter().map(HistoryGpu::from_view).collect(),
            )
        })
        .collect();
    HistoryAnswer {
        node: query.node.clone(),
        since: query.since,
        points,
        truncated,
        read: entries.len(),
        skipped,
        skipped_reasons,
        live,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use vramroute_registry::GpuStatsRecord;

    use super::*;

    fn entry(
        id: &str,
        node: &str,
        ts: f64,
        used: Option<u64>,
        free: Option<u64>,
    ) -> (String, Vec<(String, String)>) {
        let mut r = GpuStatsRecord::new(node, "nvidia", ts);
        let mut g = GpuStat::new(0, "RTX");
        g.memory_total_mb = Some(1000);
        g.memory_free_mb = free;
        g.memory_used_mb = used;
        r.gpus.push(g);
        (id.to_owned(), r.to_stream_fields())
    }

    #[test]
    fn selects_by_node_and_time_keeps_the_newest_and_skips_bad_entries() {
        let mut entries = vec![
            entry("1-0", "a:1", 100.0, Some(10), None),
            entry("2-0", "b:1", 200.0, None, Some(600)),
            entry("3-0", "a:1", 300.0, None, None),
            entry("5-0", "a:1", 500.0, Some(50), Some(950)),
        ];
        entries.insert(
            1,
            ("1-1".to_owned(), vec![("gpus".to_owned(), "[".to_owned())]),
        );
        let view = StatusView::from_cluster(
            &vramroute_registry::ClusterView::default(),
            "test".into(),
            0.0,
            30.0,
            0.8,
        );
        let all = history(
            &entries,
            &view,
            &HistoryQuery::new(None, 150.0, 10),
            &Limits::default(),
        );
        let ids: Vec<_> = all
            .points
            .iter()
            .map(|p| p.id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, ["2-0", "3-0", "5-0"]);
        // total − free when used is missing; unknown stays unknown.
        assert_eq!(all.points[0].gpus[0].memory_used_mb, Some(400));
        assert_eq!(all.points[1].gpus[0].memory_used_mb, None);
        assert_eq!(all.points[1].node_used_mb, None);
        assert_eq!(all.points[2].node_used_mb, Some(50));
        assert_eq!((all.read, all.skipped, all.truncated), (5, 1, false));
        assert!(
            all.skipped_reasons[0].starts_with("entry 1-1:"),
            "{:?}",
            all.skipped_reasons
        );

        let a = history(
            &entries,
            &view,
            &HistoryQuery::new(Some("a:1".into()), 0.0, 2),
            &Limits::default(),
        );
        let ids: Vec<_> = a.points.iter().map(|p| p.id.as_deref().unwrap()).collect();
        assert_eq!(ids, ["3-0", "5-0"]);
        assert!(a.truncated);
        assert_eq!(
            HistoryQuery::new(None, 0.0, usize::MAX).limit,
            HISTORY_MAX_POINTS
        );
    }
}
