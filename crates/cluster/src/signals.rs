//! Live load signals: what forwarding requests to nodes measures (requests in flight,
//! time to first byte, total latency, success rate), kept per node and fed into the
//! view (and so into the router's `active_requests`, `latency_ms` and `success_rate`)
//! on every publish. Whoever forwards requests (the gateway) records them here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Weight of a new observation in the moving averages.
const EMA_ALPHA: f64 = 0.2;

/// What the forwarding layer measured on one node. Averages are exponential moving
/// averages (weight 0.2 per observation); `None` until the first observation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeLoad {
    /// Requests in flight now.
    pub in_flight: u32,
    /// Time to the first byte of the node's answer, ms.
    pub ttfb_ms: Option<f64>,
    /// Time to the end of the answer, ms.
    pub latency_ms: Option<f64>,
    /// Share of requests that succeeded (0.0–1.0; the average starts from 1.0).
    pub success_rate: Option<f64>,
    /// Requests finished (succeeded or failed).
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
}

fn ema(old: Option<f64>, new: f64) -> f64 {
    match old {
        Some(o) => o + EMA_ALPHA * (new - o),
        None => new,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Per-node load signals, shared by every request in flight.
#[derive(Debug, Clone, Default)]
pub struct LoadSignals {
    nodes: Arc<Mutex<HashMap<String, NodeLoad>>>,
}

impl LoadSignals {
    fn locked(&self) -> MutexGuard<'_, HashMap<String, NodeLoad>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on `node`'s entry, created when missing (the id is copied only then:
    /// this runs several times per forwarded request).
    fn update(&self, node: &str, f: impl FnOnce(&mut NodeLoad)) {
        let mut map = self.locked();
        match map.get_mut(node) {
            Some(n) => f(n),
            None => f(map.entry(node.to_owned()).or_default()),
        }
    }

    /// A request to `node` starts: counted in flight until the returned guard is
    /// finished or dropped (a dropped guard counts neither success nor failure: the
    /// client went away).
    pub fn begin(&self, node: &str) -> InFlight {
        self.update(node, |n| n.in_flight += 1);
        InFlight {
            signals: self.clone(),
            node: node.to_owned(),
            done: false,
        }
    }

    /// The node's answer began after `ttfb`.
    pub fn first_byte(&self, node: &str, ttfb: Duration) {
        self.update(node, |n| n.ttfb_ms = Some(ema(n.ttfb_ms, ms(ttfb))));
    }

    fn finish(&self, node: &str, total: Option<Duration>, ok: Option<bool>) {
        self.update(node, |n| {
            n.in_flight = n.in_flight.saturating_sub(1);
            if let Some(t) = total {
                n.latency_ms = Some(ema(n.latency_ms, ms(t)));
            }
            if let Some(ok) = ok {
                n.requests += 1;
                if !ok {
                    n.failures += 1;
                }
                // The average starts from a prior of 1.0 (a node is presumed good): one
                // early failure lowers the rate to 0.8, not to 0.
                n.success_rate = Some(ema(
                    n.success_rate.or(Some(1.0)),
                    if ok { 1.0 } else { 0.0 },
                ));
            }
        });
    }

    /// The signals of `node` now.
    pub fn get(&self, node: &str) -> Option<NodeLoad> {
        self.locked().get(node).cloned()
    }

    /// Every node's signals.
    pub fn all(&self) -> HashMap<String, NodeLoad> {
        self.locked().clone()
    }

    /// Nodes with signals.
    pub fn len(&self) -> usize {
        self.locked().len()
    }

    /// Whether no node has signals.
    pub fn is_empty(&self) -> bool {
        self.locked().is_empty()
    }

    /// Forgets the signals of nodes `keep` rejects (nodes that left the cluster), except
    /// those with requests still in flight, whose guards will update them. Without it
    /// every node the gateway ever forwarded to would stay here: under churn nodes come
    /// back with new ids, and the map (and its copy in every published view) would grow
    /// without bound.
    pub fn retain_nodes(&self, mut keep: impl FnMut(&str) -> bool) {
        self.locked().retain(|id, n| n.in_flight > 0 || keep(id));
    }
}

/// A request in flight on a node (see [`LoadSignals::begin`]).
#[derive(Debug)]
pub struct InFlight {
    signals: LoadSignals,
    node: String,
    done: bool,
}

impl InFlight {
    /// The node whose request this is.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The request ended after `total`: `ok` says whether the node served it.
    pub fn finish(mut self, total: Duration, ok: bool) {
        self.done = true;
        self.signals.finish(&self.node, Some(total), Some(ok));
    }

    /// The request failed before any answer (refused, timed out, 5xx).
    pub fn fail(mut self) {
        self.done = true;
        self.signals.finish(&self.node, None, Some(false));
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.signals.finish(&self.node, None, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_of_departed_nodes_are_forgotten_under_churn() {
        let s = LoadSignals::default();
        let mut live: Vec<String> = Vec::new();
        let mut held = None;
        // 100 rounds of 50 nodes each: every round the cluster is all new ids.
        for round in 0..100 {
            live = (0..50).map(|i| format!("10.{round}.0.{i}:11434")).collect();
            for id in &live {
                let f = s.begin(id);
                s.first_byte(id, Duration::from_millis(5));
                f.finish(Duration::from_millis(9), true);
            }
            if round == 3 {
                // A request still in flight on a node that then leaves.
                held = Some(s.begin("10.3.0.0:11434"));
            }
            s.retain_nodes(|id| live.iter().any(|l| l == id));
            assert!(s.len() <= 51, "round {round}: {} nodes kept", s.len());
        }
        assert!(s.get(&live[7]).is_some_and(|n| n.requests == 1));
        assert!(s.get("10.0.0.1:11434").is_none());
        // The in-flight node stays until its request ends, then goes at the next prune.
        assert_eq!(s.get("10.3.0.0:11434").map(|n| n.in_flight), Some(1));
        held.expect("held").fail();
        s.retain_nodes(|id| live.iter().any(|l| l == id));
        assert!(s.get("10.3.0.0:11434").is_none());
        assert_eq!(s.len(), 50);
    }
}
