//! The HTTP surface: router, middleware, one module per resource.

mod audit;
mod auth;
mod error;
mod extract;
mod health;
mod middleware;
pub mod openapi;
mod policies;
mod secrets;
mod sys;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
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

/// The whole API. `max_body_bytes` bounds every request body.
pub fn app(state: SharedState, max_body_bytes: usize) -> Router {
    let authenticated = Router::new()
        .merge(secrets::router())
        .merge(auth::router())
        .merge(sys::router())
        .merge(policies::router())
        .merge(audit::router())
        .merge(health::authenticated_router())
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            middleware::authenticate,
        ));
    Router::new()
        .merge(authenticated)
        .merge(health::public_router())
        .merge(auth::login_router())
        .route("/v1/openapi.json", get(openapi::serve))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            middleware::observe,
        ))
        .with_state(state)
}
