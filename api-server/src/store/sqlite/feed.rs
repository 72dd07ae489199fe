//! The change feed in SQLite: `changes`, appended inside each unit's transaction on the
//! one writer connection, so `seq` order is commit order. `AUTOINCREMENT`: a `seq` is
//! never handed out twice, even after the newest records were pruned.

use async_trait::async_trait;
use rusqlite::{Connection, params};
use time::OffsetDateTime;

use super::{SqliteStore, all_rows, map_err, one_row};
use crate::store::feed::{ChangeKind, ChangeRecord, FeedEntry, FeedReads};
use crate::store::{Result, StoreError, from_millis, to_millis};

pub(super) fn append(
    c: &Connection,
    at: OffsetDateTime,
    actor: Option<&str>,
    entries: &[FeedEntry],
) -> Result<()> {
    let mut st = c
        .prepare_cached(
            "INSERT INTO changes (at, kind, subject, version, actor, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(map_err)?;
    for entry in entries {
        st.execute(params![
            to_millis(at),
            entry.kind.as_str(),
            entry.subject,
            entry.version.map(|v| v as i64),
            actor,
            entry.reason
        ])
        .map_err(map_err)?;
    }
    Ok(())
}

pub(super) fn prune(c: &Connection, before: OffsetDateTime, limit: usize) -> Result<u64> {
    c.execute(
        "DELETE FROM changes WHERE seq IN (SELECT seq FROM changes WHERE at < ?1 ORDER BY seq LIMIT ?2)",
        params![to_millis(before), limit as i64],
    )
    .map(|n| n as u64)
    .map_err(map_err)
}

/// A row as stored; its kind is checked by [`decode`].
struct StoredChange {
    seq: i64,
    at: i64,
    kind: String,
    subject: String,
    version: Option<i64>,
    actor: Option<String>,
    reason: Option<String>,
}

fn record_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredChange> {
    Ok(StoredChange {
        seq: r.get(0)?,
        at: r.get(1)?,
        kind: r.get(2)?,
        subject: r.get(3)?,
        version: r.get(4)?,
        actor: r.get(5)?,
        reason: r.get(6)?,
    })
}

fn decode(row: StoredChange) -> Result<ChangeRecord> {
    Ok(ChangeRecord {
        seq: row.seq.max(0) as u64,
        at: from_millis(row.at),
        kind: ChangeKind::parse(&row.kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown change kind {:?}", row.kind)))?,
        subject: row.subject,
        version: row.version.map(|v| v.max(0) as u64),
        actor: row.actor,
        reason: row.reason,
    })
}

#[async_trait]
impl FeedReads for SqliteStore {
    async fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeRecord>> {
        let rows = self
            .read(move |c| {
                all_rows(
                    c,
                    "SELECT seq, at, kind, subject, version, actor, reason FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    params![i64::try_from(after).unwrap_or(i64::MAX), limit as i64],
                    record_of,
                )
            })
            .await?;
        rows.into_iter().map(decode).collect()
    }

    async fn last_change_seq(&self) -> Result<u64> {
        // The sequence, not MAX(seq): pruning every record must not move a reader back.
        self.read(|c| {
            one_row(
                c,
                "SELECT seq FROM sqlite_sequence WHERE name = 'changes'",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .await
        .map(|seq| seq.unwrap_or(0).max(0) as u64)
    }

    async fn first_change_seq(&self) -> Result<u64> {
        self.read(|c| {
            one_row(c, "SELECT MIN(seq) FROM changes", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
        })
        .await
        .map(|seq| seq.flatten().unwrap_or(0).max(0) as u64)
    }

    /// One process writes this file: its own commits are all there is to hear.
    fn notify_changes(&self, notify: std::sync::Arc<tokio::sync::Notify>) {
        self.changes_notify
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(notify);
    }
}
