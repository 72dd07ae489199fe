//! The HTTP surface: router, middleware, one module per resource.

mod audit;
mod auth;
mod authorize;
mod constraints;
mod error;
mod events;
mod extract;
mod health;
mod idempotency;
mod middleware;
pub mod openapi;
pub mod operations;
mod pagination;
mod policies;
mod rotation;
mod secrets;
mod sys;
mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
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
    pub vault: Arc<Vault>,
    /// Whether this replica runs the background jobs now, and under which term.
    pub leadership: crate::jobs::leadership::Leadership,
    pub audit: crate::audit::AuditService,
    pub exporter: Arc<crate::audit::export::Exporter>,
    /// Fans the change feed's events out to stream subscribers.
    pub events: Arc<crate::events::hub::EventHub>,
    pub webhooks: Arc<crate::webhooks::WebhookService>,
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

/// Every operation's route, each registered through its declaration.
fn routes() -> operations::Routes {
    let routes = operations::Routes::default();
    let routes = secrets::routes(routes);
    let routes = auth::routes(routes);
    let routes = sys::routes(routes);
    let routes = policies::routes(routes);
    let routes = audit::routes(routes);
    let routes = rotation::routes(routes);
    let routes = events::routes(routes);
    let routes = webhooks::routes(routes);
    let routes = health::routes(routes);
    openapi::routes(routes)
}

/// The whole API. Public operations (probes, metrics, the document) are outside the
/// concurrency limit: a flood must not make the kubelet restart a server that is only busy.
pub fn app(state: SharedState) -> Router {
    let limits = state.limits;
    let routes = routes();
    let authenticated = routes
        .token
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
            routes
                .credential
                .route_layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&state),
                    middleware::record_request,
                )),
        )
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
    let public = routes.public.layer(axum::middleware::from_fn_with_state(
        Arc::clone(&state),
        middleware::observe,
    ));
    Router::new().merge(public).merge(api).with_state(state)
}
