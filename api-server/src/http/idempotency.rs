//! `Idempotency-Key`: a mutating request sent again after its answer was lost is applied
//! once, and the repeat gets the first answer back.
//!
//! Keys are scoped to the caller's identity (one caller's key never replays another's
//! answer) and bound to the request's fingerprint, SHA-256 over method, path with
//! query, and body. The first request claims the key in the data store before the
//! handler runs, so a concurrent repeat sees it in flight (409) instead of running too.
//! Its answer is kept 24 hours, sealed by the barrier: a token-creation answer holds a
//! token in clear, and sealing every answer keeps one rule for all of them.
//!
//! Only final answers are kept: a 5xx, 429 or 408 means nothing was applied (or the
//! server cannot say), so the key is released and a retry runs again. Every change the
//! request commits also marks its key applied, in the same transaction: a key whose
//! request changed the vault is never run again, even when the server stopped before
//! keeping the answer (the repeat is told so). Names and limits live in
//! [`scaivault_api::idempotency`].

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest::{Context as Digest, SHA256};
use axum::body::HttpBody as _;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use scaivault_api::ErrorCode;
use scaivault_api::idempotency::{
    IN_FLIGHT_LEASE_SECS, KEY_HEADER, KEY_TTL_SECS, MAX_STORED_RESPONSE_BYTES, REPLAYED_HEADER,
    validate_key,
};

use super::SharedState;
use super::extract::ApiBytes;
use super::operations::Resolved;
use crate::auth::Caller;
use crate::crypto::barrier::Context;
use crate::error::Error;
use crate::store::idempotency::{HeldKey, while_held};
use crate::store::{ClaimOutcome, IdempotencyClaim, StoredAnswer, now_millis};

/// Runs a keyed mutation at most once per caller and key (see the module docs). Sits
/// inside authentication: it needs the caller.
pub async fn deduplicate(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    // A key sent with a read is ignored, like on a GET.
    let mutates = request
        .extensions()
        .get::<Resolved>()
        .is_some_and(|r| r.op.mutates);
    if !mutates {
        return next.run(request).await;
    }
    let key = match presented_key(request.headers()) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(request).await,
        Err(e) => return e.into_response(),
    };
    let Some(caller) = request.extensions().get::<Arc<Caller>>().cloned() else {
        return Error::internal("idempotency layer ran without an authenticated caller")
            .into_response();
    };
    let (parts, body) = request.into_parts();
    // The body limit travels in the request's extensions (DefaultBodyLimit).
    let mut body_request = Request::new(body);
    *body_request.extensions_mut() = parts.extensions.clone();
    let body = match ApiBytes::from_request(body_request, &state).await {
        Ok(ApiBytes(bytes)) => bytes,
        Err(e) => return e.into_response(),
    };
    let now = now_millis();
    let claim = IdempotencyClaim {
        scope: caller.identity_id.clone(),
        key,
        fingerprint: fingerprint(&parts.method, parts.uri.path_and_query(), &body),
        now,
        expires_at: now + Duration::from_secs(KEY_TTL_SECS),
        abandoned_before: now - Duration::from_secs(IN_FLIGHT_LEASE_SECS),
    };
    let (scope, key) = (claim.scope.clone(), claim.key.clone());
    match state
        .vault
        .store
        .apply(|u| u.idempotency().claim(claim))
        .await
    {
        Err(e) => Error::from(e).into_response(),
        Ok(ClaimOutcome::Mismatch) => Error::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used for a different request (method, path or body); \
             use a new key for a new request",
        )
        .into_response(),
        Ok(ClaimOutcome::InFlight) => Error::new(
            ErrorCode::IdempotencyKeyInFlight,
            "the first request with this Idempotency-Key is still running; retry later",
        )
        .with_retry_after(1)
        .into_response(),
        Ok(ClaimOutcome::AppliedWithoutAnswer) => Error::new(
            ErrorCode::IdempotencyKeyReused,
            "the request with this Idempotency-Key was applied but the server stopped before \
             keeping its answer; read the resource to see the result",
        )
        .into_response(),
        Ok(ClaimOutcome::Replay(answer)) => replay(&state, &scope, &key, answer),
        Ok(ClaimOutcome::Claimed) => {
            let request = Request::from_parts(parts, Body::from(body));
            let held = HeldKey {
                scope: scope.clone(),
                key: key.clone(),
            };
            // The request's changes mark the key applied in their own transactions.
            let response = while_held(held, next.run(request)).await;
            keep_answer(&state, &scope, &key, response).await
        }
    }
}

/// The key of the request: `None` without the header, 400 when it is malformed.
fn presented_key(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let mut values = headers.get_all(KEY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = |message: String| Error::new(ErrorCode::InvalidIdempotencyKey, message);
    if values.next().is_some() {
        return Err(bad("send one Idempotency-Key header, not several".into()));
    }
    let text = value.to_str().map_err(|_| {
        bad("Idempotency-Key may contain only ASCII letters, digits and `-_.:`".into())
    })?;
    validate_key(text.trim())
        .map(|key| Some(key.to_owned()))
        .map_err(|e| bad(e.to_string()))
}

fn fingerprint(
    method: &Method,
    path_and_query: Option<&axum::http::uri::PathAndQuery>,
    body: &[u8],
) -> [u8; 32] {
    let mut digest = Digest::new(&SHA256);
    digest.update(method.as_str().as_bytes());
    digest.update(b"\0");
    digest.update(path_and_query.map_or("", |p| p.as_str()).as_bytes());
    digest.update(b"\0");
    digest.update(body);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.finish().as_ref());
    out
}

/// An answer that settles the request. Anything else means nothing was applied (5xx
/// are refusals before the change, or failures of it; 429 comes before the handler).
fn is_final(status: StatusCode) -> bool {
    !(status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT)
}

/// Keeps the handler's answer for replays (or frees the key) and returns the answer.
async fn keep_answer(state: &SharedState, scope: &str, key: &str, response: Response) -> Response {
    let store = &state.vault.store;
    if !is_final(response.status()) {
        if let Err(e) = store.apply(|u| u.idempotency().release(scope, key)).await {
            // The key stays in flight until its lease ends; retries get 409 until then.
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let fits = body
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_STORED_RESPONSE_BYTES as u64);
    let (bytes, sealed_body) = if fits {
        let bytes = match axum::body::to_bytes(body, MAX_STORED_RESPONSE_BYTES).await {
            Ok(bytes) => bytes,
            Err(e) => return Error::internal(format!("reading the answer: {e}")).into_response(),
        };
        let sealed = state
            .vault
            .barrier
            .seal(Context::IdempotentAnswer { scope, key }, &bytes);
        match sealed {
            Ok(sealed) => (Body::from(bytes), Some(sealed)),
            Err(e) => {
                tracing::warn!(error = %e, "could not seal an idempotent answer");
                (Body::from(bytes), None)
            }
        }
    } else {
        (body, None)
    };
    let answer = StoredAnswer {
        status: parts.status.as_u16(),
        content_type,
        sealed_body,
    };
    // The change is applied whatever happens here: the caller gets its answer, and a
    // later repeat finds the key in flight until the lease ends.
    if let Err(e) = store
        .apply(|u| u.idempotency().complete(scope, key, answer))
        .await
    {
        tracing::warn!(error = %e, "could not keep an idempotent answer");
    }
    Response::from_parts(parts, bytes)
}

fn replay(state: &SharedState, scope: &str, key: &str, answer: StoredAnswer) -> Response {
    let Some(sealed) = answer.sealed_body else {
        return Error::new(
            ErrorCode::IdempotencyKeyReused,
            format!(
                "the request with this Idempotency-Key was applied (HTTP {}) but its answer \
                 was too large to keep; read the resource to see the result",
                answer.status
            ),
        )
        .into_response();
    };
    let plain = match state
        .vault
        .barrier
        .open(Context::IdempotentAnswer { scope, key }, &sealed)
    {
        Ok(plain) => plain,
        Err(e) => {
            return Error::internal(format!("opening an idempotent answer: {e}")).into_response();
        }
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, Bytes::copy_from_slice(&plain)).into_response();
    let headers = response.headers_mut();
    if let Some(value) = answer
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_cover_method_path_query_and_body() {
        let pq = |s: &'static str| Some(axum::http::uri::PathAndQuery::from_static(s));
        let base = fingerprint(&Method::PUT, pq("/v1/secrets/a").as_ref(), b"{}");
        for other in [
            fingerprint(&Method::POST, pq("/v1/secrets/a").as_ref(), b"{}"),
            fingerprint(&Method::PUT, pq("/v1/secrets/b").as_ref(), b"{}"),
            fingerprint(
                &Method::PUT,
                pq("/v1/secrets/a?destroy=true").as_ref(),
                b"{}",
            ),
            fingerprint(&Method::PUT, pq("/v1/secrets/a").as_ref(), b"{ }"),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(
            base,
            fingerprint(&Method::PUT, pq("/v1/secrets/a").as_ref(), b"{}")
        );
    }

    #[test]
    fn keys_come_from_one_well_formed_header() {
        let headers = |values: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(KEY_HEADER, HeaderValue::from_static(v));
            }
            h
        };
        assert_eq!(presented_key(&headers(&[])).ok(), Some(None));
        assert_eq!(
            presented_key(&headers(&["abcdefgh-1234"])).ok(),
            Some(Some("abcdefgh-1234".to_owned()))
        );
        for bad in [
            &["short"][..],
            &["abcdefgh-1", "abcdefgh-2"],
            &["with space inside"],
        ] {
            let code = presented_key(&headers(bad)).err().map(|e| e.code);
            assert_eq!(code, Some(ErrorCode::InvalidIdempotencyKey), "{bad:?}");
        }
    }

    #[test]
    fn only_settled_answers_are_kept() {
        for (status, kept) in [
            (200, true),
            (204, true),
            (404, true),
            (409, true),
            (422, true),
            (408, false),
            (429, false),
            (500, false),
            (503, false),
        ] {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            assert_eq!(is_final(status), kept, "{status}");
        }
    }
}
