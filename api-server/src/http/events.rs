//! `/v1/events`: what happened to the objects the caller may see, from the change feed.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use scaivault_api::ErrorBody;
use scaivault_api::events::{
    DEFAULT_EVENTS_LIMIT, EventType, EventsResponse, MAX_EVENT_TYPE_FILTERS, MAX_EVENTS_LIMIT,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::SharedState;
use super::authorize::Authorized;
use super::extract::ApiQuery;
use super::operations::{self as ops, Routes};
use crate::authz::{Permission, resource};
use crate::error::{Error, Result};
use crate::events::{EventFilter, Subject};

pub fn routes(routes: Routes) -> Routes {
    routes.serve(&[&ops::LIST_EVENTS], list_events)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Comma-separated event types, e.g. `rotation.due,rotation.overdue` (default: all).
    types: Option<String>,
    /// Only events about secrets under this prefix.
    path_prefix: Option<String>,
    /// Events after this `seq` (`last_seq` of the previous page; default 0: the oldest kept).
    #[param(minimum = 0)]
    after: Option<u64>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

fn parse_types(raw: &str) -> Result<BTreeSet<EventType>> {
    let names: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if names.is_empty() {
        return Err(Error::invalid(
            "types names no event type; leave it out for all",
        ));
    }
    if names.len() > MAX_EVENT_TYPE_FILTERS {
        return Err(Error::invalid(format!(
            "types names at most {MAX_EVENT_TYPE_FILTERS} event types"
        )));
    }
    names
        .into_iter()
        .map(|name| {
            EventType::parse(name).ok_or_else(|| {
                Error::invalid(format!(
                    "types: unknown event type (known: {})",
                    EventType::ALL
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .collect()
}

/// Events after `after`, oldest first: secret and rotation events of paths the caller may
/// list, `policy.changed` when it may read policies. Kept for 7 days. Never a value.
#[utoipa::path(get, path = ops::LIST_EVENTS.path, tag = "events", params(EventsQuery),
    responses((status = 200, body = EventsResponse),
        (status = 400, description = "invalid_request, invalid_path", body = ErrorBody)))]
pub async fn list_events(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<EventsResponse>> {
    let limit = q.limit.unwrap_or(DEFAULT_EVENTS_LIMIT);
    if limit == 0 || limit > MAX_EVENTS_LIMIT {
        return Err(Error::invalid(format!(
            "limit must be between 1 and {MAX_EVENTS_LIMIT}"
        )));
    }
    let after = q.after.unwrap_or(0);
    if i64::try_from(after).is_err() {
        return Err(Error::invalid("after is at most 9223372036854775807"));
    }
    let types = q.types.as_deref().map(parse_types).transpose()?;
    if let Some(prefix) = &q.path_prefix {
        scaivault_api::path::validate_prefix(prefix)
            .map_err(|e| Error::new(scaivault_api::ErrorCode::InvalidPath, e.to_string()))?;
    }
    let filter = EventFilter {
        types,
        path_prefix: q.path_prefix,
    };
    let scope = auth.scope(&state)?;
    let reads_policies =
        state
            .vault
            .authz
            .allows(&auth.caller, Permission::Read, resource::POLICIES);
    let page = crate::events::list(
        state.vault.store.as_ref(),
        after,
        limit,
        &filter,
        |subject| match subject {
            Subject::Secret(path) => scope.allows(path),
            Subject::Policy(_) => reads_policies,
        },
    )
    .await?;
    Ok(Json(EventsResponse {
        events: page.events,
        last_seq: page.last_seq,
    }))
}
