//! Webhooks and their deliveries.
//!
//! The change feed is the outbox: each webhook keeps a `cursor` in it, and its dispatcher
//! takes the next event it should send into a delivery row and moves the cursor past it
//! in one unit, so an event is queued once and never lost. A webhook has at most one
//! `pending` delivery at a time (ordered delivery): the next event is taken only once the
//! previous one succeeded or failed for good. Delivery rows stay as the history that
//! `GET .../deliveries` shows.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Result;
use super::Slot;
use super::unit_of_work::aggregate_writes;

/// A webhook as stored. The settings the API edits (url, events, filters, creator) are
/// one JSON document the service owns; the columns are what the store or the
/// dispatcher acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: String,
    /// Unique.
    pub name: String,
    /// `WebhookSettings` as JSON (see `crate::webhooks`).
    pub settings: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<OffsetDateTime>,
    /// The signing secret, sealed by the barrier under the webhook's id.
    pub secret: Vec<u8>,
    /// The secret it replaced, still signing until `previous_secret_until`.
    pub previous_secret: Option<Vec<u8>>,
    pub previous_secret_until: Option<OffsetDateTime>,
    pub secret_set_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The feed position up to which events were considered for this webhook.
    pub cursor: u64,
}

/// One event on its way to one webhook, keyed by `(webhook_id, seq)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub webhook_id: String,
    /// The event's feed position.
    pub seq: u64,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The event and the attempt log as JSON (see `crate::webhooks`).
    pub body: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Which deliveries `GET .../deliveries` asks for.
#[derive(Debug, Clone)]
pub struct DeliveryQuery {
    pub webhook_id: String,
    pub status: Option<String>,
    /// Only deliveries of events before this feed position.
    pub before: Option<u64>,
    pub limit: usize,
}

#[async_trait]
pub trait WebhookReads: Send + Sync + 'static {
    /// Every webhook, by name.
    async fn webhooks(&self) -> Result<Vec<WebhookRow>>;
    async fn webhook(&self, id: &str) -> Result<Option<WebhookRow>>;
    /// Newest first.
    async fn deliveries(&self, query: DeliveryQuery) -> Result<Vec<DeliveryRow>>;
    async fn delivery(&self, webhook_id: &str, seq: u64) -> Result<Option<DeliveryRow>>;
    /// The webhook's oldest `pending` delivery: the one to send next.
    async fn next_delivery(&self, webhook_id: &str) -> Result<Option<DeliveryRow>>;
}

/// Build them with [`super::UnitOfWork::webhooks`].
#[derive(Debug)]
pub enum WebhookChange {
    /// Refused (`Found(false)`) when `max` webhooks exist; a taken name is a conflict.
    Create { row: WebhookRow, max: usize },
    /// Replaces what the API edits: name, settings, enabled (and its reason), secrets,
    /// `updated_at`; the cursor and `failing_since` only when re-enabled (cleared).
    Update(WebhookRow),
    /// The webhook and its deliveries.
    Delete { id: String },
    /// The dispatcher's state after an attempt: `failing_since` set or cleared.
    Failing {
        id: String,
        since: Option<OffsetDateTime>,
    },
    /// The server gave up on an endpoint: raises `webhook.disabled`.
    Disable { id: String, reason: String },
    /// Queues `delivery` (when there is one) and moves the webhook's cursor to `cursor`.
    Take {
        webhook_id: String,
        cursor: u64,
        delivery: Option<DeliveryRow>,
    },
    /// Stores a delivery's state after an attempt or a retry request.
    Record(DeliveryRow),
    /// Every attempt of a delivery failed: raises `webhook.exhausted` about the webhook,
    /// `reason` naming the event.
    Exhausted { webhook_id: String, reason: String },
}

aggregate_writes!(WebhookWrites, webhooks, Webhook(WebhookChange));

impl WebhookWrites<'_> {
    /// Yields false when `max` webhooks exist already.
    pub fn create(self, row: WebhookRow, max: usize) -> Slot<bool> {
        self.push(WebhookChange::Create { row, max })
    }

    /// Yields false when no webhook has the row's id.
    pub fn update(self, row: WebhookRow) -> Slot<bool> {
        self.push(WebhookChange::Update(row))
    }

    pub fn delete(self, id: &str) -> Slot<bool> {
        self.push(WebhookChange::Delete { id: id.to_owned() })
    }

    pub fn failing(self, id: &str, since: Option<OffsetDateTime>) -> Slot<bool> {
        self.push(WebhookChange::Failing {
            id: id.to_owned(),
            since,
        })
    }

    pub fn disable(self, id: &str, reason: String) -> Slot<bool> {
        self.push(WebhookChange::Disable {
            id: id.to_owned(),
            reason,
        })
    }

    /// Yields false when the webhook is gone.
    pub fn take(self, webhook_id: &str, cursor: u64, delivery: Option<DeliveryRow>) -> Slot<bool> {
        self.push(WebhookChange::Take {
            webhook_id: webhook_id.to_owned(),
            cursor,
            delivery,
        })
    }

    /// Yields false when the delivery is gone (its webhook was deleted).
    pub fn record(self, delivery: DeliveryRow) -> Slot<bool> {
        self.push(WebhookChange::Record(delivery))
    }

    pub fn exhausted(self, webhook_id: &str, reason: String) -> Slot<()> {
        self.push(WebhookChange::Exhausted {
            webhook_id: webhook_id.to_owned(),
            reason,
        })
    }
}
