//! The change feed in PostgreSQL: `changes`, appended at the end of each unit's
//! transaction. An identity column alone would let a reader see `seq` 8 commit before 7
//! and never look back for 7; so appends take a transaction-scoped lock that is released
//! by the commit, and `seq` order is commit order. It serialises the appends and commits
//! of units that record something (not their work before it), across replicas.
//!
//! The other way, rows numbered later by a sequencer once every older transaction has
//! ended (`pg_snapshot_xmin`), was tried and set aside: transaction ids are cluster-wide,
//! so any long write transaction of another application on the same PostgreSQL would
//! hold the feed back for its whole length. Secret writes are few next to reads; a
//! prompt, strictly ordered feed is worth a serialised commit.

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::locks::FEED_APPEND_LOCK;
use super::sessions::{CHANGES_CHANNEL, listen_for_changes};
use super::{PostgresStore, Tx, exec, get, query};
use crate::store::feed::{ChangeKind, ChangeRecord, FeedEntry, FeedReads};
use crate::store::{Result, StoreError, from_millis, to_millis};
use std::sync::Arc;
use tokio::sync::Notify;

pub(super) async fn append(
    c: &Tx<'_>,
    at: OffsetDateTime,
    actor: Option<&str>,
    entries: &[FeedEntry],
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    query(c, "SELECT pg_advisory_xact_lock($1)", &[&FEED_APPEND_LOCK]).await?;
    for entry in entries {
        exec(
            c,
            "INSERT INTO changes (at, kind, subject, version, actor, reason) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &to_millis(at),
                &entry.kind.as_str(),
                &entry.subject,
                &super::opt_u64(entry.version),
                &actor,
                &entry.reason,
            ],
        )
        .await?;
    }
    // Delivered to every listening replica when (and only if) the unit commits.
    query(c, "SELECT pg_notify($1, '')", &[&CHANGES_CHANNEL]).await?;
    Ok(())
}

pub(super) async fn prune(c: &Tx<'_>, before: OffsetDateTime, limit: usize) -> Result<u64> {
    exec(
        c,
        "DELETE FROM changes WHERE seq IN (SELECT seq FROM changes WHERE at < $1 ORDER BY seq LIMIT $2)",
        &[&to_millis(before), &(limit as i64)],
    )
    .await
}

fn record_of(r: &Row) -> Result<ChangeRecord> {
    let kind: &str = get(r, 2)?;
    Ok(ChangeRecord {
        seq: super::get_u64(r, 0)?,
        at: from_millis(get(r, 1)?),
        kind: ChangeKind::parse(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown change kind {kind:?}")))?,
        subject: get(r, 3)?,
        version: get::<Option<i64>>(r, 4)?.map(|v| v.max(0) as u64),
        actor: get(r, 5)?,
        reason: get(r, 6)?,
    })
}

#[async_trait]
impl FeedReads for PostgresStore {
    async fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeRecord>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.rows(
            "SELECT seq, at, kind, subject, version, actor, reason FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after, &(limit as i64)],
            record_of,
        )
        .await
    }

    async fn last_change_seq(&self) -> Result<u64> {
        // The identity's sequence, not MAX(seq): pruning every record must not move a
        // reader back. `is_called` is false until the first value is taken.
        self.row(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM changes_seq_seq",
            &[],
            |r| super::get_u64(r, 0),
        )
        .await
        .map(Option::unwrap_or_default)
    }

    async fn first_change_seq(&self) -> Result<u64> {
        self.row("SELECT COALESCE(MIN(seq), 0) FROM changes", &[], |r| {
            super::get_u64(r, 0)
        })
        .await
        .map(Option::unwrap_or_default)
    }

    /// A task of its own listens on a connection outside the pool, again after each
    /// reconnection; it ends with the runtime.
    fn notify_changes(&self, notify: Arc<Notify>) {
        let (config, tls) = (self.config.clone(), self.tls.clone());
        tokio::spawn(async move {
            loop {
                if let Err(e) = listen_for_changes(&config, &tls, Arc::clone(&notify)).await {
                    tracing::warn!(error = %e, "listening for other replicas' changes");
                }
                tokio::time::sleep(RELISTEN_AFTER).await;
            }
        });
    }
}

/// Pause before listening again after the listening connection ended or failed.
const RELISTEN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
