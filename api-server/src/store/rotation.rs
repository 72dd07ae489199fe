//! Rotation schedules: one row per secret that has one, beside the secret's head row.
//!
//! A cycle is identified by its `next_at`: writing a new version (by hand, by an external
//! rotator, or by the server's generator) ends the cycle and starts the next one at
//! `next_rotation(at, ..)`. Each signal (`due`, `overdue`, `failed`) is recorded with the
//! cycle it was raised for, so the scheduler raises it once per cycle on whichever
//! replica runs it, and catches up after downtime without raising it twice.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Result;
use super::Slot;
use super::unit_of_work::aggregate_writes;

/// A schedule as stored: the policy as written (for display) and what the rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The `RotationPolicy` as the caller wrote it, as JSON.
    pub policy: String,
    /// `generate`, `external` or `manual`.
    pub strategy: String,
    pub interval_secs: u64,
    pub grace_secs: u64,
    /// Minutes after midnight UTC that rotations are moved to.
    pub rotate_at_minute: Option<u32>,
}

/// A secret's rotation row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationRow {
    pub path: String,
    pub schedule: Schedule,
    pub last_rotated_at: Option<OffsetDateTime>,
    pub next_at: OffsetDateTime,
    /// The cycle (`next_at`) each signal was last raised for.
    pub due_signalled: Option<OffsetDateTime>,
    pub overdue_signalled: Option<OffsetDateTime>,
    pub failed_signalled: Option<OffsetDateTime>,
}

impl RotationRow {
    pub fn overdue_at(&self) -> OffsetDateTime {
        self.next_at + time::Duration::seconds(self.schedule.grace_secs as i64)
    }
}

/// The one rule of schedules, for every backend: the first rotation time at least
/// `interval` after `from`, moved forward to the time of day `rotate_at_minute` when set.
pub fn next_rotation(
    from: OffsetDateTime,
    interval_secs: u64,
    rotate_at_minute: Option<u32>,
) -> OffsetDateTime {
    let earliest = from + time::Duration::seconds(interval_secs as i64);
    let Some(minute) = rotate_at_minute else {
        return earliest;
    };
    let midnight = earliest.replace_time(time::Time::MIDNIGHT);
    let at = midnight + time::Duration::minutes(i64::from(minute));
    if at >= earliest {
        at
    } else {
        at + time::Duration::days(1)
    }
}

/// Which signal of a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Due,
    Overdue,
    Failed,
}

/// What the due query asks for.
#[derive(Debug, Clone)]
pub struct DueQuery {
    pub prefix: String,
    /// Paths strictly after this one.
    pub after: Option<String>,
    pub limit: usize,
    /// Rows with `next_at` at or before this.
    pub until: OffsetDateTime,
    /// Leave out rows overdue at this time (`None`: keep them).
    pub exclude_overdue_at: Option<OffsetDateTime>,
}

#[async_trait]
pub trait RotationReads: Send + Sync + 'static {
    async fn rotation(&self, path: &str) -> Result<Option<RotationRow>>;
    /// Schedules of live (not deleted) secrets due by `query.until`, in path order.
    async fn rotations_due(&self, query: DueQuery) -> Result<Vec<RotationRow>>;
    /// What the scheduler must look at, at `now`: live secrets whose cycle has begun and
    /// that are `generate`, or not yet signalled `due`, or overdue and not yet signalled
    /// so; oldest cycle first, at most `limit`.
    async fn rotations_to_act_on(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<RotationRow>>;
}

/// Build them with [`super::UnitOfWork::rotation`].
#[derive(Debug)]
pub enum RotationChange {
    /// Sets (or replaces) the schedule; the cycle restarts from the last rotation, or from
    /// `now` when the secret never rotated.
    Set {
        path: String,
        schedule: Schedule,
        now: OffsetDateTime,
    },
    Clear {
        path: String,
    },
    /// A new version was written at `at`: the cycle ends and the next begins.
    Rotated {
        path: String,
        at: OffsetDateTime,
        /// Why, when the rotation was forced.
        reason: Option<String>,
    },
    /// Records `signal` for the cycle `cycle`, unless it was recorded already or the cycle
    /// ended meanwhile.
    Signal {
        path: String,
        signal: Signal,
        cycle: OffsetDateTime,
        reason: Option<String>,
    },
    /// A rotation was asked for (`external`, `manual`): nothing changes but the feed.
    Requested {
        path: String,
        reason: Option<String>,
    },
}

impl RotationChange {
    pub fn path(&self) -> &str {
        match self {
            RotationChange::Set { path, .. }
            | RotationChange::Clear { path }
            | RotationChange::Rotated { path, .. }
            | RotationChange::Signal { path, .. }
            | RotationChange::Requested { path, .. } => path,
        }
    }
}

aggregate_writes!(RotationWrites, rotation, Rotation(RotationChange));

impl RotationWrites<'_> {
    /// Yields false when no live secret is at `path`.
    pub fn set(self, path: &str, schedule: Schedule, now: OffsetDateTime) -> Slot<bool> {
        self.push(RotationChange::Set {
            path: path.to_owned(),
            schedule,
            now,
        })
    }

    /// Yields false when the secret had no schedule.
    pub fn clear(self, path: &str) -> Slot<bool> {
        self.push(RotationChange::Clear {
            path: path.to_owned(),
        })
    }

    /// Add it to every unit that writes a version. Yields the secret's current version
    /// when it has a schedule (the cycle moved on), `None` otherwise.
    pub fn rotated(
        self,
        path: &str,
        at: OffsetDateTime,
        reason: Option<String>,
    ) -> Slot<Option<u64>> {
        self.push(RotationChange::Rotated {
            path: path.to_owned(),
            at,
            reason,
        })
    }

    /// Yields whether the signal was recorded now (false: raised before, or a stale cycle).
    pub fn signal(
        self,
        path: &str,
        signal: Signal,
        cycle: OffsetDateTime,
        reason: Option<String>,
    ) -> Slot<bool> {
        self.push(RotationChange::Signal {
            path: path.to_owned(),
            signal,
            cycle,
            reason,
        })
    }

    /// Yields the secret's current version (the one to replace), `None` when the secret
    /// has no schedule.
    pub fn requested(self, path: &str, reason: Option<String>) -> Slot<Option<u64>> {
        self.push(RotationChange::Requested {
            path: path.to_owned(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn next_rotation_adds_the_interval_and_moves_to_the_time_of_day() {
        let from = datetime!(2026-12-01 10:30 UTC);
        assert_eq!(
            next_rotation(from, 3600, None),
            datetime!(2026-12-01 11:30 UTC)
        );
        // 30 days later at 10:30, moved to the next 03:00.
        assert_eq!(
            next_rotation(from, 30 * 86_400, Some(180)),
            datetime!(2026-12-31 03:00 UTC) + time::Duration::days(1)
        );
        // Already on the time of day: kept.
        assert_eq!(
            next_rotation(datetime!(2026-12-01 03:00 UTC), 86_400, Some(180)),
            datetime!(2026-12-02 03:00 UTC)
        );
        // Earlier in the day than the time of day: the same day.
        assert_eq!(
            next_rotation(datetime!(2026-12-01 01:00 UTC), 86_400, Some(180)),
            datetime!(2026-12-02 03:00 UTC)
        );
    }
}
