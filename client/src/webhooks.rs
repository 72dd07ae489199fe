//! `/v1/webhooks`: endpoints that receive events, their deliveries, and the receiving
//! side's check of a delivery's signature ([`verify_webhook_signature`], Standard
//! Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use reqwest::Method;
use scaivault_api::ErrorCode;
use scaivault_api::events::EventType;
use scaivault_api::path::validate_prefix;
use scaivault_api::webhooks::{
    DeliveriesResponse, Delivery, DeliveryStatus, MAX_DELIVERIES_LIMIT, MAX_WEBHOOK_SECRET_BYTES,
    MIN_WEBHOOK_SECRET_BYTES, WEBHOOK_SECRET_PREFIX, Webhook, WebhookFilters, WebhookTestResponse,
    WebhooksResponse,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::policies::check_id;
use crate::retry::Retry;

/// A webhook to create. The secret is a [`SecretString`], so `Debug` never shows it.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Unique, 1..=128 characters.
    pub name: String,
    /// `https://` (or `http://`) URL the server may reach (no private addresses unless
    /// the operator allows their network).
    pub url: String,
    /// `whsec_` + base64 of 24..=64 random bytes ([`generate_webhook_secret`] makes one).
    pub secret: SecretString,
    /// 1..=32 event types.
    pub events: Vec<EventType>,
    pub filters: WebhookFilters,
    /// Server default: enabled.
    pub enabled: Option<bool>,
}

/// A change to a webhook; `None` leaves a field as it is. A new secret signs from now
/// on and the old one keeps signing too for 24 h; `enabled: Some(true)` re-enables a
/// webhook the server disabled.
#[derive(Debug, Clone, Default)]
pub struct WebhookUpdate {
    pub name: Option<String>,
    pub url: Option<String>,
    pub secret: Option<SecretString>,
    pub events: Option<Vec<EventType>>,
    pub filters: Option<WebhookFilters>,
    pub enabled: Option<bool>,
}

impl WebhookUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.url.is_none()
            && self.secret.is_none()
            && self.events.is_none()
            && self.filters.is_none()
            && self.enabled.is_none()
    }
}

/// The wire body of a create (`CreateWebhookRequest`), borrowing the secret only while
/// it is serialized.
#[derive(Serialize)]
struct CreateBody<'a> {
    name: &'a str,
    url: &'a str,
    secret: &'a str,
    events: &'a [EventType],
    filters: &'a WebhookFilters,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
}

/// The wire body of an update (`UpdateWebhookRequest`).
#[derive(Serialize)]
struct UpdateBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<&'a [EventType]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filters: Option<&'a WebhookFilters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
}

/// Query of one page of [`Client::webhook_deliveries`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveriesOptions {
    /// Only deliveries in this state.
    pub status: Option<DeliveryStatus>,
    /// Only deliveries of events before this feed position (`next_before` of the
    /// previous page).
    pub before: Option<u64>,
    /// Page size, 1..=1000 (server default 50).
    pub limit: Option<u32>,
}

impl DeliveriesOptions {
    fn query(&self) -> Result<Vec<(&'static str, String)>> {
        let mut query = Vec::new();
        if let Some(status) = self.status {
            query.push(("status", status.as_str().to_owned()));
        }
        if let Some(before) = self.before {
            query.push(("before", before.to_string()));
        }
        if let Some(limit) = self.limit {
            if !(1..=MAX_DELIVERIES_LIMIT).contains(&(limit as usize)) {
                return Err(Error::invalid(
                    ErrorCode::InvalidRequest,
                    format!("limit must be between 1 and {MAX_DELIVERIES_LIMIT}"),
                ));
            }
            query.push(("limit", limit.to_string()));
        }
        Ok(query)
    }
}

/// Page-by-page reading of a webhook's deliveries, newest first; see
/// [`Client::webhook_delivery_pages`].
#[derive(Debug)]
pub struct DeliveryPages<'c> {
    client: &'c Client,
    webhook_id: String,
    options: DeliveriesOptions,
    done: bool,
}

impl DeliveryPages<'_> {
    /// The next (older) page, or `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Delivery>>> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .client
            .webhook_deliveries(&self.webhook_id, &self.options)
            .await?;
        match page.next_before {
            // A server handing back the same position would make us loop forever.
            Some(next) if self.options.before == Some(next) => {
                return Err(Error::Decode {
                    what: "webhook_deliveries",
                    detail: "the server returned the same next_before twice".to_owned(),
                });
            }
            Some(next) => self.options.before = Some(next),
            None => self.done = true,
        }
        Ok(Some(page.deliveries))
    }
}

impl Client {
    /// Creates a webhook (`201`); it receives the chosen events from now on, about paths
    /// its creator may list. The answer never holds the secret. `409 conflict` when the
    /// name is taken or 100 webhooks exist. The secret's form is checked before sending.
    pub async fn create_webhook(&self, webhook: &NewWebhook) -> Result<Webhook> {
        check_secret(&webhook.secret)?;
        check_filters(&webhook.filters)?;
        let body = CreateBody {
            name: &webhook.name,
            url: &webhook.url,
            secret: webhook.secret.expose_secret(),
            events: &webhook.events,
            filters: &webhook.filters,
            enabled: webhook.enabled,
        };
        let call = self
            .call(
                Method::POST,
                self.url(["webhooks"])?,
                Retry::Keyed,
                "create_webhook",
            )
            .body(&body)?;
        self.json(call).await
    }

    /// Every webhook, by name (at most 100 exist, so there is no paging).
    pub async fn list_webhooks(&self) -> Result<WebhooksResponse> {
        let call = self.call(
            Method::GET,
            self.url(["webhooks"])?,
            Retry::Safe,
            "list_webhooks",
        );
        self.json(call).await
    }

    /// One webhook (`wh_...`).
    pub async fn webhook(&self, id: &str) -> Result<Webhook> {
        let url = self.url(["webhooks", check_id("webhook id", id)?])?;
        self.json(self.call(Method::GET, url, Retry::Safe, "webhook"))
            .await
    }

    /// Changes what `update` names (`PATCH`), leaving the rest.
    pub async fn update_webhook(&self, id: &str, update: &WebhookUpdate) -> Result<Webhook> {
        if let Some(secret) = &update.secret {
            check_secret(secret)?;
        }
        if let Some(filters) = &update.filters {
            check_filters(filters)?;
        }
        let body = UpdateBody {
            name: update.name.as_deref(),
            url: update.url.as_deref(),
            secret: update.secret.as_ref().map(|s| s.expose_secret()),
            events: update.events.as_deref(),
            filters: update.filters.as_ref(),
            enabled: update.enabled,
        };
        let url = self.url(["webhooks", check_id("webhook id", id)?])?;
        let call = self
            .call(Method::PATCH, url, Retry::Keyed, "update_webhook")
            .body(&body)?;
        self.json(call).await
    }

    /// Deletes a webhook and its delivery history; what was not delivered is not sent.
    pub async fn delete_webhook(&self, id: &str) -> Result<()> {
        let url = self.url(["webhooks", check_id("webhook id", id)?])?;
        self.no_content(self.call(Method::DELETE, url, Retry::Keyed, "delete_webhook"))
            .await
    }

    /// Sends one signed `webhook.test` event now and reports what the endpoint answered
    /// (`delivered` is a 2xx). Nothing is retried by the server. Retried by the client
    /// with its `Idempotency-Key`, so a lost answer does not send a second test.
    pub async fn test_webhook(&self, id: &str) -> Result<WebhookTestResponse> {
        let url = self.url(["webhooks", check_id("webhook id", id)?, "test"])?;
        self.json(self.call(Method::POST, url, Retry::Keyed, "test_webhook"))
            .await
    }

    /// One page of a webhook's deliveries, newest first, each with its attempts. Pass
    /// `next_before` as `before` for the next page, or use [`Client::webhook_delivery_pages`].
    pub async fn webhook_deliveries(
        &self,
        id: &str,
        options: &DeliveriesOptions,
    ) -> Result<DeliveriesResponse> {
        let query = options.query()?;
        let url = self.url(["webhooks", check_id("webhook id", id)?, "deliveries"])?;
        let call = self
            .call(Method::GET, url, Retry::Safe, "webhook_deliveries")
            .query(&query);
        self.json(call).await
    }

    /// Iterates the pages of deliveries from `options.before` back to the oldest kept.
    pub fn webhook_delivery_pages(
        &self,
        id: &str,
        options: &DeliveriesOptions,
    ) -> DeliveryPages<'_> {
        DeliveryPages {
            client: self,
            webhook_id: id.to_owned(),
            options: options.clone(),
            done: false,
        }
    }

    /// Every delivery matching `options`, newest first, following `next_before`.
    pub async fn webhook_deliveries_all(
        &self,
        id: &str,
        options: &DeliveriesOptions,
    ) -> Result<Vec<Delivery>> {
        let mut options = options.clone();
        if options.limit.is_none() {
            options.limit = u32::try_from(MAX_DELIVERIES_LIMIT).ok();
        }
        let mut pages = self.webhook_delivery_pages(id, &options);
        let mut all = Vec::new();
        while let Some(page) = pages.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }

    /// Makes a pending or failed delivery (`msg_...`) due now (a failed one gets a fresh
    /// schedule); it goes out in its turn, after the webhook's older deliveries.
    /// `409 conflict` when it already succeeded.
    pub async fn retry_delivery(&self, id: &str, delivery_id: &str) -> Result<Delivery> {
        let url = self.url([
            "webhooks",
            check_id("webhook id", id)?,
            "deliveries",
            check_id("delivery id", delivery_id)?,
            "retry",
        ])?;
        self.json(self.call(Method::POST, url, Retry::Keyed, "retry_delivery"))
            .await
    }
}

fn check_filters(filters: &WebhookFilters) -> Result<()> {
    if let Some(prefix) = &filters.path_prefix {
        validate_prefix(prefix).map_err(|e| {
            Error::invalid(ErrorCode::InvalidPath, format!("filters.path_prefix: {e}"))
        })?;
    }
    Ok(())
}

/// The secret's form (`whsec_` + base64 of 24..=64 bytes), checked before sending so a
/// typo fails here; the message never quotes it.
fn check_secret(secret: &SecretString) -> Result<()> {
    key_of(secret.expose_secret())
        .map(drop)
        .map_err(|e| Error::invalid(ErrorCode::InvalidRequest, e.to_string()))
}

/// Bytes of random key in the secrets [`generate_webhook_secret`] makes.
pub const GENERATED_SECRET_BYTES: usize = 32;

/// A fresh signing secret: `whsec_` + base64 of 32 random bytes from the system's
/// generator. Give it to the webhook and to the receiver; the server never shows it.
pub fn generate_webhook_secret() -> Result<SecretString> {
    let mut bytes = Zeroizing::new([0u8; GENERATED_SECRET_BYTES]);
    aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| {
        Error::invalid(
            ErrorCode::Internal,
            "the system's random number generator failed",
        )
    })?;
    let encoded = Zeroizing::new(STANDARD.encode(bytes.as_ref()));
    Ok(SecretString::from(format!(
        "{WEBHOOK_SECRET_PREFIX}{}",
        encoded.as_str()
    )))
}

/// How far a delivery's `webhook-timestamp` may be from the receiver's clock: older
/// deliveries are refused as possible replays (Standard Webhooks' five minutes).
pub const WEBHOOK_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The three headers a delivery is signed with, as received.
#[derive(Debug, Clone, Copy)]
pub struct WebhookHeaders<'a> {
    /// `webhook-id`: `msg_...`, the same on every attempt (deduplicate on it).
    pub id: &'a str,
    /// `webhook-timestamp`: Unix seconds when the attempt was signed.
    pub timestamp: &'a str,
    /// `webhook-signature`: space-separated `v1,<base64>` entries (two while a
    /// replaced secret still signs).
    pub signature: &'a str,
}

/// Why a delivery is not to be trusted. No variant carries the secret or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The receiver's secret is not `whsec_` + base64 of 24..=64 bytes.
    #[error("the webhook secret is malformed: {0}")]
    InvalidSecret(&'static str),
    /// `webhook-id` is empty.
    #[error("the webhook-id header is missing")]
    MissingId,
    /// `webhook-timestamp` is not Unix seconds.
    #[error("the webhook-timestamp header is not a Unix time in seconds")]
    InvalidTimestamp,
    /// The timestamp is further from now than the tolerance (a replay, or a clock off).
    #[error("the webhook-timestamp is {skew_secs} s from now, beyond the tolerance")]
    TimestampOutOfTolerance { skew_secs: u64 },
    /// `webhook-signature` holds no `v1,` entry.
    #[error("the webhook-signature header holds no v1 signature")]
    NoSignature,
    /// No `v1` signature matches: wrong secret, or the message was changed.
    #[error("no webhook signature matches the payload")]
    SignatureMismatch,
}

/// The key bytes of a `whsec_` secret.
fn key_of(secret: &str) -> std::result::Result<Zeroizing<Vec<u8>>, VerifyError> {
    let encoded = secret
        .strip_prefix(WEBHOOK_SECRET_PREFIX)
        .ok_or(VerifyError::InvalidSecret("it must start with whsec_"))?;
    let key = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .map(Zeroizing::new)
        .map_err(|_| VerifyError::InvalidSecret("the part after whsec_ must be base64"))?;
    if !(MIN_WEBHOOK_SECRET_BYTES..=MAX_WEBHOOK_SECRET_BYTES).contains(&key.len()) {
        return Err(VerifyError::InvalidSecret(
            "it must encode 24 to 64 random bytes",
        ));
    }
    Ok(key)
}

/// Checks a delivery as a receiver gets it: the timestamp within `tolerance` of `now`
/// (use [`WEBHOOK_TOLERANCE`]), and one `v1` signature of `{id}.{timestamp}.{body}`
/// under `secret` (compared in constant time). `body` is the raw request body, before
/// any JSON parsing.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use scaivault_client::{WEBHOOK_TOLERANCE, WebhookHeaders, verify_webhook_signature};
///
/// // In a handler: the three headers and the raw body of the POST.
/// let headers = WebhookHeaders {
///     id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
///     timestamp: "1614265330",
///     signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
/// };
/// let body = br#"{"test": 2432232314}"#;
/// let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// let then = UNIX_EPOCH + Duration::from_secs(1_614_265_330); // SystemTime::now() in real use
/// assert!(verify_webhook_signature(secret, &headers, body, then, WEBHOOK_TOLERANCE).is_ok());
/// // A replay a day later is refused, however well signed.
/// let later = then + Duration::from_secs(24 * 3600);
/// assert!(verify_webhook_signature(secret, &headers, body, later, WEBHOOK_TOLERANCE).is_err());
/// # let _ = SystemTime::now();
/// ```
pub fn verify_webhook_signature(
    secret: &str,
    headers: &WebhookHeaders<'_>,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> std::result::Result<(), VerifyError> {
    let key = key_of(secret)?;
    if headers.id.is_empty() {
        return Err(VerifyError::MissingId);
    }
    let timestamp = headers.timestamp.trim();
    let signed_at: i64 = timestamp
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    let now_secs = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let skew_secs = now_secs.abs_diff(signed_at);
    if skew_secs > tolerance.as_secs() {
        return Err(VerifyError::TimestampOutOfTolerance { skew_secs });
    }
    let mut message = Vec::with_capacity(headers.id.len() + timestamp.len() + body.len() + 2);
    message.extend_from_slice(headers.id.as_bytes());
    message.push(b'.');
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let mut any = false;
    for entry in headers.signature.split_whitespace() {
        let Some(encoded) = entry.strip_prefix("v1,") else {
            // Other schemes (v1a, ...) are not ours to check.
            continue;
        };
        any = true;
        let Ok(tag) = STANDARD.decode(encoded) else {
            continue;
        };
        if hmac::verify(&key, &message, &tag).is_ok() {
            return Ok(());
        }
    }
    Err(if any {
        VerifyError::SignatureMismatch
    } else {
        VerifyError::NoSignature
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's example (standard-webhooks/standard-webhooks,
    /// spec/standard-webhooks.md), checked independently with Python:
    /// `base64.b64encode(hmac.new(base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    /// b'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}', hashlib.sha256).digest())`
    /// is `g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=`.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn verify(secret: &str, signature: &str, body: &[u8], now: u64) -> Result<(), VerifyError> {
        let headers = WebhookHeaders {
            id: ID,
            timestamp: TIMESTAMP,
            signature,
        };
        verify_webhook_signature(secret, &headers, body, at(now), WEBHOOK_TOLERANCE)
    }

    const SIGNED_AT: u64 = 1_614_265_330;

    #[test]
    fn the_specification_example_verifies() {
        assert_eq!(verify(SECRET, SIGNATURE, BODY, SIGNED_AT), Ok(()));
        // Within the tolerance either way.
        assert_eq!(verify(SECRET, SIGNATURE, BODY, SIGNED_AT + 300), Ok(()));
        assert_eq!(verify(SECRET, SIGNATURE, BODY, SIGNED_AT - 300), Ok(()));
    }

    #[test]
    fn any_one_of_several_signatures_will_do() {
        // A rotated secret: the old and the new one sign, in either order; other schemes
        // are skipped.
        let other = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        for header in [
            format!("{other} {SIGNATURE}"),
            format!("{SIGNATURE} {other}"),
            format!("v1a,xyz {SIGNATURE}"),
        ] {
            assert_eq!(verify(SECRET, &header, BODY, SIGNED_AT), Ok(()), "{header}");
        }
    }

    #[test]
    fn tampering_and_wrong_secrets_are_caught() {
        let table: &[(&str, &str, &[u8], u64, VerifyError)] = &[
            (
                SECRET,
                SIGNATURE,
                br#"{"test": 2432232315}"#,
                SIGNED_AT,
                VerifyError::SignatureMismatch,
            ),
            (
                "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                SIGNATURE,
                BODY,
                SIGNED_AT,
                VerifyError::SignatureMismatch,
            ),
            (
                SECRET,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=",
                BODY,
                SIGNED_AT,
                VerifyError::SignatureMismatch,
            ),
            (
                SECRET,
                "v1,not base64!",
                BODY,
                SIGNED_AT,
                VerifyError::SignatureMismatch,
            ),
            (SECRET, "", BODY, SIGNED_AT, VerifyError::NoSignature),
            (
                SECRET,
                "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                BODY,
                SIGNED_AT,
                VerifyError::NoSignature,
            ),
            (
                SECRET,
                SIGNATURE,
                BODY,
                SIGNED_AT + 301,
                VerifyError::TimestampOutOfTolerance { skew_secs: 301 },
            ),
            (
                SECRET,
                SIGNATURE,
                BODY,
                SIGNED_AT - 3600,
                VerifyError::TimestampOutOfTolerance { skew_secs: 3600 },
            ),
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                SIGNATURE,
                BODY,
                SIGNED_AT,
                VerifyError::InvalidSecret("it must start with whsec_"),
            ),
            (
                "whsec_c2hvcnQ=",
                SIGNATURE,
                BODY,
                SIGNED_AT,
                VerifyError::InvalidSecret("it must encode 24 to 64 random bytes"),
            ),
        ];
        for (secret, signature, body, now, expected) in table {
            assert_eq!(
                verify(secret, signature, body, *now).err().as_ref(),
                Some(expected),
                "{signature} at {now}"
            );
        }
        // Flipping any one byte of the body breaks it.
        for i in 0..BODY.len() {
            let mut body = BODY.to_vec();
            body[i] ^= 1;
            assert_eq!(
                verify(SECRET, SIGNATURE, &body, SIGNED_AT),
                Err(VerifyError::SignatureMismatch)
            );
        }
    }

    #[test]
    fn headers_are_checked() {
        let check = |id: &str, timestamp: &str| {
            verify_webhook_signature(
                SECRET,
                &WebhookHeaders {
                    id,
                    timestamp,
                    signature: SIGNATURE,
                },
                BODY,
                at(SIGNED_AT),
                WEBHOOK_TOLERANCE,
            )
        };
        assert_eq!(check("", TIMESTAMP), Err(VerifyError::MissingId));
        assert_eq!(check(ID, "soon"), Err(VerifyError::InvalidTimestamp));
        assert_eq!(check(ID, ""), Err(VerifyError::InvalidTimestamp));
        // The id is part of what is signed.
        assert_eq!(
            check("msg_other", TIMESTAMP),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn errors_never_quote_the_secret() {
        let secret = "whsec_c2hvcnQ=";
        let text = verify(secret, SIGNATURE, BODY, SIGNED_AT)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!text.is_empty() && !text.contains("c2hvcnQ"), "{text}");
    }

    #[test]
    fn generated_secrets_are_valid_and_fresh() {
        let (Ok(a), Ok(b)) = (generate_webhook_secret(), generate_webhook_secret()) else {
            unreachable!("the system generator works")
        };
        assert!(a.expose_secret().starts_with(WEBHOOK_SECRET_PREFIX));
        assert_eq!(
            key_of(a.expose_secret()).map(|k| k.len()),
            Ok(GENERATED_SECRET_BYTES)
        );
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(!format!("{a:?}").contains(a.expose_secret()));
    }

    #[test]
    fn requests_never_show_the_secret_in_debug_and_send_it_on_the_wire() {
        let webhook = NewWebhook {
            name: "prod-rotations".into(),
            url: "https://ops.acme.example/hook".into(),
            secret: SecretString::from(SECRET.to_owned()),
            events: vec![EventType::RotationDue],
            filters: WebhookFilters {
                path_prefix: Some("environments/production/".into()),
            },
            enabled: None,
        };
        let update = WebhookUpdate {
            secret: Some(SecretString::from(SECRET.to_owned())),
            ..WebhookUpdate::default()
        };
        let text = format!("{webhook:?} {update:?}");
        assert!(!text.contains("MfKQ9r8"), "{text}");
        let body = CreateBody {
            name: &webhook.name,
            url: &webhook.url,
            secret: webhook.secret.expose_secret(),
            events: &webhook.events,
            filters: &webhook.filters,
            enabled: webhook.enabled,
        };
        assert_eq!(
            serde_json::to_value(&body).ok(),
            Some(serde_json::json!({
                "name": "prod-rotations",
                "url": "https://ops.acme.example/hook",
                "secret": SECRET,
                "events": ["rotation.due"],
                "filters": {"path_prefix": "environments/production/"},
            }))
        );
        let only_enable = UpdateBody {
            name: None,
            url: None,
            secret: None,
            events: None,
            filters: None,
            enabled: Some(true),
        };
        assert_eq!(
            serde_json::to_value(&only_enable).ok(),
            Some(serde_json::json!({"enabled": true}))
        );
        assert!(WebhookUpdate::default().is_empty() && !update.is_empty());
    }

    #[test]
    fn delivery_options_become_a_query() {
        let options = DeliveriesOptions {
            status: Some(DeliveryStatus::Failed),
            before: Some(42),
            limit: Some(1000),
        };
        assert_eq!(
            options.query().ok(),
            Some(vec![
                ("status", "failed".to_owned()),
                ("before", "42".to_owned()),
                ("limit", "1000".to_owned()),
            ])
        );
        assert_eq!(DeliveriesOptions::default().query().ok(), Some(vec![]));
        for limit in [0, MAX_DELIVERIES_LIMIT as u32 + 1] {
            let bad = DeliveriesOptions {
                limit: Some(limit),
                ..DeliveriesOptions::default()
            };
            assert!(bad.query().is_err(), "{limit}");
        }
    }

    #[tokio::test]
    async fn bad_input_is_refused_before_sending() {
        // Nothing listens on port 1: reaching the network would be a transport error.
        let Ok(c) = Client::builder("http://127.0.0.1:1").build() else {
            unreachable!("valid address")
        };
        let webhook = |secret: &str, prefix: Option<&str>| NewWebhook {
            name: "n".into(),
            url: "https://ops.acme.example/".into(),
            secret: SecretString::from(secret.to_owned()),
            events: vec![EventType::RotationDue],
            filters: WebhookFilters {
                path_prefix: prefix.map(str::to_owned),
            },
            enabled: None,
        };
        let err = c.create_webhook(&webhook("whsec_...", None)).await.err();
        assert!(matches!(err, Some(Error::InvalidInput { .. })), "{err:?}");
        assert!(!format!("{err:?}").contains("whsec_..."));
        let err = c.create_webhook(&webhook(SECRET, Some("a//"))).await.err();
        assert_eq!(err.and_then(|e| e.code()), Some(ErrorCode::InvalidPath));
        let err = c.webhook("wh_../x").await.err();
        assert!(matches!(err, Some(Error::InvalidInput { .. })), "{err:?}");
        let err = c.retry_delivery("wh_1", "msg/1").await.err();
        assert!(matches!(err, Some(Error::InvalidInput { .. })), "{err:?}");
        let err = c.create_webhook(&webhook(SECRET, None)).await.err();
        assert!(matches!(err, Some(Error::Transport(_))), "{err:?}");
    }
}
