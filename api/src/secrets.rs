//! Secrets: write, read, metadata, list, batch read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::ItemError;
use crate::rotation::RotationPolicy;
pub use crate::rotation::RotationStatus;

/// What kind of value a secret holds; informs clients and rotation, not storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecretType {
    #[default]
    Generic,
    Password,
    ApiKey,
    Json,
    Database,
    Certificate,
    SshKey,
    Token,
}

impl SecretType {
    pub const ALL: [SecretType; 8] = [
        SecretType::Generic,
        SecretType::Password,
        SecretType::ApiKey,
        SecretType::Json,
        SecretType::Database,
        SecretType::Certificate,
        SecretType::SshKey,
        SecretType::Token,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SecretType::Generic => "generic",
            SecretType::Password => "password",
            SecretType::ApiKey => "api_key",
            SecretType::Json => "json",
            SecretType::Database => "database",
            SecretType::Certificate => "certificate",
            SecretType::SshKey => "ssh_key",
            SecretType::Token => "token",
        }
    }

    pub fn parse(s: &str) -> Option<SecretType> {
        SecretType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for SecretType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tags and description of a secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretMetadataInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The rotation schedule; `null` removes it, absent keeps it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::nullable::present"
    )]
    pub rotation: Option<Option<RotationPolicy>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteOptions {
    /// Expire this version after a duration like `30m`, `1h`, `7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    /// Check-and-set: `0` = only create; `N` = only if the current version is `N`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option"
    )]
    pub cas: Option<u64>,
    /// Versions to keep (1..=100, default 10); older ones are erased.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option"
    )]
    pub max_versions: Option<u32>,
}

/// Body of `PUT`/`POST /v1/secrets/{path}`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteSecretRequest {
    /// The value: a JSON object. Never logged.
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub secret_type: Option<SecretType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SecretMetadataInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<WriteOptions>,
}

/// Debug shows the shape of a write, never its value.
impl std::fmt::Debug for WriteSecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteSecretRequest")
            .field("data", &RedactedKeys(&self.data))
            .field("secret_type", &self.secret_type)
            .field("metadata", &self.metadata)
            .field("options", &self.options)
            .finish()
    }
}

/// Prints the keys of a secret's data and hides every value.
pub struct RedactedKeys<'a>(pub &'a serde_json::Map<String, serde_json::Value>);

impl std::fmt::Debug for RedactedKeys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WriteSecretResponse {
    pub path: String,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SecretMetadataView {
    pub tags: Vec<String>,
    pub description: Option<String>,
}

/// `GET /v1/secrets/{path}`: one version with its value.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretResponse {
    pub path: String,
    pub version: u64,
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
    pub secret_type: SecretType,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub metadata: SecretMetadataView,
}

impl std::fmt::Debug for SecretResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretResponse")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("data", &RedactedKeys(&self.data))
            .field("secret_type", &self.secret_type)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionsResponse {
    pub versions: Vec<VersionInfo>,
}

/// `GET /v1/secrets/{path}/metadata`: everything but the value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretMetadataResponse {
    pub path: String,
    pub secret_type: SecretType,
    pub current_version: u64,
    pub version_count: u64,
    pub versions: Vec<VersionInfo>,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub max_versions: u32,
    pub rotation: RotationStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub deleted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub access_count_30d: u64,
}

/// Body of `PATCH /v1/secrets/{path}/metadata`: either the fields or `{"metadata": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum UpdateMetadataRequest {
    Wrapped { metadata: SecretMetadataInput },
    Flat(SecretMetadataInput),
}

impl UpdateMetadataRequest {
    pub fn into_input(self) -> SecretMetadataInput {
        match self {
            UpdateMetadataRequest::Wrapped { metadata } => metadata,
            UpdateMetadataRequest::Flat(input) => input,
        }
    }
}

/// One entry of a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretListItem {
    pub path: String,
    pub secret_type: SecretType,
    pub tags: Vec<String>,
    pub current_version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub access_count_30d: u64,
    /// The fields below are filled with `include_metadata=true` and `null` otherwise.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub deleted_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub version_count: Option<u64>,
    pub rotation: RotationStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListSecretsResponse {
    pub secrets: Vec<SecretListItem>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchReadRequest {
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchReadResponse {
    pub secrets: BTreeMap<String, SecretResponse>,
    pub errors: BTreeMap<String, ItemError>,
}
