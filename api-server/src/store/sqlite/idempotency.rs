//! Idempotency keys in SQLite: one row per (caller identity, key), claimed and
//! completed in write transactions, so two requests with one key never both run.

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::map_err;
use crate::store::idempotency::IdempotencyChange;
use crate::store::idempotency::{ClaimDecision, StoredEntry};
use crate::store::unit_of_work::Applied;
use crate::store::{ClaimOutcome, IdempotencyClaim, Result, StoredAnswer, to_millis};

/// Applies one change inside the unit's transaction.
pub(super) fn apply(c: &Connection, change: IdempotencyChange) -> Result<Applied> {
    match change {
        IdempotencyChange::Claim(request) => claim(c, &request).map(Applied::Claim),
        IdempotencyChange::Complete { scope, key, answer } => {
            complete(c, &scope, &key, &answer).map(|()| Applied::Done)
        }
        IdempotencyChange::Release { scope, key } => {
            release(c, &scope, &key).map(|()| Applied::Done)
        }
        IdempotencyChange::MarkApplied { scope, key } => c
            .execute(
                "UPDATE idempotency_keys SET applied = 1 WHERE scope = ?1 AND key = ?2",
                params![scope, key],
            )
            .map(|_| Applied::Done)
            .map_err(map_err),
    }
}

/// Looks the key up and takes it when free; the unit's transaction makes the two one step.
fn claim(c: &Connection, claim: &IdempotencyClaim) -> Result<ClaimOutcome> {
    let entry = c
        .query_row(
            "SELECT fingerprint, started_at, expires_at, status, content_type, body, applied \
             FROM idempotency_keys WHERE scope = ?1 AND key = ?2",
            params![claim.scope, claim.key],
            |r| {
                Ok(StoredEntry {
                    fingerprint: r.get(0)?,
                    started_at: r.get(1)?,
                    expires_at: r.get(2)?,
                    status: r.get(3)?,
                    content_type: r.get(4)?,
                    body: r.get(5)?,
                    applied: r.get(6)?,
                })
            },
        )
        .optional()
        .map_err(map_err)?;
    let expires_at = match claim.decide(entry) {
        ClaimDecision::Answer(outcome) => return Ok(outcome),
        ClaimDecision::Take { expires_at } => expires_at,
    };
    c.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, started_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, \
         started_at = excluded.started_at, expires_at = excluded.expires_at, \
         status = NULL, content_type = NULL, body = NULL, applied = 0",
        params![
            claim.scope,
            claim.key,
            claim.fingerprint.to_vec(),
            to_millis(claim.now),
            expires_at
        ],
    )
    .map_err(map_err)?;
    Ok(ClaimOutcome::Claimed)
}

fn complete(c: &Connection, scope: &str, key: &str, answer: &StoredAnswer) -> Result<()> {
    c.execute(
        "UPDATE idempotency_keys SET status = ?3, content_type = ?4, body = ?5 \
         WHERE scope = ?1 AND key = ?2 AND status IS NULL",
        params![
            scope,
            key,
            i64::from(answer.status),
            answer.content_type,
            answer.sealed_body
        ],
    )
    .map(|_| ())
    .map_err(map_err)
}

/// A key whose request applied nothing is freed; one whose request applied a change is
/// no longer in flight (start time 0: abandoned), so a retry learns it was applied.
fn release(c: &Connection, scope: &str, key: &str) -> Result<()> {
    c.execute(
        "DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2 AND status IS NULL AND applied = 0",
        params![scope, key],
    )
    .and_then(|_| {
        c.execute(
            "UPDATE idempotency_keys SET started_at = 0 WHERE scope = ?1 AND key = ?2 AND status IS NULL",
            params![scope, key],
        )
    })
    .map(|_| ())
    .map_err(map_err)
}

pub(super) fn purge_expired(c: &Connection, now: OffsetDateTime, limit: usize) -> Result<u64> {
    c.execute(
        "DELETE FROM idempotency_keys WHERE rowid IN \
         (SELECT rowid FROM idempotency_keys WHERE expires_at <= ?1 LIMIT ?2)",
        params![to_millis(now), limit as i64],
    )
    .map(|n| n as u64)
    .map_err(map_err)
}
