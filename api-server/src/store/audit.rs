//! The audit log's storage: an append-only, hash-chained record table kept apart from the
//! vault's data (see [`AuditStore`]).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Result;

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
    /// Appends records in one durable transaction. Blocks: the audit writer calls it from
    /// its own thread.
    fn append(&self, rows: Vec<AuditRow>) -> Result<()>;
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
    async fn save_export(&self, id: &str, body: String) -> Result<()>;
    async fn get_export(&self, id: &str) -> Result<Option<String>>;
}
