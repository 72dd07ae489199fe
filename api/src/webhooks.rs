//! Webhooks: events pushed to an HTTPS endpoint, signed the Standard Webhooks way
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "id.timestamp.body">`), delivered from the durable outbox at least once, in order per
//! webhook, with retries on a schedule.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::events::{Event, EventType};

/// Most webhooks one vault holds.
pub const MAX_WEBHOOKS: usize = 100;
pub const MAX_WEBHOOK_NAME_CHARS: usize = 128;
pub const MAX_WEBHOOK_URL_CHARS: usize = 2048;
/// Most event types one webhook subscribes to (every type there is, today).
pub const MAX_WEBHOOK_EVENT_TYPES: usize = 32;
/// A signing secret is `whsec_` and the base64 of this many random bytes.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 24;
pub const MAX_WEBHOOK_SECRET_BYTES: usize = 64;
/// After the secret is replaced, deliveries carry a signature by the previous one too
/// for this long, so a receiver can switch without losing a message.
pub const PREVIOUS_SECRET_GRACE_SECS: u64 = 24 * 3600;
/// An answer within this counts; a 2xx is a success, anything else a failed attempt.
pub const DELIVERY_TIMEOUT_SECS: u64 = 15;
/// When each attempt of a delivery is made, after the previous one failed: immediately,
/// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (each but the first with up to 10% jitter).
/// After the last one the delivery is `failed` and `webhook.exhausted` is raised.
pub const RETRY_SCHEDULE_SECS: &[u64] = &[0, 5, 300, 1800, 7200, 18_000, 36_000, 36_000];
/// An endpoint whose deliveries have all failed for this long is disabled (five days).
pub const DISABLE_AFTER_FAILING_SECS: u64 = 5 * 24 * 3600;
/// Most bytes of a receiver's answer kept with an attempt (for display).
pub const MAX_RESPONSE_EXCERPT_BYTES: usize = 512;
/// Attempts kept per delivery (the newest).
pub const MAX_ATTEMPTS_KEPT: usize = 20;
/// Default and largest page of `GET /v1/webhooks/{id}/deliveries`.
pub const DEFAULT_DELIVERIES_LIMIT: usize = 50;
pub const MAX_DELIVERIES_LIMIT: usize = crate::limits::MAX_LIST_LIMIT;

/// Which events a webhook receives, besides their types.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookFilters {
    /// Only events about secrets under this prefix (`policy.changed` and `webhook.*`
    /// events have no path and are not sent then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Unique, 1..=128 characters.
    pub name: String,
    /// `https://` (or `http://`) URL; private, link-local and loopback addresses are
    /// refused unless the operator allows them.
    pub url: String,
    /// The signing secret, `whsec_` + base64 of 24..=64 random bytes. Stored under the
    /// barrier, never returned.
    pub secret: String,
    /// 1..=32 event types.
    pub events: Vec<EventType>,
    #[serde(default)]
    pub filters: WebhookFilters,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Fields left out stay as they are. A new `secret` replaces the old one, which keeps
/// signing too for 24 h; `enabled: true` re-enables a webhook the server disabled.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventType>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<WebhookFilters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Shown in place of a signing secret by `Debug`.
const REDACTED: &str = "[redacted]";

impl std::fmt::Debug for CreateWebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateWebhookRequest")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &REDACTED)
            .field("events", &self.events)
            .field("filters", &self.filters)
            .field("enabled", &self.enabled)
            .finish()
    }
}

impl std::fmt::Debug for UpdateWebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateWebhookRequest")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .field("events", &self.events)
            .field("filters", &self.filters)
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// A webhook as the API shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    /// `wh_` and 24 hex digits.
    pub id: String,
    pub name: String,
    pub url: String,
    pub events: Vec<EventType>,
    pub filters: WebhookFilters,
    pub enabled: bool,
    /// Why the server disabled it (an endpoint failing for days), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Since when every delivery has failed, while they do.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub failing_since: Option<OffsetDateTime>,
    /// The identity whose access bounds what it receives: its creator, or whoever last
    /// changed its `url`, `events` or `filters`. Only events about paths this identity
    /// may list are queued, and each is checked again when it is sent.
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When the signing secret was last replaced.
    #[serde(with = "time::serde::rfc3339")]
    pub secret_set_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhooksResponse {
    pub webhooks: Vec<Webhook>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or for the deliveries before it).
    Pending,
    Succeeded,
    /// Every attempt of the schedule failed.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "succeeded" => Some(DeliveryStatus::Succeeded),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One try at sending a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAttempt {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why it failed when there was no answer (timeout, refused address, TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// One event on its way to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// The `webhook-id` header: the same on every attempt, so a receiver deduplicates.
    pub id: String,
    pub webhook_id: String,
    pub event: Event,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The newest attempts, oldest first (at most 20).
    pub attempt_log: Vec<DeliveryAttempt>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveriesResponse {
    /// Newest first.
    pub deliveries: Vec<Delivery>,
    /// Pass as `before` for the next (older) page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// What `POST /v1/webhooks/{id}/test` saw: one signed `webhook.test` sent now, outside
/// the outbox (nothing is retried).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookTestResponse {
    pub delivered: bool,
    pub attempt: DeliveryAttempt,
}

/// The body of every delivery, as Standard Webhooks suggests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookPayload {
    /// The event's type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When this payload was made.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub data: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let create = CreateWebhookRequest {
            name: "n".into(),
            url: "https://example.com/".into(),
            secret: "whsec_c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3Qtc2hvdw==".into(),
            events: vec![EventType::RotationDue],
            filters: WebhookFilters::default(),
            enabled: None,
        };
        let update = UpdateWebhookRequest {
            secret: Some(create.secret.clone()),
            ..Default::default()
        };
        for shown in [format!("{create:?}"), format!("{update:?}")] {
            assert!(!shown.contains("c2VjcmV0"), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
    }
}
