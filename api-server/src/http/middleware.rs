//! Request id, access log and metrics (outermost); authentication and rate limiting
//! (around authenticated routes).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use scaivault_api::ErrorCode;
use secrecy::SecretString;
use time::OffsetDateTime;
use tracing::Instrument as _;

use super::SharedState;
use super::operations::{Guard, Resolved, Resource, resolve};
use crate::audit::context::{AUDIT, AuditContext, note_request_seq, noted_caller};
use crate::audit::record::{AuditPhase, AuditRecord, UNKNOWN_OUTCOME, outcome_of};
use crate::audit::service::{audit_outcome_unavailable, audit_unavailable};
use crate::audit::unsealed;
use crate::crypto::token::{hex, random_bytes};
use crate::error::Error;
use crate::metrics::{RequestLabels, RouteLabels};
use crate::ratelimit::Decision;

tokio::task_local! {
    /// The current request's id, so errors built anywhere can carry it.
    pub static REQUEST_ID: String;
}

static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
static RATE_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static RATE_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static RATE_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Ids are a per-process random prefix plus a counter: unique, cheap, not guessable.
static ID_PREFIX: LazyLock<String> = LazyLock::new(|| {
    random_bytes::<6>()
        .map(|b| hex(b.as_ref()))
        .unwrap_or_else(|_| "000000000000".into())
});
static ID_COUNTER: AtomicU64 = AtomicU64::new(1);

/// `Retry-After` of a shed request: long enough for a burst to drain.
const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

fn new_request_id() -> String {
    format!(
        "req_{}{:08x}",
        *ID_PREFIX,
        ID_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Keeps a caller-supplied id only when it is short and plain (it ends up in logs).
fn inbound_request_id(headers: &HeaderMap) -> Option<String> {
    let id = headers.get(&REQUEST_ID_HEADER)?.to_str().ok()?;
    let plain = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    plain.then(|| id.to_owned())
}

pub async fn observe(
    State(state): State<SharedState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = inbound_request_id(request.headers()).unwrap_or_else(new_request_id);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    // The path names a secret but never holds its value; the query string is not logged.
    let path = request.uri().path().to_owned();
    // The one place a request is matched to its declared operation.
    let resolved = resolve(&method, &route, &path);
    let audited = match &resolved {
        Some(r) => r.op.guard != Guard::Public,
        None => path.starts_with("/v1/"),
    };
    let facts = (state.audit.enabled() && audited)
        .then(|| Arc::new(RequestFacts::of(&request, &route, resolved.as_ref())));
    if let Some(resolved) = resolved {
        request.extensions_mut().insert(resolved);
    }
    if let Some(facts) = &facts {
        // For the request record of a mutation, written further in (`record_request`).
        request.extensions_mut().insert(Arc::clone(facts));
    }
    // The span carries what identifies the request, never its query string or body.
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    let run = REQUEST_ID
        .scope(request_id.clone(), next.run(request))
        .instrument(span);
    let timeout = state.limits.request_timeout;
    let mut response = match facts {
        // A task of its own: hyper drops a request's future when its client hangs up, and
        // an audited request that may have changed something must finish, record included.
        Some(facts) => {
            let task_state = Arc::clone(&state);
            let task_request_id = request_id.clone();
            let audited = tokio::spawn(async move {
                let context = RefCell::new(AuditContext::default());
                let (response, context) = AUDIT
                    .scope(context, async move {
                        let response = run.await;
                        (
                            response,
                            AUDIT.with(|c| std::mem::take(&mut *c.borrow_mut())),
                        )
                    })
                    .await;
                audit_response(&task_state, &task_request_id, facts, context, response).await
            });
            // On a timeout the client stops waiting, not the task: a change under way
            // completes and its audit record says what really happened.
            match tokio::time::timeout(timeout, audited).await {
                Ok(Ok(response)) => response,
                // Only when the runtime shuts down under it (handler panics are caught
                // further in by CatchPanicLayer).
                Ok(Err(e)) => {
                    Error::unavailable(format!("request task ended: {e}")).into_response()
                }
                Err(_) => timed_out(&state, &request_id, timeout).await,
            }
        }
        None => match tokio::time::timeout(timeout, run).await {
            Ok(response) => response,
            Err(_) => timed_out(&state, &request_id, timeout).await,
        },
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(REQUEST_ID_HEADER.clone(), value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.to_string(),
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .request_duration
        .get_or_create(&RouteLabels { route })
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        request_id = %request_id,
        method = %method,
        path = %path,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

async fn timed_out(state: &SharedState, request_id: &str, timeout: Duration) -> Response {
    state.metrics.timed_out.inc();
    REQUEST_ID
        .scope(request_id.to_owned(), async {
            Error::new(
                ErrorCode::RequestTimeout,
                format!(
                    "no answer within {}s; a change may still complete, so retry a mutation only with its Idempotency-Key",
                    timeout.as_secs()
                ),
            )
            .into_response()
        })
        .await
}

/// The answer to a request shed at the concurrency limit (see `http::app`).
pub async fn shed(state: SharedState, error: tower::BoxError) -> Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        state.metrics.shed.inc();
        Error::new(
            ErrorCode::Overloaded,
            format!(
                "the server is handling {} requests, its limit; retry shortly",
                state.limits.max_concurrent_requests
            ),
        )
        .with_retry_after(OVERLOADED_RETRY_AFTER_SECS)
        .into_response()
    } else {
        Error::internal(format!("request layer failed: {error}")).into_response()
    }
}

/// What the audit records need from the request, taken before the handler consumes it.
struct RequestFacts {
    action: String,
    /// A mutation leaves a request record before its handler runs, and a response record.
    mutates: bool,
    secret_path: Option<String>,
    source_ip: Option<String>,
    user_agent: Option<String>,
}

impl RequestFacts {
    /// Public operations are not audited; a request no operation serves is recorded as
    /// its method and route (it changes nothing).
    fn of(request: &Request, route: &str, resolved: Option<&Resolved>) -> Self {
        let action = match resolved {
            Some(r) => r.op.action_for(request.uri().query()).to_owned(),
            None => format!("{} {route}", request.method()),
        };
        let secret_path = resolved
            .filter(|r| matches!(r.op.guard, Guard::Permission(_, Resource::SecretPath)))
            .and_then(|r| r.tail.clone());
        RequestFacts {
            action,
            mutates: resolved.is_some_and(|r| r.op.mutates),
            secret_path,
            source_ip: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
            user_agent: request
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(256).collect()),
        }
    }
}

impl RequestFacts {
    /// A record of this request, with the caller noted so far.
    fn record(
        &self,
        state: &SharedState,
        request_id: &str,
        (identity_id, identity_type, accessor): (Option<String>, Option<String>, Option<String>),
    ) -> AuditRecord {
        let mut record = unsealed(OffsetDateTime::now_utc());
        record.request_id = request_id.to_owned();
        record.identity_id = identity_id;
        record.identity_type = identity_type;
        record.action = self.action.clone();
        record.source_ip = self.source_ip.clone();
        record.user_agent = self.user_agent.clone();
        record.accessor_hmac = accessor.as_deref().map(|a| state.audit.hmac(a));
        record.path = self.secret_path.clone();
        record
    }
}

/// Audit before change: a mutating request's request record is durable before its handler
/// runs, or the request is refused and nothing changes. Called once the caller is known
/// (by `authenticate`, and as a layer on the unauthenticated login route).
async fn record_request_first(
    state: &SharedState,
    facts: Option<Arc<RequestFacts>>,
) -> Result<(), Response> {
    let (Some(facts), Some(writer)) = (facts, state.audit.writer.as_ref()) else {
        return Ok(());
    };
    if !facts.mutates {
        return Ok(());
    }
    let request_id = REQUEST_ID.try_with(String::clone).unwrap_or_default();
    let mut record = facts.record(state, &request_id, noted_caller());
    record.phase = Some(AuditPhase::Request);
    record.outcome = UNKNOWN_OUTCOME.to_owned();
    match writer.write(vec![record]).await {
        Ok(seq) => {
            note_request_seq(seq);
            Ok(())
        }
        Err(detail) => Err(audit_unavailable(&detail).into_response()),
    }
}

/// `record_request_first` as a layer, for routes without `authenticate`.
pub async fn record_request(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let facts = request.extensions().get::<Arc<RequestFacts>>().cloned();
    match record_request_first(&state, facts).await {
        Ok(()) => next.run(request).await,
        Err(refused) => refused,
    }
}

/// Writes the request's response records (linked to its request record, if it wrote one)
/// and waits until they are durable; if that fails the caller gets 503 instead of the
/// handler's answer (fail closed).
async fn audit_response(
    state: &SharedState,
    request_id: &str,
    facts: Arc<RequestFacts>,
    context: AuditContext,
    response: Response,
) -> Response {
    let Some(writer) = state.audit.writer.as_ref() else {
        return response;
    };
    let status = response.status().as_u16();
    let request_seq = context.request_seq;
    let mut base = facts.record(
        state,
        request_id,
        (context.identity_id, context.identity_type, context.accessor),
    );
    base.status = status;
    base.outcome = outcome_of(status).to_owned();
    base.reason = context.reason;
    if request_seq.is_some() {
        base.phase = Some(AuditPhase::Response);
        base.request_seq = request_seq;
    }
    let records = if context.checks.is_empty() {
        vec![base]
    } else {
        // One record per authorization decision: a batch read leaves one per path, each
        // with its own outcome (a missing secret is a failure inside a 200).
        let item_statuses = context.item_statuses;
        context
            .checks
            .into_iter()
            .map(|(permission, path, allowed)| {
                let mut record = base.clone();
                if let Some((_, item)) = item_statuses.iter().find(|(p, _)| *p == path) {
                    record.status = *item;
                    record.outcome = outcome_of(*item).to_owned();
                }
                if !allowed {
                    record.outcome = "denied".to_owned();
                }
                record.path = Some(path);
                record.permission = Some(permission.scope());
                record
            })
            .collect()
    };
    match writer.write(records).await {
        Ok(_) => response,
        Err(detail) => {
            REQUEST_ID
                .scope(request_id.to_owned(), async {
                    match request_seq {
                        Some(_) => audit_outcome_unavailable(&detail).into_response(),
                        None => audit_unavailable(&detail).into_response(),
                    }
                })
                .await
        }
    }
}

fn presented_token(headers: &HeaderMap) -> Option<SecretString> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| SecretString::from(token.trim().to_owned()));
    }
    headers
        .get("x-vault-token")
        .and_then(|v| v.to_str().ok())
        .map(|t| SecretString::from(t.trim().to_owned()))
}

fn rate_limit_headers(headers: &mut HeaderMap, decision: &Decision) {
    for (name, value) in [
        (&RATE_LIMIT, decision.limit.to_string()),
        (&RATE_REMAINING, decision.remaining.to_string()),
        (&RATE_RESET, decision.reset_epoch.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name.clone(), value);
        }
    }
}

/// Resolves the bearer token to a caller, applies the caller's rate limit, writes a
/// mutation's request record before the handler runs, and adds the `X-RateLimit-*` headers
/// to whatever the handler answers.
pub async fn authenticate(
    State(state): State<SharedState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(token) = presented_token(request.headers()) else {
        return Error::new(
            ErrorCode::Unauthenticated,
            "missing token: send Authorization: Bearer <token>",
        )
        .into_response();
    };
    let caller = match state.vault.tokens.authenticate(&token).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let decision = state
        .limiter
        .enabled()
        .then(|| state.limiter.check(&caller.identity_id));
    if let Some(decision) = decision.filter(|d| !d.allowed) {
        state.metrics.rate_limited.inc();
        let mut response = Error::new(
            ErrorCode::RateLimited,
            format!(
                "rate limit of {} requests per minute exceeded",
                decision.limit
            ),
        )
        .with_retry_after(decision.retry_after)
        .into_response();
        rate_limit_headers(response.headers_mut(), &decision);
        return response;
    }
    crate::audit::context::note_caller(&caller);
    let facts = request.extensions().get::<Arc<RequestFacts>>().cloned();
    if let Err(refused) = record_request_first(&state, facts).await {
        return refused;
    }
    request.extensions_mut().insert(Arc::clone(&caller));
    let mut response = next.run(request).await;
    if let Some(decision) = decision {
        rate_limit_headers(response.headers_mut(), &decision);
    }
    response
}
