//! Every advisory lock key the PostgreSQL backend takes, in one place so no two share
//! one. Per-key locks of rows (`lock_key`) hash a scoped text instead.

/// Held while migrating; shared by every replica of every version.
pub(super) const MIGRATION_LOCK: i64 = 0x5ca1_7a01;
/// Held (per session) by the replica that runs the background jobs.
pub(super) const RUNNER_LOCK: i64 = 0x5ca1_7a02;
/// Held until commit by a unit appending change records, so `seq` order is commit order.
pub(super) const FEED_APPEND_LOCK: i64 = 0x5ca1_7a03;
/// Held until commit by an audit group commit, so replicas' batches form one chain.
pub(super) const AUDIT_APPEND_LOCK: i64 = 0x5ca1_7a04;
