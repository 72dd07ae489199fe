//! Maintenance in PostgreSQL: the expiry purge, the read counters (`access_counts`, one
//! row per path and UTC day) and the purges of tokens and idempotency entries, whose SQL
//! stays with their tables.

use time::OffsetDateTime;

use super::{Tx, exec, feed, get, idempotency, query, secrets, tokens};
use crate::store::maintenance::MaintenanceChange;
use crate::store::unit_of_work::Applied;
use crate::store::{Result, to_millis};

/// Applies one change inside the unit's transaction.
pub(super) async fn apply(c: &Tx<'_>, change: MaintenanceChange) -> Result<Applied> {
    match change {
        MaintenanceChange::PurgeExpiredSecrets { now, limit } => {
            purge_expired_secrets(c, now, limit)
                .await
                .map(Applied::Erased)
        }
        MaintenanceChange::AddAccessCounts { day, counts } => add_access_counts(c, day, &counts)
            .await
            .map(|()| Applied::Done),
        MaintenanceChange::PruneAccessCounts { before_day } => exec(
            c,
            "DELETE FROM access_counts WHERE day < $1",
            &[&before_day],
        )
        .await
        .map(|_| Applied::Done),
        MaintenanceChange::PurgeExpiredTokens { now } => {
            tokens::purge_expired(c, now).await.map(Applied::Number)
        }
        MaintenanceChange::PurgeExpiredIdempotency { now, limit } => {
            idempotency::purge_expired(c, now, limit)
                .await
                .map(Applied::Number)
        }
        MaintenanceChange::PruneChanges { before, limit } => {
            feed::prune(c, before, limit).await.map(Applied::Number)
        }
    }
}

/// In path order, so two purges (two replicas) take the paths' locks in one order.
async fn purge_expired_secrets(
    c: &Tx<'_>,
    now: OffsetDateTime,
    limit: usize,
) -> Result<Vec<String>> {
    let rows = query(
        c,
        "SELECT path FROM secrets WHERE expires_at IS NOT NULL AND expires_at <= $1 ORDER BY path LIMIT $2",
        &[&to_millis(now), &(limit as i64)],
    )
    .await?;
    let mut erased = Vec::with_capacity(rows.len());
    for row in &rows {
        let path: String = get(row, 0)?;
        // Another writer may have renewed it between the select and the lock.
        if secrets::erase_if_expired(c, &path, now).await? {
            erased.push(path);
        }
    }
    Ok(erased)
}

async fn add_access_counts(c: &Tx<'_>, day: i64, counts: &[(String, u64)]) -> Result<()> {
    for (path, count) in counts {
        exec(
            c,
            "INSERT INTO access_counts (path, day, count) \
             SELECT $1::TEXT, $2::BIGINT, $3::BIGINT WHERE EXISTS (SELECT 1 FROM secrets WHERE path = $1) \
             ON CONFLICT (path, day) DO UPDATE SET count = access_counts.count + EXCLUDED.count",
            &[path, &day, &super::count(*count)],
        )
        .await?;
    }
    Ok(())
}
