//! Webhooks: their settings and signing secrets (sealed by the barrier, never returned),
//! what their deliveries look like, and the calls of `/v1/webhooks`. Delivery itself is
//! [`dispatch`]; where a webhook may send is [`guard`]; signatures are [`signing`].

pub mod dispatch;
pub mod guard;
pub mod sender;
pub mod signing;

use std::collections::BTreeSet;
use std::sync::Arc;

use scaivault_api::ErrorCode;
use scaivault_api::auth::IdentityType;
use scaivault_api::events::{Event, EventType};
use scaivault_api::webhooks::{
    CreateWebhookRequest, DeliveriesResponse, Delivery, DeliveryAttempt, DeliveryStatus,
    MAX_WEBHOOK_EVENT_TYPES, MAX_WEBHOOK_NAME_CHARS, MAX_WEBHOOKS, PREVIOUS_SECRET_GRACE_SECS,
    UpdateWebhookRequest, Webhook, WebhookFilters, WebhookTestResponse,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::auth::Caller;
use crate::crypto::barrier::{Barrier, Context};
use crate::error::{Error, Result};
use crate::store::webhooks::{DeliveryQuery, DeliveryRow, WebhookRow};
use crate::store::{Store, StoreError};
use guard::AddressPolicy;
use sender::Sender;

/// What the API edits of a webhook, stored as one JSON document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookSettings {
    pub url: String,
    pub events: BTreeSet<EventType>,
    pub filters: WebhookFilters,
    /// Events are sent only about paths this identity may list.
    pub created_by: String,
    pub created_by_type: IdentityType,
}

/// What a delivery row keeps besides its columns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryBody {
    pub event: Event,
    pub attempt_log: Vec<DeliveryAttempt>,
}

pub fn settings_of(row: &WebhookRow) -> Result<WebhookSettings> {
    serde_json::from_str(&row.settings).map_err(Error::internal)
}

pub fn body_of(row: &DeliveryRow) -> Result<DeliveryBody> {
    serde_json::from_str(&row.body).map_err(Error::internal)
}

fn encode<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(Error::internal)
}

/// The `webhook-id` of a delivery: stable across attempts and restarts.
pub fn delivery_id(webhook_id: &str, seq: u64) -> String {
    format!("msg_{}_{seq}", webhook_id.trim_start_matches("wh_"))
}

/// The event position a delivery id names, when it belongs to `webhook_id`.
fn seq_of(webhook_id: &str, delivery_id: &str) -> Option<u64> {
    let rest = delivery_id.strip_prefix("msg_")?;
    let (hook, seq) = rest.rsplit_once('_')?;
    (hook == webhook_id.trim_start_matches("wh_"))
        .then(|| seq.parse().ok())
        .flatten()
}

/// A taken name is the one constraint a webhook write can break.
fn name_taken(e: StoreError) -> Error {
    match e {
        StoreError::Conflict => Error::new(ErrorCode::Conflict, "a webhook with this name exists"),
        other => other.into(),
    }
}

fn not_found() -> Error {
    Error::new(ErrorCode::NotFound, "no webhook has this id")
}

fn delivery_not_found() -> Error {
    Error::new(
        ErrorCode::NotFound,
        "this webhook has no delivery with this id",
    )
}

pub fn webhook_of(row: &WebhookRow) -> Result<Webhook> {
    let settings = settings_of(row)?;
    Ok(Webhook {
        id: row.id.clone(),
        name: row.name.clone(),
        url: settings.url,
        events: settings.events.into_iter().collect(),
        filters: settings.filters,
        enabled: row.enabled,
        disabled_reason: row.disabled_reason.clone(),
        failing_since: row.failing_since,
        created_by: settings.created_by,
        created_at: row.created_at,
        updated_at: row.updated_at,
        secret_set_at: row.secret_set_at,
    })
}

pub fn delivery_of(row: &DeliveryRow) -> Result<Delivery> {
    let body = body_of(row)?;
    Ok(Delivery {
        id: delivery_id(&row.webhook_id, row.seq),
        webhook_id: row.webhook_id.clone(),
        event: body.event,
        status: DeliveryStatus::parse(&row.status)
            .ok_or_else(|| Error::internal(format!("delivery status {:?}", row.status)))?,
        attempts: row.attempts,
        next_attempt_at: row.next_attempt_at,
        attempt_log: body.attempt_log,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn validate_name(name: &str) -> Result<()> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_WEBHOOK_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "name must be 1 to {MAX_WEBHOOK_NAME_CHARS} characters without control characters"
        )));
    }
    Ok(())
}

fn validate_events(events: &[EventType]) -> Result<BTreeSet<EventType>> {
    if events.is_empty() || events.len() > MAX_WEBHOOK_EVENT_TYPES {
        return Err(Error::invalid(format!(
            "events must name 1 to {MAX_WEBHOOK_EVENT_TYPES} event types"
        )));
    }
    if events.contains(&EventType::WebhookTest) {
        return Err(Error::invalid(
            "events: webhook.test is sent by POST /v1/webhooks/{id}/test only",
        ));
    }
    Ok(events.iter().copied().collect())
}

fn validate_filters(filters: &WebhookFilters) -> Result<()> {
    if let Some(prefix) = &filters.path_prefix {
        scaivault_api::path::validate_prefix(prefix)
            .map_err(|e| Error::new(ErrorCode::InvalidPath, format!("filters.path_prefix: {e}")))?;
    }
    Ok(())
}

pub struct WebhookService {
    store: Arc<dyn Store>,
    barrier: Arc<Barrier>,
    policy: Arc<AddressPolicy>,
    sender: Sender,
}

impl WebhookService {
    pub fn new(
        store: Arc<dyn Store>,
        barrier: Arc<Barrier>,
        policy: AddressPolicy,
    ) -> anyhow::Result<Self> {
        let policy = Arc::new(policy);
        Ok(WebhookService {
            sender: Sender::new(Arc::clone(&policy))?,
            store,
            barrier,
            policy,
        })
    }

    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn check_url(&self, url: &str) -> Result<()> {
        self.policy.check_url(url).map(drop).map_err(Error::invalid)
    }

    fn seal(&self, id: &str, secret: &str) -> Result<Vec<u8>> {
        let key =
            signing::key_of(&SecretString::from(secret.to_owned())).map_err(Error::invalid)?;
        self.barrier
            .seal(Context::WebhookSecret(id), &key)
            .map_err(Error::internal)
    }

    /// The keys a delivery is signed with now: the current one, and the previous one
    /// while its grace lasts.
    pub fn signing_keys(
        &self,
        row: &WebhookRow,
        now: OffsetDateTime,
    ) -> Result<Vec<Zeroizing<Vec<u8>>>> {
        let open = |sealed: &[u8]| {
            self.barrier
                .open(Context::WebhookSecret(&row.id), sealed)
                .map_err(Error::internal)
        };
        let mut keys = vec![open(&row.secret)?];
        if let (Some(previous), Some(until)) = (&row.previous_secret, row.previous_secret_until)
            && now < until
        {
            keys.push(open(previous)?);
        }
        Ok(keys)
    }

    async fn row(&self, id: &str) -> Result<WebhookRow> {
        self.store.webhook(id).await?.ok_or_else(not_found)
    }

    pub async fn create(&self, caller: &Caller, request: CreateWebhookRequest) -> Result<Webhook> {
        validate_name(&request.name)?;
        self.check_url(&request.url)?;
        let events = validate_events(&request.events)?;
        validate_filters(&request.filters)?;
        let id = crate::crypto::token::random_bytes::<12>()
            .map(|b| format!("wh_{}", crate::crypto::token::hex(b.as_ref())))
            .map_err(Error::internal)?;
        let secret = self.seal(&id, &request.secret)?;
        // At the precision the store keeps, so the answer equals a later read.
        let now = crate::store::now_millis();
        let settings = WebhookSettings {
            url: request.url,
            events,
            filters: request.filters,
            created_by: caller.identity_id.clone(),
            created_by_type: caller.identity_type,
        };
        let row = WebhookRow {
            id,
            name: request.name,
            settings: encode(&settings)?,
            enabled: request.enabled.unwrap_or(true),
            disabled_reason: None,
            failing_since: None,
            secret,
            previous_secret: None,
            previous_secret_until: None,
            secret_set_at: now,
            created_at: now,
            updated_at: now,
            // Events from now on.
            cursor: self.store.last_change_seq().await?,
        };
        let created = self
            .store
            .apply(|u| u.webhooks().create(row.clone(), MAX_WEBHOOKS))
            .await
            .map_err(name_taken)?;
        if !created {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("a vault holds at most {MAX_WEBHOOKS} webhooks; delete one first"),
            ));
        }
        webhook_of(&row)
    }

    pub async fn list(&self) -> Result<Vec<Webhook>> {
        self.store
            .webhooks()
            .await?
            .iter()
            .map(webhook_of)
            .collect()
    }

    pub async fn get(&self, id: &str) -> Result<Webhook> {
        webhook_of(&self.row(id).await?)
    }

    /// Whoever changes where a webhook sends or what it selects becomes the identity
    /// whose access bounds it: otherwise a caller who may manage webhooks but not list a
    /// path could point another identity's webhook at itself and read that path's events.
    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        request: UpdateWebhookRequest,
    ) -> Result<Webhook> {
        let mut row = self.row(id).await?;
        let mut settings = settings_of(&row)?;
        if request.url.is_some() || request.events.is_some() || request.filters.is_some() {
            settings.created_by = caller.identity_id.clone();
            settings.created_by_type = caller.identity_type;
        }
        if let Some(name) = request.name {
            validate_name(&name)?;
            row.name = name;
        }
        if let Some(url) = request.url {
            self.check_url(&url)?;
            settings.url = url;
        }
        if let Some(events) = &request.events {
            settings.events = validate_events(events)?;
        }
        if let Some(filters) = request.filters {
            validate_filters(&filters)?;
            settings.filters = filters;
        }
        // At the precision the store keeps, so the answer equals a later read.
        let now = crate::store::now_millis();
        if let Some(secret) = &request.secret {
            let sealed = self.seal(&row.id, secret)?;
            row.previous_secret = Some(std::mem::replace(&mut row.secret, sealed));
            row.previous_secret_until =
                Some(now + time::Duration::seconds(PREVIOUS_SECRET_GRACE_SECS as i64));
            row.secret_set_at = now;
        }
        if let Some(enabled) = request.enabled {
            row.enabled = enabled;
            if enabled {
                row.disabled_reason = None;
            }
        }
        row.settings = encode(&settings)?;
        row.updated_at = now;
        let found = self
            .store
            .apply(|u| u.webhooks().update(row.clone()))
            .await
            .map_err(name_taken)?;
        if !found {
            return Err(not_found());
        }
        self.get(id).await
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        if !self.store.apply(|u| u.webhooks().delete(id)).await? {
            return Err(not_found());
        }
        Ok(())
    }

    pub async fn deliveries(
        &self,
        id: &str,
        status: Option<DeliveryStatus>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<DeliveriesResponse> {
        self.row(id).await?;
        let rows = self
            .store
            .deliveries(DeliveryQuery {
                webhook_id: id.to_owned(),
                status: status.map(|s| s.as_str().to_owned()),
                before,
                limit: limit + 1,
            })
            .await?;
        let more = rows.len() > limit;
        let deliveries = rows
            .iter()
            .take(limit)
            .map(delivery_of)
            .collect::<Result<Vec<_>>>()?;
        Ok(DeliveriesResponse {
            next_before: more
                .then(|| deliveries.last().map(|d| d.event.seq))
                .flatten(),
            deliveries,
        })
    }

    /// Makes the delivery due now: a failed one gets a fresh schedule. It is sent in its
    /// turn (deliveries of one webhook go out in event order).
    pub async fn retry(&self, id: &str, delivery: &str) -> Result<Delivery> {
        self.row(id).await?;
        let seq = seq_of(id, delivery).ok_or_else(delivery_not_found)?;
        let mut row = self
            .store
            .delivery(id, seq)
            .await?
            .ok_or_else(delivery_not_found)?;
        if row.status == DeliveryStatus::Succeeded.as_str() {
            return Err(Error::new(
                ErrorCode::Conflict,
                "this delivery succeeded; nothing to retry",
            ));
        }
        let now = OffsetDateTime::now_utc();
        row.status = DeliveryStatus::Pending.as_str().to_owned();
        row.attempts = 0;
        row.next_attempt_at = Some(now);
        row.updated_at = now;
        if !self
            .store
            .apply(|u| u.webhooks().record(row.clone()))
            .await?
        {
            return Err(delivery_not_found());
        }
        delivery_of(&row)
    }

    /// Sends one signed `webhook.test` now, outside the outbox.
    pub async fn test(&self, id: &str, caller: &Caller) -> Result<WebhookTestResponse> {
        let row = self.row(id).await?;
        let settings = settings_of(&row)?;
        let now = OffsetDateTime::now_utc();
        let event = Event {
            id: "evt_test".to_owned(),
            event_type: EventType::WebhookTest,
            time: now,
            path: None,
            policy_id: None,
            webhook_id: Some(row.id.clone()),
            version: None,
            actor: caller.identity_id.clone(),
            reason: None,
            seq: 0,
        };
        let keys = self.signing_keys(&row, now)?;
        let message_id = format!("msg_test_{}", now.unix_timestamp_nanos());
        let attempt = self
            .sender
            .send(&settings.url, &message_id, &event, &keys)
            .await;
        Ok(WebhookTestResponse {
            delivered: attempt.status_code.is_some_and(|s| (200..300).contains(&s)),
            attempt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_name_their_webhook_and_event() {
        let id = delivery_id("wh_00ff", 42);
        assert_eq!(id, "msg_00ff_42");
        assert_eq!(seq_of("wh_00ff", &id), Some(42));
        assert_eq!(seq_of("wh_abcd", &id), None);
        assert_eq!(seq_of("wh_00ff", "msg_00ff_x"), None);
        assert_eq!(seq_of("wh_00ff", "42"), None);
    }
}
