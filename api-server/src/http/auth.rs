//! `/v1/auth/...`: whoami and tokens.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use scaivault_api::ErrorBody;
use scaivault_api::auth::{
    CreateTokenRequest, CreateTokenResponse, ListTokensResponse, WhoAmIResponse,
};

use super::SharedState;
use super::extract::ApiJson;
use crate::auth::Caller;
use crate::authz::{Permission, resource};
use crate::error::Result;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/auth/whoami", get(whoami))
        .route("/v1/auth/tokens", get(list_tokens).post(create_token))
        .route("/v1/auth/tokens/{accessor}", delete(revoke_token))
}

/// The identity behind the presented token.
#[utoipa::path(get, path = "/v1/auth/whoami", tag = "auth",
    responses((status = 200, body = WhoAmIResponse), (status = 401, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("any valid token"))))]
pub async fn whoami(
    State(state): State<SharedState>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Json<WhoAmIResponse> {
    // The token's own policies (root) plus those bound to its identity right now.
    let mut policies = caller.policies.clone();
    policies.extend(state.vault.authz.policy_names(&caller.identity_id));
    Json(WhoAmIResponse {
        identity_id: caller.identity_id.clone(),
        identity_type: caller.identity_type,
        accessor: caller.accessor.clone(),
        policies,
        issued_at: caller.issued_at,
        expires_at: caller.expires_at,
        display_name: caller.display_name.clone(),
    })
}

/// Issue a token for an identity (`user:...`, `sa:...`, `k8s:ns/sa`). Shown once.
#[utoipa::path(post, path = "/v1/auth/tokens", tag = "auth", request_body = CreateTokenRequest,
    responses((status = 201, body = CreateTokenResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:admin on sys/tokens"))))]
pub async fn create_token(
    State(state): State<SharedState>,
    Extension(caller): Extension<Arc<Caller>>,
    ApiJson(body): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreateTokenResponse>)> {
    state
        .vault
        .authz
        .authorize(&caller, Permission::Admin, resource::TOKENS)?;
    let created = state.vault.tokens.create(body).await?;
    tracing::info!(accessor = %created.accessor, identity = %created.identity_id, "token issued");
    Ok((StatusCode::CREATED, Json(created)))
}

/// Active tokens (accessors only; token values are never stored).
#[utoipa::path(get, path = "/v1/auth/tokens", tag = "auth",
    responses((status = 200, body = ListTokensResponse), (status = 403, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:admin on sys/tokens"))))]
pub async fn list_tokens(
    State(state): State<SharedState>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Json<ListTokensResponse>> {
    state
        .vault
        .authz
        .authorize(&caller, Permission::Admin, resource::TOKENS)?;
    Ok(Json(ListTokensResponse {
        tokens: state.vault.tokens.list().await?,
    }))
}

/// Revoke a token by accessor; it stops working at once.
#[utoipa::path(delete, path = "/v1/auth/tokens/{accessor}", tag = "auth",
    params(("accessor" = String, Path, description = "Token accessor (acc_...)")),
    responses((status = 204, description = "revoked"), (status = 404, description = "token_not_found", body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:admin on sys/tokens, or the token's own accessor"))))]
pub async fn revoke_token(
    State(state): State<SharedState>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(accessor): Path<String>,
) -> Result<StatusCode> {
    // Any token may revoke itself (logout); other tokens need admin.
    if accessor != caller.accessor {
        state
            .vault
            .authz
            .authorize(&caller, Permission::Admin, resource::TOKENS)?;
    }
    state.vault.tokens.revoke(&accessor).await?;
    tracing::info!(accessor = %accessor, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}
