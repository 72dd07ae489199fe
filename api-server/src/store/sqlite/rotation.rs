//! Rotation schedules in SQLite: `rotations`, one row per scheduled secret.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::{SqliteStore, all_rows, map_err, one_row};
use crate::store::rotation::{
    DueQuery, RotationChange, RotationReads, RotationRow, Schedule, Signal, next_rotation,
};
use crate::store::unit_of_work::Applied;
use crate::store::{Result, from_millis, to_millis};

/// Paths are ASCII below 0x7f, so `prefix + DEL` bounds every path that starts with prefix.
const PREFIX_UPPER_BOUND: char = '\u{7f}';

/// The columns [`rotation_from_row`] decodes, from `rotations r`, starting at index `at`.
pub(super) const ROTATION_COLUMNS: &str = "r.path, r.policy, r.strategy, r.interval_secs, \
    r.grace_secs, r.rotate_at_minute, r.last_rotated_at, r.next_at, r.due_signalled, \
    r.overdue_signalled, r.failed_signalled";

/// The row at column `at` onwards, `None` when a left join found no schedule.
pub(super) fn rotation_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<RotationRow>> {
    let Some(path) = r.get::<_, Option<String>>(at)? else {
        return Ok(None);
    };
    let millis = |i: usize| -> rusqlite::Result<Option<OffsetDateTime>> {
        Ok(r.get::<_, Option<i64>>(at + i)?.map(from_millis))
    };
    Ok(Some(RotationRow {
        path,
        schedule: Schedule {
            policy: r.get(at + 1)?,
            strategy: r.get(at + 2)?,
            interval_secs: r.get::<_, i64>(at + 3)?.max(0) as u64,
            grace_secs: r.get::<_, i64>(at + 4)?.max(0) as u64,
            rotate_at_minute: r.get::<_, Option<i64>>(at + 5)?.map(|m| m.max(0) as u32),
        },
        last_rotated_at: millis(6)?,
        next_at: from_millis(r.get(at + 7)?),
        due_signalled: millis(8)?,
        overdue_signalled: millis(9)?,
        failed_signalled: millis(10)?,
    }))
}

fn decoded(r: &Row<'_>) -> rusqlite::Result<RotationRow> {
    rotation_from_row(r, 0)?.ok_or(rusqlite::Error::InvalidColumnType(
        0,
        "path".into(),
        rusqlite::types::Type::Null,
    ))
}

fn signal_column(signal: Signal) -> &'static str {
    match signal {
        Signal::Due => "due_signalled",
        Signal::Overdue => "overdue_signalled",
        Signal::Failed => "failed_signalled",
    }
}

fn is_live(c: &Connection, path: &str) -> Result<bool> {
    c.query_row(
        "SELECT 1 FROM secrets WHERE path = ?1 AND deleted_at IS NULL",
        [path],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
    .map_err(map_err)
}

/// Applies one change inside the unit's transaction.
pub(super) fn apply(c: &Connection, change: RotationChange) -> Result<Applied> {
    match change {
        RotationChange::Set {
            path,
            schedule,
            now,
        } => {
            if !is_live(c, &path)? {
                return Ok(Applied::Found(false));
            }
            let last: Option<i64> = c
                .query_row(
                    "SELECT last_rotated_at FROM rotations WHERE path = ?1",
                    [&path],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?
                .flatten();
            let from = last.map_or(now, from_millis);
            let next = next_rotation(from, schedule.interval_secs, schedule.rotate_at_minute);
            c.execute(
                "INSERT INTO rotations (path, policy, strategy, interval_secs, grace_secs, rotate_at_minute, next_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (path) DO UPDATE SET policy = excluded.policy, strategy = excluded.strategy, \
                 interval_secs = excluded.interval_secs, grace_secs = excluded.grace_secs, \
                 rotate_at_minute = excluded.rotate_at_minute, next_at = excluded.next_at",
                params![
                    path,
                    schedule.policy,
                    schedule.strategy,
                    schedule.interval_secs as i64,
                    schedule.grace_secs as i64,
                    schedule.rotate_at_minute.map(i64::from),
                    to_millis(next)
                ],
            )
            .map_err(map_err)?;
            Ok(Applied::Found(true))
        }
        RotationChange::Clear { path } => c
            .execute("DELETE FROM rotations WHERE path = ?1", [path])
            .map(|n| Applied::Found(n > 0))
            .map_err(map_err),
        RotationChange::Rotated { path, at, .. } => {
            let found: Option<(i64, Option<i64>, i64)> = c
                .query_row(
                    "SELECT r.interval_secs, r.rotate_at_minute, s.current_version \
                     FROM rotations r JOIN secrets s ON s.path = r.path WHERE r.path = ?1",
                    [&path],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(map_err)?;
            let Some((interval, minute, version)) = found else {
                return Ok(Applied::Versioned(None));
            };
            let next = next_rotation(at, interval.max(0) as u64, minute.map(|m| m.max(0) as u32));
            c.execute(
                "UPDATE rotations SET last_rotated_at = ?2, next_at = ?3 WHERE path = ?1",
                params![path, to_millis(at), to_millis(next)],
            )
            .map_err(map_err)?;
            Ok(Applied::Versioned(Some(version.max(0) as u64)))
        }
        RotationChange::Signal {
            path,
            signal,
            cycle,
            ..
        } => {
            let column = signal_column(signal);
            c.execute(
                &format!(
                    "UPDATE rotations SET {column} = ?2 WHERE path = ?1 AND next_at = ?2 \
                     AND ({column} IS NULL OR {column} <> ?2)"
                ),
                params![path, to_millis(cycle)],
            )
            .map(|n| Applied::Found(n > 0))
            .map_err(map_err)
        }
        RotationChange::Requested { path, .. } => c
            .query_row(
                "SELECT s.current_version FROM rotations r JOIN secrets s ON s.path = r.path \
                 WHERE r.path = ?1 AND s.deleted_at IS NULL",
                [path],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|version| Applied::Versioned(version.map(|v| v.max(0) as u64)))
            .map_err(map_err),
    }
}

#[async_trait]
impl RotationReads for SqliteStore {
    async fn rotation(&self, path: &str) -> Result<Option<RotationRow>> {
        let path = path.to_owned();
        self.read(move |c| {
            let sql = format!("SELECT {ROTATION_COLUMNS} FROM rotations r WHERE r.path = ?1");
            one_row(c, &sql, [path], decoded)
        })
        .await
    }

    async fn rotations_due(&self, query: DueQuery) -> Result<Vec<RotationRow>> {
        self.read(move |c| {
            let lower = match &query.after {
                Some(after) if after.as_str() >= query.prefix.as_str() => after.clone(),
                _ => query.prefix.clone(),
            };
            let strict = query
                .after
                .as_deref()
                .is_some_and(|a| a >= query.prefix.as_str());
            let upper = format!("{}{PREFIX_UPPER_BOUND}", query.prefix);
            let sql = format!(
                "SELECT {ROTATION_COLUMNS} FROM rotations r JOIN secrets s ON s.path = r.path \
                 WHERE r.path {} ?1 AND r.path < ?2 AND s.deleted_at IS NULL AND r.next_at <= ?3 \
                 AND (?4 IS NULL OR r.next_at + r.grace_secs * 1000 > ?4) ORDER BY r.path LIMIT ?5",
                if strict { ">" } else { ">=" }
            );
            all_rows(
                c,
                &sql,
                params![
                    lower,
                    upper,
                    to_millis(query.until),
                    query.exclude_overdue_at.map(to_millis),
                    query.limit as i64
                ],
                decoded,
            )
        })
        .await
    }

    async fn rotations_to_act_on(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<RotationRow>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {ROTATION_COLUMNS} FROM rotations r JOIN secrets s ON s.path = r.path \
                 WHERE s.deleted_at IS NULL AND r.next_at <= ?1 AND (r.strategy = 'generate' \
                 OR r.due_signalled IS NULL OR r.due_signalled <> r.next_at \
                 OR (r.next_at + r.grace_secs * 1000 <= ?1 \
                     AND (r.overdue_signalled IS NULL OR r.overdue_signalled <> r.next_at))) \
                 ORDER BY r.next_at, r.path LIMIT ?2"
            );
            all_rows(c, &sql, params![to_millis(now), limit as i64], decoded)
        })
        .await
    }
}
