//! Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` endpoints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubeRequestLabels {
    /// `controllers` (rate-limited) or `lease` (its own connection, never limited).
    pub client: &'static str,
    pub method: &'static str,
}

/// A method as a label value (no allocation per request).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

fn duration_histogram() -> Histogram {
    // 5 ms .. ~40 s
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric of the operator, registered under the prefix `scaivault_operator`.
pub struct Metrics {
    registry: Registry,
    /// `reconciles_total{kind, result="ok"|"error"}`.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// `errors_total{kind, reason}`; reason is the Ready reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// `reconcile_duration_seconds{kind}`.
    pub duration: Family<KindLabels, Histogram>,
    /// `secret_writes_total{kind}`: Secrets whose data was (re)written.
    pub secret_writes: Family<KindLabels, Counter>,
    /// `rollout_restarts_total`.
    pub rollout_restarts: Counter,
    /// `leader`: 1 while this replica holds the lease.
    pub leader: Gauge,
    /// `vault_logins_total`: Kubernetes logins to the vault (token cache misses).
    pub vault_logins: Counter,
    /// `vault_reads_total`: secret reads sent to the vault (shared reads counted once).
    pub vault_reads: Counter,
    /// `kube_requests_total{client, method}`: requests sent to the apiserver.
    pub kube_requests: Family<KubeRequestLabels, Counter>,
    /// `event_stream_events_total`: events received from the vault's event stream.
    pub stream_events: Counter,
    /// `event_stream_connected`: 1 while the event stream is open.
    pub stream_connected: Gauge,
    /// `event_stream_reconnects_total`: streams opened again after one ended or failed.
    pub stream_reconnects: Counter,
    /// `event_stream_resyncs_total`: every VaultSecret re-read because events may have
    /// been missed (the stream's position was unknown or too old).
    pub stream_resyncs: Counter,
    /// `pods_not_injected`: pods that opted in to the agent but were admitted without it
    /// (`not_injected`), as the leader's watch sees them now.
    pub pods_not_injected: Gauge,
    /// `not_injected_warnings_total`: `NotInjected` Warning events published (one per pod
    /// and operator process).
    pub not_injected_warnings: Counter,
    ready: AtomicBool,
    /// Why this process can no longer lead or reconcile (`/healthz` answers 503 with it).
    unhealthy: Mutex<Option<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("scaivault_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let secret_writes = Family::<KindLabels, Counter>::default();
        let rollout_restarts = Counter::default();
        let leader = Gauge::default();
        let vault_logins = Counter::default();
        let vault_reads = Counter::default();
        let kube_requests = Family::<KubeRequestLabels, Counter>::default();
        let stream_events = Counter::default();
        let stream_connected = Gauge::default();
        let stream_reconnects = Counter::default();
        let stream_resyncs = Counter::default();
        let pods_not_injected = Gauge::default();
        let not_injected_warnings = Counter::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        registry.register(
            "errors",
            "Failed reconciles by kind and reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by kind",
            duration.clone(),
        );
        registry.register(
            "secret_writes",
            "Kubernetes Secrets whose data was written",
            secret_writes.clone(),
        );
        registry.register(
            "rollout_restarts",
            "Workloads restarted after their Secret changed",
            rollout_restarts.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        registry.register(
            "vault_logins",
            "Kubernetes logins to the vault",
            vault_logins.clone(),
        );
        registry.register(
            "vault_reads",
            "Secret reads sent to the vault",
            vault_reads.clone(),
        );
        registry.register(
            "kube_requests",
            "Requests sent to the Kubernetes apiserver, by client and method",
            kube_requests.clone(),
        );
        registry.register(
            "event_stream_events",
            "Events received from the vault's event stream",
            stream_events.clone(),
        );
        registry.register(
            "event_stream_connected",
            "1 while the vault's event stream is open",
            stream_connected.clone(),
        );
        registry.register(
            "event_stream_reconnects",
            "Event streams opened again after one ended or failed",
            stream_reconnects.clone(),
        );
        registry.register(
            "event_stream_resyncs",
            "Resyncs of every VaultSecret because stream events may have been missed",
            stream_resyncs.clone(),
        );
        registry.register(
            "pods_not_injected",
            "Pods that opted in to the ScaiVault agent but were admitted without it",
            pods_not_injected.clone(),
        );
        registry.register(
            "not_injected_warnings",
            "NotInjected Warning events published on pods admitted without the agent",
            not_injected_warnings.clone(),
        );
        Metrics {
            registry: root,
            reconciles,
            errors,
            duration,
            secret_writes,
            rollout_restarts,
            leader,
            vault_logins,
            vault_reads,
            kube_requests,
            stream_events,
            stream_connected,
            stream_reconnects,
            stream_resyncs,
            pods_not_injected,
            not_injected_warnings,
            ready: AtomicBool::new(false),
            unhealthy: Mutex::new(None),
        }
    }
}

impl Metrics {
    /// Records one finished reconcile.
    pub fn reconciled(
        &self,
        kind: &'static str,
        took: Duration,
        error_reason: Option<&'static str>,
    ) {
        let result = if error_reason.is_some() {
            "error"
        } else {
            "ok"
        };
        self.reconciles
            .get_or_create(&ReconcileLabels { kind, result })
            .inc();
        if let Some(reason) = error_reason {
            self.errors
                .get_or_create(&ErrorLabels { kind, reason })
                .inc();
        }
        self.duration
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Marks the process as unable to lead or reconcile any more; `/healthz` fails from
    /// now on (the process is on its way out; a liveness probe must not keep it).
    pub fn set_unhealthy(&self, why: String) {
        self.ready.store(false, Ordering::Relaxed);
        let mut slot = self.unhealthy.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(why);
    }

    /// `None` while healthy, else the reason.
    pub fn unhealthy(&self) -> Option<String> {
        self.unhealthy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

async fn metrics_text(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    match m.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn healthz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    match m.unhealthy() {
        None => (StatusCode::OK, "ok".to_owned()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

/// Binds `addr` and serves until `shutdown` resolves. Returns the bound address
/// (port 0 picks a free one, which tests use) and the serving task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        axum::serve(listener, router(metrics))
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((local, task))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(metrics: &Arc<Metrics>, path: &str) -> (StatusCode, String) {
        let resp = router(metrics.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn healthz_fails_once_the_process_can_no_longer_lead() {
        let m = Arc::new(Metrics::default());
        m.set_ready(true);
        assert_eq!(get(&m, "/healthz").await.0, StatusCode::OK);
        assert_eq!(get(&m, "/readyz").await.0, StatusCode::OK);
        m.set_unhealthy("lost the leader lease: held by \"b\"".into());
        let (status, body) = get(&m, "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("lost the leader lease"), "{body}");
        assert_eq!(get(&m, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        // The first reason stays.
        m.set_unhealthy("later".into());
        assert!(get(&m, "/healthz").await.1.contains("leader lease"));
    }
}
