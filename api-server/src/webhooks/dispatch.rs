//! Delivery from the outbox, on the replica that runs the jobs.
//!
//! For each enabled webhook a worker sends its oldest pending delivery; only when that
//! one succeeded (or failed for good) does it take the next event from the change feed,
//! queueing it and moving the webhook's cursor in one unit. So deliveries are ordered per
//! webhook and at least once: a crash between the POST and recording its outcome leaves
//! the delivery pending, and the next runner sends it again under the same
//! `webhook-id`. Units are fenced by the runner's term: a replica that lost the lead
//! cannot record anything after its successor started.
//!
//! Retry times are wall-clock times in the delivery rows; workers look every second, so a
//! test that moves the clock (`testkit::clock`) sees the next attempt without waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scaivault_api::events::Event;
use scaivault_api::webhooks::{
    DISABLE_AFTER_FAILING_SECS, DeliveryAttempt, DeliveryStatus, MAX_ATTEMPTS_KEPT,
    RETRY_SCHEDULE_SECS,
};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use super::{DeliveryBody, WebhookService, WebhookSettings, body_of, delivery_id, settings_of};
use crate::audit::AuditWriter;
use crate::audit::record::AuditPhase;
use crate::audit::system::SystemChange;
use crate::auth::Caller;
use crate::authz::Engine;
use crate::error::{Error, Result};
use crate::events::{EventFilter, Subject, event_of, subject_of, visible_to};
use crate::jobs::fence;
use crate::jobs::leadership::Leadership;
use crate::metrics::{AttemptLabels, Metrics};
use crate::store::UnitOfWork;
use crate::store::webhooks::{DeliveryRow, WebhookRow};

/// How often workers look for due retries and a moved clock, besides being woken by
/// new changes.
const POLL: Duration = Duration::from_secs(1);
/// Change records read per storage round trip while looking for a webhook's next event.
const FEED_CHUNK: usize = 256;
/// Events no webhook wanted are stored as passed over at most this often (and every
/// [`FEED_CHUNK`] records).
const STORE_PASSED_EVERY: Duration = Duration::from_secs(1);
/// Deliveries one worker sends before it lets the next round start it again.
const MAX_SENDS_PER_ROUND: usize = 100;

/// Who disables a failing webhook, in the audit log.
pub const WEBHOOKS_ACTOR: &str = "system:webhooks";

pub struct Dispatcher {
    service: Arc<WebhookService>,
    /// `None` when the audit log is disabled (benchmarks).
    audit: Option<AuditWriter>,
    authz: Arc<Engine>,
    leadership: Leadership,
    metrics: Arc<Metrics>,
    /// Webhooks with a worker now: at most one each, so one webhook's deliveries stay in
    /// order and a slow endpoint holds up only itself. The flag asks the worker to look
    /// again before it ends: a change came while it was busy.
    running: Mutex<HashMap<String, bool>>,
    /// Per webhook, how far this replica passed over events it does not want, and what
    /// of that is stored ([`Dispatcher::store_passed`]).
    passed: Mutex<HashMap<String, Passed>>,
}

struct Passed {
    /// Events up to here were looked at.
    at: u64,
    /// The cursor as last stored, and when.
    stored: u64,
    stored_at: Instant,
}

/// Removes a webhook from `running` when its worker ends early (an error, a panic), so
/// the next round starts another; disarmed once [`Dispatcher::again`] removed it.
struct Running<'a> {
    dispatcher: &'a Dispatcher,
    id: String,
    armed: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Ok(mut running) = self.dispatcher.running.lock()
        {
            running.remove(&self.id);
        }
    }
}

impl Dispatcher {
    pub fn new(
        service: Arc<WebhookService>,
        audit: Option<AuditWriter>,
        authz: Arc<Engine>,
        leadership: Leadership,
        metrics: Arc<Metrics>,
    ) -> Self {
        Dispatcher {
            service,
            audit,
            authz,
            leadership,
            metrics,
            running: Mutex::default(),
            passed: Mutex::default(),
        }
    }

    pub fn spawn(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let changes = Arc::new(Notify::new());
        self.service.store().notify_changes(Arc::clone(&changes));
        tokio::spawn(async move {
            let mut webhooks = Vec::new();
            let mut read_at: Option<Instant> = None;
            loop {
                if let Some(term) = self.leadership.term() {
                    // Woken by every commit of the vault: the webhooks are read at most
                    // once per poll, not per write (a new one waits at most that long).
                    if read_at.is_none_or(|at| at.elapsed() >= POLL) {
                        match self.service.store().webhooks().await {
                            Ok(rows) => {
                                webhooks = rows;
                                read_at = Some(Instant::now());
                                self.forget_gone(&webhooks);
                            }
                            Err(e) => tracing::warn!(error = %e, "reading webhooks to deliver to"),
                        }
                    }
                    self.round(&webhooks, term);
                }
                tokio::select! {
                    _ = changes.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.changed() => return,
                }
            }
        })
    }

    /// Starts a worker for every enabled webhook that has none.
    fn round(self: &Arc<Self>, webhooks: &[WebhookRow], term: u64) {
        for row in webhooks.iter().filter(|w| w.enabled).cloned() {
            let started = match self.running.lock() {
                Ok(mut running) => match running.get_mut(&row.id) {
                    Some(again) => {
                        *again = true;
                        false
                    }
                    None => running.insert(row.id.clone(), false).is_none(),
                },
                Err(_) => false,
            };
            if !started {
                continue;
            }
            let dispatcher = Arc::clone(self);
            tokio::spawn(async move {
                let id = row.id.clone();
                let mut running = Running {
                    dispatcher: &dispatcher,
                    id: id.clone(),
                    armed: true,
                };
                let mut row = row;
                loop {
                    if let Err(e) = dispatcher.work(row, term).await {
                        tracing::warn!(error = %e.message, "webhook delivery");
                    }
                    if !dispatcher.again(&id) {
                        running.armed = false;
                        return;
                    }
                    match dispatcher.service.store().webhook(&id).await {
                        Ok(Some(fresh)) if fresh.enabled => row = fresh,
                        _ => return,
                    }
                }
            });
        }
    }

    /// Drops what this replica remembers of webhooks that were deleted.
    fn forget_gone(&self, webhooks: &[WebhookRow]) {
        if let Ok(mut passed) = self.passed.lock() {
            passed.retain(|id, _| webhooks.iter().any(|w| &w.id == id));
        }
    }

    /// Whether a round asked this webhook's worker to look again (the flag is cleared);
    /// if not, the worker is gone from `running` at once, so no later ask is lost.
    fn again(&self, id: &str) -> bool {
        let Ok(mut running) = self.running.lock() else {
            return false;
        };
        match running.get_mut(id) {
            Some(again) if *again => {
                *again = false;
                true
            }
            _ => {
                running.remove(id);
                false
            }
        }
    }

    /// Sends this webhook's deliveries in order while they succeed and are due. A
    /// success is recorded in the unit that takes the next event: one commit per
    /// delivery while the endpoint keeps up.
    async fn work(&self, mut row: WebhookRow, term: u64) -> Result<()> {
        row.cursor = self.passed_to(&row);
        let settings = settings_of(&row)?;
        let owner = owner_of(&settings, &row);
        let store = self.service.store();
        let mut succeeded: Option<UnitOfWork> = None;
        for _ in 0..MAX_SENDS_PER_ROUND {
            let pending = match succeeded {
                // The delivery just sent was the pending one.
                Some(_) => None,
                None => store.next_delivery(&row.id).await?,
            };
            let next = match pending {
                Some(delivery) => delivery,
                None => {
                    let unit = succeeded.take().unwrap_or_default();
                    match self
                        .take_next(&mut row, &settings, &owner, term, unit)
                        .await?
                    {
                        Some(delivery) => delivery,
                        None => return Ok(()),
                    }
                }
            };
            let now = OffsetDateTime::now_utc();
            if next.next_attempt_at.is_some_and(|at| at > now) {
                return Ok(());
            }
            let (sent, unit) = self
                .attempt(&mut row, &settings, next, term, &owner)
                .await?;
            if !row.enabled {
                store.commit(unit).await?;
                return self.disable(&row, term).await;
            }
            if !sent {
                store.commit(unit).await?;
                return Ok(());
            }
            succeeded = Some(unit);
        }
        if let Some(unit) = succeeded {
            store.commit(unit).await?;
        }
        Ok(())
    }

    /// Queues the next event this webhook should get, moving its cursor past what it
    /// should not, in `unit` (committed, whatever it holds); `None` when the feed holds
    /// nothing more for it.
    async fn take_next(
        &self,
        row: &mut WebhookRow,
        settings: &WebhookSettings,
        owner: &Caller,
        term: u64,
        mut unit: UnitOfWork,
    ) -> Result<Option<DeliveryRow>> {
        let store = self.service.store();
        let filter = EventFilter {
            types: Some(settings.events.clone()),
            path_prefix: settings.filters.path_prefix.clone(),
        };
        loop {
            let records = store.changes_after(row.cursor, FEED_CHUNK).await?;
            let Some(last) = records.last().map(|r| r.seq) else {
                if !unit.is_empty() {
                    store.commit(unit).await?;
                }
                return Ok(None);
            };
            let wanted = records
                .iter()
                .filter_map(event_of)
                .find(|event| filter.matches(event) && self.may_get(row, owner, event));
            let now = OffsetDateTime::now_utc();
            let delivery = wanted
                .map(|event| {
                    let seq = event.seq;
                    let body = DeliveryBody {
                        event,
                        attempt_log: Vec::new(),
                    };
                    serde_json::to_string(&body)
                        .map(|body| DeliveryRow {
                            webhook_id: row.id.clone(),
                            seq,
                            status: DeliveryStatus::Pending.as_str().to_owned(),
                            attempts: 0,
                            next_attempt_at: Some(now),
                            body,
                            created_at: now,
                            updated_at: now,
                        })
                        .map_err(Error::internal)
                })
                .transpose()?;
            let cursor = delivery.as_ref().map_or(last, |d| d.seq);
            if delivery.is_none() && unit.is_empty() && !self.store_passed(row, cursor) {
                // Nothing for this webhook: passed over in memory, stored later.
                row.cursor = cursor;
                if records.len() < FEED_CHUNK {
                    return Ok(None);
                }
                continue;
            }
            // A carried unit (a success's record) is fenced already.
            if unit.is_empty() {
                fence(&mut unit, Some(term));
            }
            let taken = unit.webhooks().take(&row.id, cursor, delivery.clone());
            let committed = store.commit(std::mem::take(&mut unit)).await?.take(taken)?;
            if !committed {
                // Deleted meanwhile, or another runner moved on: the next round sees.
                return Ok(None);
            }
            row.cursor = cursor;
            self.stored(&row.id, cursor);
            if delivery.is_some() || records.len() < FEED_CHUNK {
                return Ok(delivery);
            }
        }
    }

    /// Whether passing over events up to `cursor` should be stored now. Events no webhook
    /// wants are passed over in memory ([`Dispatcher::passed`]) and stored at most every
    /// [`STORE_PASSED_EVERY`] or [`FEED_CHUNK`] records: storing each would be a commit
    /// per webhook for every write of the vault. What a restart forgets is filtered again.
    fn store_passed(&self, row: &WebhookRow, cursor: u64) -> bool {
        let Ok(mut passed) = self.passed.lock() else {
            return true;
        };
        let entry = passed.entry(row.id.clone()).or_insert(Passed {
            stored: row.cursor,
            stored_at: Instant::now(),
            at: row.cursor,
        });
        entry.at = cursor;
        cursor.saturating_sub(entry.stored) >= FEED_CHUNK as u64
            || entry.stored_at.elapsed() >= STORE_PASSED_EVERY
    }

    /// The webhook's cursor was stored at `cursor`.
    fn stored(&self, id: &str, cursor: u64) {
        if let Ok(mut passed) = self.passed.lock() {
            passed.insert(
                id.to_owned(),
                Passed {
                    stored: cursor,
                    stored_at: Instant::now(),
                    at: cursor,
                },
            );
        }
    }

    /// Where this replica has passed over the webhook's events to, if past its row.
    fn passed_to(&self, row: &WebhookRow) -> u64 {
        self.passed
            .lock()
            .ok()
            .and_then(|passed| passed.get(&row.id).map(|p| p.at))
            .map_or(row.cursor, |at| at.max(row.cursor))
    }

    /// Whether `owner`'s webhook `row` may be sent `event`: its owner may see it, and it
    /// is not about the webhook itself (a webhook's own failures would only fail again).
    fn may_get(&self, row: &WebhookRow, owner: &Caller, event: &Event) -> bool {
        subject_of(event).is_some_and(|subject| match subject {
            Subject::Webhook(id) if id == row.id => false,
            subject => visible_to(&self.authz, owner, subject),
        })
    }

    /// Sends one attempt; whether the delivery is settled as sent, and the unit that
    /// records it (fenced, not committed). An event the webhook's owner may no longer see
    /// (its access changed, or someone else became the owner since it was queued) is not
    /// sent: the delivery fails at once and the next one goes.
    async fn attempt(
        &self,
        row: &mut WebhookRow,
        settings: &WebhookSettings,
        mut delivery: DeliveryRow,
        term: u64,
        owner: &Caller,
    ) -> Result<(bool, UnitOfWork)> {
        let mut body = body_of(&delivery)?;
        if !self.may_get(row, owner, &body.event) {
            let now = OffsetDateTime::now_utc();
            body.attempt_log.push(DeliveryAttempt {
                at: now,
                status_code: None,
                error: Some("not sent: the webhook's owner may not see this event".to_owned()),
                duration_ms: 0,
            });
            delivery.status = DeliveryStatus::Failed.as_str().to_owned();
            delivery.next_attempt_at = None;
            delivery.updated_at = now;
            delivery.body = serde_json::to_string(&body).map_err(Error::internal)?;
            let mut unit = UnitOfWork::new();
            fence(&mut unit, Some(term));
            unit.webhooks().record(delivery);
            return Ok((true, unit));
        }
        let keys = self.service.signing_keys(row, OffsetDateTime::now_utc())?;
        let message_id = delivery_id(&row.id, delivery.seq);
        let attempt = self
            .service
            .sender()
            .send(&settings.url, &message_id, &body.event, &keys)
            .await;
        let now = OffsetDateTime::now_utc();
        let succeeded = attempt
            .status_code
            .is_some_and(|status| (200..300).contains(&status));
        delivery.attempts += 1;
        delivery.updated_at = now;
        body.attempt_log.push(attempt);
        let excess = body.attempt_log.len().saturating_sub(MAX_ATTEMPTS_KEPT);
        body.attempt_log.drain(..excess);

        let mut unit = UnitOfWork::new();
        fence(&mut unit, Some(term));
        let outcome = |outcome| {
            self.metrics
                .webhook_attempts
                .get_or_create(&AttemptLabels { outcome })
                .inc();
        };
        if succeeded {
            outcome("success");
            let lag = now - body.event.time;
            self.metrics
                .webhook_delivery_lag
                .observe(lag.as_seconds_f64().max(0.0));
            delivery.status = DeliveryStatus::Succeeded.as_str().to_owned();
            delivery.next_attempt_at = None;
            if row.failing_since.take().is_some() {
                unit.webhooks().failing(&row.id, None);
            }
        } else {
            let since = *row.failing_since.get_or_insert(now);
            if since == now {
                unit.webhooks().failing(&row.id, Some(now));
            }
            match RETRY_SCHEDULE_SECS.get(delivery.attempts as usize) {
                Some(&delay) => {
                    outcome("failure");
                    delivery.next_attempt_at = Some(now + jittered(delay));
                }
                None => {
                    outcome("exhausted");
                    delivery.status = DeliveryStatus::Failed.as_str().to_owned();
                    delivery.next_attempt_at = None;
                    tracing::warn!(webhook = %row.id, event = %body.event.id, "webhook delivery exhausted its retries");
                    unit.webhooks().exhausted(
                        &row.id,
                        format!(
                            "{} ({}) failed {} attempts",
                            body.event.id, body.event.event_type, delivery.attempts
                        ),
                    );
                }
            }
            if now - since >= time::Duration::seconds(DISABLE_AFTER_FAILING_SECS as i64) {
                // Disabled in a unit of its own, after this one, with its audit records.
                row.enabled = false;
            }
        }
        delivery.body = serde_json::to_string(&body).map_err(Error::internal)?;
        unit.webhooks().record(delivery);
        Ok((succeeded, unit))
    }
}

impl Dispatcher {
    /// Disables a webhook whose deliveries failed for days, audited like a request: the
    /// server's own change, as `system:webhooks`.
    async fn disable(&self, row: &WebhookRow, term: u64) -> Result<()> {
        let since = row.failing_since.map(|t| t.to_string()).unwrap_or_default();
        let reason = format!(
            "every delivery failed since {since}; re-enable with enabled: true once the endpoint answers"
        );
        tracing::warn!(webhook = %row.id, "disabling a webhook whose deliveries failed for days");
        let change = SystemChange {
            actor: WEBHOOKS_ACTOR,
            action: "webhooks.disable",
            path: &row.id,
            reason: &reason,
        };
        let change = &change;
        let audit = |phase, request_seq, status| async move {
            match &self.audit {
                Some(writer) => change
                    .record(writer, phase, request_seq, status)
                    .await
                    .map(Some)
                    .map_err(Error::internal),
                None => Ok(None),
            }
        };
        let request_seq = audit(AuditPhase::Request, None, 0).await?;
        let mut unit = UnitOfWork::new();
        fence(&mut unit, Some(term));
        unit.webhooks().disable(&row.id, reason.clone());
        let committed = self.service.store().commit(unit).await;
        let status = match &committed {
            Ok(_) => 200,
            Err(_) => 503,
        };
        audit(AuditPhase::Response, request_seq, status).await?;
        committed.map(drop).map_err(Error::from)
    }
}

/// The identity whose access bounds what a webhook receives.
fn owner_of(settings: &WebhookSettings, row: &WebhookRow) -> Caller {
    Caller {
        identity_id: settings.created_by.clone(),
        identity_type: settings.created_by_type,
        accessor: String::new(),
        policies: Vec::new(),
        display_name: None,
        issued_at: row.created_at,
        expires_at: None,
    }
}

/// `secs` plus up to a tenth more, so endpoints that failed together are not retried in
/// one burst.
fn jittered(secs: u64) -> time::Duration {
    let spread = crate::crypto::token::random_bytes::<2>()
        .map(|b| u16::from_be_bytes(*b))
        .unwrap_or(0);
    let extra_ms = secs * 100 * u64::from(spread) / u64::from(u16::MAX);
    time::Duration::milliseconds((secs * 1000 + extra_ms) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_adds_at_most_a_tenth() {
        for secs in [0, 5, 300, 36_000] {
            let delay = jittered(secs);
            assert!(delay >= time::Duration::seconds(secs as i64));
            assert!(delay <= time::Duration::milliseconds((secs * 1100) as i64));
        }
    }
}
