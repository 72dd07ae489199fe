//! Health endpoints and Prometheus metrics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use scaivault_api::health::{
    ComponentHealth, DetailedHealthResponse, HealthResponse, HealthStatus,
};

use super::authorize::Authorized;
use super::operations::{self as ops, Routes};
use super::{AppState, SharedState};
use crate::crypto::barrier::Context;
use crate::error::Result;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// What `/metrics` serves (prometheus-client's encoder writes OpenMetrics text).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn routes(routes: Routes) -> Routes {
    routes
        .serve(&[&ops::HEALTH], health)
        .serve(&[&ops::READY], ready)
        .serve(&[&ops::METRICS], metrics)
        .serve(&[&ops::HEALTH_DETAILED], health_detailed)
}

/// How long one readiness verdict is reused.
const READINESS_TTL: Duration = Duration::from_secs(1);
/// A storage probe slower than this counts as a failure.
const READINESS_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness is asked often and without a token, so at most one storage probe runs per
/// `READINESS_TTL`, shared by every caller: probes cannot pile up on the writer lock.
#[derive(Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl Readiness {
    async fn check(&self, state: &AppState) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, ready)) = *last
            && at.elapsed() < READINESS_TTL
        {
            return ready;
        }
        let probe = tokio::time::timeout(READINESS_PROBE_TIMEOUT, state.vault.store.ping());
        let ready = matches!(probe.await, Ok(Ok(()))) && state.audit.is_writable();
        *last = Some((Instant::now(), ready));
        ready
    }
}

fn health_document(status: HealthStatus, state: &AppState) -> Json<HealthResponse> {
    Json(HealthResponse {
        status,
        version: VERSION.into(),
        storage: state.vault.store.backend().into(),
    })
}

/// Liveness: the process answers. It touches no storage and no lock, so a busy or
/// briefly blocked database never gets a healthy server restarted.
#[utoipa::path(get, path = ops::HEALTH.path, tag = "health",
    responses((status = 200, body = HealthResponse)))]
pub async fn health(State(state): State<SharedState>) -> impl IntoResponse {
    health_document(HealthStatus::Ok, &state)
}

/// Readiness: storage answers a read and a write transaction, and the audit log can be
/// written (without it every request would be refused). No authentication.
#[utoipa::path(get, path = ops::READY.path, tag = "health",
    responses((status = 200, body = HealthResponse), (status = 503, body = HealthResponse)))]
pub async fn ready(State(state): State<SharedState>) -> impl IntoResponse {
    if state.readiness.check(&state).await {
        (StatusCode::OK, health_document(HealthStatus::Ok, &state)).into_response()
    } else {
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            health_document(HealthStatus::Down, &state),
        )
            .into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(crate::error::STORAGE_RETRY_AFTER_SECS),
        );
        response
    }
}

fn component(
    status: HealthStatus,
    started: Instant,
    message: Option<String>,
    details: Option<serde_json::Value>,
) -> ComponentHealth {
    ComponentHealth {
        status,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        message,
        details,
    }
}

/// Storage, barrier and background jobs, each with status and latency.
#[utoipa::path(get, path = ops::HEALTH_DETAILED.path, tag = "health",
    responses((status = 200, body = DetailedHealthResponse), (status = 503, body = DetailedHealthResponse)))]
pub async fn health_detailed(
    State(state): State<SharedState>,
    _auth: Authorized,
) -> Result<impl IntoResponse> {
    let mut components = BTreeMap::new();

    let started = Instant::now();
    let storage = match state.vault.store.ping().await {
        Ok(()) => component(HealthStatus::Ok, started, None, None),
        Err(e) => component(HealthStatus::Down, started, Some(e.to_string()), None),
    };
    components.insert("storage".to_owned(), storage);

    let started = Instant::now();
    let probe = Context::Secret {
        path: "sys/health-probe",
        version: 1,
    };
    let round_trip = state
        .vault
        .barrier
        .seal(probe, b"probe")
        .and_then(|sealed| state.vault.barrier.open(probe, &sealed))
        .map(|plain| plain.as_slice() == b"probe");
    let barrier = match round_trip {
        Ok(true) => component(
            HealthStatus::Ok,
            started,
            None,
            Some(
                serde_json::json!({"active_key_id": state.vault.barrier.active_key_id(), "keys": state.vault.barrier.key_ids().len()}),
            ),
        ),
        _ => component(
            HealthStatus::Down,
            started,
            Some("seal/open round trip failed".into()),
            None,
        ),
    };
    components.insert("barrier".to_owned(), barrier);

    let started = Instant::now();
    let stale = state.jobs.stale(state.started);
    let snapshot = serde_json::to_value(state.jobs.snapshot()).ok();
    let jobs = if stale.is_empty() {
        component(HealthStatus::Ok, started, None, snapshot)
    } else {
        component(
            HealthStatus::Degraded,
            started,
            Some(format!("jobs behind schedule: {}", stale.join(", "))),
            snapshot,
        )
    };
    components.insert("jobs".to_owned(), jobs);

    // Whether this replica runs the background jobs now, and under which term: on
    // shared storage exactly one replica leads (see `jobs::leadership`).
    let started = Instant::now();
    let term = state.leadership.term();
    let runner = component(
        HealthStatus::Ok,
        started,
        None,
        Some(serde_json::json!({"leads": term.is_some(), "term": term})),
    );
    components.insert("runner".to_owned(), runner);

    let overall = if components.values().any(|c| c.status == HealthStatus::Down) {
        HealthStatus::Down
    } else if components
        .values()
        .any(|c| c.status == HealthStatus::Degraded)
    {
        HealthStatus::Degraded
    } else {
        HealthStatus::Ok
    };
    let code = if overall == HealthStatus::Down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    Ok((
        code,
        Json(DetailedHealthResponse {
            status: overall,
            version: VERSION.into(),
            components,
        }),
    ))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = ops::METRICS.path, tag = "health", responses((status = 200, description = "OpenMetrics text format", content_type = METRICS_CONTENT_TYPE, body = String)))]
pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
}
