//! The daemon's HTTP API. Errors are JSON `{"error": "..."}`: 400 for a malformed
//! request, 404 for an unknown model (saying what to provide) or path, 422 when a plan is
//! impossible.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use vramroute_router::{FitKind, Policy, Target};

use vramroute_cluster::{
    check as check_fits, model_estimate, plan, route_sized, EstimateOptions, RecentDecision,
    RouteQuery,
};

use crate::app::App;

pub(crate) type Shared = Arc<App>;

pub(crate) fn router(app: Shared) -> axum::Router {
    axum::Router::new()
        .route("/v1/nodes", get(nodes))
        .route("/v1/route", get(route_get).post(route_post))
        .route("/v1/check", get(check))
        .route("/v1/plan", get(plan_get))
        .route("/v1/optimize", get(optimize_state))
        .merge(crate::dashboard::api_routes())
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            admin_auth,
        ))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(crate::dashboard::page_routes())
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint: see docs/coordinator.md for the API",
            )
        })
        .with_state(app)
}

/// `/v1/*` needs a gateway API key when the config says `admin_requires_key`.
async fn admin_auth(
    State(app): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match &app.admin_keys {
        Some(keys) if !keys.allows(req.headers()) => error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid API key: send Authorization: Bearer KEY",
        ),
        _ => next.run(req).await,
    }
}

pub(crate) fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

/// A cluster-layer error as an answer: input errors (unknown model, no layer
/// information) are 404 with what to provide; the rest `other`.
fn cluster_error(e: &vramroute_cluster::Error, other: StatusCode) -> Response {
    let hint = match e {
        vramroute_cluster::Error::UnknownModel { .. } => Some(
            "here: pass size_mb=N, or list an Ollama node that has it pulled under `nodes:` \
             in the daemon's config",
        ),
        vramroute_cluster::Error::NeedLayerInfo { .. } => Some(
            "here: list an Ollama node that has it pulled under `nodes:` in the daemon's \
             config, or plan from the CLI with its GGUF file",
        ),
        _ => None,
    };
    match hint {
        Some(hint) => error(StatusCode::NOT_FOUND, format!("{e} ({hint})")),
        None if e.is_input() => error(StatusCode::NOT_FOUND, e),
        None => error(other, e),
    }
}

/// An error answer, built into a [`Response`] only when returned.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

type Params = HashMap<String, String>;

fn param<T: std::str::FromStr>(p: &Params, key: &str) -> Result<Option<T>, ApiError> {
    match p.get(key) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("query parameter {key}={v:?} is not valid"),
            )
        }),
    }
}

/// A request priority: SOLLOL's scale, 1 to 10.
fn priority(value: impl Into<u64>) -> Result<u8, ApiError> {
    let v = value.into();
    match u8::try_from(v) {
        Ok(p) if (1..=vramroute_router::Request::MAX_PRIORITY).contains(&p) => Ok(p),
        _ => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "priority {v} is out of range: give 1 (lowest) to {} (highest), SOLLOL's scale",
                vramroute_router::Request::MAX_PRIORITY
            ),
        )),
    }
}

fn model_param(p: &Params) -> Result<String, ApiError> {
    p.get("model")
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "missing query parameter model=NAME".to_owned(),
            )
        })
}

fn policy_of(app: &App, name: Option<&str>) -> Result<Arc<Policy>, ApiError> {
    match name {
        None => Ok(app.live.router().policy()),
        Some(n) => n
            .parse::<Policy>()
            .map(Arc::new)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string())),
    }
}

async fn nodes(State(app): State<Shared>) -> Response {
    let mut view = app.live.view().as_ref().clone();
    app.prober.probe_view(&mut view).await;
    Json(view).into_response()
}

/// Body of `POST /v1/route`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteBody {
    model: String,
    #[serde(default)]
    size_mb: Option<u64>,
    #[serde(default)]
    needs_gpu: Option<bool>,
    #[serde(default)]
    allow_cpu: Option<bool>,
    #[serde(default)]
    priority: Option<u64>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    explain: bool,
}

/// Routes on the router's fast path; the full explanation only when asked for.
fn do_route(app: &App, q: &RouteQuery, policy: Option<&str>, explain: bool) -> Response {
    let policy = match policy_of(app, policy) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let size = match app.live.model_size(&q.model, q.size_mb) {
        Ok(s) => s,
        Err(e) => return cluster_error(&e, StatusCode::NOT_FOUND),
    };
    let snap = app.live.router().snapshot();
    let start = Instant::now();
    let (answer, elapsed) = if explain {
        // The metric times the decision alone; the explanation (on demand) re-derives it.
        let _ = snap.route(&policy, &q.request(&size));
        let elapsed = start.elapsed();
        (route_sized(&snap, &policy, q, &size, true), elapsed)
    } else {
        let a = route_sized(&snap, &policy, q, &size, false);
        (a, start.elapsed())
    };
    let outcome = match &answer.placement {
        Some(p) if p.fit == FitKind::AlreadyLoaded => "already_loaded",
        Some(p) if p.target == Target::Gpu => "gpu",
        Some(_) => "cpu",
        None => "no_route",
    };
    app.metrics.observe_decision(outcome, elapsed.as_secs_f64());
    app.live
        .decisions()
        .record(RecentDecision::from_answer("api", &answer));
    Json(answer).into_response()
}

async fn route_get(State(app): State<Shared>, Query(p): Query<Params>) -> Response {
    let parsed = (|| {
        let mut q = RouteQuery::new(&model_param(&p)?, param(&p, "size_mb")?);
        if let Some(g) = param(&p, "needs_gpu")? {
            q.needs_gpu = g;
        }
        if let Some(c) = param(&p, "allow_cpu")? {
            q.allow_cpu = c;
        }
        if let Some(pr) = param::<u16>(&p, "priority")? {
            q.priority = priority(pr)?;
        }
        Ok::<_, ApiError>(q)
    })();
    match parsed {
        Ok(q) => match param::<bool>(&p, "explain") {
            Ok(explain) => do_route(
                &app,
                &q,
                p.get("policy").map(String::as_str),
                explain.unwrap_or(false),
            ),
            Err(r) => r.into_response(),
        },
        Err(r) => r.into_response(),
    }
}

async fn route_post(State(app): State<Shared>, body: Bytes) -> Response {
    let body: RouteBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("malformed body: {e}; expected JSON {{\"model\": NAME, \"size_mb\"?: N, \"needs_gpu\"?: bool, \"allow_cpu\"?: bool, \"priority\"?: 1-10, \"policy\"?: NAME, \"explain\"?: bool}}"),
            )
        }
    };
    if body.model.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "model must not be empty");
    }
    let mut q = RouteQuery::new(body.model.trim(), body.size_mb);
    q.needs_gpu = body.needs_gpu.unwrap_or(true);
    q.allow_cpu = body.allow_cpu.unwrap_or(true);
    if let Some(pr) = body.priority {
        q.priority = match priority(pr) {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
    }
    do_route(&app, &q, body.policy.as_deref(), body.explain)
}

async fn check(State(app): State<Shared>, Query(p): Query<Params>) -> Response {
    let (model, size_mb) = match (model_param(&p), param(&p, "size_mb")) {
        (Ok(m), Ok(s)) => (m, s),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let view = app.live.view();
    let snap = app.live.router().snapshot();
    match check_fits(&view, &snap, &app.live.router().policy(), &model, size_mb) {
        Ok(c) => Json(c).into_response(),
        Err(e) => cluster_error(&e, StatusCode::NOT_FOUND),
    }
}

async fn plan_get(State(app): State<Shared>, Query(p): Query<Params>) -> Response {
    let (model, ctx) = match (model_param(&p), param::<u32>(&p, "ctx")) {
        (Ok(m), Ok(c)) => (m, c.unwrap_or(vramroute_alloc::DEFAULT_CTX)),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let mut view = app.live.view().as_ref().clone();
    app.prober.probe_view(&mut view).await;
    let opts = EstimateOptions::new(ctx, app.settings.config.ollama_timeout());
    let est = match model_estimate(&view, &model, None, &opts).await {
        Ok(e) => e,
        Err(e) => return cluster_error(&e, StatusCode::UNPROCESSABLE_ENTITY),
    };
    match plan::for_view(est, &view, None) {
        Ok(a) => Json(a).into_response(),
        Err(e) => cluster_error(&e, StatusCode::UNPROCESSABLE_ENTITY),
    }
}

async fn optimize_state(State(app): State<Shared>) -> Response {
    Json(app.optimize_state()).into_response()
}

async fn healthz(State(app): State<Shared>) -> Response {
    let h = app.live.health();
    let view = app.live.view();
    Json(json!({
        "status": h.status,
        "source": h.source,
        "push": h.push,
        "last_ok": h.last_ok,
        "error": h.error,
        "nodes": view.totals.nodes,
        "stale_nodes": view.totals.stale_nodes,
    }))
    .into_response()
}

async fn metrics(State(app): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}
