//! Secrets: versions, metadata, tags, expiry, soft delete/restore, batch reads.
//!
//! The service validates input, seals and opens values through the barrier and speaks to
//! storage through the `Store` trait only.

pub mod access;
mod listing;
pub mod rotation;
mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use scaivault_api::ErrorCode;
use scaivault_api::error::ItemError;
use scaivault_api::limits::MAX_BATCH_PATHS;
use scaivault_api::secrets::{
    BatchReadResponse, SecretListItem, SecretMetadataInput, SecretMetadataResponse,
    SecretMetadataView, SecretResponse, SecretType, VersionInfo, WriteSecretRequest,
    WriteSecretResponse,
};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::crypto::Barrier;
use crate::crypto::barrier::{BarrierError, Context, WrappedKey};
use crate::error::{Error, Result};
use crate::store::rotation::Schedule;
use crate::store::{
    ListQuery, NewVersion, RestoreOutcome, SealFn, SecretRow, Store, UnitOfWork, VersionMeta,
    now_millis,
};
pub use access::AccessCounter;
pub use validate::Limits;

pub struct SecretsService {
    store: Arc<dyn Store>,
    barrier: Arc<Barrier>,
    access: Arc<AccessCounter>,
    limits: Limits,
}

/// Parameters of a list call, already parsed from the query string.
#[derive(Debug, Default, Clone)]
pub struct ListParams {
    pub prefix: Option<String>,
    /// Page size, already checked against the declared bounds.
    pub limit: usize,
    /// Position of the previous page's end, out of its (opened) cursor.
    pub after: Option<String>,
    pub include_metadata: bool,
    pub include_deleted: bool,
}

/// One page of a list, before its position is sealed into a cursor.
#[derive(Debug)]
pub struct Listed {
    pub secrets: Vec<SecretListItem>,
    pub next_after: Option<String>,
}

impl listing::Pathed for SecretRow {
    fn path(&self) -> &str {
        &self.path
    }
}

fn not_found(path: &str) -> Error {
    Error::new(ErrorCode::SecretNotFound, format!("no secret at {path}"))
}

fn is_expired(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    expires_at.is_some_and(|t| t <= now)
}

fn parse_type(stored: &str) -> SecretType {
    SecretType::parse(stored).unwrap_or_default()
}

fn version_info(v: VersionMeta) -> VersionInfo {
    VersionInfo {
        version: v.version,
        created_at: v.created_at,
        created_by: v.created_by,
        expires_at: v.expires_at,
    }
}

impl SecretsService {
    pub fn new(
        store: Arc<dyn Store>,
        barrier: Arc<Barrier>,
        access: Arc<AccessCounter>,
        limits: Limits,
    ) -> Self {
        SecretsService {
            store,
            barrier,
            access,
            limits,
        }
    }

    pub async fn write(
        &self,
        author: &str,
        path: &str,
        request: WriteSecretRequest,
    ) -> Result<WriteSecretResponse> {
        validate::path(path)?;
        let checked = self.limits.check_write(&request)?;
        let now = now_millis();
        let expires_at = checked.expires_in.map(|d| now + d);
        let seal = self.sealer(path, &request.data)?;
        let metadata = request.metadata.unwrap_or_default();
        let schedule = match metadata.rotation {
            Some(Some(policy)) => Some(Some(
                self.schedule_for(path, &policy, request.secret_type)
                    .await?,
            )),
            Some(None) => Some(None),
            None => None,
        };
        let options = request.options.unwrap_or_default();
        let new = NewVersion {
            path: path.to_owned(),
            secret_type: request.secret_type.map(|t| t.as_str().to_owned()),
            created_by: author.to_owned(),
            created_at: now,
            expires_at,
            cas: options.cas,
            max_versions: options.max_versions,
            tags: metadata.tags.map(validate::normalize_tags),
            description: metadata.description,
        };
        let version = self
            .commit_write(UnitOfWork::new(), new, seal, schedule, None)
            .await?;
        Ok(WriteSecretResponse {
            path: path.to_owned(),
            version,
            created_at: now,
            expires_at,
        })
    }

    /// Seals `data` for `path` at the version the store assigns in its transaction. The
    /// value is serialised once; its plaintext buffer is wiped when the seal is dropped.
    fn sealer(
        &self,
        path: &str,
        data: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<SealFn> {
        let plaintext = Zeroizing::new(serde_json::to_vec(data).map_err(Error::internal)?);
        let barrier = Arc::clone(&self.barrier);
        let path = path.to_owned();
        Ok(Box::new(move |version: u64| {
            barrier
                .seal(
                    Context::Secret {
                        path: &path,
                        version,
                    },
                    &plaintext,
                )
                .map_err(|e| e.to_string())
        }))
    }

    /// Commits a new version with whatever `unit` holds already, in one transaction: the
    /// version moves the secret's rotation cycle on (`reason`: why, for a forced one),
    /// and `schedule` sets (`Some(Some)`) or removes (`Some(None)`) its schedule.
    async fn commit_write(
        &self,
        mut unit: UnitOfWork,
        new: NewVersion,
        seal: SealFn,
        schedule: Option<Option<Schedule>>,
        reason: Option<String>,
    ) -> Result<u64> {
        let (path, at) = (new.path.clone(), new.created_at);
        let version = unit.secrets().write_version(new, seal);
        unit.rotation().rotated(&path, at, reason);
        match schedule {
            Some(Some(schedule)) => {
                unit.rotation().set(&path, schedule, at);
            }
            Some(None) => {
                unit.rotation().clear(&path);
            }
            None => {}
        }
        Ok(self.store.commit(unit).await?.take(version)?)
    }

    /// Reads the current or a given version and counts the access.
    pub async fn read(&self, path: &str, version: Option<u64>) -> Result<SecretResponse> {
        validate::path(path)?;
        if version == Some(0) {
            return Err(Error::new(ErrorCode::InvalidVersion, "versions start at 1"));
        }
        let (head, row) = self
            .store
            .read_secret(path, version)
            .await?
            .ok_or_else(|| not_found(path))?;
        if head.deleted_at.is_some() {
            return Err(Error::new(
                ErrorCode::SecretDeleted,
                format!("secret {path} is deleted; POST /v1/secrets/{path}/restore brings it back"),
            ));
        }
        let row = row.ok_or_else(|| {
            Error::new(
                ErrorCode::VersionNotFound,
                format!(
                    "secret {path} has no version {} (current is {})",
                    version.unwrap_or(0),
                    head.current_version
                ),
            )
        })?;
        let now = OffsetDateTime::now_utc();
        if is_expired(row.expires_at, now) {
            return Err(Error::new(
                ErrorCode::SecretExpired,
                format!("secret {path} version {} has expired", row.version),
            ));
        }
        let context = Context::Secret {
            path,
            version: row.version,
        };
        let plaintext = match self.barrier.open(context, &row.ciphertext) {
            // Sealed by another replica under a key it added a moment ago, before the
            // change feed brought the key here.
            Err(BarrierError::UnknownKey(_)) => {
                self.sync_keyring().await?;
                self.barrier.open(context, &row.ciphertext)
            }
            opened => opened,
        }
        .map_err(Error::internal)?;
        let data = serde_json::from_slice(&plaintext)
            .map_err(|_| Error::internal("stored value is not a JSON object"))?;
        self.access.record(path);
        Ok(SecretResponse {
            path: path.to_owned(),
            version: row.version,
            data,
            secret_type: parse_type(&row.secret_type),
            created_at: row.created_at,
            created_by: row.created_by,
            expires_at: row.expires_at,
            metadata: SecretMetadataView {
                tags: head.tags,
                description: head.description,
            },
        })
    }

    /// Installs the data keys another replica added (the keyring is append-only: a key
    /// stored is never replaced, so installing the missing ones is the whole sync).
    pub async fn sync_keyring(&self) -> Result<()> {
        let known = self.barrier.key_ids();
        for key in self.store.list_keys().await? {
            if !known.contains(&key.key_id) {
                self.barrier
                    .install(&WrappedKey {
                        key_id: key.key_id,
                        wrapped: key.wrapped,
                    })
                    .map_err(Error::internal)?;
                tracing::info!(
                    key_id = key.key_id,
                    "installed a data key another replica added"
                );
            }
        }
        Ok(())
    }

    pub async fn metadata(&self, path: &str) -> Result<SecretMetadataResponse> {
        validate::path(path)?;
        let head = self
            .store
            .get_secret(path)
            .await?
            .ok_or_else(|| not_found(path))?;
        if is_expired(head.expires_at, OffsetDateTime::now_utc()) {
            return Err(Error::new(
                ErrorCode::SecretExpired,
                format!("secret {path} has expired"),
            ));
        }
        let versions = self.store.list_versions(path).await?;
        Ok(self.metadata_of(head, versions))
    }

    fn metadata_of(&self, head: SecretRow, versions: Vec<VersionMeta>) -> SecretMetadataResponse {
        let access = head.access_count_30d + self.access.pending(&head.path);
        SecretMetadataResponse {
            secret_type: parse_type(&head.secret_type),
            current_version: head.current_version,
            version_count: head.version_count,
            versions: versions.into_iter().map(version_info).collect(),
            tags: head.tags,
            description: head.description,
            max_versions: head.max_versions,
            rotation: rotation::status_of(head.rotation.as_ref(), OffsetDateTime::now_utc()),
            created_at: head.created_at,
            updated_at: head.updated_at,
            deleted_at: head.deleted_at,
            expires_at: head.expires_at,
            access_count_30d: access,
            path: head.path,
        }
    }

    pub async fn update_metadata(
        &self,
        path: &str,
        input: SecretMetadataInput,
    ) -> Result<SecretMetadataResponse> {
        validate::path(path)?;
        self.limits.check_metadata(&input)?;
        if input.tags.is_none() && input.description.is_none() && input.rotation.is_none() {
            return Err(Error::invalid(
                "nothing to update: give tags, description and/or rotation",
            ));
        }
        let schedule = match &input.rotation {
            Some(Some(policy)) => Some(Some(self.schedule_for(path, policy, None).await?)),
            Some(None) => Some(None),
            None => None,
        };
        let tags = input.tags.map(validate::normalize_tags);
        let now = OffsetDateTime::now_utc();
        let mut unit = UnitOfWork::new();
        let updated = unit
            .secrets()
            .update_metadata(path, tags, input.description, now);
        match schedule {
            Some(Some(schedule)) => {
                unit.rotation().set(path, schedule, now);
            }
            Some(None) => {
                unit.rotation().clear(path);
            }
            None => {}
        }
        if !self.store.commit(unit).await?.take(updated)? {
            return Err(not_found(path));
        }
        self.metadata(path).await
    }

    pub async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>> {
        validate::path(path)?;
        let versions = self.store.list_versions(path).await?;
        if versions.is_empty() {
            return Err(not_found(path));
        }
        Ok(versions.into_iter().map(version_info).collect())
    }

    /// One page of the secrets under `params.prefix` that `visible` lets the caller list.
    ///
    /// Only the ranges `reach` (the caller's allow prefixes, see `authz::Scope`) leaves
    /// open are read, in chunks, until the page is full, the ranges end, or
    /// `MAX_LIST_SCAN_ROWS` rows were examined. `next_after` is the position to go on
    /// from, for the caller to seal: it may name a row the caller does not see.
    pub async fn list(
        &self,
        params: ListParams,
        reach: &[String],
        visible: impl Fn(&str) -> bool,
    ) -> Result<Listed> {
        let prefix = params.prefix.unwrap_or_default();
        scaivault_api::path::validate_prefix(&prefix)
            .map_err(|e| Error::new(ErrorCode::InvalidPath, e.to_string()))?;
        let ranges = listing::narrow(&prefix, reach);
        let now = OffsetDateTime::now_utc();
        let include_deleted = params.include_deleted;
        let (found, next_after) = listing::page(
            &ranges,
            params.after,
            params.limit,
            |prefix, after, limit| {
                self.store.list_secrets(ListQuery {
                    prefix,
                    after,
                    limit,
                    include_deleted,
                })
            },
            |row: &SecretRow| visible(&row.path) && !is_expired(row.expires_at, now),
        )
        .await?;
        let secrets = found
            .into_iter()
            .map(|r| self.list_item(r, params.include_metadata))
            .collect();
        Ok(Listed {
            secrets,
            next_after,
        })
    }

    fn list_item(&self, r: SecretRow, include_metadata: bool) -> SecretListItem {
        let access = r.access_count_30d + self.access.pending(&r.path);
        let (description, created_at, expires_at, deleted_at, version_count) = if include_metadata {
            (
                r.description,
                Some(r.created_at),
                r.expires_at,
                r.deleted_at,
                Some(r.version_count),
            )
        } else {
            (None, None, None, None, None)
        };
        let rotation = rotation::status_of(r.rotation.as_ref(), OffsetDateTime::now_utc());
        SecretListItem {
            rotation,
            path: r.path,
            secret_type: parse_type(&r.secret_type),
            tags: r.tags,
            current_version: r.current_version,
            updated_at: r.updated_at,
            access_count_30d: access,
            description,
            created_at,
            expires_at,
            deleted_at,
            version_count,
        }
    }

    /// Reads each path on its own: one failure does not fail the batch. `allowed` decides
    /// per path whether the caller may read it (authorization happens per item).
    pub async fn batch_read(
        &self,
        paths: Vec<String>,
        allowed: impl Fn(&str) -> Result<()>,
    ) -> Result<BatchReadResponse> {
        if paths.is_empty() {
            return Err(Error::invalid("paths must not be empty"));
        }
        if paths.len() > MAX_BATCH_PATHS {
            return Err(Error::invalid(format!(
                "at most {MAX_BATCH_PATHS} paths per batch"
            )));
        }
        let mut secrets = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for path in paths {
            if secrets.contains_key(&path) || errors.contains_key(&path) {
                continue;
            }
            let result = match allowed(&path) {
                Ok(()) => self.read(&path, None).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(secret) => {
                    secrets.insert(path, secret);
                }
                Err(e)
                    if e.code == ErrorCode::StorageUnavailable || e.code == ErrorCode::Internal =>
                {
                    return Err(e);
                }
                Err(e) => {
                    errors.insert(
                        path,
                        ItemError {
                            code: e.code,
                            message: e.message,
                        },
                    );
                }
            }
        }
        Ok(BatchReadResponse { secrets, errors })
    }

    pub async fn soft_delete(&self, path: &str) -> Result<()> {
        validate::path(path)?;
        if self
            .store
            .apply(|u| u.secrets().soft_delete(path, OffsetDateTime::now_utc()))
            .await?
        {
            Ok(())
        } else {
            Err(not_found(path))
        }
    }

    pub async fn destroy(&self, path: &str) -> Result<()> {
        validate::path(path)?;
        if self.store.apply(|u| u.secrets().destroy(path)).await? {
            self.access.forget(path);
            Ok(())
        } else {
            Err(not_found(path))
        }
    }

    pub async fn restore(&self, path: &str) -> Result<SecretMetadataResponse> {
        validate::path(path)?;
        match self
            .store
            .apply(|u| u.secrets().restore(path, OffsetDateTime::now_utc()))
            .await?
        {
            RestoreOutcome::Restored => self.metadata(path).await,
            RestoreOutcome::NotDeleted => Err(Error::new(
                ErrorCode::NotDeleted,
                format!("secret {path} is not deleted"),
            )),
            RestoreOutcome::NotFound => Err(not_found(path)),
        }
    }
}
