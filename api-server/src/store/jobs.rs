//! The job runner's state: its term (who leads, under which epoch) and each periodic
//! job's last claimed run. Replicas share them through the database.
//!
//! A replica that becomes the runner begins a term: the epoch grows by one. Every unit a
//! job commits carries a fence on its term's epoch, so a runner that lost its leadership
//! without knowing it yet (a stalled process, a broken connection) can no longer change
//! anything once a successor began its term: the successor's epoch bump waits for the
//! fenced units in flight, and every later one fails with [`StoreError::Fenced`].
//!
//! A periodic job runs once per slot (`now / interval`): the runner claims the slot
//! first, and a slot claimed once (by this runner or a predecessor) is never run again.
//!
//! [`StoreError::Fenced`]: super::StoreError::Fenced

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Result;
use super::Slot;
use super::unit_of_work::aggregate_writes;

/// The newest claimed run of one periodic job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRunRow {
    pub job: String,
    pub slot: u64,
    /// The term of the runner that claimed it.
    pub epoch: u64,
    pub started_at: OffsetDateTime,
    /// Runs claimed so far, over every term.
    pub runs: u64,
}

/// The current term of the job runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermRow {
    pub epoch: u64,
    /// Which server began it (its host name and process id).
    pub holder: String,
    pub since: OffsetDateTime,
}

#[async_trait]
pub trait JobReads: Send + Sync + 'static {
    async fn runner_term(&self) -> Result<Option<TermRow>>;
    /// Every job's newest claimed run, by name.
    async fn job_runs(&self) -> Result<Vec<JobRunRow>>;
}

/// Build them with [`super::UnitOfWork::jobs`].
#[derive(Debug)]
pub enum JobChange {
    BeginTerm {
        holder: String,
        at: OffsetDateTime,
    },
    Fence {
        epoch: u64,
    },
    ClaimRun {
        job: String,
        slot: u64,
        epoch: u64,
        at: OffsetDateTime,
    },
}

aggregate_writes!(JobWrites, jobs, Job(JobChange));

impl JobWrites<'_> {
    /// Begins the next term; yields its epoch. Call it only while holding the runner's
    /// lock (PostgreSQL) or the data directory's (SQLite).
    pub fn begin_term(self, holder: &str, at: OffsetDateTime) -> Slot<u64> {
        self.push(JobChange::BeginTerm {
            holder: holder.to_owned(),
            at,
        })
    }

    /// Fails the whole unit with `Fenced` unless `epoch` is still the current term.
    pub fn fence(self, epoch: u64) -> Slot<()> {
        self.push(JobChange::Fence { epoch })
    }

    /// Claims `slot` of `job` for the term `epoch` (fenced like [`Self::fence`]); yields
    /// false when that slot, or a later one, was claimed already.
    pub fn claim_run(self, job: &str, slot: u64, epoch: u64, at: OffsetDateTime) -> Slot<bool> {
        self.push(JobChange::ClaimRun {
            job: job.to_owned(),
            slot,
            epoch,
            at,
        })
    }
}
