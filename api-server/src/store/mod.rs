//! Storage behind one backend-neutral trait.
//!
//! Nothing above this module knows which database holds the rows: the SQLite backend
//! ships now, PostgreSQL implements the same trait. Values arrive here already sealed by
//! the barrier; the store never sees plaintext.

use async_trait::async_trait;
use time::OffsetDateTime;

mod read_cache;
pub mod sqlite;
pub mod sqlite_audit;
mod time_codec;
mod wal_checkpoint;

pub use time_codec::{from_millis, now_millis, to_millis};
pub use wal_checkpoint::{AUDIT_PAUSE_SECONDS, DATA_PAUSE_SECONDS};

#[derive(Debug, thiserror::Error)]
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
    /// A unique name or key is taken.
    #[error("already exists")]
    Conflict,
    /// Stored data does not decode: corruption or a bug, never user input.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One wrapped data key of the keyring.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub key_id: u32,
    pub wrapped: Vec<u8>,
    pub created_at: OffsetDateTime,
}

/// The head row of a secret: everything but the versions' values.
#[derive(Debug, Clone)]
pub struct SecretRow {
    pub path: String,
    pub secret_type: String,
    pub current_version: u64,
    pub version_count: u64,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub max_versions: u32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub deleted_at: Option<OffsetDateTime>,
    /// Expiry of the current version.
    pub expires_at: Option<OffsetDateTime>,
    /// Reads counted over the last 30 days, as flushed to storage.
    pub access_count_30d: u64,
}

/// One stored version: its sealed value and who wrote it.
#[derive(Clone)]
pub struct VersionRow {
    pub version: u64,
    pub secret_type: String,
    pub ciphertext: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub expires_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for VersionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionRow")
            .field("version", &self.version)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct VersionMeta {
    pub version: u64,
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub expires_at: Option<OffsetDateTime>,
}

/// Seals a value for the version number the store assigns inside its transaction, so the
/// ciphertext's AAD can bind the exact version without a second round trip.
pub type SealFn = Box<dyn Fn(u64) -> std::result::Result<Vec<u8>, String> + Send + Sync>;

/// Everything a write needs besides the sealed value.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub path: String,
    /// `None` keeps the stored type (`generic` for a new secret).
    pub secret_type: Option<String>,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    /// `Some(0)` = only create, `Some(n)` = only if current is `n`.
    pub cas: Option<u64>,
    /// `None` keeps what is stored (default 10 for a new secret).
    pub max_versions: Option<u32>,
    pub tags: Option<Vec<String>>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreOutcome {
    Restored,
    NotDeleted,
    NotFound,
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: String,
    /// Return paths strictly after this one.
    pub after: Option<String>,
    pub limit: usize,
    pub include_deleted: bool,
}

/// A token as stored: only the hash of its secret part.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub hash: [u8; 32],
    pub accessor: String,
    pub identity_id: String,
    pub identity_type: String,
    pub policies: Vec<String>,
    pub display_name: Option<String>,
    pub issued_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

/// A policy as stored: rules kept as their JSON wire form, compiled by the authz engine.
#[derive(Debug, Clone)]
pub struct PolicyRow {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub rules_json: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct BindingRow {
    pub policy_id: String,
    pub identity_type: String,
    pub identity_id: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct IdentityRow {
    pub id: String,
    pub identity_type: String,
    pub display_name: Option<String>,
    pub created_at: OffsetDateTime,
}

/// Who used an idempotency key and for which request: the caller's identity scopes the
/// key (one caller's key never replays another's answer), the fingerprint names the
/// request (SHA-256 over method, path with query, and body).
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub scope: String,
    pub key: String,
    pub fingerprint: [u8; 32],
    pub now: OffsetDateTime,
    /// When the entry is forgotten (first use + 24 h).
    pub expires_at: OffsetDateTime,
    /// An entry still in flight that started before this is abandoned (its server
    /// stopped mid-request) and may be claimed again.
    pub abandoned_before: OffsetDateTime,
}

/// The answer kept for replay; `body` is sealed by the barrier (it may hold a token).
#[derive(Clone)]
pub struct StoredAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    /// `None` when the answer was too large to keep.
    pub sealed_body: Option<Vec<u8>>,
}

impl std::fmt::Debug for StoredAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAnswer")
            .field("status", &self.status)
            .field("sealed_len", &self.sealed_body.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// What claiming an idempotency key found.
#[derive(Debug, Clone)]
pub enum ClaimOutcome {
    /// The key was free (or abandoned): this request now holds it and must finish it
    /// with `complete_idempotency` or give it back with `release_idempotency`.
    Claimed,
    /// The same request finished before: here is its answer.
    Replay(StoredAnswer),
    /// The same request is still running.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
}

/// The storage contract. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Backend name for health output (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
    /// A cheap round trip proving the database answers.
    async fn ping(&self) -> Result<()>;

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    async fn put_meta(&self, key: &str, value: Vec<u8>) -> Result<()>;

    async fn list_keys(&self) -> Result<Vec<KeyRow>>;
    async fn insert_key(&self, key: KeyRow) -> Result<()>;

    /// Writes a new version; checks CAS, prunes versions beyond retention, clears a soft
    /// delete. Returns the new version number.
    async fn write_version(&self, new: NewVersion, seal: SealFn) -> Result<u64>;
    /// The head row and the requested (default: current) version in one read. The head's
    /// `version_count` and `access_count_30d` are not filled (0): reads do not need them.
    async fn read_secret(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<(SecretRow, Option<VersionRow>)>>;
    async fn get_secret(&self, path: &str) -> Result<Option<SecretRow>>;
    async fn list_versions(&self, path: &str) -> Result<Vec<VersionMeta>>;
    /// Replaces tags and/or description. Returns false when the secret does not exist.
    async fn update_metadata(
        &self,
        path: &str,
        tags: Option<Vec<String>>,
        description: Option<String>,
        now: OffsetDateTime,
    ) -> Result<bool>;
    async fn soft_delete(&self, path: &str, now: OffsetDateTime) -> Result<bool>;
    async fn restore(&self, path: &str, now: OffsetDateTime) -> Result<RestoreOutcome>;
    /// Erases the secret and every version. Returns false when nothing was there.
    async fn destroy(&self, path: &str) -> Result<bool>;
    async fn list_secrets(&self, query: ListQuery) -> Result<Vec<SecretRow>>;
    /// Erases secrets whose current version expired before `now`; returns their paths.
    async fn purge_expired(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<String>>;

    /// Adds read counts for one UTC day (days since the epoch).
    async fn add_access_counts(&self, day: i64, counts: Vec<(String, u64)>) -> Result<()>;
    /// Drops per-day counters older than `before_day`.
    async fn prune_access_counts(&self, before_day: i64) -> Result<()>;

    async fn insert_token(&self, token: TokenRow) -> Result<()>;
    async fn token_by_hash(&self, hash: [u8; 32]) -> Result<Option<TokenRow>>;
    async fn list_tokens(&self, now: OffsetDateTime) -> Result<Vec<TokenRow>>;
    /// Returns the hash of the revoked token so caches can drop it.
    async fn revoke_token(&self, accessor: &str) -> Result<Option<[u8; 32]>>;
    async fn purge_expired_tokens(&self, now: OffsetDateTime) -> Result<u64>;

    /// `Conflict` when the name is taken.
    async fn create_policy(&self, policy: PolicyRow) -> Result<()>;
    /// Replaces name, description and rules. Returns false when the id is unknown.
    async fn update_policy(&self, policy: PolicyRow) -> Result<bool>;
    async fn get_policy(&self, id: &str) -> Result<Option<PolicyRow>>;
    async fn list_policies(&self) -> Result<Vec<PolicyRow>>;
    /// Deletes the policy and its bindings. Returns false when the id is unknown.
    async fn delete_policy(&self, id: &str) -> Result<bool>;
    /// `NotFound` when the policy does not exist; binding twice is a no-op.
    async fn add_binding(&self, binding: BindingRow) -> Result<()>;
    /// Every binding, or those of one policy.
    async fn list_bindings(&self, policy_id: Option<&str>) -> Result<Vec<BindingRow>>;
    async fn delete_binding(&self, policy_id: &str, identity_id: &str) -> Result<bool>;

    /// `Conflict` when the identity exists.
    async fn create_identity(&self, identity: IdentityRow) -> Result<()>;
    async fn list_identities(&self) -> Result<Vec<IdentityRow>>;
    async fn get_identity(&self, id: &str) -> Result<Option<IdentityRow>>;

    /// Atomically looks up the caller's key and, when it is free, marks it in flight.
    async fn claim_idempotency(&self, claim: IdempotencyClaim) -> Result<ClaimOutcome>;
    /// Keeps the answer of the request that holds the key.
    async fn complete_idempotency(
        &self,
        scope: &str,
        key: &str,
        answer: StoredAnswer,
    ) -> Result<()>;
    /// Frees a key whose request ended without a final answer (nothing was applied), so
    /// a retry runs again.
    async fn release_idempotency(&self, scope: &str, key: &str) -> Result<()>;
    /// Forgets at most `limit` entries that expired before `now`; returns how many.
    async fn purge_expired_idempotency(&self, now: OffsetDateTime, limit: usize) -> Result<u64>;
}

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
