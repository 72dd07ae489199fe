//! `/v1/secrets/...` and `/v1/batch/read`.
//!
//! One wildcard route serves a path and its actions (`{path}/metadata`, `{path}/restore`,
//! ...): the path grammar forbids action words as a last segment, so the split is exact.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaivault_api::ErrorBody;
use scaivault_api::ErrorCode;
use scaivault_api::rotation::{RotateRequest, RotateResponse};
use scaivault_api::secrets::{
    BatchReadRequest, BatchReadResponse, ListSecretsResponse, SecretMetadataResponse,
    SecretResponse, UpdateMetadataRequest, VersionsResponse, WriteSecretRequest,
    WriteSecretResponse,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::SharedState;
use super::authorize::Authorized;
use super::extract::{ApiBytes, ApiJson, ApiQuery};
use super::operations::{self as ops, Routes};
use super::pagination::{self, Pager};
use crate::error::{Error, Result};
use crate::secrets::ListParams;

pub fn routes(routes: Routes) -> Routes {
    routes
        .serve(&[&ops::LIST_SECRETS], list_secrets)
        .serve(
            &[&ops::READ_SECRET, &ops::READ_METADATA, &ops::LIST_VERSIONS],
            get_route,
        )
        .serve(&[&ops::WRITE_SECRET], put_route)
        .serve(
            &[
                &ops::WRITE_SECRET_POST,
                &ops::RESTORE_SECRET,
                &ops::ROTATE_SECRET,
            ],
            post_route,
        )
        .serve(&[&ops::UPDATE_METADATA], patch_route)
        .serve(&[&ops::DELETE_SECRET], delete_route)
        .serve(&[&ops::BATCH_READ], batch_read)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Version to read (default: current).
    #[param(value_type = Option<u64>, minimum = 1)]
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

// The wildcard route serves a path and its actions; each handler below dispatches on the
// operation the request was resolved to (`operations::resolve`).

async fn get_route(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiQuery(params): ApiQuery<ReadParams>,
) -> Result<Response> {
    if auth.is(&ops::READ_METADATA) {
        read_metadata(&state, &auth).await
    } else if auth.is(&ops::LIST_VERSIONS) {
        list_versions(&state, &auth).await
    } else {
        read_secret(&state, &auth, parse_version(params.version.as_deref())?).await
    }
}

async fn put_route(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiJson(body): ApiJson<WriteSecretRequest>,
) -> Result<Response> {
    write_secret(&state, &auth, body).await
}

async fn post_route(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiBytes(body): ApiBytes,
) -> Result<Response> {
    if auth.is(&ops::RESTORE_SECRET) {
        restore_secret(&state, &auth).await
    } else if auth.is(&ops::ROTATE_SECRET) {
        // An empty body asks for nothing but the rotation.
        let request = if body.is_empty() {
            RotateRequest::default()
        } else {
            super::extract::parse_json(&body)?
        };
        rotate_secret(&state, &auth, request).await
    } else {
        write_secret(&state, &auth, super::extract::parse_json(&body)?).await
    }
}

async fn patch_route(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiJson(body): ApiJson<UpdateMetadataRequest>,
) -> Result<Response> {
    update_metadata(&state, &auth, body).await
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
    auth: Authorized,
    ApiQuery(params): ApiQuery<DeleteParams>,
) -> Result<Response> {
    delete_secret(&state, &auth, params.destroy).await
}

/// Read a secret (current or `?version=N`).
#[utoipa::path(get, path = ops::READ_SECRET.path, tag = "secrets",
    params(("path" = String, Path, description = "Secret path, e.g. app/db/password"), ReadParams),
    responses(
        (status = 200, body = SecretResponse),
        (status = 404, description = "secret_not_found, secret_expired, secret_deleted, version_not_found", body = ErrorBody)))]
pub async fn read_secret(
    state: &SharedState,
    auth: &Authorized,
    version: Option<u64>,
) -> Result<Response> {
    Ok(Json(state.vault.secrets.read(auth.path(), version).await?).into_response())
}

/// Metadata of a secret: versions, tags, rotation status; never the value.
#[utoipa::path(get, path = ops::READ_METADATA.path, tag = "secrets",
    params(("path" = String, Path, description = "Secret path")),
    responses((status = 200, body = SecretMetadataResponse), (status = 404, body = ErrorBody)))]
pub async fn read_metadata(state: &SharedState, auth: &Authorized) -> Result<Response> {
    Ok(Json(state.vault.secrets.metadata(auth.path()).await?).into_response())
}

/// Versions of a secret that are still retained.
#[utoipa::path(get, path = ops::LIST_VERSIONS.path, tag = "secrets",
    params(("path" = String, Path, description = "Secret path")),
    responses((status = 200, body = VersionsResponse), (status = 404, body = ErrorBody)))]
pub async fn list_versions(state: &SharedState, auth: &Authorized) -> Result<Response> {
    let versions = state.vault.secrets.versions(auth.path()).await?;
    Ok(Json(VersionsResponse { versions }).into_response())
}

/// Write a new version (`PUT` or `POST`).
#[utoipa::path(method(put, post), path = ops::WRITE_SECRET.path, tag = "secrets",
    params(("path" = String, Path, description = "Secret path")),
    request_body = WriteSecretRequest,
    responses(
        (status = 200, body = WriteSecretResponse),
        (status = 409, description = "cas_mismatch", body = ErrorBody),
        (status = 413, description = "value_too_large, payload_too_large", body = ErrorBody)))]
pub async fn write_secret(
    state: &SharedState,
    auth: &Authorized,
    body: WriteSecretRequest,
) -> Result<Response> {
    Ok(Json(
        state
            .vault
            .secrets
            .write(&auth.caller.identity_id, auth.path(), body)
            .await?,
    )
    .into_response())
}

/// Undo a soft delete.
#[utoipa::path(post, path = ops::RESTORE_SECRET.path, tag = "secrets",
    params(("path" = String, Path, description = "Secret path")),
    responses((status = 200, body = SecretMetadataResponse), (status = 404, body = ErrorBody),
        (status = 409, description = "not_deleted", body = ErrorBody)))]
pub async fn restore_secret(state: &SharedState, auth: &Authorized) -> Result<Response> {
    Ok(Json(state.vault.secrets.restore(auth.path()).await?).into_response())
}

/// Rotate a secret now: `generate` writes a new version from its generator, `external`
/// and `manual` raise `rotation.requested` for whoever rotates it. The reason goes to the
/// audit record and the event.
#[utoipa::path(post, path = ops::ROTATE_SECRET.path, tag = "secrets",
    params(("path" = String, Path, description = "Secret path")),
    request_body = RotateRequest,
    responses((status = 200, body = RotateResponse),
        (status = 404, description = "secret_not_found", body = ErrorBody),
        (status = 409, description = "rotation_not_configured, cas_mismatch (a write landed meanwhile)", body = ErrorBody)))]
pub async fn rotate_secret(
    state: &SharedState,
    auth: &Authorized,
    request: RotateRequest,
) -> Result<Response> {
    if let Some(reason) = &request.reason {
        crate::audit::context::note_reason(reason);
    }
    let rotated = state
        .vault
        .secrets
        .rotate(&auth.caller.identity_id, auth.path(), request.reason)
        .await?;
    Ok(Json(rotated).into_response())
}

/// Replace tags and/or description.
#[utoipa::path(patch, path = ops::UPDATE_METADATA.path, tag = "secrets",
    params(("path" = String, Path, description = "Secret path")),
    request_body = UpdateMetadataRequest,
    responses((status = 200, body = SecretMetadataResponse), (status = 404, body = ErrorBody)))]
pub async fn update_metadata(
    state: &SharedState,
    auth: &Authorized,
    body: UpdateMetadataRequest,
) -> Result<Response> {
    Ok(Json(
        state
            .vault
            .secrets
            .update_metadata(auth.path(), body.into_input())
            .await?,
    )
    .into_response())
}

/// Soft delete, or with `?destroy=true` erase every version.
#[utoipa::path(delete, path = ops::DELETE_SECRET.path, tag = "secrets",
    params(("path" = String, Path, description = "Secret path"), DeleteParams),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_secret(
    state: &SharedState,
    auth: &Authorized,
    destroy: bool,
) -> Result<Response> {
    if destroy {
        state.vault.secrets.destroy(auth.path()).await?;
    } else {
        state.vault.secrets.soft_delete(auth.path()).await?;
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
#[utoipa::path(get, path = ops::LIST_SECRETS.path, tag = "secrets", params(ListParamsQuery),
    responses((status = 200, body = ListSecretsResponse),
        (status = 400, description = "invalid_request, invalid_path, invalid_cursor", body = ErrorBody)))]
pub async fn list_secrets(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiQuery(q): ApiQuery<ListParamsQuery>,
) -> Result<Json<ListSecretsResponse>> {
    let limit = pagination::limit(q.limit)?;
    let prefix = q.prefix.unwrap_or_default();
    let pager = Pager::new(&state.vault.cursors, "secrets", &auth.caller)
        .bind("prefix", Some(&prefix))
        .bind(
            "include_deleted",
            Some(if q.include_deleted { "true" } else { "false" }),
        );
    let after = pager.open(q.cursor.as_deref())?;
    // Authorisation narrows the query itself; every row read is checked again exactly.
    let scope = auth.scope(&state)?;
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
#[utoipa::path(post, path = ops::BATCH_READ.path, tag = "secrets", request_body = BatchReadRequest,
    responses((status = 200, description = "partial success: secrets and per-path errors", body = BatchReadResponse)))]
pub async fn batch_read(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiJson(body): ApiJson<BatchReadRequest>,
) -> Result<Json<BatchReadResponse>> {
    let response = state
        .vault
        .secrets
        .batch_read(body.paths, |path| auth.authorize_item(&state, path))
        .await?;
    for (path, error) in &response.errors {
        crate::audit::context::note_item_status(path, error.code.status());
    }
    Ok(Json(response))
}
