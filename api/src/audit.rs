//! The audit log: records, queries, verification and export.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// What happened, as it is stored and returned. Field order is the canonical order the
/// hash covers; never reorder, only append optional fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub id: String,
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub request_id: String,
    pub identity_id: Option<String>,
    pub identity_type: Option<String>,
    /// e.g. `secrets.read`, `policies.create`.
    pub action: String,
    pub path: Option<String>,
    /// The scope the request needed, e.g. `secrets:read`.
    pub permission: Option<String>,
    /// `success`, `denied`, `unauthenticated` or `failure`.
    pub outcome: String,
    pub status: u16,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// HMAC-SHA256 of the token accessor used, so an auditor holding an accessor can find
    /// its requests without the log revealing accessors.
    pub accessor_hmac: Option<String>,
    /// Set on the two records of a mutating request: `request`, written before the change
    /// is applied, and `response`, its outcome. Absent on a read (one record per request).
    /// Absent fields are not serialized, so records from before phases hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AuditPhase>,
    /// On a `response` record: the `seq` of its `request` record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_seq: Option<u64>,
    /// Why, when the request said (a forced rotation's `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub prev_hash: String,
    #[serde(default)]
    pub hash: String,
}

/// Which of a mutating request's two records this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditPhase {
    /// Durable before the change is applied; its `outcome` is `unknown`. Queries show it
    /// only while no response record follows it (the server stopped in between).
    Request,
    /// The outcome, linked by `request_seq`.
    Response,
}

impl AuditPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditPhase::Request => "request",
            AuditPhase::Response => "response",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditLogsResponse {
    pub logs: Vec<AuditRecord>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IdentitySummary {
    pub total: u64,
    pub by_action: BTreeMap<String, u64>,
    /// Distinct paths the identity touched successfully.
    pub resources_accessed: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IdentityAuditResponse {
    pub logs: Vec<AuditRecord>,
    pub summary: IdentitySummary,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BrokenRecord {
    pub seq: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    pub verified: bool,
    pub checked: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub first_broken: Option<BrokenRecord>,
    /// Records checked under the keyed chain (HMAC-SHA256 under a key the database does
    /// not hold).
    #[serde(default)]
    pub keyed: u64,
    /// Records checked that were written before keyed chaining (plain SHA-256): anyone who
    /// could write the database then could have re-hashed them undetected.
    #[serde(default)]
    pub legacy_unkeyed: u64,
    /// The newest signed checkpoint, checked against its signature and the stored records.
    #[serde(default)]
    pub checkpoint: Option<AuditCheckpoint>,
}

/// A signed statement of the chain's tail, written every N records / M seconds into the
/// data store (not `audit.db`). Ed25519 over [`AuditCheckpoint::signed_bytes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditCheckpoint {
    /// The newest record covered (0: none yet).
    pub seq: u64,
    /// Its chain hash.
    pub hash: String,
    /// First record of the keyed chain; records before it are legacy unkeyed ones.
    pub keyed_from: u64,
    /// The last record removed by retention (0: none) and its hash: the anchor of what
    /// remains.
    pub purged_seq: u64,
    pub purged_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Hex Ed25519 public key (32 bytes) the signature verifies under.
    pub public_key: String,
    /// Hex Ed25519 signature (64 bytes).
    pub signature: String,
}

impl AuditCheckpoint {
    /// The exact bytes signed: one field per line after a version tag, so an exported
    /// checkpoint can be checked with any Ed25519 implementation.
    pub fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "scaivault-audit-checkpoint/v1\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.seq,
            self.hash,
            self.keyed_from,
            self.purged_seq,
            self.purged_hash,
            self.created_at.unix_timestamp_nanos() / 1_000_000,
        )
        .into_bytes()
    }
}

/// Where an export goes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExportDestination {
    /// Objects `<prefix>part-NNNNN.jsonl` in a bucket; credentials from the secret at
    /// `credentials_path` (fields `access_key_id`, `secret_access_key`, optional
    /// `session_token`, `endpoint`, `region`; without the key fields, the server's own AWS
    /// credential chain: environment, web identity / IRSA, pod identity, instance metadata).
    S3 {
        bucket: String,
        #[serde(default)]
        prefix: String,
        credentials_path: String,
        #[serde(default)]
        region: Option<String>,
        #[serde(default)]
        endpoint: Option<String>,
    },
    /// Files under the server's `--audit-export-dir`.
    File { path: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// RFC 3339 time or `YYYY-MM-DD`.
    pub from: String,
    pub to: String,
    #[serde(default = "default_format")]
    pub format: String,
    pub destination: ExportDestination,
}

fn default_format() -> String {
    "jsonl".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportedObject {
    /// S3 key or file path.
    pub location: String,
    pub records: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportJob {
    pub id: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    pub format: String,
    pub destination: ExportDestination,
    pub records_exported: u64,
    pub objects: Vec<ExportedObject>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    /// Runs started: above 1 when the job runner resumed the job (from the start) after
    /// the server running it stopped.
    #[serde(default)]
    pub attempts: u32,
}
