//! Secrets in SQLite: `secrets` (one head row per path) and `secret_versions`. Reads of
//! current versions go through the read cache first.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::rotation::{ROTATION_COLUMNS, rotation_from_row};
use super::{SqliteStore, all_rows, map_err, one_row};
use crate::store::secrets::{VersionPlan, WriteHead};
use crate::store::unit_of_work::Applied;
use crate::store::{
    ListQuery, NewVersion, RestoreOutcome, Result, SealFn, SecretReads, SecretRow, StoreError,
    VersionMeta, VersionRow, from_millis, secrets::SecretChange, to_millis,
};

/// Paths are ASCII below 0x7f, so `prefix + DEL` bounds every path that starts with prefix.
const PREFIX_UPPER_BOUND: char = '\u{7f}';

fn day_30_ago() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp() / 86_400 - 29
}

/// Selected `FROM secrets s LEFT JOIN rotations r ON r.path = s.path` (see [`FROM_SECRETS`]).
const SECRET_COLUMNS: &str = "s.path, s.secret_type, s.current_version, s.version_count, \
    s.tags, s.description, s.max_versions, s.created_at, s.updated_at, s.deleted_at, s.expires_at, \
    (SELECT COALESCE(SUM(a.count), 0) FROM access_counts a WHERE a.path = s.path AND a.day >= ?1)";
const FROM_SECRETS: &str = "FROM secrets s LEFT JOIN rotations r ON r.path = s.path";

fn secret_from_row(row: &Row<'_>) -> rusqlite::Result<SecretRow> {
    let tags_json: String = row.get(4)?;
    let tags = serde_json::from_str(&tags_json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(SecretRow {
        path: row.get(0)?,
        secret_type: row.get(1)?,
        current_version: row.get::<_, i64>(2)? as u64,
        version_count: row.get::<_, i64>(3)? as u64,
        tags,
        description: row.get(5)?,
        max_versions: row.get::<_, i64>(6)? as u32,
        created_at: from_millis(row.get(7)?),
        updated_at: from_millis(row.get(8)?),
        deleted_at: row.get::<_, Option<i64>>(9)?.map(from_millis),
        expires_at: row.get::<_, Option<i64>>(10)?.map(from_millis),
        access_count_30d: row.get::<_, i64>(11)? as u64,
        rotation: rotation_from_row(row, 12)?,
    })
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".to_owned())
}

/// Applies one change inside the unit's transaction.
pub(super) fn apply(c: &Connection, change: SecretChange) -> Result<Applied> {
    match change {
        SecretChange::WriteVersion { new, seal } => write_version(c, new, seal).map(Applied::Number),
        SecretChange::UpdateMetadata {
            path,
            tags,
            description,
            now,
        } => c
            .execute(
                "UPDATE secrets SET tags = COALESCE(?2, tags), description = COALESCE(?3, description), updated_at = ?4 WHERE path = ?1",
                params![path, tags.as_deref().map(tags_json), description, to_millis(now)],
            )
            .map(|n| Applied::Found(n > 0))
            .map_err(map_err),
        SecretChange::SoftDelete { path, now } => c
            .execute(
                "UPDATE secrets SET deleted_at = COALESCE(deleted_at, ?2) WHERE path = ?1",
                params![path, to_millis(now)],
            )
            .map(|n| Applied::Found(n > 0))
            .map_err(map_err),
        SecretChange::Restore { path, now } => restore(c, &path, now).map(Applied::Restore),
        SecretChange::Destroy { path } => erase(c, &path).map(Applied::Found),
    }
}

fn write_version(c: &Connection, new: NewVersion, seal: SealFn) -> Result<u64> {
    let head = c
        .query_row(
            "SELECT current_version, max_versions, secret_type FROM secrets WHERE path = ?1",
            [&new.path],
            |r| {
                Ok(WriteHead {
                    current_version: r.get::<_, i64>(0)?.max(0) as u64,
                    max_versions: r.get(1)?,
                    secret_type: r.get(2)?,
                })
            },
        )
        .optional()
        .map_err(map_err)?;
    let VersionPlan {
        version,
        max_versions,
        secret_type,
    } = new.plan(head.as_ref())?;
    let ciphertext = seal(version).map_err(StoreError::Seal)?;
    let now = to_millis(new.created_at);
    let expires = new.expires_at.map(to_millis);
    c.execute(
        "INSERT INTO secret_versions (path, version, secret_type, ciphertext, created_at, created_by, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![new.path, version as i64, secret_type, ciphertext, now, new.created_by, expires],
    )
    .map_err(map_err)?;
    match head {
        None => {
            c.execute(
                "INSERT INTO secrets (path, secret_type, current_version, tags, description, max_versions, created_at, updated_at, deleted_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, NULL, ?8)",
                params![
                    new.path,
                    secret_type,
                    version as i64,
                    tags_json(new.tags.as_deref().unwrap_or_default()),
                    new.description,
                    max_versions,
                    now,
                    expires
                ],
            )
            .map_err(map_err)?;
        }
        Some(_) => {
            c.execute(
                "UPDATE secrets SET secret_type = ?2, current_version = ?3, max_versions = ?4, updated_at = ?5, \
                 deleted_at = NULL, expires_at = ?6, \
                 tags = COALESCE(?7, tags), description = COALESCE(?8, description) WHERE path = ?1",
                params![
                    new.path,
                    secret_type,
                    version as i64,
                    max_versions,
                    now,
                    expires,
                    new.tags.as_deref().map(tags_json),
                    new.description
                ],
            )
            .map_err(map_err)?;
        }
    }
    c.execute(
        "DELETE FROM secret_versions WHERE path = ?1 AND version <= ?2",
        params![new.path, version as i64 - max_versions],
    )
    .map_err(map_err)?;
    // Bounded by max_versions: the count lives on the row so lists need not do it.
    c.execute(
        "UPDATE secrets SET version_count = (SELECT COUNT(*) FROM secret_versions v WHERE v.path = ?1) \
         WHERE path = ?1",
        [&new.path],
    )
    .map_err(map_err)?;
    Ok(version)
}

fn restore(c: &Connection, path: &str, now: OffsetDateTime) -> Result<RestoreOutcome> {
    let deleted: Option<Option<i64>> = c
        .query_row(
            "SELECT deleted_at FROM secrets WHERE path = ?1",
            [path],
            |r| r.get(0),
        )
        .optional()
        .map_err(map_err)?;
    Ok(match deleted {
        None => RestoreOutcome::NotFound,
        Some(None) => RestoreOutcome::NotDeleted,
        Some(Some(_)) => {
            c.execute(
                "UPDATE secrets SET deleted_at = NULL, updated_at = ?2 WHERE path = ?1",
                params![path, to_millis(now)],
            )
            .map_err(map_err)?;
            RestoreOutcome::Restored
        }
    })
}

/// Erases a secret with its versions and read counts (destroy and the expiry purge).
pub(super) fn erase(c: &Connection, path: &str) -> Result<bool> {
    c.execute("DELETE FROM secret_versions WHERE path = ?1", [path])
        .map_err(map_err)?;
    c.execute("DELETE FROM access_counts WHERE path = ?1", [path])
        .map_err(map_err)?;
    c.execute("DELETE FROM rotations WHERE path = ?1", [path])
        .map_err(map_err)?;
    let n = c
        .execute("DELETE FROM secrets WHERE path = ?1", [path])
        .map_err(map_err)?;
    Ok(n > 0)
}

/// The hot path: one indexed join, and none of the aggregate columns (counts) that
/// metadata and lists need.
fn read_current_or(
    c: &Connection,
    path: &str,
    version: Option<u64>,
) -> Result<Option<(SecretRow, Option<VersionRow>)>> {
    c.prepare_cached(
        "SELECT s.path, s.secret_type, s.current_version, s.tags, s.description, s.max_versions, \
         s.created_at, s.updated_at, s.deleted_at, s.expires_at, \
         v.version, v.secret_type, v.ciphertext, v.created_at, v.created_by, v.expires_at \
         FROM secrets s LEFT JOIN secret_versions v \
         ON v.path = s.path AND v.version = COALESCE(?2, s.current_version) WHERE s.path = ?1",
    )
    .and_then(|mut st| {
        st.query_row(params![path, version.map(|v| v as i64)], |r| {
            let tags_json: String = r.get(3)?;
            let head = SecretRow {
                path: r.get(0)?,
                secret_type: r.get(1)?,
                current_version: r.get::<_, i64>(2)? as u64,
                version_count: 0,
                tags: serde_json::from_str(&tags_json).unwrap_or_default(),
                description: r.get(4)?,
                max_versions: r.get::<_, i64>(5)? as u32,
                created_at: from_millis(r.get(6)?),
                updated_at: from_millis(r.get(7)?),
                deleted_at: r.get::<_, Option<i64>>(8)?.map(from_millis),
                expires_at: r.get::<_, Option<i64>>(9)?.map(from_millis),
                access_count_30d: 0,
                rotation: None,
            };
            let version = match r.get::<_, Option<i64>>(10)? {
                Some(v) => Some(VersionRow {
                    version: v as u64,
                    secret_type: r.get(11)?,
                    ciphertext: r.get(12)?,
                    created_at: from_millis(r.get(13)?),
                    created_by: r.get(14)?,
                    expires_at: r.get::<_, Option<i64>>(15)?.map(from_millis),
                }),
                None => None,
            };
            Ok((head, version))
        })
        .optional()
    })
    .map_err(map_err)
}

#[async_trait]
impl SecretReads for SqliteStore {
    async fn read_secret(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<(SecretRow, Option<VersionRow>)>> {
        if version.is_none()
            && let Some(entry) = self.cache.get(path)
        {
            let (head, current) = entry.as_ref();
            return Ok(Some((head.clone(), Some(current.clone()))));
        }
        let path = path.to_owned();
        let cache = Arc::clone(&self.cache);
        let read_at = cache.generation();
        let found = self
            .read(move |c| read_current_or(c, &path, version))
            .await?;
        if version.is_none()
            && let Some((head, Some(current))) = &found
        {
            cache.insert(read_at, Arc::new((head.clone(), current.clone())));
        }
        Ok(found)
    }

    async fn get_secret(&self, path: &str) -> Result<Option<SecretRow>> {
        let path = path.to_owned();
        self.read(move |c| {
            let sql = format!(
                "SELECT {SECRET_COLUMNS}, {ROTATION_COLUMNS} {FROM_SECRETS} WHERE s.path = ?2"
            );
            one_row(c, &sql, params![day_30_ago(), path], secret_from_row)
        })
        .await
    }

    async fn list_versions(&self, path: &str) -> Result<Vec<VersionMeta>> {
        let path = path.to_owned();
        self.read(move |c| {
            let sql = "SELECT version, created_at, created_by, expires_at FROM secret_versions \
                       WHERE path = ?1 ORDER BY version";
            all_rows(c, sql, [path], |r| {
                Ok(VersionMeta {
                    version: r.get::<_, i64>(0)? as u64,
                    created_at: from_millis(r.get(1)?),
                    created_by: r.get(2)?,
                    expires_at: r.get::<_, Option<i64>>(3)?.map(from_millis),
                })
            })
        })
        .await
    }

    async fn list_secrets(&self, query: ListQuery) -> Result<Vec<SecretRow>> {
        self.read(move |c| {
            let lower = match &query.after {
                Some(after) if after.as_str() >= query.prefix.as_str() => after.clone(),
                _ => query.prefix.clone(),
            };
            let strict = query.after.as_deref().is_some_and(|a| a >= query.prefix.as_str());
            let upper = format!("{}{PREFIX_UPPER_BOUND}", query.prefix);
            let sql = format!(
                "SELECT {SECRET_COLUMNS}, {ROTATION_COLUMNS} {FROM_SECRETS} WHERE s.path {} ?2 AND s.path < ?3 AND (?4 OR s.deleted_at IS NULL) ORDER BY s.path LIMIT ?5",
                if strict { ">" } else { ">=" }
            );
            all_rows(
                c,
                &sql,
                params![day_30_ago(), lower, upper, query.include_deleted, query.limit as i64],
                secret_from_row,
            )
        })
        .await
    }
}
