//! Storage by aggregate, behind backend-neutral traits.
//!
//! Nothing above this module knows which database holds the rows: the SQLite backend
//! ships now, PostgreSQL implements the same traits and passes the same contract suite
//! (`contract`). Each aggregate module declares its rows, a trait of reads and its
//! changes; every write goes through a [`UnitOfWork`], so one request's changes across
//! aggregates commit in one transaction. Values arrive here already sealed by the
//! barrier; the store never sees plaintext.
//!
//! A backend implements the eight read traits and [`Store`]. Its `commit` takes the changes
//! with [`UnitOfWork::prepare`] in the calling task, applies them in order in one
//! transaction, appends the unit's change records ([`feed`]) in the same transaction, and
//! rolls everything back on the first error; a constraint violation is
//! [`StoreError::Conflict`], and two writers racing on one secret end with one version
//! and a [`StoreError::CasMismatch`] for the loser (never a 500). It then runs
//! `contract::store_contract_tests!` against a fresh database per case.

use async_trait::async_trait;

pub mod audit;
pub mod feed;
pub mod idempotency;
pub mod jobs;
pub mod keyring;
pub mod maintenance;
pub mod policies;
pub mod postgres;
mod read_cache;
pub mod rotation;
pub mod secrets;
pub mod sqlite;
mod time_codec;
pub mod tokens;
pub mod unit_of_work;
mod wal_checkpoint;
pub mod webhooks;

#[cfg(test)]
pub(crate) mod contract;

pub use audit::{AuditQuery, AuditRow, AuditStore};
pub use feed::{ChangeKind, ChangeRecord, FeedReads};
pub use idempotency::{ClaimOutcome, IdempotencyClaim, StoredAnswer};
pub use jobs::{JobReads, JobRunRow, TermRow};
pub use keyring::{KeyRow, KeyringReads};
pub use policies::{BindingRow, IdentityRow, PolicyReads, PolicyRow};
pub use rotation::{RotationReads, RotationRow};
pub use secrets::{
    ListQuery, NewVersion, RestoreOutcome, SealFn, SecretReads, SecretRow, VersionMeta, VersionRow,
};
pub use sqlite::{DATA_COMMIT_SECONDS, DATA_COMMIT_UNITS};
pub use time_codec::{from_millis, now_millis, to_millis};
pub use tokens::{TokenReads, TokenRow};
pub use unit_of_work::{Committed, Prepared, Slot, UnitOfWork};
pub use wal_checkpoint::{AUDIT_PAUSE_SECONDS, DATA_PAUSE_SECONDS};
pub use webhooks::{DeliveryRow, WebhookReads, WebhookRow};

/// Clone: one failure of a group commit is every unit's of the batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot serve right now (locked, read-only, disk full, gone).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Check-and-set failed; carries the version actually current (0 = absent).
    #[error("check-and-set mismatch: current version is {current}")]
    CasMismatch { current: u64 },
    /// A row the caller relied on is missing.
    #[error("not found")]
    NotFound,
    /// Sealing the value inside the write transaction failed.
    #[error("sealing failed: {0}")]
    Seal(String),
    /// A unique name or key is taken: every constraint violation of a write, so a race
    /// or a duplicate answers 409, never 500.
    #[error("already exists")]
    Conflict,
    /// A job runner's unit carried the epoch of a term that has ended: another replica
    /// runs the jobs now.
    #[error("this server's term as job runner ended (epoch {epoch}); another one leads")]
    Fenced { epoch: u64 },
    /// Stored data does not decode: corruption or a bug, never user input.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A vault's storage: the reads of every aggregate, and writes as units of work.
#[async_trait]
pub trait Store:
    SecretReads
    + TokenReads
    + PolicyReads
    + KeyringReads
    + FeedReads
    + JobReads
    + RotationReads
    + WebhookReads
{
    /// Backend name for health output (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
    /// A cheap round trip proving the database answers, writer included.
    async fn ping(&self) -> Result<()>;
    /// Applies the unit's changes in order in one transaction: all of them or, on the
    /// first error (returned), none.
    async fn commit(&self, unit: UnitOfWork) -> Result<Committed>;
}

impl dyn Store {
    /// One change in its own unit: `store.apply(|u| u.secrets().destroy(path))`.
    pub async fn apply<T: unit_of_work::FromApplied>(
        &self,
        change: impl FnOnce(&mut UnitOfWork) -> Slot<T>,
    ) -> Result<T> {
        let mut unit = UnitOfWork::new();
        let slot = change(&mut unit);
        self.commit(unit).await?.take(slot)
    }
}
