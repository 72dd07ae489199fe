//! `/v1/rotation/due`: the schedules due soon, and those past their grace.

use axum::Json;
use axum::extract::State;
use scaivault_api::ErrorBody;
use scaivault_api::rotation::{
    DEFAULT_DUE_WITHIN_HOURS, MAX_DUE_WITHIN_HOURS, RotationDueResponse,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::SharedState;
use super::authorize::Authorized;
use super::extract::ApiQuery;
use super::operations::{self as ops, Routes};
use super::pagination::{self, Pager};
use crate::error::{Error, Result};
use crate::secrets::rotation::DueParams;

pub fn routes(routes: Routes) -> Routes {
    routes.serve(&[&ops::ROTATION_DUE], rotation_due)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DueQuery {
    /// Secrets whose next rotation is at most this many hours away, 1..=87600 (default 168).
    #[param(minimum = 1, maximum = 87600)]
    within_hours: Option<u64>,
    /// Also list secrets past their rotation and its grace (`is_overdue`).
    #[serde(default)]
    include_overdue: bool,
    /// Leading characters of the paths, e.g. `environments/production/`.
    prefix: Option<String>,
    /// Page size, 1..=1000 (default 100).
    limit: Option<usize>,
    /// `next_cursor` of the previous page (opaque; only for the same caller and query).
    cursor: Option<String>,
}

/// Secrets due for rotation within `within_hours`, in path order, paged. Only paths the
/// caller may list are read and returned.
#[utoipa::path(get, path = ops::ROTATION_DUE.path, tag = "secrets", params(DueQuery),
    responses((status = 200, body = RotationDueResponse),
        (status = 400, description = "invalid_request, invalid_path, invalid_cursor", body = ErrorBody)))]
pub async fn rotation_due(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiQuery(q): ApiQuery<DueQuery>,
) -> Result<Json<RotationDueResponse>> {
    let limit = pagination::limit(q.limit)?;
    let within = q.within_hours.unwrap_or(DEFAULT_DUE_WITHIN_HOURS);
    if !(1..=MAX_DUE_WITHIN_HOURS).contains(&within) {
        return Err(Error::invalid(format!(
            "within_hours must be between 1 and {MAX_DUE_WITHIN_HOURS}"
        )));
    }
    let prefix = q.prefix.unwrap_or_default();
    let within_text = within.to_string();
    let pager = Pager::new(&state.vault.cursors, "rotation_due", &auth.caller)
        .bind("prefix", Some(&prefix))
        .bind("within_hours", Some(&within_text))
        .bind(
            "include_overdue",
            Some(if q.include_overdue { "true" } else { "false" }),
        );
    let after = pager.open(q.cursor.as_deref())?;
    let scope = auth.scope(&state)?;
    let page = state
        .vault
        .secrets
        .due(
            DueParams {
                prefix,
                within: time::Duration::hours(within as i64),
                include_overdue: q.include_overdue,
                limit,
                after,
            },
            &scope.prefixes(),
            |path| scope.allows(path),
        )
        .await?;
    Ok(Json(RotationDueResponse {
        secrets: page.secrets,
        next_cursor: pager.seal(page.next_after)?,
    }))
}
