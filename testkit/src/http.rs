//! The HTTP helpers tests share: send and read the answer as JSON, expect a success
//! from a fixture service, check the error envelope.

use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

/// Sends `req`; the body as JSON, as a JSON string when it is not JSON, `Null` when empty.
pub async fn send(req: RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let text = resp.text().await.expect("response body");
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, json)
}

/// Sends `req` to a fixture service (a bucket to create, a value to seed) and panics
/// naming `what` unless it answers 2xx.
pub async fn send_ok(req: RequestBuilder, what: &str) {
    let resp = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(resp.status().is_success(), "{what}: {}", resp.status());
}

/// Asserts the error envelope (`error.code`, `error.message`, `error.request_id`) and
/// returns its code.
#[track_caller]
pub fn error_code(body: &Value) -> String {
    let err = body
        .get("error")
        .unwrap_or_else(|| panic!("not an error envelope: {body}"));
    assert!(err["message"].is_string(), "{body}");
    assert!(
        err["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    err["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code: {body}"))
        .to_owned()
}
