//! `vramroute-gateway`: an Ollama- and OpenAI-compatible HTTP gateway that sends every
//! request to the node where its model fits, so a client only changes its base URL.
//!
//! **Owns:** forwarding. For each request: the model (from the JSON body) → its size
//! (the cluster layer's resolver) → the live router's decision, reserving a cold load's
//! VRAM on the chosen GPU so concurrent cold requests spread → the node's Ollama, the
//! answer streamed back chunk by chunk (NDJSON and SSE) with `X-Vramroute-Node` and
//! `X-Vramroute-Reason`. It measures each node's requests in flight, time to first byte,
//! latency and success rate into the cluster's [`LoadSignals`](vramroute_cluster::LoadSignals),
//! so the router's load terms are measured values. Failures before the first byte fail
//! over to the next-best node (bounded attempts; the failed node backs off); after it,
//! the stream ends with an error in the protocol's own shape. A client that disconnects
//! cancels the upstream request. Optional API keys (`Authorization: Bearer`).
//!
//! **Must not know:** Redis, the registry's records, GPU vendors, CLI flags. It is given
//! a [`LiveCluster`] and a [`GatewayConfig`].
//!
//! Paths: Ollama `POST /api/generate`, `/api/chat`, `/api/embed`, `/api/embeddings`,
//! `/api/show`; `GET /api/tags`, `/api/ps` (union over live nodes, each entry with
//! `vramroute_node`), `GET /api/version`, `GET`/`HEAD /`; OpenAI-compatible
//! `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `GET /v1/models`.
//!
//! ```no_run
//! # async fn demo(live: std::sync::Arc<vramroute_cluster::LiveCluster>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use vramroute_gateway::{Gateway, GatewayConfig, GatewayMetrics};
//! let mut registry = prometheus_client::registry::Registry::default();
//! let metrics = Arc::new(GatewayMetrics::new(&mut registry));
//! let gateway = Gateway::new(live, GatewayConfig::default(), metrics)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:11435").await?;
//! gateway.serve(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod breaker;
mod config;
mod conn;
mod error;
mod fanout;
mod forward;
mod metrics;
mod shape;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use vramroute_cluster::LiveCluster;

pub use config::{ApiKeys, GatewayConfig, DEFAULT_GATEWAY_MAX_CONNECTIONS, KEYS_ENV};
pub use error::{Error, Result};
pub use fanout::NODE_FIELD;
pub use forward::{NODE_HEADER, REASON_HEADER};
pub use metrics::GatewayMetrics;
pub use vramroute_serve::ServeLimits;

use crate::breaker::Breaker;
use crate::forward::{Caches, Shared};
use crate::shape::Protocol;

/// The paths whose requests load a model (a cold load reserves VRAM).
pub const INFERENCE_PATHS: &[&str] = &[
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
];

/// The gateway: build it once, serve [`router`](Self::router) on a listener.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway routing on `live`, counting into `metrics` (see [`GatewayMetrics::new`]).
    pub fn new(
        live: Arc<LiveCluster>,
        config: GatewayConfig,
        metrics: Arc<GatewayMetrics>,
    ) -> Result<Gateway> {
        config.validate()?;
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .no_proxy()
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        let upstream = Arc::new(conn::Upstream::new(
            config.connect_timeout,
            std::time::Duration::from_secs(60),
        ));
        Ok(Gateway {
            shared: Arc::new(Shared {
                live,
                client,
                upstream,
                breaker: Breaker::default(),
                metrics,
                caches: Caches::default(),
                config,
            }),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.shared.config
    }

    /// Serves the gateway on `listener` until `shutdown` completes (streams in flight
    /// are then finished), under the config's [`http`](GatewayConfig::http) limits
    /// (header-read and idle timeouts, a connection cap; see `vramroute-serve`). Small
    /// streamed chunks go out at once (`TCP_NODELAY`: with Nagle's algorithm a chunk can
    /// wait for the client's delayed ACK, ~40 ms).
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        vramroute_serve::serve(
            listener,
            self.router(),
            self.shared.config.http.clone(),
            shutdown,
        )
        .await
    }

    /// The HTTP routes (serve with [`serve`](Self::serve), or `axum::serve` with
    /// `TCP_NODELAY` on the connections).
    pub fn router(&self) -> axum::Router {
        let mut r = axum::Router::new();
        for path in INFERENCE_PATHS {
            r = r.route(path, post(infer));
        }
        r.route("/api/show", post(show))
            .route("/api/tags", get(tags))
            .route("/api/ps", get(ps))
            .route("/v1/models", get(models))
            .route("/api/version", get(version))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(middleware::from_fn_with_state(self.shared.clone(), auth))
            .route("/", get(root).head(root))
            .with_state(self.shared.clone())
    }
}

type St = State<Arc<Shared>>;

async fn auth(State(shared): St, req: Request, next: Next) -> Response {
    if shared.config.keys.allows(req.headers()) {
        return next.run(req).await;
    }
    Protocol::of(req.uri().path()).error(
        StatusCode::UNAUTHORIZED,
        "missing or invalid API key: send Authorization: Bearer KEY",
    )
}

fn path_and_query(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

async fn infer(State(shared): St, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    forward::forward(shared, path_and_query(&uri), headers, body, true).await
}

async fn show(State(shared): St, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    forward::forward(shared, path_and_query(&uri), headers, body, false).await
}

async fn tags(State(shared): St) -> Response {
    fanout::union_models(&shared, "/api/tags").await
}

async fn ps(State(shared): St) -> Response {
    fanout::union_models(&shared, "/api/ps").await
}

async fn models(State(shared): St) -> Response {
    fanout::union_openai_models(&shared).await
}

async fn version(State(shared): St) -> Response {
    fanout::version(&shared).await
}

async fn root() -> Response {
    "Ollama is running".into_response()
}

async fn method_not_allowed(uri: Uri) -> Response {
    Protocol::of(uri.path()).error(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed")
}

async fn not_found(uri: Uri) -> Response {
    Protocol::of(uri.path()).error(StatusCode::NOT_FOUND, "404 page not found")
}
