//! `/v1/events`: what happened to the objects the caller may see, from the change feed.

use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use scaivault_api::ErrorBody;
use scaivault_api::events::{
    DEFAULT_EVENTS_LIMIT, Event, EventType, EventsResponse, MAX_EVENT_TYPE_FILTERS,
    MAX_EVENTS_LIMIT,
};
use serde::Deserialize;
use tokio::sync::broadcast;
use utoipa::IntoParams;

use super::SharedState;
use super::authorize::Authorized;
use super::extract::ApiQuery;
use super::operations::{self as ops, Routes};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::events::hub::HubItem;
use crate::events::{EventFilter, Subject, visible_to};

pub fn routes(routes: Routes) -> Routes {
    routes
        .serve(&[&ops::LIST_EVENTS], list_events)
        .serve(&[&ops::STREAM_EVENTS], stream_events)
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
    let page = crate::events::list(
        state.vault.store.as_ref(),
        after,
        limit,
        &filter,
        |subject| match subject {
            Subject::Secret(path) => scope.allows(path),
            other => visible_to(&state.vault.authz, &auth.caller, other),
        },
    )
    .await?;
    Ok(Json(EventsResponse {
        events: page.events,
        last_seq: page.last_seq,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Comma-separated event types (default: all).
    types: Option<String>,
    /// Only events about secrets under this prefix.
    path_prefix: Option<String>,
    /// Resume after this `seq` (the `Last-Event-ID` header does the same and wins);
    /// default: from now on.
    #[param(minimum = 0)]
    after: Option<u64>,
}

/// The position a client resumes from: `Last-Event-ID` (`12` or `evt_12`), else `after`.
fn resume_position(headers: &HeaderMap, after: Option<u64>) -> Result<Option<u64>> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(after);
    };
    let text = value.to_str().unwrap_or_default().trim();
    text.strip_prefix("evt_")
        .unwrap_or(text)
        .parse::<u64>()
        .ok()
        .filter(|n| i64::try_from(*n).is_ok())
        .map(Some)
        .ok_or_else(|| Error::invalid("Last-Event-ID must be an event's seq or id (evt_<seq>)"))
}

/// Events as they happen, as Server-Sent Events (`id` is the event's `seq`, `event` its
/// type, `data` the event). It opens with `event: position` whose `id` is where it starts
/// (resume from there if it ends before an event). Resume with `Last-Event-ID`; a comment
/// heartbeat every 15 s.
/// Every event is authorised when it is sent, so a policy change that takes access away
/// stops the flow; the stream ends when its token expires or is revoked. A subscriber more than 1024 events behind gets an `event: lagged` whose
/// `id` is where to resume, and the stream ends.
#[utoipa::path(get, path = ops::STREAM_EVENTS.path, tag = "events", params(StreamQuery),
    responses((status = 200, description = "text/event-stream of events", content_type = "text/event-stream", body = String),
        (status = 400, description = "invalid_request, invalid_path", body = ErrorBody)))]
pub async fn stream_events(
    State(state): State<SharedState>,
    auth: Authorized,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response> {
    let types = q.types.as_deref().map(parse_types).transpose()?;
    if let Some(prefix) = &q.path_prefix {
        scaivault_api::path::validate_prefix(prefix)
            .map_err(|e| Error::new(scaivault_api::ErrorCode::InvalidPath, e.to_string()))?;
    }
    let filter = EventFilter {
        types,
        path_prefix: q.path_prefix,
    };
    // Subscribe before reading the feed: see `EventHub::subscribe`.
    let live = state.events.subscribe();
    let from = match resume_position(&headers, q.after)? {
        Some(seq) => seq,
        None => state.vault.store.last_change_seq().await?,
    };
    // Where this stream starts, said first: a client whose stream ends before any event
    // passed its filter still knows where to resume.
    let position = SseEvent::default()
        .event("position")
        .id(from.to_string())
        .data(format!("{{\"after\":{from}}}"));
    let stream = EventStream {
        state: Arc::clone(&state),
        caller: Arc::clone(&auth.caller),
        filter,
        live,
        covered: from,
        replaying: true,
        pending: VecDeque::from([position]),
        ended: false,
    };
    let sse = Sse::new(futures::stream::unfold(stream, EventStream::next)).keep_alive(
        KeepAlive::new()
            .interval(STREAM_HEARTBEAT)
            .text("heartbeat"),
    );
    Ok(sse.into_response())
}

/// Between heartbeats of an idle stream (proxies close connections idle for long).
const STREAM_HEARTBEAT: Duration = Duration::from_secs(15);
/// A stream whose token expires later than this wakes to look again (a sleep that long
/// would overflow the timer).
const TOKEN_RECHECK: Duration = Duration::from_secs(3600);
/// Events read from the feed per page while a stream catches up.
const REPLAY_PAGE: usize = 256;

/// One subscriber's stream: the feed from its position until caught up, then the hub.
struct EventStream {
    state: SharedState,
    caller: Arc<Caller>,
    filter: EventFilter,
    live: broadcast::Receiver<HubItem>,
    /// The feed `seq` up to which everything was sent or passed over.
    covered: u64,
    replaying: bool,
    pending: VecDeque<SseEvent>,
    ended: bool,
}

impl EventStream {
    fn visible(&self, subject: Subject<'_>) -> bool {
        visible_to(&self.state.vault.authz, &self.caller, subject)
    }

    fn push(&mut self, event: &Event) {
        match SseEvent::default()
            .id(event.seq.to_string())
            .event(event.event_type.as_str())
            .json_data(event)
        {
            Ok(sse) => self.pending.push_back(sse),
            Err(e) => tracing::warn!(error = %e, "encoding an event for a stream"),
        }
    }

    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, EventStream)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.ended {
                return None;
            }
            if self.replaying {
                let page = crate::events::list(
                    self.state.vault.store.as_ref(),
                    self.covered,
                    REPLAY_PAGE,
                    &self.filter,
                    |subject| self.visible(subject),
                )
                .await;
                match page {
                    Ok(page) => {
                        self.replaying = page.last_seq > self.covered;
                        self.covered = page.last_seq;
                        page.events.iter().for_each(|e| self.push(e));
                    }
                    Err(e) => {
                        // The client resumes from `covered` once storage is back.
                        tracing::debug!(error = %e.message, "replaying events for a stream");
                        self.pending.push_back(
                            SseEvent::default()
                                .event("unavailable")
                                .id(self.covered.to_string())
                                .data("{}"),
                        );
                        self.ended = true;
                    }
                }
                continue;
            }
            // A token that expires or is revoked while streaming ends its stream.
            let lifetime = match self.caller.expires_at {
                Some(at) => (at - time::OffsetDateTime::now_utc()).max(time::Duration::ZERO),
                None => time::Duration::MAX,
            };
            let lifetime = Duration::try_from(lifetime).unwrap_or(Duration::MAX);
            let received = tokio::select! {
                received = self.live.recv() => received,
                _ = tokio::time::sleep(lifetime.min(TOKEN_RECHECK)) => {
                    if lifetime <= TOKEN_RECHECK {
                        return None;
                    }
                    continue;
                }
            };
            let event = match received {
                Ok(HubItem::Event(event)) => Ok(event),
                Ok(HubItem::Revoked(accessor)) if *accessor == *self.caller.accessor => {
                    return None;
                }
                Ok(HubItem::Revoked(_)) => continue,
                Err(e) => Err(e),
            };
            match event {
                Ok(event) if event.seq > self.covered => {
                    self.covered = event.seq;
                    if self.filter.matches(&event)
                        && crate::events::subject_of(&event).is_some_and(|s| self.visible(s))
                    {
                        self.push(&event);
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.pending.push_back(
                        SseEvent::default()
                            .event("lagged")
                            .id(self.covered.to_string())
                            .data(format!("{{\"resume_after\":{}}}", self.covered)),
                    );
                    self.ended = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
