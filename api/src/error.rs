//! The error envelope and its stable codes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable, machine-readable error codes. Adding a code is compatible; renaming one is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidJson,
    InvalidPath,
    InvalidVersion,
    InvalidTtl,
    InvalidTag,
    ReservedPath,
    /// A list cursor that is malformed, altered, expired, or issued for another caller or
    /// another query.
    InvalidCursor,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    SecretNotFound,
    SecretExpired,
    SecretDeleted,
    VersionNotFound,
    TokenNotFound,
    MethodNotAllowed,
    CasMismatch,
    NotDeleted,
    /// `POST .../rotate` on a secret without a rotation schedule.
    RotationNotConfigured,
    Conflict,
    PayloadTooLarge,
    ValueTooLarge,
    UnsupportedMediaType,
    RateLimited,
    StorageUnavailable,
    AuditUnavailable,
    /// The identity provider behind a login (Kubernetes TokenReview) could not be asked.
    UpstreamUnavailable,
    /// This login method is not configured on the server.
    AuthMethodDisabled,
    /// The server is at its concurrency limit and shed the request before doing anything.
    Overloaded,
    /// The server stopped waiting for the request's answer; a mutation may still complete.
    RequestTimeout,
    Sealed,
    Internal,
    /// The `Idempotency-Key` header is malformed (length, characters, or sent twice).
    InvalidIdempotencyKey,
    /// The `Idempotency-Key` was used before for a different request (method, path or body).
    IdempotencyKeyReused,
    /// The first request with this `Idempotency-Key` is still running: retry later.
    IdempotencyKeyInFlight,
    /// The operation is part of the API but this server does not carry it out yet.
    NotImplemented,
    /// A code this client version does not know yet.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status that carries this code.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidRequest
            | InvalidJson
            | InvalidPath
            | InvalidVersion
            | InvalidTtl
            | InvalidTag
            | ReservedPath
            | InvalidCursor
            | InvalidIdempotencyKey => 400,
            Unauthenticated => 401,
            PermissionDenied => 403,
            NotFound | SecretNotFound | SecretExpired | SecretDeleted | VersionNotFound
            | TokenNotFound | AuthMethodDisabled => 404,
            MethodNotAllowed => 405,
            CasMismatch
            | NotDeleted
            | RotationNotConfigured
            | Conflict
            | IdempotencyKeyInFlight => 409,
            PayloadTooLarge | ValueTooLarge => 413,
            UnsupportedMediaType => 415,
            IdempotencyKeyReused => 422,
            RateLimited => 429,
            StorageUnavailable | AuditUnavailable | UpstreamUnavailable | Overloaded | Sealed => {
                503
            }
            NotImplemented => 501,
            RequestTimeout => 504,
            Internal | Unknown => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            InvalidJson => "invalid_json",
            InvalidPath => "invalid_path",
            InvalidVersion => "invalid_version",
            InvalidTtl => "invalid_ttl",
            InvalidTag => "invalid_tag",
            ReservedPath => "reserved_path",
            InvalidCursor => "invalid_cursor",
            Unauthenticated => "unauthenticated",
            PermissionDenied => "permission_denied",
            NotFound => "not_found",
            SecretNotFound => "secret_not_found",
            SecretExpired => "secret_expired",
            SecretDeleted => "secret_deleted",
            VersionNotFound => "version_not_found",
            TokenNotFound => "token_not_found",
            MethodNotAllowed => "method_not_allowed",
            CasMismatch => "cas_mismatch",
            NotDeleted => "not_deleted",
            RotationNotConfigured => "rotation_not_configured",
            Conflict => "conflict",
            PayloadTooLarge => "payload_too_large",
            ValueTooLarge => "value_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            RateLimited => "rate_limited",
            StorageUnavailable => "storage_unavailable",
            AuditUnavailable => "audit_unavailable",
            UpstreamUnavailable => "upstream_unavailable",
            AuthMethodDisabled => "auth_method_disabled",
            Overloaded => "overloaded",
            RequestTimeout => "request_timeout",
            Sealed => "sealed",
            Internal => "internal",
            InvalidIdempotencyKey => "invalid_idempotency_key",
            IdempotencyKeyReused => "idempotency_key_reused",
            IdempotencyKeyInFlight => "idempotency_key_in_flight",
            NotImplemented => "not_implemented",
            Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"error": {...}}`: the body of every non-2xx response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One failed item of a batch: like [`ApiError`] without the request id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ItemError {
    pub code: ErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_json_and_match_as_str() {
        for code in [
            ErrorCode::InvalidPath,
            ErrorCode::SecretExpired,
            ErrorCode::CasMismatch,
            ErrorCode::RateLimited,
            ErrorCode::Overloaded,
            ErrorCode::RequestTimeout,
        ] {
            let json = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap_or(ErrorCode::Unknown);
            assert_eq!(back, code);
        }
    }

    #[test]
    fn unknown_codes_decode_as_unknown() {
        let code: ErrorCode = serde_json::from_str("\"brand_new\"").unwrap_or(ErrorCode::Internal);
        assert_eq!(code, ErrorCode::Unknown);
    }

    #[test]
    fn statuses_follow_the_documented_table() {
        assert_eq!(ErrorCode::SecretExpired.status(), 404);
        assert_eq!(ErrorCode::CasMismatch.status(), 409);
        assert_eq!(ErrorCode::ValueTooLarge.status(), 413);
        assert_eq!(ErrorCode::StorageUnavailable.status(), 503);
        assert_eq!(ErrorCode::Overloaded.status(), 503);
        assert_eq!(ErrorCode::RequestTimeout.status(), 504);
        assert_eq!(ErrorCode::NotImplemented.status(), 501);
    }
}
