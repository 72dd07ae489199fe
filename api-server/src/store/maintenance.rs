//! Background maintenance: purges of what expired and the read counters' flush. These
//! changes span aggregates (a purge erases secrets with their versions and counts), so
//! they are their own group, run by the job runner.

use time::OffsetDateTime;

use super::Slot;
use super::unit_of_work::aggregate_writes;

/// Build them with [`super::UnitOfWork::maintenance`].
#[derive(Debug)]
pub enum MaintenanceChange {
    PurgeExpiredSecrets {
        now: OffsetDateTime,
        limit: usize,
    },
    AddAccessCounts {
        day: i64,
        counts: Vec<(String, u64)>,
    },
    PruneAccessCounts {
        before_day: i64,
    },
    PurgeExpiredTokens {
        now: OffsetDateTime,
    },
    PurgeExpiredIdempotency {
        now: OffsetDateTime,
        limit: usize,
    },
    PruneChanges {
        before: OffsetDateTime,
        limit: usize,
    },
}

aggregate_writes!(
    MaintenanceWrites,
    maintenance,
    Maintenance(MaintenanceChange)
);

impl MaintenanceWrites<'_> {
    /// Erases at most `limit` secrets whose current version expired at or before `now`;
    /// yields their paths.
    pub fn purge_expired_secrets(self, now: OffsetDateTime, limit: usize) -> Slot<Vec<String>> {
        self.push(MaintenanceChange::PurgeExpiredSecrets { now, limit })
    }

    /// Adds read counts for one UTC day (days since the epoch); paths no longer stored
    /// are skipped.
    pub fn add_access_counts(self, day: i64, counts: Vec<(String, u64)>) -> Slot<()> {
        self.push(MaintenanceChange::AddAccessCounts { day, counts })
    }

    /// Drops per-day counters older than `before_day`.
    pub fn prune_access_counts(self, before_day: i64) -> Slot<()> {
        self.push(MaintenanceChange::PruneAccessCounts { before_day })
    }

    /// Erases tokens expired at or before `now`; yields how many.
    pub fn purge_expired_tokens(self, now: OffsetDateTime) -> Slot<u64> {
        self.push(MaintenanceChange::PurgeExpiredTokens { now })
    }

    /// Forgets at most `limit` idempotency entries expired at or before `now`; yields how
    /// many.
    pub fn purge_expired_idempotency(self, now: OffsetDateTime, limit: usize) -> Slot<u64> {
        self.push(MaintenanceChange::PurgeExpiredIdempotency { now, limit })
    }

    /// Removes up to `limit` change records older than `before` (the feed's retention).
    /// Yields how many went.
    pub fn prune_changes(self, before: OffsetDateTime, limit: usize) -> Slot<u64> {
        self.push(MaintenanceChange::PruneChanges { before, limit })
    }
}
