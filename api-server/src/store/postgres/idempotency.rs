//! Idempotency keys in PostgreSQL: one row per (caller identity, key). A claim holds the
//! key's advisory lock, so two requests with one key never both run, even when the row
//! does not exist yet.

use time::OffsetDateTime;

use super::{Tx, exec, get, lock_key, query_opt};
use crate::store::idempotency::IdempotencyChange;
use crate::store::idempotency::{ClaimDecision, StoredEntry};
use crate::store::unit_of_work::Applied;
use crate::store::{ClaimOutcome, IdempotencyClaim, Result, to_millis};

const LOCK_SCOPE: &str = "idempotency";

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
    .map(|r| -> Result<StoredEntry> {
        Ok(StoredEntry {
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
    let expires_at = match claim.decide(entry) {
        ClaimDecision::Answer(outcome) => return Ok(outcome),
        ClaimDecision::Take { expires_at } => expires_at,
    };
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
            &to_millis(claim.now),
            &expires_at,
        ],
    )
    .await?;
    Ok(ClaimOutcome::Claimed)
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
