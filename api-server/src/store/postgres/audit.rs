//! The audit log in PostgreSQL: the same hash-chained rows as `audit.db`, in the database
//! the data lives in, so a deployment on PostgreSQL keeps no state on its pods' disks and
//! backs its audit log up with its data.
//!
//! Every replica appends to the one chain: a batch takes the log's append lock (a
//! transaction-scoped advisory lock) and continues the tail committed before it, so
//! `verify` walks one chain over all replicas' records, checkpoints sign points of it,
//! and a replica's records are never forked off another's. The lock is held for one
//! group commit (an insert of up to a batch and its commit), which replicas take turns
//! at; a chain per writer would avoid that wait but make every reader merge chains, and
//! `request_seq`, retention and export would each need a writer dimension. `append` blocks, as the trait asks: the audit writer calls it from its own thread,
//! which drives the query on the runtime it was opened in.

use async_trait::async_trait;
use deadpool_postgres::Pool;
use time::OffsetDateTime;
use tokio::runtime::Handle;
use tokio_postgres::Row;

use super::locks::AUDIT_APPEND_LOCK;
use super::{get, get_u64, map_err, opt_u64, pool_err, pool_row, pool_rows};
use crate::store::audit::{GENESIS_HASH, Sealer};
use crate::store::{AuditQuery, AuditRow, AuditStore, Result, StoreError, from_millis, to_millis};

pub struct PostgresAuditStore {
    pool: Pool,
    runtime: Handle,
}

const COLUMNS: &str =
    "seq, timestamp, identity_id, path, action, outcome, body, hash, phase, request_seq";

fn row_of(r: &Row) -> Result<AuditRow> {
    Ok(AuditRow {
        seq: get_u64(r, 0)?,
        timestamp: from_millis(get(r, 1)?),
        identity_id: get(r, 2)?,
        path: get(r, 3)?,
        action: get(r, 4)?,
        outcome: get(r, 5)?,
        body: get(r, 6)?,
        hash: get(r, 7)?,
        phase: get(r, 8)?,
        request_seq: get::<Option<i64>>(r, 9)?.map(|s| s.max(0) as u64),
    })
}

fn seq_and_hash(r: &Row) -> Result<(u64, String)> {
    Ok((get_u64(r, 0)?, get(r, 1)?))
}

impl PostgresAuditStore {
    /// On the data store's pool; call from within the runtime that will serve.
    pub(super) fn new(pool: Pool) -> Result<Self> {
        let runtime = Handle::try_current()
            .map_err(|e| StoreError::Unavailable(format!("no async runtime: {e}")))?;
        Ok(PostgresAuditStore { pool, runtime })
    }

    /// Holds the log's append lock until commit, and continues the newest record (or,
    /// when retention removed them all, the last one it removed), so replicas' batches chain one after
    /// another: each reads the tail the previous one committed.
    async fn append_chained(&self, seal: Sealer<'_>) -> Result<(u64, String)> {
        let mut client = self.pool.get().await.map_err(pool_err)?;
        let tx = client.transaction().await.map_err(map_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_APPEND_LOCK])
            .await
            .map_err(map_err)?;
        let tail = match tx
            .query_opt(
                "(SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1) \
                 UNION ALL (SELECT seq, hash FROM audit_checkpoint WHERE id = 1) \
                 ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await
            .map_err(map_err)?
        {
            Some(row) => seq_and_hash(&row)?,
            None => (0, GENESIS_HASH.to_owned()),
        };
        let rows = seal(&tail);
        let Some(last) = rows.last() else {
            return Ok(tail);
        };
        let new_tail = (last.seq, last.hash.clone());
        let statement = tx
            .prepare_cached(&format!(
                "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .await
            .map_err(map_err)?;
        for r in &rows {
            tx.execute(
                &statement,
                &[
                    &opt_u64(Some(r.seq)),
                    &to_millis(r.timestamp),
                    &r.identity_id,
                    &r.path,
                    &r.action,
                    &r.outcome,
                    &r.body,
                    &r.hash,
                    &r.phase,
                    &opt_u64(r.request_seq),
                ],
            )
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(new_tail)
    }
}

#[async_trait]
impl AuditStore for PostgresAuditStore {
    async fn last_record(&self) -> Result<Option<(u64, String)>> {
        pool_row(
            &self.pool,
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            &[],
            seq_and_hash,
        )
        .await
    }

    fn append(&self, seal: Sealer<'_>) -> Result<(u64, String)> {
        self.runtime.block_on(self.append_chained(seal))
    }

    async fn query(&self, q: AuditQuery) -> Result<Vec<AuditRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log WHERE \
             ($1::BIGINT IS NULL OR timestamp >= $1) AND ($2::BIGINT IS NULL OR timestamp <= $2) AND \
             ($3::TEXT IS NULL OR identity_id = $3) AND ($4::TEXT IS NULL OR path = $4) AND \
             ($5::TEXT IS NULL OR action = $5) AND ($6::TEXT IS NULL OR outcome = $6) AND \
             ($7::BIGINT IS NULL OR seq > $7) AND ($8::BIGINT IS NULL OR seq <= $8) AND \
             (NOT $10 OR phase IS DISTINCT FROM 'request' OR NOT EXISTS \
                (SELECT 1 FROM audit_log answer WHERE answer.request_seq = audit_log.seq)) \
             ORDER BY seq LIMIT $9"
        );
        pool_rows(
            &self.pool,
            &sql,
            &[
                &q.from.map(to_millis),
                &q.to.map(to_millis),
                &q.identity_id,
                &q.path,
                &q.action,
                &q.outcome,
                &opt_u64(q.after_seq),
                &opt_u64(q.to_seq),
                &(i64::try_from(q.limit).unwrap_or(i64::MAX)),
                &q.hide_answered_requests,
            ],
            row_of,
        )
        .await
    }

    async fn record_before(&self, seq: u64) -> Result<Option<AuditRow>> {
        let sql =
            format!("SELECT {COLUMNS} FROM audit_log WHERE seq < $1 ORDER BY seq DESC LIMIT 1");
        pool_row(&self.pool, &sql, &[&opt_u64(Some(seq))], row_of).await
    }

    async fn checkpoint(&self) -> Result<Option<(u64, String)>> {
        pool_row(
            &self.pool,
            "SELECT seq, hash FROM audit_checkpoint WHERE id = 1",
            &[],
            seq_and_hash,
        )
        .await
    }

    async fn purge_point(&self, before: OffsetDateTime) -> Result<Option<(u64, String)>> {
        pool_row(
            &self.pool,
            "SELECT seq, hash FROM audit_log WHERE timestamp < $1 ORDER BY seq DESC LIMIT 1",
            &[&to_millis(before)],
            seq_and_hash,
        )
        .await
    }

    async fn purge_through(&self, seq: u64, hash: String) -> Result<u64> {
        let mut client = self.pool.get().await.map_err(pool_err)?;
        let tx = client.transaction().await.map_err(map_err)?;
        let seq = opt_u64(Some(seq));
        let removed = tx
            .execute("DELETE FROM audit_log WHERE seq <= $1", &[&seq])
            .await
            .map_err(map_err)?;
        tx.execute(
            "INSERT INTO audit_checkpoint (id, seq, hash, created_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, \
             created_at = EXCLUDED.created_at",
            &[&seq, &hash, &to_millis(OffsetDateTime::now_utc())],
        )
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(removed)
    }

    async fn save_export(&self, id: &str, body: String, running: bool) -> Result<()> {
        let client = self.pool.get().await.map_err(pool_err)?;
        client
            .execute(
                "INSERT INTO audit_exports (id, body, updated_at, running) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, \
                 updated_at = EXCLUDED.updated_at, running = EXCLUDED.running",
                &[&id, &body, &to_millis(OffsetDateTime::now_utc()), &running],
            )
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn get_export(&self, id: &str) -> Result<Option<String>> {
        pool_row(
            &self.pool,
            "SELECT body FROM audit_exports WHERE id = $1",
            &[&id],
            |r| get(r, 0),
        )
        .await
    }

    async fn running_exports(&self) -> Result<Vec<String>> {
        pool_rows(
            &self.pool,
            "SELECT body FROM audit_exports WHERE running ORDER BY updated_at, id",
            &[],
            |r| get(r, 0),
        )
        .await
    }
}
