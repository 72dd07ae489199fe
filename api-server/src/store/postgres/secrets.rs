//! Secrets in PostgreSQL: `secrets` (one head row per path) and `secret_versions`, the
//! same rows as on SQLite. Every writer of a path holds its advisory lock first.

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::rotation::{ROTATION_COLUMNS, rotation_from_row};
use super::{PostgresStore, Tx, exec, get, get_u64, lock_key, opt_u64, query_opt};
use crate::store::secrets::{VersionPlan, WriteHead};
use crate::store::unit_of_work::Applied;
use crate::store::{
    ListQuery, NewVersion, RestoreOutcome, Result, SealFn, SecretReads, SecretRow, StoreError,
    VersionMeta, VersionRow, from_millis, secrets::SecretChange, to_millis,
};

/// Paths are ASCII below 0x7f, so `prefix + DEL` bounds every path that starts with prefix.
const PREFIX_UPPER_BOUND: char = '\u{7f}';
const LOCK_SCOPE: &str = "secret";

fn day_30_ago() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp() / 86_400 - 29
}

const SECRET_COLUMNS: &str = "s.path, s.secret_type, s.current_version, s.version_count, \
    s.tags, s.description, s.max_versions, s.created_at, s.updated_at, s.deleted_at, s.expires_at, \
    (SELECT COALESCE(SUM(a.count), 0)::BIGINT FROM access_counts a WHERE a.path = s.path AND a.day >= $1)";
/// What [`SECRET_COLUMNS`] and the schedule's columns are selected from.
const FROM_SECRETS: &str = "FROM secrets s LEFT JOIN rotations r ON r.path = s.path";

fn tags_of(json: &str) -> Result<Vec<String>> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("tags: {e}")))
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".to_owned())
}

fn secret_from_row(row: &Row) -> Result<SecretRow> {
    Ok(SecretRow {
        path: get(row, 0)?,
        secret_type: get(row, 1)?,
        current_version: get_u64(row, 2)?,
        version_count: get_u64(row, 3)?,
        tags: tags_of(get(row, 4)?)?,
        description: get(row, 5)?,
        max_versions: get_u64(row, 6)? as u32,
        created_at: from_millis(get(row, 7)?),
        updated_at: from_millis(get(row, 8)?),
        deleted_at: get::<Option<i64>>(row, 9)?.map(from_millis),
        expires_at: get::<Option<i64>>(row, 10)?.map(from_millis),
        access_count_30d: get_u64(row, 11)?,
        rotation: rotation_from_row(row, 12)?,
    })
}

/// Applies one change inside the unit's transaction.
pub(super) async fn apply(c: &Tx<'_>, change: SecretChange) -> Result<Applied> {
    match change {
        SecretChange::WriteVersion { new, seal } => {
            write_version(c, new, seal).await.map(Applied::Number)
        }
        SecretChange::UpdateMetadata {
            path,
            tags,
            description,
            now,
        } => {
            lock_key(c, LOCK_SCOPE, &path).await?;
            let tags = tags.as_deref().map(tags_json);
            exec(
                c,
                "UPDATE secrets SET tags = COALESCE($2, tags), description = COALESCE($3, description), \
                 updated_at = $4 WHERE path = $1",
                &[&path, &tags, &description, &to_millis(now)],
            )
            .await
            .map(|n| Applied::Found(n > 0))
        }
        SecretChange::SoftDelete { path, now } => {
            lock_key(c, LOCK_SCOPE, &path).await?;
            exec(
                c,
                "UPDATE secrets SET deleted_at = COALESCE(deleted_at, $2) WHERE path = $1",
                &[&path, &to_millis(now)],
            )
            .await
            .map(|n| Applied::Found(n > 0))
        }
        SecretChange::Restore { path, now } => restore(c, &path, now).await.map(Applied::Restore),
        SecretChange::Destroy { path } => erase(c, &path).await.map(Applied::Found),
    }
}

async fn write_version(c: &Tx<'_>, new: NewVersion, seal: SealFn) -> Result<u64> {
    lock_key(c, LOCK_SCOPE, &new.path).await?;
    let head = query_opt(
        c,
        "SELECT current_version, max_versions, secret_type FROM secrets WHERE path = $1",
        &[&new.path],
    )
    .await?
    .map(|r| -> Result<WriteHead> {
        Ok(WriteHead {
            current_version: get_u64(&r, 0)?,
            max_versions: get(&r, 1)?,
            secret_type: get(&r, 2)?,
        })
    })
    .transpose()?;
    let VersionPlan {
        version,
        max_versions,
        secret_type,
    } = new.plan(head.as_ref())?;
    let ciphertext = seal(version).map_err(StoreError::Seal)?;
    let now = to_millis(new.created_at);
    let expires = new.expires_at.map(to_millis);
    let version_i = version as i64;
    exec(
        c,
        "INSERT INTO secret_versions (path, version, secret_type, ciphertext, created_at, created_by, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&new.path, &version_i, &secret_type, &ciphertext, &now, &new.created_by, &expires],
    )
    .await?;
    let tags = new.tags.as_deref().map(tags_json);
    if head.is_none() {
        exec(
            c,
            "INSERT INTO secrets (path, secret_type, current_version, tags, description, max_versions, \
             created_at, updated_at, deleted_at, expires_at) \
             VALUES ($1, $2, $3, COALESCE($4, '[]'), $5, $6, $7, $7, NULL, $8)",
            &[&new.path, &secret_type, &version_i, &tags, &new.description, &max_versions, &now, &expires],
        )
        .await?;
    } else {
        exec(
            c,
            "UPDATE secrets SET secret_type = $2, current_version = $3, max_versions = $4, updated_at = $5, \
             deleted_at = NULL, expires_at = $6, tags = COALESCE($7, tags), \
             description = COALESCE($8, description) WHERE path = $1",
            &[&new.path, &secret_type, &version_i, &max_versions, &now, &expires, &tags, &new.description],
        )
        .await?;
    }
    exec(
        c,
        "DELETE FROM secret_versions WHERE path = $1 AND version <= $2",
        &[&new.path, &(version_i - max_versions)],
    )
    .await?;
    // Bounded by max_versions: the count lives on the row so lists need not do it.
    exec(
        c,
        "UPDATE secrets SET version_count = (SELECT COUNT(*) FROM secret_versions v WHERE v.path = $1) \
         WHERE path = $1",
        &[&new.path],
    )
    .await?;
    Ok(version)
}

async fn restore(c: &Tx<'_>, path: &str, now: OffsetDateTime) -> Result<RestoreOutcome> {
    lock_key(c, LOCK_SCOPE, path).await?;
    let deleted = query_opt(
        c,
        "SELECT deleted_at FROM secrets WHERE path = $1",
        &[&path],
    )
    .await?
    .map(|r| get::<Option<i64>>(&r, 0))
    .transpose()?;
    Ok(match deleted {
        None => RestoreOutcome::NotFound,
        Some(None) => RestoreOutcome::NotDeleted,
        Some(Some(_)) => {
            exec(
                c,
                "UPDATE secrets SET deleted_at = NULL, updated_at = $2 WHERE path = $1",
                &[&path, &to_millis(now)],
            )
            .await?;
            RestoreOutcome::Restored
        }
    })
}

/// Erases a secret with its versions and read counts (destroy and the expiry purge).
pub(super) async fn erase(c: &Tx<'_>, path: &str) -> Result<bool> {
    lock_key(c, LOCK_SCOPE, path).await?;
    exec(c, "DELETE FROM secret_versions WHERE path = $1", &[&path]).await?;
    exec(c, "DELETE FROM access_counts WHERE path = $1", &[&path]).await?;
    exec(c, "DELETE FROM rotations WHERE path = $1", &[&path]).await?;
    let n = exec(c, "DELETE FROM secrets WHERE path = $1", &[&path]).await?;
    Ok(n > 0)
}

/// The expiry purge's erase: only if the secret is still expired once its lock is held.
pub(super) async fn erase_if_expired(c: &Tx<'_>, path: &str, now: OffsetDateTime) -> Result<bool> {
    lock_key(c, LOCK_SCOPE, path).await?;
    let still_expired = query_opt(
        c,
        "SELECT 1 FROM secrets WHERE path = $1 AND expires_at IS NOT NULL AND expires_at <= $2",
        &[&path, &to_millis(now)],
    )
    .await?
    .is_some();
    if !still_expired {
        return Ok(false);
    }
    erase(c, path).await
}

fn read_from_row(r: &Row) -> Result<(SecretRow, Option<VersionRow>)> {
    let head = SecretRow {
        path: get(r, 0)?,
        secret_type: get(r, 1)?,
        current_version: get_u64(r, 2)?,
        version_count: 0,
        tags: tags_of(get(r, 3)?)?,
        description: get(r, 4)?,
        max_versions: get_u64(r, 5)? as u32,
        created_at: from_millis(get(r, 6)?),
        updated_at: from_millis(get(r, 7)?),
        deleted_at: get::<Option<i64>>(r, 8)?.map(from_millis),
        expires_at: get::<Option<i64>>(r, 9)?.map(from_millis),
        access_count_30d: 0,
        rotation: None,
    };
    let version = match get::<Option<i64>>(r, 10)? {
        Some(v) => Some(VersionRow {
            version: v.max(0) as u64,
            secret_type: get(r, 11)?,
            ciphertext: get(r, 12)?,
            created_at: from_millis(get(r, 13)?),
            created_by: get(r, 14)?,
            expires_at: get::<Option<i64>>(r, 15)?.map(from_millis),
        }),
        None => None,
    };
    Ok((head, version))
}

#[async_trait]
impl SecretReads for PostgresStore {
    /// The hot path: one indexed join, and none of the aggregate columns (counts) that
    /// metadata and lists need.
    async fn read_secret(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<(SecretRow, Option<VersionRow>)>> {
        self.row(
            "SELECT s.path, s.secret_type, s.current_version, s.tags, s.description, s.max_versions, \
             s.created_at, s.updated_at, s.deleted_at, s.expires_at, \
             v.version, v.secret_type, v.ciphertext, v.created_at, v.created_by, v.expires_at \
             FROM secrets s LEFT JOIN secret_versions v \
             ON v.path = s.path AND v.version = COALESCE($2, s.current_version) WHERE s.path = $1",
            &[&path, &opt_u64(version)],
            read_from_row,
        )
        .await
    }

    async fn get_secret(&self, path: &str) -> Result<Option<SecretRow>> {
        let sql =
            format!("SELECT {SECRET_COLUMNS}, {ROTATION_COLUMNS} {FROM_SECRETS} WHERE s.path = $2");
        self.row(&sql, &[&day_30_ago(), &path], secret_from_row)
            .await
    }

    async fn list_versions(&self, path: &str) -> Result<Vec<VersionMeta>> {
        self.rows(
            "SELECT version, created_at, created_by, expires_at FROM secret_versions \
             WHERE path = $1 ORDER BY version",
            &[&path],
            |r| {
                Ok(VersionMeta {
                    version: get_u64(r, 0)?,
                    created_at: from_millis(get(r, 1)?),
                    created_by: get(r, 2)?,
                    expires_at: get::<Option<i64>>(r, 3)?.map(from_millis),
                })
            },
        )
        .await
    }

    async fn list_secrets(&self, query: ListQuery) -> Result<Vec<SecretRow>> {
        let strict = query
            .after
            .as_deref()
            .is_some_and(|a| a >= query.prefix.as_str());
        let lower = match &query.after {
            Some(after) if strict => after.clone(),
            _ => query.prefix.clone(),
        };
        let upper = format!("{}{PREFIX_UPPER_BOUND}", query.prefix);
        let sql = format!(
            "SELECT {SECRET_COLUMNS}, {ROTATION_COLUMNS} {FROM_SECRETS} WHERE s.path {} $2 AND s.path < $3 \
             AND ($4 OR s.deleted_at IS NULL) ORDER BY s.path LIMIT $5",
            if strict { ">" } else { ">=" }
        );
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        self.rows(
            &sql,
            &[
                &day_30_ago(),
                &lower,
                &upper,
                &query.include_deleted,
                &limit,
            ],
            secret_from_row,
        )
        .await
    }
}
