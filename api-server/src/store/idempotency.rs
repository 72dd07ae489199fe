//! Idempotency keys: one entry per (caller identity, key), claimed before a keyed
//! request runs and completed with its answer, so a repeat is applied once.
//!
//! The answer is kept in a transaction of its own, after the request's change: the answer
//! is the HTTP response, known only once the change committed. So that a crash between
//! the two cannot let a retry apply the change again, the request runs [`while_held`]:
//! every unit of work it commits also marks its key applied, in the same transaction.

use std::future::Future;

use time::OffsetDateTime;

use super::Slot;
use super::unit_of_work::Change;
use super::unit_of_work::aggregate_writes;

/// Who used an idempotency key and for which request: the caller's identity scopes the
/// key (one caller's key never replays another's answer), the fingerprint names the
/// request (SHA-256 over method, path with query, and body).
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub scope: String,
    pub key: String,
    pub fingerprint: [u8; 32],
    pub now: OffsetDateTime,
    /// When the entry is forgotten (first use + 24 h).
    pub expires_at: OffsetDateTime,
    /// An entry still in flight that started before this is abandoned (its server
    /// stopped mid-request) and may be claimed again.
    pub abandoned_before: OffsetDateTime,
}

/// An entry as stored, read by a backend inside the claim's transaction (times in
/// storage milliseconds).
pub struct StoredEntry {
    pub fingerprint: Vec<u8>,
    pub started_at: i64,
    pub expires_at: i64,
    pub status: Option<i64>,
    pub content_type: Option<String>,
    pub body: Option<Vec<u8>>,
    pub applied: bool,
}

/// What a claim does with the entry it found: answer without taking the key, or take it
/// (insert, or overwrite the expired or abandoned entry) with this expiry.
pub enum ClaimDecision {
    Answer(ClaimOutcome),
    Take { expires_at: i64 },
}

impl IdempotencyClaim {
    /// The one rule of claims, for every backend.
    pub fn decide(&self, entry: Option<StoredEntry>) -> ClaimDecision {
        let now = super::to_millis(self.now);
        // An expired entry the purge has not reached yet counts as absent.
        let entry = entry.filter(|e| e.expires_at > now);
        match entry {
            Some(e) if e.fingerprint != self.fingerprint => {
                ClaimDecision::Answer(ClaimOutcome::Mismatch)
            }
            Some(StoredEntry {
                status: Some(status),
                content_type,
                body,
                ..
            }) => ClaimDecision::Answer(ClaimOutcome::Replay(StoredAnswer {
                status: u16::try_from(status).unwrap_or(500),
                content_type,
                sealed_body: body,
            })),
            Some(e) if e.started_at >= super::to_millis(self.abandoned_before) => {
                ClaimDecision::Answer(ClaimOutcome::InFlight)
            }
            Some(StoredEntry { applied: true, .. }) => {
                ClaimDecision::Answer(ClaimOutcome::AppliedWithoutAnswer)
            }
            // Absent, expired, or abandoned in flight: (re)claim it, keeping the first
            // use's expiry for an abandoned claim so a key never lives past 24 h of retries.
            found => {
                let wanted = super::to_millis(self.expires_at);
                ClaimDecision::Take {
                    expires_at: found.map_or(wanted, |e| e.expires_at.min(wanted)),
                }
            }
        }
    }
}

/// The answer kept for replay; `body` is sealed by the barrier (it may hold a token).
#[derive(Clone)]
pub struct StoredAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    /// `None` when the answer was too large to keep.
    pub sealed_body: Option<Vec<u8>>,
}

impl std::fmt::Debug for StoredAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAnswer")
            .field("status", &self.status)
            .field("sealed_len", &self.sealed_body.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// What claiming an idempotency key found.
#[derive(Debug, Clone)]
pub enum ClaimOutcome {
    /// The key was free (or abandoned): this request now holds it and must finish it
    /// with `complete` or give it back with `release`.
    Claimed,
    /// The same request finished before: here is its answer.
    Replay(StoredAnswer),
    /// The same request is still running.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
    /// The same request changed the vault but its server stopped before keeping the
    /// answer: it must not run again, and there is no answer to replay.
    AppliedWithoutAnswer,
}

/// The key a running request holds.
#[derive(Debug, Clone)]
pub struct HeldKey {
    pub scope: String,
    pub key: String,
}

tokio::task_local! {
    static HELD_KEY: HeldKey;
}

/// Runs a keyed request: units of work it commits (in this task) mark `held` applied.
pub async fn while_held<F: Future>(held: HeldKey, request: F) -> F::Output {
    HELD_KEY.scope(held, request).await
}

/// The change that marks the running request's key applied, if it holds one.
pub(super) fn held_key_change() -> Option<Change> {
    HELD_KEY
        .try_with(|held| {
            Change::Idempotency(IdempotencyChange::MarkApplied {
                scope: held.scope.clone(),
                key: held.key.clone(),
            })
        })
        .ok()
}

/// Writes to idempotency entries; build them with [`super::UnitOfWork::idempotency`]. A claim
/// is a write too: it looks the key up and takes it in one transaction.
#[derive(Debug)]
pub enum IdempotencyChange {
    Claim(IdempotencyClaim),
    Complete {
        scope: String,
        key: String,
        answer: StoredAnswer,
    },
    Release {
        scope: String,
        key: String,
    },
    /// Added by [`super::UnitOfWork::prepare`] while a keyed request runs.
    MarkApplied {
        scope: String,
        key: String,
    },
}

aggregate_writes!(
    IdempotencyWrites,
    idempotency,
    Idempotency(IdempotencyChange)
);

impl IdempotencyWrites<'_> {
    /// Looks up the caller's key and, when it is free, marks it in flight.
    pub fn claim(self, claim: IdempotencyClaim) -> Slot<ClaimOutcome> {
        self.push(IdempotencyChange::Claim(claim))
    }

    /// Keeps the answer of the request that holds the key.
    pub fn complete(self, scope: &str, key: &str, answer: StoredAnswer) -> Slot<()> {
        self.push(IdempotencyChange::Complete {
            scope: scope.to_owned(),
            key: key.to_owned(),
            answer,
        })
    }

    /// Frees a key whose request ended without a final answer, so a retry runs again. A
    /// completed answer stays, and so does a key whose request applied a change.
    pub fn release(self, scope: &str, key: &str) -> Slot<()> {
        self.push(IdempotencyChange::Release {
            scope: scope.to_owned(),
            key: key.to_owned(),
        })
    }
}
