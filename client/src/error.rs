//! The one error type of the client.
//!
//! Nothing in here ever carries a secret value or the token: API messages come from the
//! server (which keeps values out of them), and decode errors keep only the position of
//! the problem, because serde's messages may quote the offending input.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use scaivault_api::{ErrorBody, ErrorCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error document (or a non-2xx status without one).
    #[error("{code}: {message}{}", request_suffix(request_id.as_deref()))]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
        request_id: Option<String>,
        /// The server's `Retry-After`, when it sent one (429 and 503).
        retry_after: Option<Duration>,
    },
    /// The request did not complete: connection refused, TLS failure, timeout, ...
    #[error("{summary}: {0}", summary = transport_summary(.0))]
    Transport(#[source] reqwest::Error),
    /// The server answered 2xx with a body this client does not understand.
    #[error("unexpected response from the server to {what}: {detail}")]
    Decode { what: &'static str, detail: String },
    /// Rejected before sending: a bad path, an out-of-range limit, an unreadable CA file.
    #[error("{code}: {message}")]
    InvalidInput { code: ErrorCode, message: String },
    /// An event stream sent nothing, not even its heartbeat, for this long: the
    /// connection is gone. Open a new stream from the position reached.
    #[error("the event stream went silent for {0:?}")]
    StreamSilent(Duration),
}

/// Says which side of the exchange failed, before reqwest's own (longer) message.
fn transport_summary(err: &reqwest::Error) -> &'static str {
    if err.is_connect() {
        "cannot reach the server"
    } else if err.is_timeout() {
        "the server did not answer in time"
    } else {
        "the request failed"
    }
}

fn request_suffix(request_id: Option<&str>) -> String {
    request_id
        .map(|id| format!(" (request {id})"))
        .unwrap_or_default()
}

impl Error {
    /// The stable error code, for API errors and client-side input errors.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { code, .. } | Error::InvalidInput { code, .. } => Some(*code),
            Error::Transport(_) | Error::Decode { .. } | Error::StreamSilent(_) => None,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the request may have reached the server without its answer reaching us:
    /// connection refused or broken, a timeout, a truncated response. (Not a bad URL or
    /// a redirect, which fail the same way every time.)
    pub(crate) fn is_lost_answer(&self) -> bool {
        match self {
            Error::Transport(e) => {
                e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
            }
            _ => false,
        }
    }

    /// Whether the server said the thing does not exist (any 404 code).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub(crate) fn invalid(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::InvalidInput {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn decode(what: &'static str, err: &serde_json::Error) -> Error {
        // Only the category and position: the message of a type error quotes the input,
        // and the input may be a secret value.
        let category = match err.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "malformed JSON",
            serde_json::error::Category::Data => "JSON of an unexpected shape",
            serde_json::error::Category::Eof => "truncated JSON",
        };
        Error::Decode {
            what,
            detail: format!("{category} at line {} column {}", err.line(), err.column()),
        }
    }

    /// Builds the error for a non-2xx response from its status, headers and body.
    pub(crate) fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        let header_request_id = header_str(headers, "x-request-id");
        let retry_after = header_str(headers, "retry-after").and_then(|v| parse_retry_after(&v));
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody { error }) => Error::Api {
                status: status.as_u16(),
                code: error.code,
                message: error.message,
                request_id: error.request_id.or(header_request_id),
                retry_after,
            },
            // A proxy or load balancer in between may answer with HTML or nothing at all.
            Err(_) => Error::Api {
                status: status.as_u16(),
                code: fallback_code(status),
                message: format!("HTTP {status} without an error document"),
                request_id: header_request_id,
                retry_after,
            },
        }
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `Retry-After` as the API sends it: whole seconds. HTTP dates are not used by ScaiVault.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The code a bare status most likely means, so callers can still match on codes.
fn fallback_code(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::PermissionDenied,
        404 => ErrorCode::NotFound,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::StorageUnavailable,
        _ => ErrorCode::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn decodes_the_error_envelope_and_retry_after() {
        let body = br#"{"error": {"code": "rate_limited", "message": "slow down", "request_id": "req_1"}}"#;
        let err = Error::from_response(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "7"), ("x-request-id", "req_other")]),
            body,
        );
        match &err {
            Error::Api {
                status,
                code,
                message,
                request_id,
                retry_after,
            } => {
                assert_eq!(*status, 429);
                assert_eq!(*code, ErrorCode::RateLimited);
                assert_eq!(message, "slow down");
                assert_eq!(request_id.as_deref(), Some("req_1"));
                assert_eq!(*retry_after, Some(Duration::from_secs(7)));
            }
            other => unreachable!("unexpected {other:?}"),
        }
        assert_eq!(err.to_string(), "rate_limited: slow down (request req_1)");
    }

    #[test]
    fn falls_back_to_the_header_request_id_and_status_code() {
        let err = Error::from_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(&[("x-request-id", "req_2")]),
            b"<html>bad gateway</html>",
        );
        assert_eq!(err.code(), Some(ErrorCode::StorageUnavailable));
        assert_eq!(err.status(), Some(503));
        assert!(err.to_string().ends_with("(request req_2)"));
    }

    #[test]
    fn decode_errors_never_quote_the_input() {
        let secret = "hunter2-very-secret";
        let bad = format!(r#"{{"data": "{secret}"}}"#);
        let err = serde_json::from_str::<std::collections::BTreeMap<String, u64>>(&bad)
            .err()
            .map(|e| Error::decode("read", &e));
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("unexpected shape"), "{text}");
        assert!(!text.contains(secret), "{text}");
    }

    #[test]
    fn retry_after_is_whole_seconds() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
