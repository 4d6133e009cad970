//! Forwarding one request: model → size → the live router's decision (reserving a cold
//! load's VRAM) → the node's Ollama, the answer streamed back chunk by chunk. Failures
//! before the first byte fail over to the next-best node; after it, the stream ends with
//! an error in the protocol's own shape.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::conn::{SendError, UpstreamBody};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use prometheus_client::metrics::gauge::Gauge;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use tracing::{debug, warn};
use vramroute_cluster::{InFlight, LiveCluster, Placement, RecentDecision};
use vramroute_router::{Decision, Request};

use crate::breaker::Breaker;
use crate::config::GatewayConfig;
use crate::metrics::GatewayMetrics;
use crate::shape::Protocol;

/// Which node served a request.
pub const NODE_HEADER: &str = "x-vramroute-node";
/// Why that node (the router's short reason).
pub const REASON_HEADER: &str = "x-vramroute-reason";

/// What every request handler shares.
pub(crate) struct Shared {
    pub(crate) live: Arc<LiveCluster>,
    pub(crate) config: GatewayConfig,
    /// For the fan-out answers (`/api/tags`, …).
    pub(crate) client: reqwest::Client,
    /// For forwarding: hyper's pooled client, without reqwest's per-request URL
    /// parsing and boxing.
    pub(crate) upstream: Upstream,
    pub(crate) breaker: Breaker,
    pub(crate) metrics: Arc<GatewayMetrics>,
    pub(crate) caches: Caches,
}

/// The HTTP client requests are forwarded with.
pub(crate) type Upstream = Arc<crate::conn::Upstream>;

/// What the forwarding path would otherwise compute again on every request, each kept
/// for the view or snapshot it was computed from (a new one empties it).
#[derive(Default)]
pub(crate) struct Caches {
    /// The snapshot's nodes without an Ollama URL (nothing to forward to).
    urlless: Mutex<Option<(Arc<vramroute_router::Snapshot>, Vec<String>)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Caches {
    /// Adds the ids of `snap`'s nodes without an Ollama URL to `out` (scanned once
    /// per snapshot, not per request).
    fn add_urlless(&self, snap: &Arc<vramroute_router::Snapshot>, out: &mut Vec<String>) {
        let mut cache = lock(&self.urlless);
        let fresh = matches!(cache.as_ref(), Some((s, _)) if Arc::ptr_eq(s, snap));
        if !fresh {
            let ids = snap
                .nodes()
                .iter()
                .filter(|n| n.ollama_url.is_none())
                .map(|n| n.id.to_string())
                .collect();
            *cache = Some((snap.clone(), ids));
        }
        if let Some((_, ids)) = cache.as_ref() {
            out.extend(ids.iter().cloned());
        }
    }
}

/// The `model` field of a JSON object body; every other field is skipped unparsed.
struct ModelField(Option<String>);

impl<'de> serde::Deserialize<'de> for ModelField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ModelField;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ModelField, A::Error> {
                let mut model = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "model" {
                        model = map.next_value::<Option<String>>()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(ModelField(model))
            }
        }
        d.deserialize_map(V)
    }
}

impl Shared {
    /// Nodes the circuit breaker keeps out now.
    pub(crate) fn breaker_open(&self) -> Vec<String> {
        self.breaker.open_nodes()
    }
}

/// Reads the body (bounded) and its `model`, or answers the client's mistake.
async fn read_request(
    shared: &Shared,
    proto: Protocol,
    body: Body,
) -> Result<(Bytes, String), Response> {
    let limit = shared.config.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let text = e.to_string();
            return Err(if text.contains("length limit") {
                proto.error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request body larger than {limit} bytes"),
                )
            } else {
                proto.error(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the request body: {text}"),
                )
            });
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(proto.error(StatusCode::BAD_REQUEST, "missing request body"));
    }
    let model = match serde_json::from_slice::<ModelField>(&bytes) {
        Ok(ModelField(m)) => m.map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()),
        Err(e) => {
            return Err(proto.error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")))
        }
    };
    match model {
        Some(m) => Ok((bytes, m)),
        None => Err(proto.error(StatusCode::BAD_REQUEST, "model is required")),
    }
}

/// The router's short reason for `d`, for the reason header.
fn short_reason(d: &Decision, attempt: usize) -> String {
    let mut s = vramroute_cluster::short_reason(d);
    if attempt > 0 {
        let _ = write!(s, "; failover attempt {}", attempt + 1);
    }
    s
}

fn header_value(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Headers never forwarded either way (hop-by-hop, or ours).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

fn request_headers(shared: &Shared, headers: &HeaderMap) -> HeaderMap {
    let strip_auth = !shared.config.keys.is_empty();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if hop_by_hop(name) || (strip_auth && name == header::AUTHORIZATION) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Forwards a POST whose body names a model. `reserve`: a cold load takes VRAM on the
/// chosen GPU (every inference path); `false` for `/api/show`.
pub(crate) async fn forward(
    shared: Arc<Shared>,
    path_and_query: String,
    headers: HeaderMap,
    body: Body,
    reserve: bool,
) -> Response {
    let proto = Protocol::of(&path_and_query);
    let (bytes, model) = match read_request(&shared, proto, body).await {
        Ok(r) => r,
        Err(resp) => {
            shared.metrics.request("-", "-", resp.status().as_u16());
            return resp;
        }
    };
    let size_mb = match shared.live.model_size(&model, None) {
        Ok(s) => s.size_mb,
        Err(_) => {
            shared.metrics.request(&model, "-", 404);
            return proto.error(
                StatusCode::NOT_FOUND,
                &format!("model \"{model}\" not found, try pulling it first"),
            );
        }
    };
    let fwd_headers = request_headers(&shared, &headers);
    let mut failures: Vec<String> = Vec::new();
    let mut tried: Vec<String> = Vec::new();
    // A node's "model not found" (not pulled there): kept to answer with if no other
    // node has it.
    let mut not_found: Option<Response> = None;
    for attempt in 0..shared.config.max_attempts {
        let snap = shared.live.router().snapshot();
        let mut excluded = shared.breaker.open_nodes();
        excluded.extend(tried.iter().cloned());
        shared.caches.add_urlless(&snap, &mut excluded);
        let ex: Vec<&str> = excluded.iter().map(String::as_str).collect();
        let req = Request::new(&model, size_mb).exclude_nodes(&ex);
        // A metadata request (no load) goes to a node that has the model pulled, when
        // the view knows one.
        let pulled = if reserve {
            None
        } else {
            node_with_model(&shared.live, &model, &ex)
        };
        let routed = match (&pulled, reserve) {
            (Some(_), _) => Ok((None, None)),
            (None, true) => shared
                .live
                .route_and_reserve(&req)
                .map(|(d, r)| (Some(d), r)),
            (None, false) => shared.live.router().route(&req).map(|d| (Some(d), None)),
        };
        let (decision, reservation) = match routed {
            Ok(r) => r,
            Err(_) if not_found.is_some() => break,
            Err(no) => {
                let (status, message) = if failures.is_empty() {
                    let backing_off = shared.breaker.open_nodes().len();
                    let mut m = format!("no node can take {model} ({} MB) now: {no}", size_mb);
                    if backing_off > 0 {
                        let _ = write!(m, " ({backing_off} node(s) backing off after failures)");
                    }
                    (StatusCode::SERVICE_UNAVAILABLE, m)
                } else {
                    (
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "every node tried for {model} failed before answering: {}",
                            failures.join("; ")
                        ),
                    )
                };
                shared.metrics.request(&model, "-", status.as_u16());
                shared.live.decisions().record(RecentDecision::unscored(
                    "gateway",
                    &model,
                    Some(size_mb),
                    None,
                    message.clone(),
                ));
                return proto.error(status, &message);
            }
        };
        // The snapshot the decision was made on may be newer than `snap`.
        let snap = shared.live.router().snapshot();
        // The reason goes into the header and, moved, into the decision log.
        let (node_id, base, reason) = match (pulled, decision) {
            (Some((id, url)), _) => {
                let reason = "has the model pulled";
                shared.live.decisions().record(RecentDecision::unscored(
                    "gateway",
                    &model,
                    Some(size_mb),
                    Some(id.clone()),
                    reason.to_owned(),
                ));
                (id, Some(url), HeaderValue::from_static(reason))
            }
            (None, Some(d)) => {
                let node = snap.node(d.node);
                let reason = short_reason(&d, attempt);
                let value = header_value(&reason);
                shared.live.decisions().record(RecentDecision::placed(
                    "gateway",
                    &model,
                    Some(size_mb),
                    &Placement::of(&snap, &d),
                    reason,
                ));
                (
                    node.id.to_string(),
                    node.ollama_url.as_ref().map(ToString::to_string),
                    value,
                )
            }
            (None, None) => break,
        };
        let Some(base) = base else {
            tried.push(node_id);
            continue;
        };
        match send(
            &shared,
            &base,
            &path_and_query,
            &fwd_headers,
            &bytes,
            &node_id,
        )
        .await
        {
            Ok((resp, inflight, gauge, start)) => {
                shared.breaker.reset(&node_id);
                let status = resp.status();
                if status == StatusCode::NOT_FOUND && attempt + 1 < shared.config.max_attempts {
                    // Not pulled on that node: try another (the node is fine: no backoff).
                    if let Some(id) = reservation {
                        shared.live.release(id);
                    }
                    debug!(node = %node_id, model = %model, "model not found there; trying another node");
                    inflight.finish(start.elapsed(), true);
                    gauge.dec();
                    not_found = Some(buffered(resp, &node_id, reason, proto).await);
                    tried.push(node_id);
                    continue;
                }
                if let (Some(id), true) = (reservation, status.is_client_error()) {
                    // Refused (e.g. not pulled there): nothing is loading.
                    shared.live.release(id);
                }
                return relay(
                    &shared,
                    resp,
                    Relay {
                        inflight: Some(inflight),
                        gauge,
                        start,
                        metrics: shared.metrics.clone(),
                        node: node_id,
                        model,
                        status: status.as_u16(),
                        done: false,
                    },
                    proto,
                    reason,
                );
            }
            Err(why) => {
                warn!(node = %node_id, model = %model, "forwarding failed before the first byte, failing over: {why}");
                if let Some(id) = reservation {
                    shared.live.release(id);
                }
                shared.breaker.trip(&node_id, shared.config.breaker_backoff);
                shared.metrics.failover(&node_id);
                failures.push(format!("{node_id}: {why}"));
                tried.push(node_id);
            }
        }
    }
    if let Some(resp) = not_found {
        shared.metrics.request(&model, "-", 404);
        return resp;
    }
    shared.metrics.request(&model, "-", 502);
    proto.error(
        StatusCode::BAD_GATEWAY,
        &format!(
            "every node tried for {model} failed before answering ({} attempt(s)): {}",
            failures.len(),
            failures.join("; ")
        ),
    )
}

/// A small answer read whole (bounded), to return later.
async fn buffered(
    resp: hyper::Response<UpstreamBody>,
    node: &str,
    reason: HeaderValue,
    proto: Protocol,
) -> Response {
    const MAX: usize = 64 << 10;
    let status = resp.status().as_u16();
    let ctype = resp.headers().get(header::CONTENT_TYPE).cloned();
    let read = axum::body::to_bytes(Body::new(resp.into_body()), MAX);
    let body = match tokio::time::timeout(Duration::from_secs(5), read).await {
        Ok(Ok(b)) => b,
        _ => return proto.error(StatusCode::NOT_FOUND, "model not found on any node tried"),
    };
    let mut r = Response::builder().status(status);
    if let Some(h) = r.headers_mut() {
        if let Some(c) = ctype {
            h.insert(header::CONTENT_TYPE, c);
        }
        h.insert(NODE_HEADER, header_value(node));
        h.insert(REASON_HEADER, reason);
    }
    r.body(Body::from(body))
        .unwrap_or_else(|_| proto.error(StatusCode::NOT_FOUND, "model not found on any node tried"))
}

/// Sends the request; `Ok` once the node answered with a status below 500, with the
/// node's in-flight signal and gauge (already counted up) and the time it was sent.
async fn send(
    shared: &Shared,
    base: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &Bytes,
    node_id: &str,
) -> Result<(hyper::Response<UpstreamBody>, InFlight, Gauge, Instant), String> {
    let url = format!("{}{path_and_query}", base.trim_end_matches('/'));
    let uri = match Uri::try_from(url) {
        Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => u,
        Ok(u) => {
            return Err(format!(
                "cannot forward to {u}: only http:// node URLs are supported"
            ))
        }
        Err(e) => return Err(format!("invalid node URL {base:?}: {e}")),
    };
    let authority = match uri.port_u16() {
        Some(_) => uri.authority().map(|a| a.as_str().to_owned()),
        None => uri.host().map(|h| format!("{h}:80")),
    }
    .unwrap_or_default();
    let mut req = hyper::Request::new(Full::new(body.clone()));
    *req.method_mut() = axum::http::Method::POST;
    *req.headers_mut() = headers.clone();
    if let Some(a) = uri.authority() {
        if let Ok(host) = HeaderValue::from_str(a.as_str()) {
            req.headers_mut().insert(header::HOST, host);
        }
    }
    *req.uri_mut() = uri
        .path_and_query()
        .map(|p| Uri::from(p.clone()))
        .unwrap_or_else(|| Uri::from_static("/"));
    let inflight = shared.live.signals().begin(node_id);
    let gauge = shared.metrics.in_flight_gauge(node_id);
    gauge.inc();
    let start = Instant::now();
    let sent = tokio::time::timeout(
        shared.config.first_byte_timeout,
        shared.upstream.request(&authority, req),
    )
    .await;
    let fail = |why: String| {
        gauge.dec();
        why
    };
    match sent {
        Ok(Ok(resp)) if resp.status().is_server_error() => {
            let status = resp.status();
            inflight.fail();
            Err(fail(format!("answered {status}")))
        }
        Ok(Ok(resp)) => {
            let ttfb = start.elapsed();
            shared.live.signals().first_byte(node_id, ttfb);
            shared.metrics.ttfb(ttfb.as_secs_f64());
            Ok((resp, inflight, gauge, start))
        }
        Ok(Err(e)) => {
            inflight.fail();
            Err(fail(match e {
                SendError::Connect(why) => format!("cannot connect: {why}"),
                SendError::Request(why) => format!("request failed: {why}"),
            }))
        }
        Err(_) => {
            inflight.fail();
            Err(fail(format!(
                "no answer within {:?}",
                shared.config.first_byte_timeout
            )))
        }
    }
}

/// `e` and its sources, `: `-separated (hyper's own message is only the outer layer,
/// e.g. "client error (Connect)").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let _ = write!(s, ": {inner}");
        source = inner.source();
    }
    s
}

/// Tracks one relayed answer: in flight until the stream ends or is dropped (client
/// gone), then counted.
struct Relay {
    inflight: Option<InFlight>,
    gauge: Gauge,
    start: Instant,
    metrics: Arc<GatewayMetrics>,
    node: String,
    model: String,
    status: u16,
    done: bool,
}

impl Relay {
    fn finish(&mut self, ok: bool) {
        self.done = true;
        let total = self.start.elapsed();
        if let Some(f) = self.inflight.take() {
            f.finish(total, ok);
        }
        self.gauge.dec();
        self.metrics.total(total.as_secs_f64());
        let status = if ok { self.status } else { 502 };
        self.metrics.request(&self.model, &self.node, status);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if !self.done {
            // The client went away mid-answer: the upstream request is dropped with us.
            debug!(node = %self.node, model = %self.model, "client disconnected; upstream request cancelled");
            self.inflight.take();
            self.gauge.dec();
            self.metrics.request(&self.model, &self.node, 499);
        }
    }
}

/// The answer's body relayed to the client, chunk by chunk as the node sends it; a
/// break-off or `idle` without a chunk ends it with an error in the protocol's shape.
struct RelayBody {
    inner: UpstreamBody,
    relay: Relay,
    idle: Duration,
    /// One idle timer for the whole answer, armed the first time the node has no chunk
    /// ready (an answer read in one go arms none) and re-armed only when it fires
    /// before the idle time since the last chunk has passed (not one timer per chunk).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    last_chunk: tokio::time::Instant,
    proto: Protocol,
    sse: bool,
    ended: bool,
}

impl RelayBody {
    /// Ends the answer with `msg` in the protocol's own shape.
    fn broke_off(&mut self, msg: &str) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.ended = true;
        self.relay.finish(false);
        let chunk = Bytes::from(self.proto.stream_error(self.sse, msg));
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

impl http_body::Body for RelayBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.last_chunk = tokio::time::Instant::now();
                    // Trailers (none from Ollama) are not relayed.
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    this.relay.finish(true);
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    warn!(node = %this.relay.node, "the node's answer broke off mid-stream: {e}");
                    let msg = format!(
                        "the node {} stopped answering mid-stream: {e}",
                        this.relay.node
                    );
                    return this.broke_off(&msg);
                }
                Poll::Pending => {
                    let due = this.last_chunk + this.idle;
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // Fired: over only if no chunk came since it was armed.
                    if tokio::time::Instant::now() < due {
                        timer.as_mut().reset(due);
                        continue;
                    }
                    let msg = format!(
                        "the node {} sent nothing for {:?} mid-stream",
                        this.relay.node, this.idle
                    );
                    return this.broke_off(&msg);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        // Never exact: an error chunk may follow what the node sent.
        SizeHint::default()
    }
}

fn relay(
    shared: &Shared,
    resp: hyper::Response<UpstreamBody>,
    tracker: Relay,
    proto: Protocol,
    reason: HeaderValue,
) -> Response {
    let (parts, inner) = resp.into_parts();
    let mut builder = Response::builder().status(parts.status.as_u16());
    let mut sse = false;
    if let Some(h) = builder.headers_mut() {
        // `None`: another value of the name before it.
        let mut last: Option<HeaderName> = None;
        for (name, value) in parts.headers {
            if name.is_some() {
                last = name;
            }
            let Some(name) = last.as_ref() else { continue };
            if hop_by_hop(name) {
                continue;
            }
            if name == header::CONTENT_TYPE {
                sse = value.as_bytes().starts_with(b"text/event-stream");
            }
            h.append(name.clone(), value);
        }
        h.insert(NODE_HEADER, header_value(&tracker.node));
        h.insert(REASON_HEADER, reason);
    }
    let body = RelayBody {
        inner,
        relay: tracker,
        idle: shared.config.idle_timeout,
        timer: None,
        last_chunk: tokio::time::Instant::now(),
        proto,
        sse,
        ended: false,
    };
    builder
        .body(Body::new(body))
        .unwrap_or_else(|_| proto.error(StatusCode::BAD_GATEWAY, "cannot relay the node's answer"))
}

/// A node for a request that needs no routing by memory (`/api/show`): one that has
/// the model pulled and is not excluded, with its Ollama URL.
fn node_with_model(live: &LiveCluster, model: &str, excluded: &[&str]) -> Option<(String, String)> {
    let view = live.view();
    view.nodes
        .iter()
        .filter(|n| n.in_registry && !n.stale && !excluded.contains(&n.id.as_str()))
        .find(|n| {
            n.installed_models
                .iter()
                .any(|m| vramroute_router::same_model(&m.name, model))
        })
        .and_then(|n| Some((n.id.to_string(), n.ollama_url.as_ref()?.to_string())))
}
