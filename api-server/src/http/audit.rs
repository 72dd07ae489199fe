//! `/v1/audit/...`: queries, verification, HMAC lookup and export.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use scaivault_api::ErrorBody;
use scaivault_api::audit::{
    AuditLogsResponse, ExportDestination, ExportJob, ExportRequest, IdentityAuditResponse,
    VerifyResponse,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::SharedState;
use super::authorize::Authorized;
use super::extract::{ApiJson, ApiQuery};
use super::operations::{self as ops, Routes};
use super::pagination::Pager;
use crate::audit::service::{LogFilters, parse_time};
use crate::authz::Permission;
use crate::error::Result;

pub fn routes(routes: Routes) -> Routes {
    routes
        .serve(&[&ops::AUDIT_LOGS], logs)
        .serve(&[&ops::AUDIT_FOR_SECRET], for_secret)
        .serve(&[&ops::AUDIT_FOR_IDENTITY], for_identity)
        .serve(&[&ops::AUDIT_VERIFY], verify)
        .serve(&[&ops::AUDIT_HMAC], hmac)
        .serve(&[&ops::AUDIT_EXPORT], export)
        .serve(&[&ops::AUDIT_EXPORT_STATUS], export_status)
}

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
#[utoipa::path(get, path = ops::AUDIT_LOGS.path, tag = "audit", params(LogsQuery),
    responses((status = 200, body = AuditLogsResponse), (status = 400, body = ErrorBody)))]
pub async fn logs(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Json<AuditLogsResponse>> {
    // The service pages by sequence number; clients only ever see it sealed.
    let pager = Pager::new(&state.vault.cursors, "audit/logs", &auth.caller)
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
#[utoipa::path(get, path = ops::AUDIT_FOR_SECRET.path, tag = "audit", params(("path" = String, Path, description = "Secret path"), SecretLogsQuery),
    responses((status = 200, body = AuditLogsResponse)))]
pub async fn for_secret(
    State(state): State<SharedState>,
    auth: Authorized,
    Path(path): Path<String>,
    ApiQuery(q): ApiQuery<SecretLogsQuery>,
) -> Result<Json<AuditLogsResponse>> {
    let pager = Pager::new(&state.vault.cursors, "audit/secrets", &auth.caller)
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
#[utoipa::path(get, path = ops::AUDIT_FOR_IDENTITY.path, tag = "audit", params(("identity" = String, Path, description = "e.g. user:alice@acme.example"), RangeQuery),
    responses((status = 200, body = IdentityAuditResponse)))]
pub async fn for_identity(
    State(state): State<SharedState>,
    _auth: Authorized,
    Path(identity): Path<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<IdentityAuditResponse>> {
    let from = time_opt(q.from.as_deref(), false)?;
    let to = time_opt(q.to.as_deref(), true)?;
    Ok(Json(state.audit.for_identity(&identity, from, to).await?))
}

/// Re-compute the hash chain over a range; reports the first broken record.
#[utoipa::path(get, path = ops::AUDIT_VERIFY.path, tag = "audit", params(RangeQuery),
    responses((status = 200, body = VerifyResponse)))]
pub async fn verify(
    State(state): State<SharedState>,
    _auth: Authorized,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<VerifyResponse>> {
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
#[utoipa::path(post, path = ops::AUDIT_HMAC.path, tag = "audit", request_body = HmacRequest,
    responses((status = 200, body = HmacResponse)))]
pub async fn hmac(
    State(state): State<SharedState>,
    _auth: Authorized,
    ApiJson(body): ApiJson<HmacRequest>,
) -> Result<Json<HmacResponse>> {
    Ok(Json(HmacResponse {
        hmac: state.audit.hmac(&body.input),
    }))
}

/// Start an export job (JSONL to S3 or to a file under `--audit-export-dir`).
#[utoipa::path(post, path = ops::AUDIT_EXPORT.path, tag = "audit", request_body = ExportRequest,
    responses((status = 202, body = ExportJob), (status = 400, body = ErrorBody),
        (status = 404, description = "secret_not_found: no credentials secret at `credentials_path`", body = ErrorBody)))]
pub async fn export(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiJson(request): ApiJson<ExportRequest>,
) -> Result<(StatusCode, Json<ExportJob>)> {
    let credentials = match &request.destination {
        ExportDestination::S3 {
            credentials_path, ..
        } => {
            // The caller must be able to read the credentials themselves: no confused deputy.
            state.authorize(&auth.caller, Permission::Read, credentials_path)?;
            Some(state.vault.secrets.read(credentials_path, None).await?.data)
        }
        ExportDestination::File { .. } => None,
    };
    let job = state.exporter.start(request, credentials).await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// Progress of an export and the objects written.
#[utoipa::path(get, path = ops::AUDIT_EXPORT_STATUS.path, tag = "audit", params(("id" = String, Path, description = "exp_...")),
    responses((status = 200, body = ExportJob), (status = 404, body = ErrorBody)))]
pub async fn export_status(
    State(state): State<SharedState>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<Json<ExportJob>> {
    Ok(Json(state.exporter.get(&id).await?))
}
