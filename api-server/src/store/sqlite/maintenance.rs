//! Maintenance in SQLite: the expiry purge, the read counters (`access_counts`, one row
//! per path and UTC day) and the purges of tokens and idempotency entries, whose SQL
//! stays with their tables.

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use super::{all_rows, feed, idempotency, map_err, secrets, tokens};
use crate::store::maintenance::MaintenanceChange;
use crate::store::unit_of_work::Applied;
use crate::store::{Result, to_millis};

/// Applies one change inside the unit's transaction.
pub(super) fn apply(c: &Connection, change: MaintenanceChange) -> Result<Applied> {
    match change {
        MaintenanceChange::PurgeExpiredSecrets { now, limit } => {
            purge_expired_secrets(c, now, limit).map(Applied::Erased)
        }
        MaintenanceChange::AddAccessCounts { day, counts } => {
            add_access_counts(c, day, &counts).map(|()| Applied::Done)
        }
        MaintenanceChange::PruneAccessCounts { before_day } => c
            .execute("DELETE FROM access_counts WHERE day < ?1", [before_day])
            .map(|_| Applied::Done)
            .map_err(map_err),
        MaintenanceChange::PurgeExpiredTokens { now } => {
            tokens::purge_expired(c, now).map(Applied::Number)
        }
        MaintenanceChange::PurgeExpiredIdempotency { now, limit } => {
            idempotency::purge_expired(c, now, limit).map(Applied::Number)
        }
        MaintenanceChange::PruneChanges { before, limit } => {
            feed::prune(c, before, limit).map(Applied::Number)
        }
    }
}

fn purge_expired_secrets(c: &Connection, now: OffsetDateTime, limit: usize) -> Result<Vec<String>> {
    let paths: Vec<String> = all_rows(
        c,
        "SELECT path FROM secrets WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2",
        params![to_millis(now), limit as i64],
        |r| r.get(0),
    )?;
    for path in &paths {
        secrets::erase(c, path)?;
    }
    Ok(paths)
}

fn add_access_counts(c: &Connection, day: i64, counts: &[(String, u64)]) -> Result<()> {
    let mut st = c
        .prepare_cached(
            "INSERT INTO access_counts (path, day, count) SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM secrets WHERE path = ?1) \
             ON CONFLICT(path, day) DO UPDATE SET count = count + excluded.count",
        )
        .map_err(map_err)?;
    for (path, count) in counts {
        st.execute(params![path, day, *count as i64])
            .map_err(map_err)?;
    }
    Ok(())
}
