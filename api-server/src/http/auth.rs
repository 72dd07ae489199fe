//! `/v1/auth/...`: whoami, tokens and logins.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use scaivault_api::auth::{
    CreateTokenRequest, CreateTokenResponse, KubernetesLoginRequest, ListTokensResponse,
    WhoAmIResponse,
};
use scaivault_api::{ErrorBody, ErrorCode};

use super::SharedState;
use super::authorize::Authorized;
use super::extract::{ApiJson, ApiQuery};
use super::operations::{self as ops, Routes};
use super::pagination::{PageQuery, Pager};
use crate::auth::Caller;
use crate::auth::kubernetes;
use crate::error::{Error, Result};

pub fn routes(routes: Routes) -> Routes {
    routes
        .serve(&[&ops::WHOAMI], whoami)
        .serve(&[&ops::LIST_TOKENS], list_tokens)
        .serve(&[&ops::CREATE_TOKEN], create_token)
        .serve(&[&ops::REVOKE_TOKEN], revoke_token)
        .serve(&[&ops::KUBERNETES_LOGIN], kubernetes_login)
}

/// Exchange a Kubernetes ServiceAccount token for a vault token of `k8s:<ns>/<sa>`.
///
/// The token is verified with the cluster's TokenReview API for the server's audience
/// (`--kubernetes-audience`, default `scaivault`). The vault token lives
/// `--kubernetes-token-ttl` (default 1h), never longer than the presented token.
#[utoipa::path(post, path = ops::KUBERNETES_LOGIN.path, tag = "auth", request_body = KubernetesLoginRequest,
    responses((status = 200, body = CreateTokenResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, description = "auth_method_disabled", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, description = "upstream_unavailable", body = ErrorBody)))]
pub async fn kubernetes_login(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<KubernetesLoginRequest>,
) -> Result<Json<CreateTokenResponse>> {
    let Some(method) = state.kubernetes.as_ref() else {
        return Err(Error::new(
            ErrorCode::AuthMethodDisabled,
            "Kubernetes login is not configured on this server",
        ));
    };
    // Each attempt costs the cluster a TokenReview: bound them per client address.
    if state.limiter.enabled() {
        let decision = state.limiter.check(&format!("login:{}", peer.ip()));
        if !decision.allowed {
            state.metrics.rate_limited.inc();
            return Err(Error::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} logins per minute from this address",
                    decision.limit
                ),
            )
            .with_retry_after(decision.retry_after));
        }
    }
    kubernetes::check_request(&body)?;
    let issued = method.login(&state.vault.tokens, body).await?;
    crate::audit::context::note_caller(&Caller::from_issued(&issued));
    tracing::info!(accessor = %issued.accessor, identity = %issued.identity_id, "kubernetes login");
    Ok(Json(issued))
}

/// The identity behind the presented token.
#[utoipa::path(get, path = ops::WHOAMI.path, tag = "auth",
    responses((status = 200, body = WhoAmIResponse), (status = 401, body = ErrorBody)))]
pub async fn whoami(State(state): State<SharedState>, auth: Authorized) -> Json<WhoAmIResponse> {
    // The token's own policies (root) plus those bound to its identity right now.
    let caller = &auth.caller;
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
#[utoipa::path(post, path = ops::CREATE_TOKEN.path, tag = "auth", request_body = CreateTokenRequest,
    responses((status = 201, body = CreateTokenResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<SharedState>,
    _auth: Authorized,
    ApiJson(body): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreateTokenResponse>)> {
    let created = state.vault.tokens.create(body).await?;
    tracing::info!(accessor = %created.accessor, identity = %created.identity_id, "token issued");
    Ok((StatusCode::CREATED, Json(created)))
}

/// Active tokens (accessors only; token values are never stored), oldest first, paged.
#[utoipa::path(get, path = ops::LIST_TOKENS.path, tag = "auth", params(PageQuery),
    responses((status = 200, body = ListTokensResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_tokens(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<ListTokensResponse>> {
    let pager = Pager::new(&state.vault.cursors, "tokens", &auth.caller);
    let tokens = state.vault.tokens.list().await?;
    // Issue time, then the unique accessor: the order the list always had.
    let page = pager.page(tokens, q.limit, q.cursor.as_deref(), |t| {
        format!("{:024}/{}", t.issued_at.unix_timestamp_nanos(), t.accessor)
    })?;
    Ok(Json(ListTokensResponse {
        tokens: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Revoke a token by accessor; it stops working at once.
#[utoipa::path(delete, path = ops::REVOKE_TOKEN.path, tag = "auth",
    params(("accessor" = String, Path, description = "Token accessor (acc_...)")),
    responses((status = 204, description = "revoked"), (status = 404, description = "token_not_found", body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<SharedState>,
    auth: Authorized,
    Path(accessor): Path<String>,
) -> Result<StatusCode> {
    // Any token may revoke itself (logout); other tokens need the declared permission.
    auth.authorize_token(&state, &accessor)?;
    state.vault.tokens.revoke(&accessor).await?;
    tracing::info!(accessor = %accessor, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}
