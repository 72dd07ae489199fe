//! The HTTP surface: router, middleware, one module per resource.

mod audit;
mod auth;
mod error;
mod extract;
mod health;
mod idempotency;
mod middleware;
pub mod openapi;
mod pagination;
mod policies;
mod secrets;
mod sys;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;

use crate::jobs::JobRegistry;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::vault::Vault;

pub use middleware::REQUEST_ID;

/// Everything a handler may touch.
pub struct AppState {
    pub vault: Vault,
    pub audit: crate::audit::AuditService,
    pub exporter: crate::audit::export::Exporter,
    pub limiter: RateLimiter,
    pub metrics: Arc<Metrics>,
    pub jobs: Arc<JobRegistry>,
    pub started: Instant,
    /// `POST /v1/auth/kubernetes/login`, when the server is configured for a cluster.
    pub kubernetes: Option<crate::auth::kubernetes::KubernetesAuth>,
    pub limits: HttpLimits,
    pub readiness: health::Readiness,
}

/// What one server lets its clients take: body size, concurrency and waiting time.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    /// Requests handled at once; the next one is shed with 503 `overloaded`.
    pub max_concurrent_requests: usize,
    /// How long a client waits for its answer before it gets 504 `request_timeout`.
    pub request_timeout: Duration,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// The caller may do `permission` on `path` (a secret path or a `sys/...` resource),
    /// or the request ends here with 403. Every decision is noted for the audit record.
    pub fn authorize(
        &self,
        caller: &crate::auth::Caller,
        permission: crate::authz::Permission,
        path: &str,
    ) -> crate::error::Result<()> {
        self.vault.authz.authorize(caller, permission, path)
    }
}

/// The whole API. Probes (`/v1/health`, `/v1/health/ready`, `/metrics`) are outside the
/// concurrency limit: a flood must not make the kubelet restart a server that is only busy.
pub fn app(state: SharedState) -> Router {
    let limits = state.limits;
    let authenticated = Router::new()
        .merge(secrets::router())
        .merge(auth::router())
        .merge(sys::router())
        .merge(policies::router())
        .merge(audit::router())
        .merge(health::authenticated_router())
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            idempotency::deduplicate,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            middleware::authenticate,
        ));
    let api = Router::new()
        .merge(authenticated)
        .merge(
            auth::login_router().route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&state),
                middleware::record_request,
            )),
        )
        .route("/v1/openapi.json", get(openapi::serve))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            middleware::observe,
        ))
        // Shed before anything is read, logged or audited: under overload the cheapest
        // answer is the right one, and a shed request has done nothing to record.
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new({
                    let state = Arc::clone(&state);
                    move |e| middleware::shed(Arc::clone(&state), e)
                }))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(
                    limits.max_concurrent_requests,
                )),
        );
    let probes = health::public_router().layer(axum::middleware::from_fn_with_state(
        Arc::clone(&state),
        middleware::observe,
    ));
    Router::new().merge(probes).merge(api).with_state(state)
}
