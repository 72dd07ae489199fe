//! Extractors whose rejections use the API's error shape and never echo secret values.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use scaivault_api::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// JSON body. Malformed JSON is `invalid_json`; a body of the wrong shape is
/// `invalid_request` naming the field; an oversize body is `payload_too_large`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // The content type is not checked: curl's `-d` sends a form type by default and a
        // bearer token already rules out cross-site form posts. The body must be JSON.
        let ApiBytes(bytes) = ApiBytes::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The raw body, bounded by the server's body limit, with API-shaped rejections. For
/// routes that decide how to parse only after looking at the path.
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Error::new(
                        ErrorCode::PayloadTooLarge,
                        "request body is larger than the server's limit",
                    )
                } else {
                    Error::invalid("could not read the request body")
                }
            })
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidJson,
            "request body is empty; expected a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Error::new(
                ErrorCode::InvalidJson,
                format!(
                    "malformed JSON at line {} column {}",
                    inner.line(),
                    inner.column()
                ),
            )
        } else {
            let at = if field == "." {
                String::new()
            } else {
                format!(" at `{field}`")
            };
            Error::invalid(format!(
                "request body does not match the schema{at}: {}",
                redact_values(&inner.to_string())
            ))
        }
    })?;
    deserializer.end().map_err(|_| {
        Error::new(
            ErrorCode::InvalidJson,
            "trailing characters after the JSON value",
        )
    })?;
    Ok(value)
}

/// serde quotes the offending value in type errors (`invalid type: string "hunter2",
/// expected u64`); that value may be a secret, so keep only its kind.
pub fn redact_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let kind = rest.split([' ', ',']).next().unwrap_or("value");
            let tail = rest.find(", expected").map(|i| &rest[i..]).unwrap_or("");
            return format!("{prefix}{kind}{tail}");
        }
    }
    message.to_owned()
}

/// Query string. Wrong types are `invalid_request`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| {
                Error::invalid(format!(
                    "invalid query string: {}",
                    redact_values(&e.body_text())
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scaivault_api::secrets::WriteSecretRequest;

    #[test]
    fn type_errors_do_not_echo_values() {
        let err = parse_json::<WriteSecretRequest>(br#"{"data": "hunter2-secret"}"#).err();
        let message = err.map(|e| e.message).unwrap_or_default();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("`data`"), "{message}");
        let err =
            parse_json::<WriteSecretRequest>(br#"{"data": {}, "options": {"cas": "s3cr3t"}}"#)
                .err();
        let message = err.map(|e| e.message).unwrap_or_default();
        assert!(!message.contains("s3cr3t"), "{message}");
        assert!(message.contains("options.cas"), "{message}");
    }

    #[test]
    fn syntax_errors_are_invalid_json() {
        let code = parse_json::<WriteSecretRequest>(b"{not json")
            .err()
            .map(|e| e.code);
        assert_eq!(code, Some(ErrorCode::InvalidJson));
        let code = parse_json::<WriteSecretRequest>(b"").err().map(|e| e.code);
        assert_eq!(code, Some(ErrorCode::InvalidJson));
        let code = parse_json::<WriteSecretRequest>(br#"{"data":{}} x"#)
            .err()
            .map(|e| e.code);
        assert_eq!(code, Some(ErrorCode::InvalidJson));
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = parse_json::<WriteSecretRequest>(br#"{"data": {}, "dta": 1}"#).err();
        let (code, message) = err
            .map(|e| (e.code, e.message))
            .unwrap_or((ErrorCode::Internal, String::new()));
        assert_eq!(code, ErrorCode::InvalidRequest);
        assert!(message.contains("dta"), "{message}");
    }
}
