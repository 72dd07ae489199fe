//! `/v1/secrets/...` and `/v1/batch/read`.
//!
//! One wildcard route serves a path and its actions (`{path}/metadata`, `{path}/restore`,
//! ...): the path grammar forbids action words as a last segment, so the split is exact.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use scaivault_api::ErrorBody;
use scaivault_api::ErrorCode;
use scaivault_api::path::split_action;
use scaivault_api::secrets::{
    BatchReadRequest, BatchReadResponse, ListSecretsResponse, SecretMetadataResponse,
    SecretResponse, UpdateMetadataRequest, VersionsResponse, WriteSecretRequest,
    WriteSecretResponse,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::SharedState;
use super::extract::{ApiBytes, ApiJson, ApiQuery, Tail};
use super::pagination::{self, Pager};
use crate::auth::Caller;
use crate::authz::Permission;
use crate::error::{Error, Result};
use crate::secrets::ListParams;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/secrets", get(list_secrets))
        .route(
            "/v1/secrets/{*tail}",
            get(get_route)
                .put(put_route)
                .post(post_route)
                .patch(patch_route)
                .delete(delete_route),
        )
        .route("/v1/batch/read", post(batch_read))
}

type CallerExt = Extension<Arc<Caller>>;

fn no_such_action(action: &str) -> Error {
    Error::new(
        ErrorCode::MethodNotAllowed,
        format!("`{action}` is not available with this method"),
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Version to read (default: current).
    version: Option<String>,
}

fn parse_version(raw: Option<&str>) -> Result<Option<u64>> {
    raw.map(|v| {
        v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidVersion,
                "version must be a positive integer",
            )
        })
    })
    .transpose()
}

async fn get_route(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Tail(tail): Tail,
    ApiQuery(params): ApiQuery<ReadParams>,
) -> Result<Response> {
    match split_action(&tail) {
        (path, None) => {
            read_secret(
                &state,
                &caller,
                path,
                parse_version(params.version.as_deref())?,
            )
            .await
        }
        (path, Some("metadata")) => read_metadata(&state, &caller, path).await,
        (path, Some("versions")) => list_versions(&state, &caller, path).await,
        (_, Some(action)) => Err(no_such_action(action)),
    }
}

async fn put_route(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Tail(tail): Tail,
    ApiJson(body): ApiJson<WriteSecretRequest>,
) -> Result<Response> {
    match split_action(&tail) {
        (path, None) => write_secret(&state, &caller, path, body).await,
        (_, Some(action)) => Err(no_such_action(action)),
    }
}

async fn post_route(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Tail(tail): Tail,
    ApiBytes(body): ApiBytes,
) -> Result<Response> {
    match split_action(&tail) {
        (path, None) => {
            write_secret(&state, &caller, path, super::extract::parse_json(&body)?).await
        }
        (path, Some("restore")) => restore_secret(&state, &caller, path).await,
        (_, Some(action)) => Err(no_such_action(action)),
    }
}

async fn patch_route(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Tail(tail): Tail,
    ApiJson(body): ApiJson<UpdateMetadataRequest>,
) -> Result<Response> {
    match split_action(&tail) {
        (path, Some("metadata")) => update_metadata(&state, &caller, path, body).await,
        (_, action) => Err(no_such_action(action.unwrap_or("PATCH"))),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// `true` erases every version permanently instead of a soft delete.
    #[serde(default)]
    destroy: bool,
}

async fn delete_route(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Tail(tail): Tail,
    ApiQuery(params): ApiQuery<DeleteParams>,
) -> Result<Response> {
    match split_action(&tail) {
        (path, None) => delete_secret(&state, &caller, path, params.destroy).await,
        (_, Some(action)) => Err(no_such_action(action)),
    }
}

/// Read a secret (current or `?version=N`).
#[utoipa::path(get, path = "/v1/secrets/{path}", tag = "secrets",
    params(("path" = String, Path, description = "Secret path, e.g. app/db/password"), ReadParams),
    responses(
        (status = 200, body = SecretResponse),
        (status = 404, description = "secret_not_found, secret_expired, secret_deleted, version_not_found", body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:read"))))]
pub async fn read_secret(
    state: &SharedState,
    caller: &Caller,
    path: &str,
    version: Option<u64>,
) -> Result<Response> {
    state.authorize(caller, Permission::Read, path)?;
    Ok(Json(state.vault.secrets.read(path, version).await?).into_response())
}

/// Metadata of a secret: versions, tags, rotation status; never the value.
#[utoipa::path(get, path = "/v1/secrets/{path}/metadata", tag = "secrets",
    params(("path" = String, Path, description = "Secret path")),
    responses((status = 200, body = SecretMetadataResponse), (status = 404, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:list"))))]
pub async fn read_metadata(state: &SharedState, caller: &Caller, path: &str) -> Result<Response> {
    state.authorize(caller, Permission::List, path)?;
    Ok(Json(state.vault.secrets.metadata(path).await?).into_response())
}

/// Versions of a secret that are still retained.
#[utoipa::path(get, path = "/v1/secrets/{path}/versions", tag = "secrets",
    params(("path" = String, Path, description = "Secret path")),
    responses((status = 200, body = VersionsResponse), (status = 404, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:list"))))]
pub async fn list_versions(state: &SharedState, caller: &Caller, path: &str) -> Result<Response> {
    state.authorize(caller, Permission::List, path)?;
    let versions = state.vault.secrets.versions(path).await?;
    Ok(Json(VersionsResponse { versions }).into_response())
}

/// Write a new version (`PUT` or `POST`).
#[utoipa::path(method(put, post), path = "/v1/secrets/{path}", tag = "secrets",
    params(("path" = String, Path, description = "Secret path")),
    request_body = WriteSecretRequest,
    responses(
        (status = 200, body = WriteSecretResponse),
        (status = 400, body = ErrorBody), (status = 409, description = "cas_mismatch", body = ErrorBody),
        (status = 413, description = "value_too_large, payload_too_large", body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:write"))))]
pub async fn write_secret(
    state: &SharedState,
    caller: &Caller,
    path: &str,
    body: WriteSecretRequest,
) -> Result<Response> {
    state.authorize(caller, Permission::Write, path)?;
    Ok(Json(
        state
            .vault
            .secrets
            .write(&caller.identity_id, path, body)
            .await?,
    )
    .into_response())
}

/// Undo a soft delete.
#[utoipa::path(post, path = "/v1/secrets/{path}/restore", tag = "secrets",
    params(("path" = String, Path, description = "Secret path")),
    responses((status = 200, body = SecretMetadataResponse), (status = 404, body = ErrorBody),
        (status = 409, description = "not_deleted", body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:delete"))))]
pub async fn restore_secret(state: &SharedState, caller: &Caller, path: &str) -> Result<Response> {
    state.authorize(caller, Permission::Delete, path)?;
    Ok(Json(state.vault.secrets.restore(path).await?).into_response())
}

/// Replace tags and/or description.
#[utoipa::path(patch, path = "/v1/secrets/{path}/metadata", tag = "secrets",
    params(("path" = String, Path, description = "Secret path")),
    request_body = UpdateMetadataRequest,
    responses((status = 200, body = SecretMetadataResponse), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:write"))))]
pub async fn update_metadata(
    state: &SharedState,
    caller: &Caller,
    path: &str,
    body: UpdateMetadataRequest,
) -> Result<Response> {
    state.authorize(caller, Permission::Write, path)?;
    Ok(Json(
        state
            .vault
            .secrets
            .update_metadata(path, body.into_input())
            .await?,
    )
    .into_response())
}

/// Soft delete, or with `?destroy=true` erase every version.
#[utoipa::path(delete, path = "/v1/secrets/{path}", tag = "secrets",
    params(("path" = String, Path, description = "Secret path"), DeleteParams),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:delete"))))]
pub async fn delete_secret(
    state: &SharedState,
    caller: &Caller,
    path: &str,
    destroy: bool,
) -> Result<Response> {
    state.authorize(caller, Permission::Delete, path)?;
    if destroy {
        state.vault.secrets.destroy(path).await?;
    } else {
        state.vault.secrets.soft_delete(path).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParamsQuery {
    /// Leading characters of the paths to list, e.g. `environments/staging/`.
    prefix: Option<String>,
    /// Page size, 1..=1000 (default 100).
    limit: Option<usize>,
    /// `next_cursor` of the previous page (opaque; only for the same caller and query).
    cursor: Option<String>,
    /// Add description, created_at, expires_at, version_count, deleted_at.
    #[serde(default)]
    include_metadata: bool,
    /// Also list soft-deleted secrets.
    #[serde(default)]
    include_deleted: bool,
}

/// List secrets by prefix, paged. Only paths the caller may list are read and returned;
/// `next_cursor` is sealed to the caller, `prefix` and `include_deleted`.
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", params(ListParamsQuery),
    responses((status = 200, body = ListSecretsResponse),
        (status = 400, description = "invalid_request, invalid_path, invalid_cursor", body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:list (only paths the caller may list)"))))]
pub async fn list_secrets(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    ApiQuery(q): ApiQuery<ListParamsQuery>,
) -> Result<Json<ListSecretsResponse>> {
    let limit = pagination::limit(q.limit)?;
    let prefix = q.prefix.unwrap_or_default();
    let pager = Pager::new(&state.vault.cursors, "secrets", &caller)
        .bind("prefix", Some(&prefix))
        .bind(
            "include_deleted",
            Some(if q.include_deleted { "true" } else { "false" }),
        );
    let after = pager.open(q.cursor.as_deref())?;
    // Authorisation narrows the query itself; every row read is checked again exactly.
    let scope = state.vault.authz.scope(&caller, Permission::List);
    let listed = state
        .vault
        .secrets
        .list(
            ListParams {
                prefix: Some(prefix),
                limit,
                after,
                include_metadata: q.include_metadata,
                include_deleted: q.include_deleted,
            },
            &scope.prefixes(),
            |path| scope.allows(path),
        )
        .await?;
    Ok(Json(ListSecretsResponse {
        secrets: listed.secrets,
        next_cursor: pager.seal(listed.next_after)?,
    }))
}

/// Read many secrets; each path is authorised and reported on its own.
#[utoipa::path(post, path = "/v1/batch/read", tag = "secrets", request_body = BatchReadRequest,
    responses((status = 200, description = "partial success: secrets and per-path errors", body = BatchReadResponse),
        (status = 400, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:read (per path)"))))]
pub async fn batch_read(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    ApiJson(body): ApiJson<BatchReadRequest>,
) -> Result<Json<BatchReadResponse>> {
    let response = state
        .vault
        .secrets
        .batch_read(body.paths, |path| {
            state.authorize(&caller, Permission::Read, path)
        })
        .await?;
    for (path, error) in &response.errors {
        crate::audit::context::note_item_status(path, error.code.status());
    }
    Ok(Json(response))
}
