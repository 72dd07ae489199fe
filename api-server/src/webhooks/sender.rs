//! One attempt at one delivery: the signed POST, and what came of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scaivault_api::events::Event;
use scaivault_api::webhooks::{DELIVERY_TIMEOUT_SECS, DeliveryAttempt, WebhookPayload};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::guard::{AddressPolicy, GuardedResolver};
use super::signing::signature_header;

/// The HTTP client of every webhook: addresses filtered by the guard, no proxy from the
/// environment (it would connect on the webhook's behalf, past the guard), no redirects
/// (a 3xx is an answer, not a place to go), and the delivery timeout.
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

impl Sender {
    pub fn new(policy: Arc<AddressPolicy>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: Arc::clone(&policy),
            }))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(DELIVERY_TIMEOUT_SECS))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("ScaiVault-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Sender { client, policy })
    }

    /// Posts `event` to `url` signed with each of `keys`; never fails, the attempt says
    /// how it went. A 2xx within the timeout is a success.
    pub async fn send(
        &self,
        url: &str,
        message_id: &str,
        event: &Event,
        keys: &[Zeroizing<Vec<u8>>],
    ) -> DeliveryAttempt {
        let at = OffsetDateTime::now_utc();
        let started = Instant::now();
        let attempt = |status_code: Option<u16>, error: Option<String>| DeliveryAttempt {
            at,
            status_code,
            error,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        // Address literals never reach the resolver: check them here, on every attempt.
        if let Err(e) = self.policy.check_url(url) {
            return attempt(None, Some(e));
        }
        let payload = WebhookPayload {
            event_type: event.event_type,
            timestamp: at,
            data: event.clone(),
        };
        let body = match serde_json::to_vec(&payload) {
            Ok(body) => body,
            Err(e) => return attempt(None, Some(format!("encoding the payload: {e}"))),
        };
        let timestamp = at.unix_timestamp();
        let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let signature = signature_header(&key_refs, message_id, timestamp, &body);
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            // The body is not kept: a receiver's answer is not ours to store.
            Ok(response) => attempt(Some(response.status().as_u16()), None),
            Err(e) => attempt(None, Some(describe(&e))),
        }
    }
}

/// Why an attempt got no answer, in a line (with the cause a resolver or TLS gave).
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let what = if e.is_timeout() {
        format!("no answer within {DELIVERY_TIMEOUT_SECS} s")
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut cause = e.source();
    let mut deepest = None;
    while let Some(c) = cause {
        deepest = Some(c.to_string());
        cause = c.source();
    }
    match deepest {
        Some(detail) => format!("{what}: {detail}"),
        None => what,
    }
}
