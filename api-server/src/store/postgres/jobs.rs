//! The job runner's state in PostgreSQL: `runner_term` (one row) and `job_runs`.
//!
//! The fence reads the term row `FOR SHARE`: a successor's epoch bump (an `UPDATE` of
//! that row) waits until every fenced unit in flight has ended, so no unit of an old term
//! commits after a new term began.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{PostgresStore, Tx, count, exec, get, get_u64, query_opt};
use crate::store::jobs::JobChange;
use crate::store::unit_of_work::Applied;
use crate::store::{JobReads, JobRunRow, Result, StoreError, TermRow, from_millis, to_millis};

/// Applies one change inside the unit's transaction.
pub(super) async fn apply(c: &Tx<'_>, change: JobChange) -> Result<Applied> {
    match change {
        JobChange::BeginTerm { holder, at } => {
            let row = query_opt(
                c,
                "INSERT INTO runner_term (id, epoch, holder, since) VALUES (1, 1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET epoch = runner_term.epoch + 1, \
                 holder = EXCLUDED.holder, since = EXCLUDED.since RETURNING epoch",
                &[&holder, &to_millis(at)],
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("beginning a term returned no epoch".into()))?;
            get_u64(&row, 0).map(Applied::Number)
        }
        JobChange::Fence { epoch } => fence(c, epoch).await.map(|()| Applied::Done),
        JobChange::ClaimRun {
            job,
            slot,
            epoch,
            at,
        } => {
            fence(c, epoch).await?;
            let claimed = exec(
                c,
                "INSERT INTO job_runs (job, slot, epoch, started_at, runs) VALUES ($1, $2, $3, $4, 1) \
                 ON CONFLICT (job) DO UPDATE SET slot = EXCLUDED.slot, epoch = EXCLUDED.epoch, \
                 started_at = EXCLUDED.started_at, runs = job_runs.runs + 1 \
                 WHERE job_runs.slot < EXCLUDED.slot",
                &[&job, &count(slot), &count(epoch), &to_millis(at)],
            )
            .await?;
            Ok(Applied::Found(claimed == 1))
        }
    }
}

async fn fence(c: &Tx<'_>, epoch: u64) -> Result<()> {
    let current = query_opt(
        c,
        "SELECT epoch FROM runner_term WHERE id = 1 FOR SHARE",
        &[],
    )
    .await?
    .map(|r| get_u64(&r, 0))
    .transpose()?;
    match current {
        Some(current) if current == epoch => Ok(()),
        _ => Err(StoreError::Fenced { epoch }),
    }
}

fn run_of(r: &Row) -> Result<JobRunRow> {
    Ok(JobRunRow {
        job: get(r, 0)?,
        slot: get_u64(r, 1)?,
        epoch: get_u64(r, 2)?,
        started_at: from_millis(get(r, 3)?),
        runs: get_u64(r, 4)?,
    })
}

#[async_trait]
impl JobReads for PostgresStore {
    async fn runner_term(&self) -> Result<Option<TermRow>> {
        self.row(
            "SELECT epoch, holder, since FROM runner_term WHERE id = 1",
            &[],
            |r| {
                Ok(TermRow {
                    epoch: get_u64(r, 0)?,
                    holder: get(r, 1)?,
                    since: from_millis(get(r, 2)?),
                })
            },
        )
        .await
    }

    async fn job_runs(&self) -> Result<Vec<JobRunRow>> {
        self.rows(
            "SELECT job, slot, epoch, started_at, runs FROM job_runs ORDER BY job",
            &[],
            run_of,
        )
        .await
    }
}
