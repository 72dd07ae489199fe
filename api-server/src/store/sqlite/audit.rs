//! The audit log in its own SQLite file (`audit.db`), WAL, `synchronous=FULL` unless the
//! operator chooses otherwise ([`AuditSync`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, Row, TransactionBehavior, params};
use time::OffsetDateTime;

use super::migrations::{AUDIT_MIGRATIONS, run};
use super::{all_rows, map_err, one_row, open_connection};
use crate::store::audit::{GENESIS_HASH, Sealer};
use crate::store::wal_checkpoint::{AUDIT_PAUSE_SECONDS, Checkpointer, NO_AUTOCHECKPOINT};
use crate::store::{AuditQuery, AuditRow, AuditStore, Result, StoreError, from_millis, to_millis};

pub struct SqliteAuditStore {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    checkpointer: Checkpointer,
}

/// How far a record is pushed before a request may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditSync {
    /// fsync on every group commit: survives power loss (default).
    Full,
    /// Committed to the OS, fsync at checkpoints: survives a crash of the server process
    /// but not of the machine — the guarantee of a plain append to a log file.
    Normal,
}

impl SqliteAuditStore {
    pub fn open(path: &Path, sync: AuditSync) -> Result<Self> {
        let mut writer = open_connection(path, false)?;
        if sync == AuditSync::Normal {
            writer
                .execute_batch("PRAGMA synchronous = NORMAL;")
                .map_err(map_err)?;
        }
        writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(map_err)?;
        run(&mut writer, AUDIT_MIGRATIONS).map_err(map_err)?;
        // Checkpoints run on their own thread, never inside a group commit.
        writer.execute_batch(NO_AUTOCHECKPOINT).map_err(map_err)?;
        let reader = open_connection(path, true)?;
        let writer = Arc::new(Mutex::new(writer));
        let checkpointer = Checkpointer::spawn(
            "audit",
            open_connection(path, false)?,
            Arc::clone(&writer),
            &AUDIT_PAUSE_SECONDS,
        )
        .map_err(|e| StoreError::Unavailable(format!("audit checkpoint thread: {e}")))?;
        Ok(SqliteAuditStore {
            writer,
            reader: Arc::new(Mutex::new(reader)),
            checkpointer,
        })
    }

    async fn with<T, F>(conn: &Arc<Mutex<Connection>>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(conn);
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("audit task failed: {e}")))?
    }
}

const COLUMNS: &str =
    "seq, timestamp, identity_id, path, action, outcome, body, hash, phase, request_seq";

fn row_of(r: &Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        seq: r.get::<_, i64>(0)? as u64,
        timestamp: from_millis(r.get(1)?),
        identity_id: r.get(2)?,
        path: r.get(3)?,
        action: r.get(4)?,
        outcome: r.get(5)?,
        body: r.get(6)?,
        hash: r.get(7)?,
        phase: r.get(8)?,
        request_seq: r.get::<_, Option<i64>>(9)?.map(|s| s as u64),
    })
}

/// The chain's tail: the newest record or, when retention removed every record, the
/// last one it removed.
const TAIL: &str = "SELECT seq, hash FROM (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1) \
     UNION ALL SELECT seq, hash FROM audit_checkpoint WHERE id = 1 ORDER BY seq DESC LIMIT 1";

/// One transaction holding SQLite's write lock from the start (`IMMEDIATE`): the tail
/// read inside it is the one the batch continues.
fn append_chained(c: &mut Connection, seal: Sealer<'_>) -> Result<(u64, String)> {
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)?;
    let tail =
        one_row(&tx, TAIL, [], seq_and_hash)?.unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
    let rows = seal(&tail);
    let Some(last) = rows.last() else {
        return Ok(tail);
    };
    let new_tail = (last.seq, last.hash.clone());
    {
        let mut st = tx
            .prepare_cached(&format!(
                "INSERT INTO audit_log ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))
            .map_err(map_err)?;
        for r in &rows {
            st.execute(params![
                r.seq as i64,
                to_millis(r.timestamp),
                r.identity_id,
                r.path,
                r.action,
                r.outcome,
                r.body,
                r.hash,
                r.phase,
                r.request_seq.map(|s| s as i64)
            ])
            .map_err(map_err)?;
        }
    }
    tx.commit().map_err(map_err)?;
    Ok(new_tail)
}

/// A chain position: a record's (or the retention checkpoint's) sequence number and hash.
fn seq_and_hash(r: &Row<'_>) -> rusqlite::Result<(u64, String)> {
    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
}

#[async_trait]
impl AuditStore for SqliteAuditStore {
    async fn last_record(&self) -> Result<Option<(u64, String)>> {
        Self::with(&self.writer, |c| {
            one_row(
                c,
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                [],
                seq_and_hash,
            )
        })
        .await
    }

    fn append(&self, seal: Sealer<'_>) -> Result<(u64, String)> {
        let committed = {
            let mut c = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            append_chained(&mut c, seal)
        };
        self.checkpointer.notify();
        committed
    }

    async fn query(&self, q: AuditQuery) -> Result<Vec<AuditRow>> {
        Self::with(&self.reader, move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM audit_log WHERE \
                 (?1 IS NULL OR timestamp >= ?1) AND (?2 IS NULL OR timestamp <= ?2) AND \
                 (?3 IS NULL OR identity_id = ?3) AND (?4 IS NULL OR path = ?4) AND \
                 (?5 IS NULL OR action = ?5) AND (?6 IS NULL OR outcome = ?6) AND \
                 (?7 IS NULL OR seq > ?7) AND (?8 IS NULL OR seq <= ?8) AND \
                 (?10 = 0 OR phase IS NOT 'request' OR NOT EXISTS \
                    (SELECT 1 FROM audit_log answer WHERE answer.request_seq = audit_log.seq)) \
                 ORDER BY seq LIMIT ?9"
            );
            all_rows(
                c,
                &sql,
                params![
                    q.from.map(to_millis),
                    q.to.map(to_millis),
                    q.identity_id,
                    q.path,
                    q.action,
                    q.outcome,
                    q.after_seq.map(|s| s as i64),
                    q.to_seq.map(|s| s as i64),
                    q.limit as i64,
                    q.hide_answered_requests
                ],
                row_of,
            )
        })
        .await
    }

    async fn record_before(&self, seq: u64) -> Result<Option<AuditRow>> {
        Self::with(&self.reader, move |c| {
            one_row(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM audit_log WHERE seq < ?1 ORDER BY seq DESC LIMIT 1"
                ),
                [seq as i64],
                row_of,
            )
        })
        .await
    }

    async fn checkpoint(&self) -> Result<Option<(u64, String)>> {
        Self::with(&self.reader, |c| {
            one_row(
                c,
                "SELECT seq, hash FROM audit_checkpoint WHERE id = 1",
                [],
                seq_and_hash,
            )
        })
        .await
    }

    async fn purge_point(&self, before: OffsetDateTime) -> Result<Option<(u64, String)>> {
        Self::with(&self.reader, move |c| {
            one_row(
                c,
                "SELECT seq, hash FROM audit_log WHERE timestamp < ?1 ORDER BY seq DESC LIMIT 1",
                [to_millis(before)],
                seq_and_hash,
            )
        })
        .await
    }

    async fn purge_through(&self, seq: u64, hash: String) -> Result<u64> {
        Self::with(&self.writer, move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_err)?;
            let removed = tx
                .execute("DELETE FROM audit_log WHERE seq <= ?1", [seq as i64])
                .map_err(map_err)?;
            tx.execute(
                "INSERT INTO audit_checkpoint (id, seq, hash, created_at) VALUES (1, ?1, ?2, ?3) \
                 ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, created_at = excluded.created_at",
                params![seq as i64, hash, to_millis(OffsetDateTime::now_utc())],
            )
            .map_err(map_err)?;
            tx.commit().map_err(map_err)?;
            Ok(removed as u64)
        })
        .await
    }

    async fn save_export(&self, id: &str, body: String, running: bool) -> Result<()> {
        let id = id.to_owned();
        Self::with(&self.writer, move |c| {
            c.execute(
                "INSERT INTO audit_exports (id, body, updated_at, running) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(id) DO UPDATE SET body = excluded.body, \
                 updated_at = excluded.updated_at, running = excluded.running",
                params![id, body, to_millis(OffsetDateTime::now_utc()), running],
            )
            .map(|_| ())
            .map_err(map_err)
        })
        .await
    }

    async fn get_export(&self, id: &str) -> Result<Option<String>> {
        let id = id.to_owned();
        Self::with(&self.reader, move |c| {
            one_row(
                c,
                "SELECT body FROM audit_exports WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn running_exports(&self) -> Result<Vec<String>> {
        Self::with(&self.reader, |c| {
            all_rows(
                c,
                "SELECT body FROM audit_exports WHERE running = 1 ORDER BY updated_at, id",
                [],
                |r| r.get(0),
            )
        })
        .await
    }
}
