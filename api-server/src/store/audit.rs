//! The audit log's storage: an append-only, hash-chained record table kept apart from the
//! vault's data (see [`AuditStore`]).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Result;

/// Builds a batch's rows from the tail they continue; called once per append, inside its
/// transaction.
pub type Sealer<'a> = &'a mut dyn FnMut(&(u64, String)) -> Vec<AuditRow>;

/// The hash that precedes the first record of a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored audit record: the canonical JSON body plus the columns queries filter on.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: u64,
    pub timestamp: OffsetDateTime,
    pub identity_id: Option<String>,
    pub path: Option<String>,
    pub action: String,
    pub outcome: String,
    /// `request` / `response` for the two records of a mutating request, else `None`.
    pub phase: Option<String>,
    /// On a response record: its request record's `seq`.
    pub request_seq: Option<u64>,
    pub body: String,
    pub hash: String,
}

/// Filters of an audit query; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub identity_id: Option<String>,
    pub path: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    /// Records with `seq` strictly greater (cursor paging, ascending order).
    pub after_seq: Option<u64>,
    pub to_seq: Option<u64>,
    /// Leaves out request records that a response record follows: queries show one
    /// record per request, verification and export every record.
    pub hide_answered_requests: bool,
    pub limit: usize,
}

/// Where audit records live. Kept apart from the vault's data so audit group commits and
/// secret writes do not queue behind each other.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// The newest record's sequence number and hash, to continue the chain.
    async fn last_record(&self) -> Result<Option<(u64, String)>>;
    /// Appends the rows `seal` makes from the chain's tail (the newest record's seq and
    /// hash, or `(0, genesis)`) in one durable transaction, and returns the new tail.
    /// The tail is read inside that transaction, under the log's append lock: several
    /// servers on one database (PostgreSQL replicas) append to one chain, each batch
    /// continuing the one committed before it. On failure nothing is stored. Blocks: the
    /// audit writer calls it from its own thread.
    fn append(&self, seal: Sealer<'_>) -> Result<(u64, String)>;
    /// Matching records in ascending `seq` order.
    async fn query(&self, query: AuditQuery) -> Result<Vec<AuditRow>>;
    /// The record just before `seq` (its hash anchors a verification that starts mid-chain).
    async fn record_before(&self, seq: u64) -> Result<Option<AuditRow>>;
    /// The last record removed by retention, as `audit.db` notes it (unsigned: the signed
    /// checkpoint in the data store is what verification trusts).
    async fn checkpoint(&self) -> Result<Option<(u64, String)>>;
    /// The newest record older than `before`: (seq, hash), what retention would remove up to.
    async fn purge_point(&self, before: OffsetDateTime) -> Result<Option<(u64, String)>>;
    /// Removes records up to `seq` and notes (seq, hash) as the retention point.
    async fn purge_through(&self, seq: u64, hash: String) -> Result<u64>;
    /// Stores an export job's state; `running` marks one still to finish.
    async fn save_export(&self, id: &str, body: String, running: bool) -> Result<()>;
    async fn get_export(&self, id: &str) -> Result<Option<String>>;
    /// The stored state of every export job still to finish, oldest first.
    async fn running_exports(&self) -> Result<Vec<String>>;
}
