//! The OpenAPI document: bodies and specific answers from the handlers' annotations, and
//! from each operation's declaration its id, scope, security, `Idempotency-Key` header,
//! path parameter grammar and the error answers every such operation can give.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::constraints;
use super::operations::{self as ops, Guard, OPERATIONS, Operation, Resource, Routes};
use super::{audit, auth, events, health, policies, rotation, secrets, sys, webhooks};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("svt_...")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ScaiVault API", description = "Versioned encrypted secrets for Kubernetes shops. Errors are `{\"error\": {\"code\", \"message\", \"request_id\"}}`."),
    paths(
        secrets::read_secret, secrets::read_metadata, secrets::list_versions, secrets::write_secret,
        secrets::restore_secret, secrets::rotate_secret, secrets::update_metadata, secrets::delete_secret,
        secrets::list_secrets, secrets::batch_read, rotation::rotation_due, events::list_events, events::stream_events,
        webhooks::create_webhook, webhooks::list_webhooks, webhooks::get_webhook, webhooks::update_webhook,
        webhooks::delete_webhook, webhooks::test_webhook, webhooks::list_deliveries, webhooks::retry_delivery,
        auth::whoami, auth::create_token, auth::list_tokens, auth::revoke_token, auth::kubernetes_login,
        sys::rotate_key, sys::list_keys,
        policies::create_policy, policies::list_policies, policies::get_policy, policies::update_policy,
        policies::delete_policy, policies::add_binding, policies::list_bindings, policies::remove_binding,
        policies::test_policy,
        audit::logs, audit::for_secret, audit::for_identity, audit::verify, audit::hmac, audit::export, audit::export_status, policies::create_identity, policies::list_identities, policies::get_identity,
        health::health, health::ready, health::health_detailed, health::metrics,
        serve,
    ),
    components(schemas(scaivault_api::ErrorBody)),
    modifiers(&BearerAuth),
    tags((name = "secrets"), (name = "auth"), (name = "policies"), (name = "identities"), (name = "audit"), (name = "events"), (name = "webhooks"), (name = "sys"), (name = "health"))
)]
pub struct ApiDoc;

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    constraints::apply(&mut doc);
    for op in OPERATIONS {
        if let Some(operation) = doc.pointer_mut(&pointer(op)) {
            complete(operation, op);
        }
    }
    serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into())
});

pub fn document() -> &'static str {
    &DOCUMENT
}

pub fn routes(routes: Routes) -> Routes {
    routes.serve(&[&ops::OPENAPI], serve)
}

/// This document. Served without authentication: it describes the API, not the data.
#[utoipa::path(get, path = ops::OPENAPI.path, tag = "health",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}

/// JSON pointer of an operation in the document.
fn pointer(op: &Operation) -> String {
    let path = op.path.replace('~', "~0").replace('/', "~1");
    let method = format!("{:?}", op.verb).to_lowercase();
    format!("/paths/{path}/{method}")
}

const ERROR_BODY: &str = "#/components/schemas/ErrorBody";

/// Documents that `status` can carry the error shape: a new answer, or, where the
/// annotation already gives the status another body, either of the two.
fn add_error(responses: &mut Value, status: u16, description: &str) {
    let key = status.to_string();
    let error = json!({"$ref": ERROR_BODY});
    let exists = responses.get(&key).is_some();
    match responses.pointer_mut(&format!("/{key}/content/application~1json/schema")) {
        Some(schema) if schema["$ref"] != ERROR_BODY && schema.get("oneOf").is_none() => {
            *schema = json!({"oneOf": [schema.take(), error]});
        }
        Some(_) => {}
        None if !exists => {
            responses[key] = json!({
                "description": description,
                "content": {"application/json": {"schema": error}}
            });
        }
        // An answer without a body (204): not an error status, nothing to add.
        None => {}
    }
}

/// Adds what the declaration says to the annotated operation.
fn complete(operation: &mut Value, op: &Operation) {
    operation["operationId"] = json!(op.id);
    if let Some(scope) = op.scope() {
        operation["x-scope"] = json!(scope);
    }
    if op.needs_token() {
        operation["security"] = json!([{"bearer": []}]);
    }
    let on_secret_path = matches!(op.guard, Guard::Permission(_, Resource::SecretPath));
    let mut parameters = match operation.get_mut("parameters").map(Value::take) {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    if op.mutates {
        parameters.push(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "Run this mutation at most once: a repeat with the same key, method, path and body gets the first answer back (with `Idempotency-Replayed: true`).",
        }));
    }
    for parameter in &mut parameters {
        let name = parameter["name"].as_str().unwrap_or_default().to_owned();
        let name = name.as_str();
        let rule = if name == "path" && parameter["in"] == "path" {
            // A secret path, or (for audit queries) any path a record may name.
            on_secret_path.then(constraints::secret_path)
        } else {
            constraints::parameter(op, name)
        };
        if let Some(rule) = rule {
            parameter["schema"] = rule;
        }
        if on_secret_path && name == "path" {
            parameter["description"] = json!(
                "Secret path: 1 to 16 segments of [A-Za-z0-9._-] joined by `/`, which may be sent as is or as %2F"
            );
        }
    }
    let has_input = !parameters.is_empty() || operation.get("requestBody").is_some();
    let has_body = operation.get("requestBody").is_some();
    if !parameters.is_empty() {
        operation["parameters"] = Value::Array(parameters);
    }
    let responses = &mut operation["responses"];
    let mut add = |status: u16, description: &str| add_error(responses, status, description);
    if op.guard == Guard::Public {
        return;
    }
    if has_input {
        add(
            400,
            "invalid_request, invalid_json, invalid_path, reserved_path, invalid_cursor, invalid_idempotency_key, ...",
        );
    }
    add(
        401,
        "unauthenticated: no token, or an invalid, expired or revoked one",
    );
    if matches!(op.guard, Guard::Permission(..)) {
        add(403, "permission_denied");
    }
    if op.path.contains('{') {
        add(404, "not_found");
    }
    if op.mutates {
        add(409, "idempotency_key_in_flight");
        add(422, "idempotency_key_reused");
    }
    if has_body {
        add(413, "payload_too_large");
    }
    add(429, "rate_limited (see Retry-After)");
    add(
        503,
        "overloaded, storage_unavailable, audit_unavailable (see Retry-After)",
    );
    add(504, "request_timeout");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn doc() -> Value {
        serde_json::from_str(document()).unwrap_or_default()
    }

    #[test]
    fn the_document_has_exactly_the_declared_operations() {
        let doc = doc();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
                documented.insert(format!("{method} {path}"));
            }
        }
        let declared: BTreeSet<String> = OPERATIONS
            .iter()
            .map(|op| format!("{} {}", format!("{:?}", op.verb).to_lowercase(), op.path))
            .collect();
        assert_eq!(documented, declared);
    }

    #[test]
    fn operations_carry_their_declaration() {
        let doc = doc();
        for op in OPERATIONS {
            let operation = doc.pointer(&pointer(op)).cloned().unwrap_or_default();
            assert_eq!(operation["operationId"], op.id);
            let responses = &operation["responses"];
            if op.needs_token() {
                assert_eq!(operation["x-scope"], json!(op.scope()), "{}", op.id);
                for status in ["401", "429", "503", "504"] {
                    let schema = &responses[status]["content"]["application/json"]["schema"];
                    let error = json!({"$ref": ERROR_BODY});
                    assert!(
                        schema == &error
                            || schema["oneOf"]
                                .as_array()
                                .is_some_and(|s| s.contains(&error)),
                        "{} {status}: {schema}",
                        op.id
                    );
                }
            }
            let has_key = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "Idempotency-Key");
            assert_eq!(has_key, op.mutates, "{}", op.id);
        }
        let metrics = doc
            .pointer(&pointer(&ops::METRICS))
            .cloned()
            .unwrap_or_default();
        assert!(
            metrics["responses"]["200"]["content"]
                .as_object()
                .is_some_and(|c| c
                    .keys()
                    .any(|k| k.starts_with("application/openmetrics-text"))),
            "{metrics}"
        );
    }
}
