//! The cluster dashboard: a static page (HTML, CSS and JS embedded in the binary, no
//! build step, nothing fetched from outside) served at `/` of the API listener, and the
//! two JSON endpoints it reads besides `/v1/nodes`, `/v1/route` and `/healthz`:
//! `GET /v1/history` (VRAM over time: the registry's stats stream plus the live view)
//! and `GET /v1/decisions` (the recent routing decisions of the API and the gateway).
//!
//! The page inserts every record's text with `textContent` (never as HTML) and shows
//! control characters escaped; the `Content-Security-Policy` below allows only this
//! origin's own script and style files, so even markup that slipped through could not
//! run a script.

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::json;
use vramroute_cluster::{history, unix_now, HistoryQuery, HISTORY_MAX_POINTS};

use crate::http::{error, Shared};

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");

/// Only this origin's own files; no inline script or style, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Stream entries read for one history answer at most (the stream is capped near
/// `stream_maxlen`, 1000 by default, as SOLLOL's).
const HISTORY_READ_MAX: usize = 10_000;
/// Points returned when `limit` is not given.
const HISTORY_DEFAULT_LIMIT: usize = 2000;
/// The window when `since` is not given, seconds.
const HISTORY_DEFAULT_WINDOW_S: f64 = 3600.0;
/// The longest node id `node=` accepts, bytes.
const NODE_ID_MAX_BYTES: usize = 256;
/// Decisions returned when `limit` is not given.
const DECISIONS_DEFAULT_LIMIT: usize = 50;

/// The page and its files (no key needed: they hold no cluster data).
pub(crate) fn page_routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", DASHBOARD_JS) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", DASHBOARD_CSS) }),
        )
}

/// The JSON endpoints (behind the API's key check, like every `/v1/*`).
pub(crate) fn api_routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/v1/history", get(history_get))
        .route("/v1/decisions", get(decisions_get))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

type Params = std::collections::HashMap<String, String>;

/// Parameter checks answer what is wrong as text; the handlers make it a 400.
///
/// Rejects parameters other than `allowed` (a typo must not silently widen a query).
fn only(p: &Params, allowed: &[&str]) -> Result<(), String> {
    let mut unknown: Vec<&str> = p
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    Err(format!(
        "unknown query parameter(s) {}: this endpoint takes {}",
        unknown.join(", "),
        allowed.join(", ")
    ))
}

/// `limit=N`: 1 to `max`, `default` when absent.
fn limit_param(p: &Params, default: usize, max: usize) -> Result<usize, String> {
    match p.get("limit") {
        None => Ok(default),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "limit={v:?} is not valid: give a whole number from 1 to {max}"
            )),
        },
    }
}

/// `since=T`: Unix seconds, or a negative number of seconds before now (`-900`: the
/// last 15 minutes); an hour ago when absent.
fn since_param(p: &Params, now: f64) -> Result<f64, String> {
    let Some(v) = p.get("since") else {
        return Ok(now - HISTORY_DEFAULT_WINDOW_S);
    };
    let bad = |why: &str| {
        format!(
            "since={v:?} is not valid ({why}): give Unix seconds (since=1700000000) or \
             seconds before now as a negative number (since=-3600)"
        )
    };
    let t: f64 = v.trim().parse().map_err(|_| bad("not a number"))?;
    if !t.is_finite() {
        return Err(bad("not a finite number"));
    }
    let since = if t < 0.0 { now + t } else { t };
    if since > now + 60.0 {
        return Err(bad("it is in the future"));
    }
    Ok(since.max(0.0))
}

/// `node=ID`: a node id as the view shows it.
fn node_param(p: &Params) -> Result<Option<String>, String> {
    let Some(v) = p.get("node") else {
        return Ok(None);
    };
    let v = v.trim();
    if v.is_empty() || v.len() > NODE_ID_MAX_BYTES || v.chars().any(char::is_control) {
        return Err(format!(
            "node={v:?} is not valid: give a node id as /v1/nodes shows it \
             (e.g. node=10.0.0.5:11434), at most {NODE_ID_MAX_BYTES} bytes, no control characters"
        ));
    }
    Ok(Some(v.to_owned()))
}

async fn history_get(State(app): State<Shared>, Query(p): Query<Params>) -> Response {
    let now = unix_now();
    let parsed = only(&p, &["node", "since", "limit"]).and_then(|()| {
        Ok(HistoryQuery::new(
            node_param(&p)?,
            since_param(&p, now)?,
            limit_param(&p, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_POINTS)?,
        ))
    });
    let query = match parsed {
        Ok(q) => q,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let view = app.live.view();
    let (entries, limits, stream) = match app.source.backend.registry() {
        Some(reg) => match reg.history(HISTORY_READ_MAX).await {
            Ok(e) => (e, reg.config().limits.clone(), "registry"),
            Err(e) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "cannot read the stats history from the registry: {e} (the live view \
                         at /v1/nodes is still served)"
                    ),
                )
            }
        },
        // A saved snapshot has no stream: the live view alone.
        None => (Vec::new(), vramroute_registry::Limits::default(), "none"),
    };
    let answer = history(&entries, &view, &query, &limits);
    let mut body = match serde_json::to_value(&answer) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    body["stream"] = json!(stream);
    body["generated_at"] = json!(now);
    Json(body).into_response()
}

async fn decisions_get(State(app): State<Shared>, Query(p): Query<Params>) -> Response {
    let log = app.live.decisions();
    let limit = match only(&p, &["limit"])
        .and_then(|()| limit_param(&p, DECISIONS_DEFAULT_LIMIT, log.capacity()))
    {
        Ok(l) => l,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    Json(json!({
        "kept": log.capacity(),
        "total": log.total(),
        "decisions": log.recent(limit),
    }))
    .into_response()
}
