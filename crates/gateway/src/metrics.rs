//! The gateway's Prometheus metrics, registered into the application's registry.

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

    pub(crate) fn request(&self, model: &str, node: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                model: model.to_owned(),
                node: node.to_owned(),
                status: status.to_string(),
            })
            .inc();
    }

    pub(crate) fn failover(&self, node: &str) {
        self.failovers
            .get_or_create(&NodeLabels {
                node: node.to_owned(),
            })
            .inc();
    }

    pub(crate) fn in_flight(&self, node: &str, delta: i64) {
        self.in_flight
            .get_or_create(&NodeLabels {
                node: node.to_owned(),
            })
            .inc_by(delta);
    }

    pub(crate) fn ttfb(&self, seconds: f64) {
        self.ttfb.observe(seconds);
    }

    pub(crate) fn total(&self, seconds: f64) {
        self.total.observe(seconds);
    }
}
