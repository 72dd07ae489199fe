//! The domain error: a stable API code plus a message safe to show the caller.
//!
//! Services speak in these codes directly, so the code a client sees is decided where the
//! failure is understood. Messages never contain secret values; internal detail goes to
//! the log (`internal`) and the caller gets a generic message.

use scaivault_api::ErrorCode;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long clients should wait before retrying when storage is down.
pub const STORAGE_RETRY_AFTER_SECS: u64 = 5;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// An unexpected failure: logged with detail, shown generically.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            ErrorCode::Internal,
            "internal error; see the server log for this request id",
        )
    }

    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %detail, "storage unavailable");
        Error {
            code: ErrorCode::StorageUnavailable,
            message: "storage is unavailable; retry later".into(),
            retry_after: Some(STORAGE_RETRY_AFTER_SECS),
        }
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => Error::unavailable(detail),
            StoreError::CasMismatch { current } => Error::new(
                ErrorCode::CasMismatch,
                format!("check-and-set failed: the current version is {current}"),
            ),
            StoreError::NotFound => Error::new(ErrorCode::NotFound, "not found"),
            StoreError::Conflict => Error::new(ErrorCode::Conflict, "already exists"),
            fenced @ StoreError::Fenced { .. } => Error::unavailable(fenced.to_string()),
            other => Error::internal(other),
        }
    }
}
