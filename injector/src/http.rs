//! The webhook's HTTP surface: `POST /mutate` (AdmissionReview v1 in and out; the work is
//! [`crate::mutate::mutate`]'s), `GET /healthz` and `GET /readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use tower_http::catch_panic::CatchPanicLayer;

use crate::mutate::{InjectorConfig, mutate};

/// An AdmissionReview carries the pod (etcd holds objects up to 1.5 MiB) and, on
/// updates, its previous version.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

pub struct AppState {
    pub config: InjectorConfig,
    /// False until the apiserver can trust the certificate (caBundle published).
    pub ready: Arc<AtomicBool>,
}

pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate_pod))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::new())
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "caBundle not published yet",
        )
    }
}

/// The answer to one AdmissionReview body; a body that is not one is answered with an
/// invalid (not allowed) response, as the apiserver expects a review in any case.
pub fn review(body: &[u8], config: &InjectorConfig) -> AdmissionReview<DynamicObject> {
    let request: AdmissionRequest<Pod> = match serde_json::from_slice::<AdmissionReview<Pod>>(body)
        .map_err(|e| e.to_string())
        .and_then(|r| {
            r.try_into()
                .map_err(|e: kube::core::admission::ConvertAdmissionReviewError| e.to_string())
        }) {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!(error = %e, "not an AdmissionReview of a Pod");
            return AdmissionResponse::invalid(format!("not an AdmissionReview of a Pod: {e}"))
                .into_review();
        }
    };
    let pod = request.object.as_ref().map(|p| {
        p.metadata
            .name
            .clone()
            .or_else(|| p.metadata.generate_name.clone())
    });
    let namespace = request.namespace.clone().unwrap_or_default();
    let response = AdmissionResponse::from(&request);
    let response = match mutate(&request, config) {
        Ok(patch) if patch.0.is_empty() => response,
        Ok(patch) => {
            tracing::info!(%namespace, pod = ?pod.flatten(), operations = patch.0.len(), "injected");
            response.with_patch(patch).unwrap_or_else(|e| {
                tracing::error!(error = %e, "serializing the patch");
                AdmissionResponse::from(&request)
                    .deny("the ScaiVault injector could not serialize its patch")
            })
        }
        Err(denial) => {
            tracing::info!(%namespace, pod = ?pod.flatten(), reason = %denial, "denied");
            response.deny(denial)
        }
    };
    response.into_review()
}

#[tracing::instrument(skip_all)]
async fn mutate_pod(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Json<AdmissionReview<DynamicObject>> {
    Json(review(&body, &state.config))
}
