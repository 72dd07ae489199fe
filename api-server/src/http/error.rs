//! Errors as HTTP responses: `{"error": {"code", "message", "request_id"}}`.

use axum::http::{HeaderValue, StatusCode, header};
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

pub async fn method_not_allowed() -> Error {
    Error::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this endpoint; see /v1/openapi.json",
    )
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
