//! The gateway's Prometheus metrics, registered into the application's registry.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    model: String,
    node: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

/// Requests by model, node and status; failovers; time-to-first-byte and total
/// latency; requests in flight per node.
#[derive(Debug)]
pub struct GatewayMetrics {
    requests: Family<RequestLabels, Counter>,
    failovers: Family<NodeLabels, Counter>,
    in_flight: Family<NodeLabels, Gauge>,
    ttfb: Histogram,
    total: Histogram,
    /// Children of the families already resolved, found by borrowed names (a family
    /// looks a child up by an owned label set: three allocations per request). Clones
    /// share the child's value; only children of answers a node gave are kept, so it
    /// grows with the models and nodes that served, never with what clients send.
    handles: RwLock<Handles>,
}

/// `requests` children by model, then node, then status; `in_flight` children by node.
#[derive(Debug, Default)]
struct Handles {
    requests: HashMap<String, HashMap<String, Vec<(u16, Counter)>>>,
    in_flight: HashMap<String, Gauge>,
}

impl GatewayMetrics {
    /// Metrics registered under `gateway_` in `registry`.
    pub fn new(registry: &mut Registry) -> GatewayMetrics {
        let m = GatewayMetrics {
            requests: Family::default(),
            failovers: Family::default(),
            in_flight: Family::default(),
            // 1 ms to ~930 s: beyond the longest first-byte timeout (a cold load).
            ttfb: Histogram::new(exponential_buckets(0.001, 2.5, 16)),
            // 1 ms to ~1.6 h.
            total: Histogram::new(exponential_buckets(0.001, 2.5, 18)),
            handles: RwLock::default(),
        };
        let sub = registry.sub_registry_with_prefix("gateway");
        sub.register(
            "requests",
            "Requests answered, by model, node (`-` when none) and HTTP status",
            m.requests.clone(),
        );
        sub.register(
            "failovers",
            "Attempts that failed before the first byte and moved on, by failed node",
            m.failovers.clone(),
        );
        sub.register(
            "in_flight",
            "Requests in flight, by node",
            m.in_flight.clone(),
        );
        sub.register(
            "ttfb_seconds",
            "Time from forwarding to the node's first response byte",
            m.ttfb.clone(),
        );
        sub.register(
            "request_seconds",
            "Time from forwarding to the end of the node's answer",
            m.total.clone(),
        );
        m
    }

    fn handles(&self) -> RwLockReadGuard<'_, Handles> {
        self.handles.read().unwrap_or_else(|p| p.into_inner())
    }

    fn handles_mut(&self) -> RwLockWriteGuard<'_, Handles> {
        self.handles.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn request(&self, model: &str, node: &str, status: u16) {
        {
            let h = self.handles();
            let found = h
                .requests
                .get(model)
                .and_then(|by_node| by_node.get(node))
                .and_then(|by_status| by_status.iter().find(|(s, _)| *s == status));
            if let Some((_, c)) = found {
                c.inc();
                return;
            }
        }
        let c = self
            .requests
            .get_or_create(&RequestLabels {
                model: model.to_owned(),
                node: node.to_owned(),
                status: status.to_string(),
            })
            .clone();
        c.inc();
        // Only answers a node gave are kept resolved: a model no node has (a client's
        // typo, or garbage) takes the families' own path and adds nothing here.
        if node != "-" {
            let mut h = self.handles_mut();
            let by_status = h
                .requests
                .entry(model.to_owned())
                .or_default()
                .entry(node.to_owned())
                .or_default();
            if !by_status.iter().any(|(s, _)| *s == status) {
                by_status.push((status, c));
            }
        }
    }

    pub(crate) fn failover(&self, node: &str) {
        self.failovers
            .get_or_create(&NodeLabels {
                node: node.to_owned(),
            })
            .inc();
    }

    /// The in-flight gauge of `node` (resolve it once per request, then
    /// [`Gauge::inc`]/[`Gauge::dec`] it).
    pub(crate) fn in_flight_gauge(&self, node: &str) -> Gauge {
        if let Some(g) = self.handles().in_flight.get(node) {
            return g.clone();
        }
        let g = self
            .in_flight
            .get_or_create(&NodeLabels {
                node: node.to_owned(),
            })
            .clone();
        self.handles_mut()
            .in_flight
            .entry(node.to_owned())
            .or_insert_with(|| g.clone());
        g
    }

    pub(crate) fn ttfb(&self, seconds: f64) {
        self.ttfb.observe(seconds);
    }

    pub(crate) fn total(&self, seconds: f64) {
        self.total.observe(seconds);
    }
}
