//! The job runner's state in SQLite: `runner_term` (one row) and `job_runs`. One process
//! holds the data directory, so its term never ends while it runs; the fence and the
//! claims are kept all the same, so both backends answer the one contract.

use async_trait::async_trait;
use rusqlite::{Connection, Row, params};

use super::{SqliteStore, all_rows, map_err, one_row};
use crate::store::jobs::JobChange;
use crate::store::unit_of_work::Applied;
use crate::store::{JobReads, JobRunRow, Result, StoreError, TermRow, from_millis, to_millis};

/// Applies one change inside the unit's transaction.
pub(super) fn apply(c: &Connection, change: JobChange) -> Result<Applied> {
    match change {
        JobChange::BeginTerm { holder, at } => c
            .query_row(
                "INSERT INTO runner_term (id, epoch, holder, since) VALUES (1, 1, ?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET epoch = epoch + 1, holder = excluded.holder, \
                 since = excluded.since RETURNING epoch",
                params![holder, to_millis(at)],
                |r| r.get::<_, i64>(0),
            )
            .map(|epoch| Applied::Number(epoch.max(0) as u64))
            .map_err(map_err),
        JobChange::Fence { epoch } => fence(c, epoch).map(|()| Applied::Done),
        JobChange::ClaimRun {
            job,
            slot,
            epoch,
            at,
        } => {
            fence(c, epoch)?;
            let claimed = c
                .execute(
                    "INSERT INTO job_runs (job, slot, epoch, started_at, runs) VALUES (?1, ?2, ?3, ?4, 1) \
                     ON CONFLICT (job) DO UPDATE SET slot = excluded.slot, epoch = excluded.epoch, \
                     started_at = excluded.started_at, runs = runs + 1 WHERE slot < excluded.slot",
                    params![job, slot as i64, epoch as i64, to_millis(at)],
                )
                .map_err(map_err)?;
            Ok(Applied::Found(claimed == 1))
        }
    }
}

fn fence(c: &Connection, epoch: u64) -> Result<()> {
    let current = one_row(c, "SELECT epoch FROM runner_term WHERE id = 1", [], |r| {
        r.get::<_, i64>(0)
    })?;
    match current {
        Some(current) if current as u64 == epoch => Ok(()),
        _ => Err(StoreError::Fenced { epoch }),
    }
}

fn run_of(r: &Row<'_>) -> rusqlite::Result<JobRunRow> {
    Ok(JobRunRow {
        job: r.get(0)?,
        slot: r.get::<_, i64>(1)?.max(0) as u64,
        epoch: r.get::<_, i64>(2)?.max(0) as u64,
        started_at: from_millis(r.get(3)?),
        runs: r.get::<_, i64>(4)?.max(0) as u64,
    })
}

#[async_trait]
impl JobReads for SqliteStore {
    async fn runner_term(&self) -> Result<Option<TermRow>> {
        self.read(|c| {
            one_row(
                c,
                "SELECT epoch, holder, since FROM runner_term WHERE id = 1",
                [],
                |r| {
                    Ok(TermRow {
                        epoch: r.get::<_, i64>(0)?.max(0) as u64,
                        holder: r.get(1)?,
                        since: from_millis(r.get(2)?),
                    })
                },
            )
        })
        .await
    }

    async fn job_runs(&self) -> Result<Vec<JobRunRow>> {
        self.read(|c| {
            all_rows(
                c,
                "SELECT job, slot, epoch, started_at, runs FROM job_runs ORDER BY job",
                [],
                run_of,
            )
        })
        .await
    }
}
