//! Secrets: a head row per path and its versions (sealed values), with tags, expiry,
//! retention and soft delete.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Result;
use super::Slot;
use super::unit_of_work::aggregate_writes;

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
    /// The rotation schedule (metadata and lists; reads of the value leave it `None`).
    pub rotation: Option<super::RotationRow>,
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

/// What a write reads of the secret's head row before it writes.
#[derive(Debug, Clone)]
pub struct WriteHead {
    pub current_version: u64,
    pub max_versions: i64,
    pub secret_type: String,
}

/// What a write decided from the head: the version it creates, how many to keep, the type.
#[derive(Debug, Clone)]
pub struct VersionPlan {
    pub version: u64,
    pub max_versions: i64,
    pub secret_type: String,
}

impl NewVersion {
    /// The one rule of writes, for every backend: check-and-set against the current
    /// version, then the next version with the given or stored retention and type.
    pub fn plan(&self, head: Option<&WriteHead>) -> super::Result<VersionPlan> {
        let current = head.map_or(0, |h| h.current_version);
        if let Some(expected) = self.cas
            && expected != current
        {
            return Err(super::StoreError::CasMismatch { current });
        }
        Ok(VersionPlan {
            version: current + 1,
            max_versions: self
                .max_versions
                .map(i64::from)
                .or(head.map(|h| h.max_versions))
                .unwrap_or(i64::from(scaivault_api::limits::DEFAULT_MAX_VERSIONS)),
            secret_type: self
                .secret_type
                .clone()
                .or_else(|| head.map(|h| h.secret_type.clone()))
                .unwrap_or_else(|| "generic".to_owned()),
        })
    }
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

/// Reads of secrets. Values stay sealed; the secrets service opens them.
#[async_trait]
pub trait SecretReads: Send + Sync + 'static {
    /// The head row and the requested (default: current) version in one read. The head's
    /// `version_count` and `access_count_30d` are not filled (0): reads do not need them.
    async fn read_secret(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<(SecretRow, Option<VersionRow>)>>;
    async fn get_secret(&self, path: &str) -> Result<Option<SecretRow>>;
    /// Kept versions in ascending order.
    async fn list_versions(&self, path: &str) -> Result<Vec<VersionMeta>>;
    /// Heads in path order, from `after` (exclusive) within `prefix`, at most `limit`.
    async fn list_secrets(&self, query: ListQuery) -> Result<Vec<SecretRow>>;
}

/// Writes to secrets; build them with [`super::UnitOfWork::secrets`].
pub enum SecretChange {
    WriteVersion {
        new: NewVersion,
        seal: SealFn,
    },
    UpdateMetadata {
        path: String,
        tags: Option<Vec<String>>,
        description: Option<String>,
        now: OffsetDateTime,
    },
    SoftDelete {
        path: String,
        now: OffsetDateTime,
    },
    Restore {
        path: String,
        now: OffsetDateTime,
    },
    Destroy {
        path: String,
    },
}

impl SecretChange {
    /// The secret whose reads this change affects (caches drop it after the commit).
    pub fn path(&self) -> &str {
        match self {
            SecretChange::WriteVersion { new, .. } => &new.path,
            SecretChange::UpdateMetadata { path, .. }
            | SecretChange::SoftDelete { path, .. }
            | SecretChange::Restore { path, .. }
            | SecretChange::Destroy { path } => path,
        }
    }
}

aggregate_writes!(SecretWrites, secrets, Secret(SecretChange));

impl SecretWrites<'_> {
    /// Writes a new version; checks CAS, prunes versions beyond retention, clears a soft
    /// delete. Yields the new version number; a CAS failure fails the unit with
    /// [`super::StoreError::CasMismatch`], a seal failure with [`super::StoreError::Seal`].
    pub fn write_version(self, new: NewVersion, seal: SealFn) -> Slot<u64> {
        self.push(SecretChange::WriteVersion { new, seal })
    }

    /// Replaces tags and/or description. Yields false when the secret does not exist.
    pub fn update_metadata(
        self,
        path: &str,
        tags: Option<Vec<String>>,
        description: Option<String>,
        now: OffsetDateTime,
    ) -> Slot<bool> {
        self.push(SecretChange::UpdateMetadata {
            path: path.to_owned(),
            tags,
            description,
            now,
        })
    }

    /// Marks the secret deleted (keeping the first deletion time). Yields false when absent.
    pub fn soft_delete(self, path: &str, now: OffsetDateTime) -> Slot<bool> {
        self.push(SecretChange::SoftDelete {
            path: path.to_owned(),
            now,
        })
    }

    pub fn restore(self, path: &str, now: OffsetDateTime) -> Slot<RestoreOutcome> {
        self.push(SecretChange::Restore {
            path: path.to_owned(),
            now,
        })
    }

    /// Erases the secret, every version and its read counts. Yields false when absent.
    pub fn destroy(self, path: &str) -> Slot<bool> {
        self.push(SecretChange::Destroy {
            path: path.to_owned(),
        })
    }
}
