//! Rotation schedules in PostgreSQL: `rotations`, the same rows as on SQLite.

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{PostgresStore, Tx, exec, get, get_u64, query_opt};
use crate::store::rotation::{
    DueQuery, RotationChange, RotationReads, RotationRow, Schedule, Signal, next_rotation,
};
use crate::store::unit_of_work::Applied;
use crate::store::{Result, StoreError, from_millis, to_millis};

/// Paths are ASCII below 0x7f, so `prefix + DEL` bounds every path that starts with prefix.
const PREFIX_UPPER_BOUND: char = '\u{7f}';

/// The columns [`rotation_from_row`] decodes, from `rotations r`.
pub(super) const ROTATION_COLUMNS: &str = "r.path, r.policy, r.strategy, r.interval_secs, \
    r.grace_secs, r.rotate_at_minute, r.last_rotated_at, r.next_at, r.due_signalled, \
    r.overdue_signalled, r.failed_signalled";

/// The row at column `at` onwards, `None` when a left join found no schedule.
pub(super) fn rotation_from_row(r: &Row, at: usize) -> Result<Option<RotationRow>> {
    let Some(path) = get::<Option<String>>(r, at)? else {
        return Ok(None);
    };
    let millis = |i: usize| -> Result<Option<OffsetDateTime>> {
        Ok(get::<Option<i64>>(r, at + i)?.map(from_millis))
    };
    Ok(Some(RotationRow {
        path,
        schedule: Schedule {
            policy: get(r, at + 1)?,
            strategy: get(r, at + 2)?,
            interval_secs: get_u64(r, at + 3)?,
            grace_secs: get_u64(r, at + 4)?,
            rotate_at_minute: get::<Option<i64>>(r, at + 5)?.map(|m| m.max(0) as u32),
        },
        last_rotated_at: millis(6)?,
        next_at: from_millis(get(r, at + 7)?),
        due_signalled: millis(8)?,
        overdue_signalled: millis(9)?,
        failed_signalled: millis(10)?,
    }))
}

fn decoded(r: &Row) -> Result<RotationRow> {
    rotation_from_row(r, 0)?.ok_or_else(|| StoreError::Corrupt("rotation without a path".into()))
}

fn signal_column(signal: Signal) -> &'static str {
    match signal {
        Signal::Due => "due_signalled",
        Signal::Overdue => "overdue_signalled",
        Signal::Failed => "failed_signalled",
    }
}

/// Applies one change inside the unit's transaction.
pub(super) async fn apply(c: &Tx<'_>, change: RotationChange) -> Result<Applied> {
    match change {
        RotationChange::Set {
            path,
            schedule,
            now,
        } => {
            let live = query_opt(
                c,
                "SELECT 1 FROM secrets WHERE path = $1 AND deleted_at IS NULL FOR SHARE",
                &[&path],
            )
            .await?
            .is_some();
            if !live {
                return Ok(Applied::Found(false));
            }
            let last = query_opt(
                c,
                "SELECT last_rotated_at FROM rotations WHERE path = $1",
                &[&path],
            )
            .await?
            .map(|r| get::<Option<i64>>(&r, 0))
            .transpose()?
            .flatten();
            let from = last.map_or(now, from_millis);
            let next = next_rotation(from, schedule.interval_secs, schedule.rotate_at_minute);
            exec(
                c,
                "INSERT INTO rotations (path, policy, strategy, interval_secs, grace_secs, rotate_at_minute, next_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (path) DO UPDATE SET policy = excluded.policy, strategy = excluded.strategy, \
                 interval_secs = excluded.interval_secs, grace_secs = excluded.grace_secs, \
                 rotate_at_minute = excluded.rotate_at_minute, next_at = excluded.next_at",
                &[
                    &path,
                    &schedule.policy,
                    &schedule.strategy,
                    &(schedule.interval_secs as i64),
                    &(schedule.grace_secs as i64),
                    &schedule.rotate_at_minute.map(i64::from),
                    &to_millis(next),
                ],
            )
            .await?;
            Ok(Applied::Found(true))
        }
        RotationChange::Clear { path } => {
            exec(c, "DELETE FROM rotations WHERE path = $1", &[&path])
                .await
                .map(|n| Applied::Found(n > 0))
        }
        RotationChange::Rotated { path, at, .. } => {
            let Some(row) = query_opt(
                c,
                "SELECT r.interval_secs, r.rotate_at_minute, s.current_version \
                 FROM rotations r JOIN secrets s ON s.path = r.path WHERE r.path = $1 FOR UPDATE OF r",
                &[&path],
            )
            .await?
            else {
                return Ok(Applied::Versioned(None));
            };
            let minute = get::<Option<i64>>(&row, 1)?.map(|m| m.max(0) as u32);
            let next = next_rotation(at, get_u64(&row, 0)?, minute);
            exec(
                c,
                "UPDATE rotations SET last_rotated_at = $2, next_at = $3 WHERE path = $1",
                &[&path, &to_millis(at), &to_millis(next)],
            )
            .await?;
            Ok(Applied::Versioned(Some(get_u64(&row, 2)?)))
        }
        RotationChange::Signal {
            path,
            signal,
            cycle,
            ..
        } => {
            let column = signal_column(signal);
            let sql = format!(
                "UPDATE rotations SET {column} = $2 WHERE path = $1 AND next_at = $2 \
                 AND ({column} IS NULL OR {column} <> $2)"
            );
            exec(c, &sql, &[&path, &to_millis(cycle)])
                .await
                .map(|n| Applied::Found(n > 0))
        }
        RotationChange::Requested { path, .. } => {
            let row = query_opt(
                c,
                "SELECT s.current_version FROM rotations r JOIN secrets s ON s.path = r.path \
                 WHERE r.path = $1 AND s.deleted_at IS NULL",
                &[&path],
            )
            .await?;
            Ok(Applied::Versioned(row.map(|r| get_u64(&r, 0)).transpose()?))
        }
    }
}

#[async_trait]
impl RotationReads for PostgresStore {
    async fn rotation(&self, path: &str) -> Result<Option<RotationRow>> {
        let sql = format!("SELECT {ROTATION_COLUMNS} FROM rotations r WHERE r.path = $1");
        self.row(&sql, &[&path], decoded).await
    }

    async fn rotations_due(&self, query: DueQuery) -> Result<Vec<RotationRow>> {
        let strict = query
            .after
            .as_deref()
            .is_some_and(|a| a >= query.prefix.as_str());
        let lower = match &query.after {
            Some(after) if strict => after.clone(),
            _ => query.prefix.clone(),
        };
        let upper = format!("{}{PREFIX_UPPER_BOUND}", query.prefix);
        let sql = format!(
            "SELECT {ROTATION_COLUMNS} FROM rotations r JOIN secrets s ON s.path = r.path \
             WHERE r.path {} $1 AND r.path < $2 AND s.deleted_at IS NULL AND r.next_at <= $3 \
             AND ($4::BIGINT IS NULL OR r.next_at + r.grace_secs * 1000 > $4) ORDER BY r.path LIMIT $5",
            if strict { ">" } else { ">=" }
        );
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        self.rows(
            &sql,
            &[
                &lower,
                &upper,
                &to_millis(query.until),
                &query.exclude_overdue_at.map(to_millis),
                &limit,
            ],
            decoded,
        )
        .await
    }

    async fn rotations_to_act_on(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<RotationRow>> {
        let sql = format!(
            "SELECT {ROTATION_COLUMNS} FROM rotations r JOIN secrets s ON s.path = r.path \
             WHERE s.deleted_at IS NULL AND r.next_at <= $1 AND (r.strategy = 'generate' \
             OR r.due_signalled IS NULL OR r.due_signalled <> r.next_at \
             OR (r.next_at + r.grace_secs * 1000 <= $1 \
                 AND (r.overdue_signalled IS NULL OR r.overdue_signalled <> r.next_at))) \
             ORDER BY r.next_at, r.path LIMIT $2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.rows(&sql, &[&to_millis(now), &limit], decoded).await
    }
}
