//! `/v1/policies/...` and `/v1/identities/...`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use scaivault_api::ErrorBody;
use scaivault_api::policy::{
    Binding, BindingInput, Identity, IdentityInput, ListBindingsResponse, ListIdentitiesResponse,
    ListPoliciesResponse, Policy, PolicyInput, PolicyTestRequest, PolicyTestResponse,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::SharedState;
use super::authorize::Authorized;
use super::extract::{ApiJson, ApiQuery};
use super::operations::{self as ops, Routes};
use super::pagination::{PageQuery, Pager};
use crate::error::Result;

pub fn routes(routes: Routes) -> Routes {
    routes
        .serve(&[&ops::LIST_POLICIES], list_policies)
        .serve(&[&ops::CREATE_POLICY], create_policy)
        .serve(&[&ops::TEST_POLICY], test_policy)
        .serve(&[&ops::GET_POLICY], get_policy)
        .serve(&[&ops::UPDATE_POLICY], update_policy)
        .serve(&[&ops::DELETE_POLICY], delete_policy)
        .serve(&[&ops::LIST_BINDINGS], list_bindings)
        .serve(&[&ops::ADD_BINDING], add_binding)
        .serve(&[&ops::REMOVE_BINDING], remove_binding)
        .serve(&[&ops::LIST_IDENTITIES], list_identities)
        .serve(&[&ops::CREATE_IDENTITY], create_identity)
        .serve(&[&ops::GET_IDENTITY], get_identity)
}

/// Create a policy.
#[utoipa::path(post, path = ops::CREATE_POLICY.path, tag = "policies", request_body = PolicyInput,
    responses((status = 201, body = Policy), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_policy(
    State(state): State<SharedState>,
    _auth: Authorized,
    ApiJson(input): ApiJson<PolicyInput>,
) -> Result<(StatusCode, Json<Policy>)> {
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
#[utoipa::path(get, path = ops::LIST_POLICIES.path, tag = "policies", params(ListPoliciesQuery),
    responses((status = 200, body = ListPoliciesResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_policies(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiQuery(q): ApiQuery<ListPoliciesQuery>,
) -> Result<Json<ListPoliciesResponse>> {
    let pager =
        Pager::new(&state.vault.cursors, "policies", &auth.caller).bind("path", q.path.as_deref());
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
#[utoipa::path(get, path = ops::GET_POLICY.path, tag = "policies", params(("id" = String, Path, description = "pol_...")),
    responses((status = 200, body = Policy), (status = 404, body = ErrorBody)))]
pub async fn get_policy(
    State(state): State<SharedState>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<Json<Policy>> {
    Ok(Json(state.vault.policies.get(&id).await?))
}

/// Replace a policy's name, description and rules.
#[utoipa::path(put, path = ops::UPDATE_POLICY.path, tag = "policies", params(("id" = String, Path, description = "pol_...")),
    request_body = PolicyInput,
    responses((status = 200, body = Policy), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub async fn update_policy(
    State(state): State<SharedState>,
    _auth: Authorized,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<PolicyInput>,
) -> Result<Json<Policy>> {
    Ok(Json(state.vault.policies.update(&id, input).await?))
}

/// Delete a policy and its bindings.
#[utoipa::path(delete, path = ops::DELETE_POLICY.path, tag = "policies", params(("id" = String, Path, description = "pol_...")),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_policy(
    State(state): State<SharedState>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.vault.policies.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Bind a policy to an identity.
#[utoipa::path(post, path = ops::ADD_BINDING.path, tag = "policies", params(("id" = String, Path, description = "pol_...")),
    request_body = BindingInput,
    responses((status = 201, body = Binding), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub async fn add_binding(
    State(state): State<SharedState>,
    _auth: Authorized,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<BindingInput>,
) -> Result<(StatusCode, Json<Binding>)> {
    let binding = state.vault.policies.bind(&id, input).await?;
    tracing::info!(policy = %binding.policy_id, identity = %binding.identity_id, "policy bound");
    Ok((StatusCode::CREATED, Json(binding)))
}

/// Identities bound to a policy, by identity, paged.
#[utoipa::path(get, path = ops::LIST_BINDINGS.path, tag = "policies", params(("id" = String, Path, description = "pol_..."), PageQuery),
    responses((status = 200, body = ListBindingsResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_bindings(
    State(state): State<SharedState>,
    auth: Authorized,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<ListBindingsResponse>> {
    let pager =
        Pager::new(&state.vault.cursors, "bindings", &auth.caller).bind("policy", Some(&id));
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
#[utoipa::path(delete, path = ops::REMOVE_BINDING.path, tag = "policies",
    params(("id" = String, Path, description = "pol_..."), ("identity_id" = String, Path, description = "e.g. sa:billing-prod")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)))]
pub async fn remove_binding(
    State(state): State<SharedState>,
    _auth: Authorized,
    Path((id, identity_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    state.vault.policies.unbind(&id, &identity_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Would an identity (and/or a draft policy) hold a permission on a path? Shows the rules
/// that decided it.
#[utoipa::path(post, path = ops::TEST_POLICY.path, tag = "policies", request_body = PolicyTestRequest,
    responses((status = 200, body = PolicyTestResponse), (status = 400, body = ErrorBody)))]
pub async fn test_policy(
    State(state): State<SharedState>,
    _auth: Authorized,
    ApiJson(request): ApiJson<PolicyTestRequest>,
) -> Result<Json<PolicyTestResponse>> {
    Ok(Json(state.vault.policies.test(request).await?))
}

/// Register an identity (`user:...`, `sa:...`, `k8s:ns/sa`).
#[utoipa::path(post, path = ops::CREATE_IDENTITY.path, tag = "identities", request_body = IdentityInput,
    responses((status = 201, body = Identity), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_identity(
    State(state): State<SharedState>,
    _auth: Authorized,
    ApiJson(input): ApiJson<IdentityInput>,
) -> Result<(StatusCode, Json<Identity>)> {
    Ok((
        StatusCode::CREATED,
        Json(state.vault.policies.create_identity(input).await?),
    ))
}

/// Registered identities with their bound policies, by id, paged.
#[utoipa::path(get, path = ops::LIST_IDENTITIES.path, tag = "identities", params(PageQuery),
    responses((status = 200, body = ListIdentitiesResponse), (status = 400, body = ErrorBody)))]
pub async fn list_identities(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<ListIdentitiesResponse>> {
    let pager = Pager::new(&state.vault.cursors, "identities", &auth.caller);
    let identities = state.vault.policies.identities().await?;
    let page = pager.page(identities, q.limit, q.cursor.as_deref(), |i| i.id.clone())?;
    Ok(Json(ListIdentitiesResponse {
        identities: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One identity.
#[utoipa::path(get, path = ops::GET_IDENTITY.path, tag = "identities", params(("identity" = String, Path, description = "e.g. user:alice@acme.example")),
    responses((status = 200, body = Identity), (status = 404, body = ErrorBody)))]
pub async fn get_identity(
    State(state): State<SharedState>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<Json<Identity>> {
    Ok(Json(state.vault.policies.identity(&id).await?))
}
