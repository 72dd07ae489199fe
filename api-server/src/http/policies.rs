//! `/v1/policies/...` and `/v1/identities/...`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use scaivault_api::ErrorBody;
use scaivault_api::policy::{
    Binding, BindingInput, Identity, IdentityInput, ListBindingsResponse, ListIdentitiesResponse,
    ListPoliciesResponse, Policy, PolicyInput, PolicyTestRequest, PolicyTestResponse,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::SharedState;
use super::extract::{ApiJson, ApiQuery};
use super::pagination::{PageQuery, Pager};
use crate::auth::Caller;
use crate::authz::{Permission, resource};
use crate::error::Result;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/policies", get(list_policies).post(create_policy))
        .route("/v1/policies/test", post(test_policy))
        .route(
            "/v1/policies/{id}",
            get(get_policy).put(update_policy).delete(delete_policy),
        )
        .route(
            "/v1/policies/{id}/bindings",
            get(list_bindings).post(add_binding),
        )
        .route(
            "/v1/policies/{id}/bindings/{*identity_id}",
            delete(remove_binding),
        )
        .route("/v1/identities", get(list_identities).post(create_identity))
        .route("/v1/identities/{*id}", get(get_identity))
}

type CallerExt = Extension<Arc<Caller>>;

/// Create a policy.
#[utoipa::path(post, path = "/v1/policies", tag = "policies", request_body = PolicyInput,
    responses((status = 201, body = Policy), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:admin on sys/policies"))))]
pub async fn create_policy(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    ApiJson(input): ApiJson<PolicyInput>,
) -> Result<(StatusCode, Json<Policy>)> {
    state.authorize(&caller, Permission::Admin, resource::POLICIES)?;
    let policy = state.vault.policies.create(input).await?;
    tracing::info!(policy = %policy.id, name = %policy.name, "policy created");
    Ok((StatusCode::CREATED, Json(policy)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListPoliciesQuery {
    /// Only policies with a rule whose pattern matches this path.
    path: Option<String>,
    /// Page size, 1..=1000 (default 100).
    limit: Option<usize>,
    /// `next_cursor` of the previous page (opaque; only for the same caller and query).
    cursor: Option<String>,
}

/// All policies, or those whose rules match `?path=`, by name, paged.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", params(ListPoliciesQuery),
    responses((status = 200, body = ListPoliciesResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:list on sys/policies"))))]
pub async fn list_policies(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    ApiQuery(q): ApiQuery<ListPoliciesQuery>,
) -> Result<Json<ListPoliciesResponse>> {
    state.authorize(&caller, Permission::List, resource::POLICIES)?;
    let pager =
        Pager::new(&state.vault.cursors, "policies", &caller).bind("path", q.path.as_deref());
    let policies = match &q.path {
        Some(path) => state.vault.policies.list_for_path(path).await?,
        None => state.vault.policies.list().await?,
    };
    // Names are unique: they order the pages.
    let page = pager.page(policies, q.limit, q.cursor.as_deref(), |p| p.name.clone())?;
    Ok(Json(ListPoliciesResponse {
        policies: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One policy.
#[utoipa::path(get, path = "/v1/policies/{id}", tag = "policies", params(("id" = String, Path, description = "pol_...")),
    responses((status = 200, body = Policy), (status = 404, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:read on sys/policies"))))]
pub async fn get_policy(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<Policy>> {
    state.authorize(&caller, Permission::Read, resource::POLICIES)?;
    Ok(Json(state.vault.policies.get(&id).await?))
}

/// Replace a policy's name, description and rules.
#[utoipa::path(put, path = "/v1/policies/{id}", tag = "policies", params(("id" = String, Path, description = "pol_...")),
    request_body = PolicyInput,
    responses((status = 200, body = Policy), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:admin on sys/policies"))))]
pub async fn update_policy(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<PolicyInput>,
) -> Result<Json<Policy>> {
    state.authorize(&caller, Permission::Admin, resource::POLICIES)?;
    Ok(Json(state.vault.policies.update(&id, input).await?))
}

/// Delete a policy and its bindings.
#[utoipa::path(delete, path = "/v1/policies/{id}", tag = "policies", params(("id" = String, Path, description = "pol_...")),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:admin on sys/policies"))))]
pub async fn delete_policy(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.authorize(&caller, Permission::Admin, resource::POLICIES)?;
    state.vault.policies.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Bind a policy to an identity.
#[utoipa::path(post, path = "/v1/policies/{id}/bindings", tag = "policies", params(("id" = String, Path, description = "pol_...")),
    request_body = BindingInput,
    responses((status = 201, body = Binding), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:admin on sys/policies"))))]
pub async fn add_binding(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<BindingInput>,
) -> Result<(StatusCode, Json<Binding>)> {
    state.authorize(&caller, Permission::Admin, resource::POLICIES)?;
    let binding = state.vault.policies.bind(&id, input).await?;
    tracing::info!(policy = %binding.policy_id, identity = %binding.identity_id, "policy bound");
    Ok((StatusCode::CREATED, Json(binding)))
}

/// Identities bound to a policy, by identity, paged.
#[utoipa::path(get, path = "/v1/policies/{id}/bindings", tag = "policies", params(("id" = String, Path, description = "pol_..."), PageQuery),
    responses((status = 200, body = ListBindingsResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:read on sys/policies"))))]
pub async fn list_bindings(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<ListBindingsResponse>> {
    state.authorize(&caller, Permission::Read, resource::POLICIES)?;
    let pager = Pager::new(&state.vault.cursors, "bindings", &caller).bind("policy", Some(&id));
    let bindings = state.vault.policies.bindings(&id).await?;
    let page = pager.page(bindings, q.limit, q.cursor.as_deref(), |b| {
        b.identity_id.clone()
    })?;
    Ok(Json(ListBindingsResponse {
        bindings: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Remove a binding.
#[utoipa::path(delete, path = "/v1/policies/{id}/bindings/{identity_id}", tag = "policies",
    params(("id" = String, Path, description = "pol_..."), ("identity_id" = String, Path, description = "e.g. sa:billing-prod")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:admin on sys/policies"))))]
pub async fn remove_binding(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Path((id, identity_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    state.authorize(&caller, Permission::Admin, resource::POLICIES)?;
    state.vault.policies.unbind(&id, &identity_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Would an identity (and/or a draft policy) hold a permission on a path? Shows the rules
/// that decided it.
#[utoipa::path(post, path = "/v1/policies/test", tag = "policies", request_body = PolicyTestRequest,
    responses((status = 200, body = PolicyTestResponse), (status = 400, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:read on sys/policies"))))]
pub async fn test_policy(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    ApiJson(request): ApiJson<PolicyTestRequest>,
) -> Result<Json<PolicyTestResponse>> {
    state.authorize(&caller, Permission::Read, resource::POLICIES)?;
    Ok(Json(state.vault.policies.test(request).await?))
}

/// Register an identity (`user:...`, `sa:...`, `k8s:ns/sa`).
#[utoipa::path(post, path = "/v1/identities", tag = "identities", request_body = IdentityInput,
    responses((status = 201, body = Identity), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:admin on sys/identities"))))]
pub async fn create_identity(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    ApiJson(input): ApiJson<IdentityInput>,
) -> Result<(StatusCode, Json<Identity>)> {
    state.authorize(&caller, Permission::Admin, resource::IDENTITIES)?;
    Ok((
        StatusCode::CREATED,
        Json(state.vault.policies.create_identity(input).await?),
    ))
}

/// Registered identities with their bound policies, by id, paged.
#[utoipa::path(get, path = "/v1/identities", tag = "identities", params(PageQuery),
    responses((status = 200, body = ListIdentitiesResponse), (status = 400, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:list on sys/identities"))))]
pub async fn list_identities(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<ListIdentitiesResponse>> {
    state.authorize(&caller, Permission::List, resource::IDENTITIES)?;
    let pager = Pager::new(&state.vault.cursors, "identities", &caller);
    let identities = state.vault.policies.identities().await?;
    let page = pager.page(identities, q.limit, q.cursor.as_deref(), |i| i.id.clone())?;
    Ok(Json(ListIdentitiesResponse {
        identities: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One identity.
#[utoipa::path(get, path = "/v1/identities/{id}", tag = "identities", params(("id" = String, Path, description = "e.g. user:alice@acme.example")),
    responses((status = 200, body = Identity), (status = 404, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:read on sys/identities"))))]
pub async fn get_identity(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<Identity>> {
    state.authorize(&caller, Permission::Read, resource::IDENTITIES)?;
    Ok(Json(state.vault.policies.identity(&id).await?))
}
