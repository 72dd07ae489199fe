//! Errors as HTTP responses: `{"error": {"code", "message", "request_id"}}`.

use axum::extract::MatchedPath;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use scaivault_api::{ApiError, ErrorBody, ErrorCode};

use super::middleware::REQUEST_ID;
use crate::error::Error;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let request_id = REQUEST_ID.try_with(|id| id.clone()).ok();
        let body = ErrorBody {
            error: ApiError {
                code: self.code,
                message: self.message,
                request_id,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

pub async fn not_found() -> Error {
    Error::new(
        ErrorCode::NotFound,
        "no such endpoint; see /v1/openapi.json",
    )
}

pub async fn method_not_allowed(route: Option<MatchedPath>, uri: Uri) -> Response {
    method_not_allowed_at(route.as_ref().map_or("", MatchedPath::as_str), uri.path())
}

/// 405 with the `Allow` header RFC 9110 asks for, listing the methods that have a
/// declared operation for this path (a wildcard route's methods depend on its action word).
pub fn method_not_allowed_at(route: &str, path: &str) -> Response {
    let allow = super::operations::allowed_methods(route, path).join(", ");
    let mut response = Error::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this path (a path's last segment may be an action word); \
         see /v1/openapi.json",
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// A panic is a bug: answer 500 in the usual shape and keep the payload out of the body
/// (it may hold anything).
pub fn panic_response(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    Error::new(
        ErrorCode::Internal,
        "internal error; see the server log for this request id",
    )
    .into_response()
}
