//! The OpenAPI document, generated from the handlers' annotations.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{audit, auth, health, policies, secrets, sys};

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
        secrets::restore_secret, secrets::update_metadata, secrets::delete_secret, secrets::list_secrets,
        secrets::batch_read,
        auth::whoami, auth::create_token, auth::list_tokens, auth::revoke_token, auth::kubernetes_login,
        sys::rotate_key, sys::list_keys,
        policies::create_policy, policies::list_policies, policies::get_policy, policies::update_policy,
        policies::delete_policy, policies::add_binding, policies::list_bindings, policies::remove_binding,
        policies::test_policy,
        audit::logs, audit::for_secret, audit::for_identity, audit::verify, audit::hmac, audit::export, audit::export_status, policies::create_identity, policies::list_identities, policies::get_identity,
        health::health, health::ready, health::health_detailed, health::metrics,
    ),
    modifiers(&BearerAuth),
    tags((name = "secrets"), (name = "auth"), (name = "policies"), (name = "identities"), (name = "audit"), (name = "sys"), (name = "health"))
)]
pub struct ApiDoc;

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into()));

pub fn document() -> &'static str {
    &DOCUMENT
}

/// Served without authentication: it describes the API, not the data.
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}
