//! `/v1/audit/...`: queries, verification, HMAC lookup and export.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use scaivault_api::ErrorBody;
use scaivault_api::audit::{
    AuditLogsResponse, ExportDestination, ExportJob, ExportRequest, IdentityAuditResponse,
    VerifyResponse,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::SharedState;
use super::extract::{ApiJson, ApiQuery};
use super::pagination::Pager;
use crate::audit::service::{LogFilters, parse_time};
use crate::auth::Caller;
use crate::authz::{Permission, resource};
use crate::error::Result;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/audit/logs", get(logs))
        .route("/v1/audit/secrets/{*path}", get(for_secret))
        .route("/v1/audit/identities/{*identity}", get(for_identity))
        .route("/v1/audit/verify", get(verify))
        .route("/v1/audit/hmac", post(hmac))
        .route("/v1/audit/export", post(export))
        .route("/v1/audit/exports/{id}", get(export_status))
}

type CallerExt = Extension<Arc<Caller>>;

fn time_opt(text: Option<&str>, end_of_day: bool) -> Result<Option<time::OffsetDateTime>> {
    text.map(|t| parse_time(t, end_of_day)).transpose()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// RFC 3339 time or YYYY-MM-DD.
    from: Option<String>,
    to: Option<String>,
    identity: Option<String>,
    path: Option<String>,
    action: Option<String>,
    /// success, denied, unauthenticated, failure
    outcome: Option<String>,
    cursor: Option<String>,
    /// 1..=1000, default 100.
    limit: Option<usize>,
}

/// Query the log (ascending by sequence number, cursor paging).
#[utoipa::path(get, path = "/v1/audit/logs", tag = "audit", params(LogsQuery),
    responses((status = 200, body = AuditLogsResponse), (status = 400, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:read on sys/audit"))))]
pub async fn logs(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Json<AuditLogsResponse>> {
    state.authorize(&caller, Permission::Read, resource::AUDIT)?;
    // The service pages by sequence number; clients only ever see it sealed.
    let pager = Pager::new(&state.vault.cursors, "audit/logs", &caller)
        .bind("from", q.from.as_deref())
        .bind("to", q.to.as_deref())
        .bind("identity", q.identity.as_deref())
        .bind("path", q.path.as_deref())
        .bind("action", q.action.as_deref())
        .bind("outcome", q.outcome.as_deref());
    let filters = LogFilters {
        from: time_opt(q.from.as_deref(), false)?,
        to: time_opt(q.to.as_deref(), true)?,
        cursor: pager.open(q.cursor.as_deref())?,
        identity: q.identity,
        path: q.path,
        action: q.action,
        outcome: q.outcome,
        limit: q.limit,
    };
    let mut page = state.audit.logs(filters).await?;
    page.next_cursor = pager.seal(page.next_cursor.take())?;
    Ok(Json(page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// RFC 3339 time or YYYY-MM-DD.
    from: Option<String>,
    to: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SecretLogsQuery {
    /// RFC 3339 time or YYYY-MM-DD.
    from: Option<String>,
    to: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1..=1000, default 1000.
    limit: Option<usize>,
}

/// Who touched a secret, oldest first from `from`, paged by `cursor`.
#[utoipa::path(get, path = "/v1/audit/secrets/{path}", tag = "audit", params(("path" = String, Path, description = "Secret path"), SecretLogsQuery),
    responses((status = 200, body = AuditLogsResponse)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:read on sys/audit"))))]
pub async fn for_secret(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Path(path): Path<String>,
    ApiQuery(q): ApiQuery<SecretLogsQuery>,
) -> Result<Json<AuditLogsResponse>> {
    state.authorize(&caller, Permission::Read, resource::AUDIT)?;
    let pager = Pager::new(&state.vault.cursors, "audit/secrets", &caller)
        .bind("path", Some(&path))
        .bind("from", q.from.as_deref())
        .bind("to", q.to.as_deref());
    let filters = LogFilters {
        from: time_opt(q.from.as_deref(), false)?,
        to: time_opt(q.to.as_deref(), true)?,
        path: Some(path),
        cursor: pager.open(q.cursor.as_deref())?,
        limit: Some(q.limit.unwrap_or(crate::audit::service::MAX_PAGE)),
        ..Default::default()
    };
    let mut page = state.audit.logs(filters).await?;
    page.next_cursor = pager.seal(page.next_cursor.take())?;
    Ok(Json(page))
}

/// What an identity did: the first 1000 records from `from`, and a summary (actions,
/// resources accessed, first/last seen) over all of them.
#[utoipa::path(get, path = "/v1/audit/identities/{identity}", tag = "audit", params(("identity" = String, Path, description = "e.g. user:alice@acme.example"), RangeQuery),
    responses((status = 200, body = IdentityAuditResponse)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:read on sys/audit"))))]
pub async fn for_identity(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Path(identity): Path<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<IdentityAuditResponse>> {
    state.authorize(&caller, Permission::Read, resource::AUDIT)?;
    let from = time_opt(q.from.as_deref(), false)?;
    let to = time_opt(q.to.as_deref(), true)?;
    Ok(Json(state.audit.for_identity(&identity, from, to).await?))
}

/// Re-compute the hash chain over a range; reports the first broken record.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", params(RangeQuery),
    responses((status = 200, body = VerifyResponse)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:read on sys/audit"))))]
pub async fn verify(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<VerifyResponse>> {
    state.authorize(&caller, Permission::Read, resource::AUDIT)?;
    let from = time_opt(q.from.as_deref(), false)?;
    let to = time_opt(q.to.as_deref(), true)?;
    Ok(Json(state.audit.verify(from, to).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HmacRequest {
    /// A value you know (e.g. a token accessor) to look for in the log.
    input: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HmacResponse {
    hmac: String,
}

/// The HMAC of a value as it would appear in audit records.
#[utoipa::path(post, path = "/v1/audit/hmac", tag = "audit", request_body = HmacRequest,
    responses((status = 200, body = HmacResponse)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:read on sys/audit"))))]
pub async fn hmac(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    ApiJson(body): ApiJson<HmacRequest>,
) -> Result<Json<HmacResponse>> {
    state.authorize(&caller, Permission::Read, resource::AUDIT)?;
    Ok(Json(HmacResponse {
        hmac: state.audit.hmac(&body.input),
    }))
}

/// Start an export job (JSONL to S3 or to a file under `--audit-export-dir`).
#[utoipa::path(post, path = "/v1/audit/export", tag = "audit", request_body = ExportRequest,
    responses((status = 202, body = ExportJob), (status = 400, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:admin on sys/audit, and secrets:read on the credentials secret"))))]
pub async fn export(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    ApiJson(request): ApiJson<ExportRequest>,
) -> Result<(StatusCode, Json<ExportJob>)> {
    state.authorize(&caller, Permission::Admin, resource::AUDIT)?;
    let credentials = match &request.destination {
        ExportDestination::S3 {
            credentials_path, ..
        } => {
            // The caller must be able to read the credentials themselves: no confused deputy.
            state.authorize(&caller, Permission::Read, credentials_path)?;
            Some(state.vault.secrets.read(credentials_path, None).await?.data)
        }
        ExportDestination::File { .. } => None,
    };
    let job = state.exporter.start(request, credentials).await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// Progress of an export and the objects written.
#[utoipa::path(get, path = "/v1/audit/exports/{id}", tag = "audit", params(("id" = String, Path, description = "exp_...")),
    responses((status = 200, body = ExportJob), (status = 404, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:read on sys/audit"))))]
pub async fn export_status(
    State(state): State<SharedState>,
    Extension(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<ExportJob>> {
    state.authorize(&caller, Permission::Read, resource::AUDIT)?;
    Ok(Json(state.exporter.get(&id).await?))
}
