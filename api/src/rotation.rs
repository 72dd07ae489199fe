//! Rotation: a secret's schedule and how a new value comes about, the due/overdue query,
//! and forced rotation.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Shortest and longest rotation interval.
pub const MIN_ROTATION_INTERVAL_SECS: u64 = 60;
pub const MAX_ROTATION_INTERVAL_SECS: u64 = 3650 * 24 * 3600;
/// Grace after `next_rotation_at` before a secret is overdue, when none is given.
pub const DEFAULT_ROTATION_GRACE_SECS: u64 = 24 * 3600;
/// Generated values: shortest and longest, and the default length.
pub const MIN_GENERATED_LENGTH: u32 = 8;
pub const MAX_GENERATED_LENGTH: u32 = 4096;
pub const DEFAULT_GENERATED_LENGTH: u32 = 32;
/// Fields one generator may regenerate; longest prefix.
pub const MAX_GENERATED_FIELDS: usize = 16;
pub const MAX_GENERATED_PREFIX_CHARS: usize = 32;
/// Longest `reason` of a forced rotation.
pub const MAX_ROTATION_REASON_CHARS: usize = 512;
/// `within_hours` of the due query: default (a week) and largest (ten years).
pub const DEFAULT_DUE_WITHIN_HOURS: u64 = 168;
pub const MAX_DUE_WITHIN_HOURS: u64 = 3650 * 24;

/// How a secret gets its next value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RotationStrategy {
    /// The server writes a new version from the generator, on schedule.
    Generate,
    /// Something outside rotates: the server signals `rotation.due`; a write of a new
    /// version counts as the rotation.
    External,
    /// Never automatic: only `POST .../rotate` or a write; the schedule only reminds.
    Manual,
}

impl RotationStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationStrategy::Generate => "generate",
            RotationStrategy::External => "external",
            RotationStrategy::Manual => "manual",
        }
    }
}

/// The characters a generated value is drawn from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Charset {
    /// `A-Z a-z 0-9`.
    #[default]
    Alphanumeric,
    /// Alphanumeric plus ``!#$%&()*+,-./:;<=>?@[]^_{|}~``.
    Symbols,
    /// Lowercase hex digits of random bytes, `length` of them.
    Hex,
    /// Unpadded base64url of random bytes, `length` characters.
    Base64url,
}

/// How `generate` makes a value: each named field of the secret's data gets a new random
/// string; the other fields are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    /// Fields to regenerate. Default by `secret_type`: `password` -> `["password"]`,
    /// `api_key` -> `["api_key"]`, `token` -> `["token"]`; other types must name them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// Characters of each value, the prefix excluded (8..=4096, default 32).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option"
    )]
    pub length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<Charset>,
    /// Put before each value (an API key's `sk_live_`), at most 32 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl Generator {
    /// Characters of each value, the prefix excluded.
    pub fn length(&self) -> u32 {
        self.length.unwrap_or(DEFAULT_GENERATED_LENGTH)
    }
}

/// A secret's rotation schedule, as written (`metadata.rotation` of a write, or of a
/// metadata update; `null` there removes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationPolicy {
    /// How often: `30d`, `12h`, ... (1m..=3650d).
    pub interval: String,
    pub strategy: RotationStrategy,
    /// For `generate` (and the value a forced rotation writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<Generator>,
    /// How long after `next_rotation_at` the secret becomes overdue (default `24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
    /// Time of day (UTC) rotations are moved to, `HH:MM` or `HH:MMZ`, for intervals of a
    /// day or more: `next_rotation_at` is the first such time at or after the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_at: Option<String>,
}

/// Where a secret stands in its rotation cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RotationState {
    NotConfigured,
    /// Next rotation in the future.
    Scheduled,
    /// `next_rotation_at` has passed; still within the grace.
    Due,
    /// Past `next_rotation_at` and its grace.
    Overdue,
}

/// Rotation state of a secret, in its metadata and list entries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotationStatus {
    pub status: RotationState,
    #[serde(default)]
    pub strategy: Option<RotationStrategy>,
    /// The interval as written (`30d`).
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_rotation_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_rotated_at: Option<OffsetDateTime>,
    pub is_overdue: bool,
    /// The schedule as configured (`null` when none).
    #[serde(default)]
    pub policy: Option<RotationPolicy>,
}

impl RotationStatus {
    pub fn not_configured() -> RotationStatus {
        RotationStatus {
            status: RotationState::NotConfigured,
            strategy: None,
            interval: None,
            next_rotation_at: None,
            last_rotated_at: None,
            is_overdue: false,
            policy: None,
        }
    }
}

/// Body of `POST /v1/secrets/{path}/rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Why (`compromise`, `offboarding`, ...): goes to the audit record and the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What `POST .../rotate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RotateOutcome {
    /// A new version was generated and written (`generate`).
    Rotated,
    /// `rotation.requested` was raised for whoever rotates it (`external`, `manual`).
    Requested,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotateResponse {
    pub path: String,
    pub outcome: RotateOutcome,
    /// The version written (`rotated`), or the current one (`requested`).
    pub version: u64,
    pub rotation: RotationStatus,
}

/// One entry of `GET /v1/rotation/due`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DueSecret {
    pub path: String,
    #[serde(with = "time::serde::rfc3339")]
    pub next_rotation_at: OffsetDateTime,
    pub is_overdue: bool,
    pub strategy: RotationStrategy,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_rotated_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotationDueResponse {
    pub secrets: Vec<DueSecret>,
    pub next_cursor: Option<String>,
}
