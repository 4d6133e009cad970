//! The recent routing decisions, kept for people to look at (the coordinator's dashboard
//! and `GET /v1/decisions`): a bounded ring buffer that every router of a
//! [`LiveCluster`](crate::LiveCluster) records into (the HTTP API's `/v1/route`, the
//! gateway's forwarding), newest first when read.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use vramroute_router::{FitKind, Target};

use crate::route::{Placement, RouteAnswer};

/// Seconds since the Unix epoch (as [`unix_now`](crate::unix_now); `live` sits above
/// this module).
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How many decisions a [`DecisionLog`] keeps by default.
pub const DEFAULT_DECISIONS_KEPT: usize = 200;

/// One routing decision as it was made.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RecentDecision {
    /// Unix seconds when it was made.
    pub at: f64,
    /// Who asked: `api` (`/v1/route`) or `gateway` (a forwarded request).
    pub source: &'static str,
    /// The model.
    pub model: String,
    /// Its size, MiB, when it was known.
    pub size_mb: Option<u64>,
    /// The chosen node; `None` when no node could take it.
    pub node: Option<String>,
    /// GPU or CPU.
    pub target: Option<Target>,
    /// The chosen GPU's index, when one GPU was chosen.
    pub gpu: Option<u32>,
    /// Why it fits.
    pub fit: Option<FitKind>,
    /// The policy's score.
    pub score: Option<f64>,
    /// The one-line reason (or why nothing fits).
    pub reason: String,
}

impl RecentDecision {
    /// A decision that placed `model` (`size_mb` MiB) as `placement` says.
    pub fn placed(
        source: &'static str,
        model: &str,
        size_mb: Option<u64>,
        placement: &Placement,
        reason: String,
    ) -> Self {
        RecentDecision {
            at: now(),
            source,
            model: model.to_owned(),
            size_mb,
            node: Some(placement.node.clone()),
            target: Some(placement.target),
            gpu: placement.gpu,
            fit: Some(placement.fit),
            score: Some(placement.score),
            reason,
        }
    }

    /// A decision the router did not score: sent to `node` for `reason` (e.g. the node
    /// that has the model pulled), or nowhere (`node: None`, `reason` says why).
    pub fn unscored(
        source: &'static str,
        model: &str,
        size_mb: Option<u64>,
        node: Option<String>,
        reason: String,
    ) -> Self {
        RecentDecision {
            at: now(),
            source,
            model: model.to_owned(),
            size_mb,
            node,
            target: None,
            gpu: None,
            fit: None,
            score: None,
            reason,
        }
    }

    /// The decision a routing answer carries.
    pub fn from_answer(source: &'static str, answer: &RouteAnswer) -> Self {
        match &answer.placement {
            Some(p) => Self::placed(
                source,
                &answer.model,
                Some(answer.size_mb),
                p,
                answer.reason.clone(),
            ),
            None => Self::unscored(
                source,
                &answer.model,
                Some(answer.size_mb),
                None,
                answer.reason.clone(),
            ),
        }
    }
}

/// The last `capacity` decisions (a ring buffer: recording one drops the oldest).
#[derive(Debug)]
pub struct DecisionLog {
    capacity: usize,
    ring: Mutex<VecDeque<RecentDecision>>,
    total: AtomicU64,
}

impl Default for DecisionLog {
    fn default() -> Self {
        Self::new(DEFAULT_DECISIONS_KEPT)
    }
}

impl DecisionLog {
    /// A log keeping the last `capacity` decisions (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        DecisionLog {
            capacity,
            ring: Mutex::new(VecDeque::with_capacity(capacity)),
            total: AtomicU64::new(0),
        }
    }

    /// Records `d`, dropping the oldest when full.
    pub fn record(&self, d: RecentDecision) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(d);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// The kept decisions, newest first, at most `max`.
    pub fn recent(&self, max: usize) -> Vec<RecentDecision> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().rev().take(max).cloned().collect()
    }

    /// How many decisions were recorded since the start (kept or not).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// How many it keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_newest_and_counts_all() {
        let log = DecisionLog::new(3);
        for i in 0..5 {
            log.record(RecentDecision::unscored(
                "api",
                &format!("m{i}"),
                None,
                None,
                "no node".to_owned(),
            ));
        }
        let got: Vec<String> = log.recent(10).into_iter().map(|d| d.model).collect();
        assert_eq!(got, ["m4", "m3", "m2"]);
        assert_eq!(log.recent(1).len(), 1);
        assert_eq!(log.total(), 5);
        assert_eq!(DecisionLog::new(0).capacity(), 1);
    }
}
