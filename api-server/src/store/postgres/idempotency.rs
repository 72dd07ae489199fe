//! Idempotency keys in PostgreSQL: one row per (caller identity, key). A claim holds the
//! key's advisory lock, so two requests with one key never both run, even when the row
//! does not exist yet.

use time::OffsetDateTime;

use super::{Tx, exec, get, lock_key, query_opt};
use crate::store::idempotency::IdempotencyChange;
use crate::store::unit_of_work::Applied;
use crate::store::{ClaimOutcome, IdempotencyClaim, Result, StoredAnswer, to_millis};

const LOCK_SCOPE: &str = "idempotency";

struct Entry {
    fingerprint: Vec<u8>,
    started_at: i64,
    expires_at: i64,
    status: Option<i64>,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
    applied: bool,
}

/// Applies one change inside the unit's transaction.
pub(super) async fn apply(c: &Tx<'_>, change: IdempotencyChange) -> Result<Applied> {
    match change {
        IdempotencyChange::Claim(request) => claim(c, &request).await.map(Applied::Claim),
        IdempotencyChange::Complete { scope, key, answer } => exec(
            c,
            "UPDATE idempotency_keys SET status = $3, content_type = $4, body = $5 \
             WHERE scope = $1 AND key = $2 AND status IS NULL",
            &[
                &scope,
                &key,
                &i64::from(answer.status),
                &answer.content_type,
                &answer.sealed_body,
            ],
        )
        .await
        .map(|_| Applied::Done),
        IdempotencyChange::Release { scope, key } => {
            release(c, &scope, &key).await.map(|()| Applied::Done)
        }
        IdempotencyChange::MarkApplied { scope, key } => exec(
            c,
            "UPDATE idempotency_keys SET applied = TRUE WHERE scope = $1 AND key = $2",
            &[&scope, &key],
        )
        .await
        .map(|_| Applied::Done),
    }
}

/// Looks the key up and takes it when free, under the key's lock.
async fn claim(c: &Tx<'_>, claim: &IdempotencyClaim) -> Result<ClaimOutcome> {
    lock_key(c, LOCK_SCOPE, &format!("{}:{}", claim.scope, claim.key)).await?;
    let entry = query_opt(
        c,
        "SELECT fingerprint, started_at, expires_at, status, content_type, body, applied \
         FROM idempotency_keys WHERE scope = $1 AND key = $2",
        &[&claim.scope, &claim.key],
    )
    .await?
    .map(|r| -> Result<Entry> {
        Ok(Entry {
            fingerprint: get(&r, 0)?,
            started_at: get(&r, 1)?,
            expires_at: get(&r, 2)?,
            status: get(&r, 3)?,
            content_type: get(&r, 4)?,
            body: get(&r, 5)?,
            applied: get(&r, 6)?,
        })
    })
    .transpose()?;
    let now = to_millis(claim.now);
    // An expired entry the purge has not reached yet counts as absent.
    let entry = entry.filter(|e| e.expires_at > now);
    let outcome = match entry {
        Some(e) if e.fingerprint != claim.fingerprint => ClaimOutcome::Mismatch,
        Some(Entry {
            status: Some(status),
            content_type,
            body,
            ..
        }) => ClaimOutcome::Replay(StoredAnswer {
            status: u16::try_from(status).unwrap_or(500),
            content_type,
            sealed_body: body,
        }),
        Some(e) if e.started_at >= to_millis(claim.abandoned_before) => ClaimOutcome::InFlight,
        Some(Entry { applied: true, .. }) => ClaimOutcome::AppliedWithoutAnswer,
        // Absent, expired, or abandoned in flight: (re)claim it, keeping the first
        // use's expiry for an abandoned claim so a key never lives past 24 h of retries.
        found => {
            let expires_at = found.map_or(to_millis(claim.expires_at), |e| {
                e.expires_at.min(to_millis(claim.expires_at))
            });
            exec(
                c,
                "INSERT INTO idempotency_keys (scope, key, fingerprint, started_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (scope, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
                 started_at = EXCLUDED.started_at, expires_at = EXCLUDED.expires_at, \
                 status = NULL, content_type = NULL, body = NULL, applied = FALSE",
                &[
                    &claim.scope,
                    &claim.key,
                    &claim.fingerprint.as_slice(),
                    &now,
                    &expires_at,
                ],
            )
            .await?;
            ClaimOutcome::Claimed
        }
    };
    Ok(outcome)
}

/// A key whose request applied nothing is freed; one whose request applied a change is
/// no longer in flight (start time 0: abandoned), so a retry learns it was applied.
async fn release(c: &Tx<'_>, scope: &str, key: &str) -> Result<()> {
    exec(
        c,
        "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL AND NOT applied",
        &[&scope, &key],
    )
    .await?;
    exec(
        c,
        "UPDATE idempotency_keys SET started_at = 0 WHERE scope = $1 AND key = $2 AND status IS NULL",
        &[&scope, &key],
    )
    .await
    .map(|_| ())
}

pub(super) async fn purge_expired(c: &Tx<'_>, now: OffsetDateTime, limit: usize) -> Result<u64> {
    exec(
        c,
        "DELETE FROM idempotency_keys WHERE (scope, key) IN \
         (SELECT scope, key FROM idempotency_keys WHERE expires_at <= $1 LIMIT $2)",
        &[&to_millis(now), &(limit as i64)],
    )
    .await
}
