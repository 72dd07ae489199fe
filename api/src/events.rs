//! Events: what happened to the vault's objects, as webhooks and the event stream carry
//! it. An event names its object, never a value.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Default and largest page of `GET /v1/events`.
pub const DEFAULT_EVENTS_LIMIT: usize = 100;
pub const MAX_EVENTS_LIMIT: usize = 1000;
/// Most types one filter may name.
pub const MAX_EVENT_TYPE_FILTERS: usize = 32;

macro_rules! event_types {
    ($($variant:ident => $name:literal: $doc:literal),* $(,)?) => {
        /// The type of an event. The names are stable: receivers match on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        pub enum EventType {
            $(#[doc = $doc] #[serde(rename = $name)] $variant,)*
        }

        impl EventType {
            pub const ALL: &[EventType] = &[$(EventType::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name),* }
            }

            pub fn parse(name: &str) -> Option<EventType> {
                match name { $($name => Some(EventType::$variant),)* _ => None }
            }
        }
    };
}

event_types!(
    SecretCreated => "secret.created": "The first version of a secret was written.",
    SecretUpdated => "secret.updated": "A new version of an existing secret was written.",
    SecretMetadataUpdated => "secret.metadata_updated": "Tags, description or the rotation schedule changed.",
    SecretDeleted => "secret.deleted": "The secret was soft-deleted.",
    SecretRestored => "secret.restored": "A soft delete was undone.",
    SecretExpired => "secret.expired": "The expiry purge erased the secret.",
    SecretDestroyed => "secret.destroyed": "The secret and every version were erased.",
    RotationDue => "rotation.due": "`next_rotation_at` was reached (once per cycle).",
    RotationOverdue => "rotation.overdue": "The grace after `next_rotation_at` passed without a rotation.",
    RotationRequested => "rotation.requested": "`POST .../rotate` on an `external` or `manual` secret.",
    RotationCompleted => "rotation.completed": "The server wrote a generated version.",
    RotationFailed => "rotation.failed": "The server could not rotate a `generate` secret.",
    PolicyChanged => "policy.changed": "A policy or one of its bindings was created, changed or removed.",
    WebhookExhausted => "webhook.exhausted": "Every attempt of a delivery failed; `reason` names the event.",
    WebhookDisabled => "webhook.disabled": "The server disabled a webhook whose deliveries failed for days.",
    WebhookTest => "webhook.test": "Sent only by `POST /v1/webhooks/{id}/test`; never in the feed.",
);

impl EventType {
    /// The events after which a secret's current value may differ (a new value, or none
    /// any more): what a consumer that keeps values somewhere (the operator's Secrets,
    /// the agent's files) re-reads on. Metadata, rotation reminders and policies leave
    /// the value as it was.
    pub const VALUE_CHANGES: &[EventType] = &[
        EventType::SecretCreated,
        EventType::SecretUpdated,
        EventType::SecretDeleted,
        EventType::SecretRestored,
        EventType::SecretExpired,
        EventType::SecretDestroyed,
        EventType::RotationCompleted,
    ];
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Unique and stable (`evt_<seq>`): a receiver deduplicates on it.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// The secret's path (`secret.*`, `rotation.*`).
    #[serde(default)]
    pub path: Option<String>,
    /// The policy's id (`policy.changed`).
    #[serde(default)]
    pub policy_id: Option<String>,
    /// The webhook's id (`webhook.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    /// The secret's version the event is about, when it has one.
    #[serde(default)]
    pub version: Option<u64>,
    /// Who made the change (`system` for the server's own jobs).
    pub actor: String,
    /// Why, when the change said (a forced rotation's reason, a failure's cause).
    #[serde(default)]
    pub reason: Option<String>,
    /// Position in the change feed: `after=` resumes from here.
    pub seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventsResponse {
    pub events: Vec<Event>,
    /// Pass as `after` for the next page; the position reached even when no event of this
    /// page was visible to the caller.
    pub last_seq: u64,
}
