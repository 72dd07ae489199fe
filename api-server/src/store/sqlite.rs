//! The embedded SQLite backend: one file in WAL mode, one writer connection and a small
//! pool of readers, every call on the blocking thread pool; reads of current versions are
//! served from a cache of committed rows when they can be ([`ReadCache`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};
use time::OffsetDateTime;

use super::read_cache::ReadCache;
use super::wal_checkpoint::{Checkpointer, DATA_PAUSE_SECONDS, NO_AUTOCHECKPOINT};
use super::{
    BindingRow, IdentityRow, KeyRow, ListQuery, NewVersion, PolicyRow, RestoreOutcome, Result,
    SealFn, SecretRow, Store, StoreError, TokenRow, VersionMeta, VersionRow, from_millis,
    to_millis,
};
use super::{ClaimOutcome, IdempotencyClaim, StoredAnswer};

mod idempotency;
pub(crate) mod migrations;

const READERS: usize = 4;
/// Current versions kept in memory: ~0.5 KiB each typically, bounded in bytes because a
/// value may be up to 64 KiB.
const CACHED_SECRETS: usize = 16_384;
const CACHED_BYTES: u64 = 32 * 1024 * 1024;
/// Paths are ASCII below 0x7f, so `prefix + DEL` bounds every path that starts with prefix.
const PREFIX_UPPER_BOUND: char = '\u{7f}';

pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    cache: Arc<ReadCache>,
    checkpointer: Arc<Checkpointer>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::ReadOnly
                    | C::CannotOpen
                    | C::DiskFull
                    | C::SystemIoFailure
                    | C::NotADatabase
                    | C::PermissionDenied
                    | C::OutOfMemory
                    | C::FileLockingProtocolFailed
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Corrupt(e.to_string()),
    }
}

pub(crate) fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(map_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(map_err)?;
    // FULL: a write acknowledged to a client survives power loss, not only a crash.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
    )
    .map_err(map_err)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let mut writer = open_connection(path, false)?;
        writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(map_err)?;
        migrations::run(&mut writer, migrations::MIGRATIONS).map_err(map_err)?;
        // Checkpoints run on their own thread, never inside a write.
        writer.execute_batch(NO_AUTOCHECKPOINT).map_err(map_err)?;
        let readers = (0..READERS)
            .map(|_| open_connection(path, true).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        let writer = Arc::new(Mutex::new(writer));
        let checkpointer = Checkpointer::spawn(
            "data",
            open_connection(path, false)?,
            Arc::clone(&writer),
            &DATA_PAUSE_SECONDS,
        )
        .map_err(|e| StoreError::Unavailable(format!("checkpoint thread: {e}")))?;
        Ok(SqliteStore {
            writer,
            readers: Arc::new(readers),
            next_reader: AtomicUsize::new(0),
            cache: Arc::new(ReadCache::new(CACHED_SECRETS, CACHED_BYTES)),
            checkpointer: Arc::new(checkpointer),
        })
    }

    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let writer = Arc::clone(&self.writer);
        let checkpointer = Arc::clone(&self.checkpointer);
        tokio::task::spawn_blocking(move || {
            let mut conn = writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let result = f(&mut conn);
            drop(conn);
            checkpointer.notify();
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("storage task failed: {e}")))?
    }

    /// A write that changes what reads of `path` return. The cache entry is dropped on the
    /// blocking thread right after the transaction, so it happens even if the caller stops
    /// waiting (a cancelled request must not leave a stale entry behind).
    async fn write_secret<T, F>(&self, path: String, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T> + Send + 'static,
    {
        let cache = Arc::clone(&self.cache);
        self.write(move |c| {
            let result = f(c, &path);
            cache.invalidate(&path);
            result
        })
        .await
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        tokio::task::spawn_blocking(move || {
            let conn = readers[index]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("storage task failed: {e}")))?
    }
}

fn day_30_ago() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp() / 86_400 - 29
}

const SECRET_COLUMNS: &str = "s.path, s.secret_type, s.current_version, s.version_count, \
    s.tags, s.description, s.max_versions, s.created_at, s.updated_at, s.deleted_at, s.expires_at, \
    (SELECT COALESCE(SUM(a.count), 0) FROM access_counts a WHERE a.path = s.path AND a.day >= ?1)";

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
    })
}

fn get_secret_in(conn: &Connection, path: &str) -> Result<Option<SecretRow>> {
    let sql = format!("SELECT {SECRET_COLUMNS} FROM secrets s WHERE s.path = ?2");
    conn.prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_row(params![day_30_ago(), path], secret_from_row)
                .optional()
        })
        .map_err(map_err)
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<TokenRow> {
    let hash: Vec<u8> = row.get(0)?;
    let policies: String = row.get(4)?;
    Ok(TokenRow {
        hash: hash.try_into().unwrap_or([0u8; 32]),
        accessor: row.get(1)?,
        identity_id: row.get(2)?,
        identity_type: row.get(3)?,
        policies: serde_json::from_str(&policies).unwrap_or_default(),
        display_name: row.get(5)?,
        issued_at: from_millis(row.get(6)?),
        expires_at: row.get::<_, Option<i64>>(7)?.map(from_millis),
    })
}

const TOKEN_COLUMNS: &str =
    "hash, accessor, identity_id, identity_type, policies, display_name, issued_at, expires_at";

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn policy_from_row(r: &Row<'_>) -> rusqlite::Result<PolicyRow> {
    Ok(PolicyRow {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        rules_json: r.get(3)?,
        created_at: from_millis(r.get(4)?),
        updated_at: from_millis(r.get(5)?),
    })
}

fn binding_from_row(r: &Row<'_>) -> rusqlite::Result<BindingRow> {
    Ok(BindingRow {
        policy_id: r.get(0)?,
        identity_type: r.get(1)?,
        identity_id: r.get(2)?,
        created_at: from_millis(r.get(3)?),
    })
}

fn identity_from_row(r: &Row<'_>) -> rusqlite::Result<IdentityRow> {
    Ok(IdentityRow {
        id: r.get(0)?,
        identity_type: r.get(1)?,
        display_name: r.get(2)?,
        created_at: from_millis(r.get(3)?),
    })
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".to_owned())
}

fn purge_expired_in(c: &mut Connection, now: OffsetDateTime, limit: usize) -> Result<Vec<String>> {
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)?;
    let paths: Vec<String> = {
        let mut st = tx
            .prepare(
                "SELECT path FROM secrets WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2",
            )
            .map_err(map_err)?;
        let rows = st
            .query_map(params![to_millis(now), limit as i64], |r| r.get(0))
            .map_err(map_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(map_err)?
    };
    for path in &paths {
        tx.execute("DELETE FROM secret_versions WHERE path = ?1", [path])
            .map_err(map_err)?;
        tx.execute("DELETE FROM access_counts WHERE path = ?1", [path])
            .map_err(map_err)?;
        tx.execute("DELETE FROM secrets WHERE path = ?1", [path])
            .map_err(map_err)?;
    }
    tx.commit().map_err(map_err)?;
    Ok(paths)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err))
            .await?;
        // The writer matters most: a read-only or locked file must show up in health.
        self.write(|c| {
            c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
                .map_err(map_err)
        })
        .await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.read(move |c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(map_err)
        })
        .await
    }

    async fn put_meta(&self, key: &str, value: Vec<u8>) -> Result<()> {
        let key = key.to_owned();
        self.write(move |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(map_err)
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRow>> {
        self.read(|c| {
            let mut st = c
                .prepare("SELECT key_id, wrapped, created_at FROM keyring ORDER BY key_id")
                .map_err(map_err)?;
            let rows = st
                .query_map([], |r| {
                    Ok(KeyRow {
                        key_id: r.get::<_, i64>(0)? as u32,
                        wrapped: r.get(1)?,
                        created_at: from_millis(r.get(2)?),
                    })
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn insert_key(&self, key: KeyRow) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO keyring (key_id, wrapped, created_at) VALUES (?1, ?2, ?3)",
                params![key.key_id, key.wrapped, to_millis(key.created_at)],
            )
            .map(|_| ())
            .map_err(map_err)
        })
        .await
    }

    async fn write_version(&self, new: NewVersion, seal: SealFn) -> Result<u64> {
        self.write_secret(new.path.clone(), move |c, _| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_err)?;
            let head: Option<(i64, i64, String)> = tx
                .query_row(
                    "SELECT current_version, max_versions, secret_type FROM secrets WHERE path = ?1",
                    [&new.path],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(map_err)?;
            let current = head.as_ref().map(|(v, _, _)| *v as u64).unwrap_or(0);
            let secret_type = new
                .secret_type
                .clone()
                .or_else(|| head.as_ref().map(|(_, _, t)| t.clone()))
                .unwrap_or_else(|| "generic".to_owned());
            if let Some(expected) = new.cas
                && expected != current
            {
                return Err(StoreError::CasMismatch { current });
            }
            let version = current + 1;
            let max_versions = new
                .max_versions
                .map(i64::from)
                .or(head.as_ref().map(|(_, m, _)| *m))
                .unwrap_or(i64::from(scaivault_api::limits::DEFAULT_MAX_VERSIONS));
            let ciphertext = seal(version).map_err(StoreError::Seal)?;
            let now = to_millis(new.created_at);
            let expires = new.expires_at.map(to_millis);
            tx.execute(
                "INSERT INTO secret_versions (path, version, secret_type, ciphertext, created_at, created_by, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![new.path, version as i64, secret_type, ciphertext, now, new.created_by, expires],
            )
            .map_err(map_err)?;
            match head {
                None => {
                    tx.execute(
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
                    tx.execute(
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
            tx.execute(
                "DELETE FROM secret_versions WHERE path = ?1 AND version <= ?2",
                params![new.path, version as i64 - max_versions],
            )
            .map_err(map_err)?;
            // Bounded by max_versions: the count lives on the row so lists need not do it.
            tx.execute(
                "UPDATE secrets SET version_count = (SELECT COUNT(*) FROM secret_versions v WHERE v.path = ?1) \
                 WHERE path = ?1",
                [&new.path],
            )
            .map_err(map_err)?;
            tx.commit().map_err(map_err)?;
            Ok(version)
        })
        .await
    }

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
        // The hot path: one indexed join, and none of the aggregate columns (counts) that
        // metadata and lists need.
        let found = self.read(move |c| {
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
        })
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
        self.read(move |c| get_secret_in(c, &path)).await
    }

    async fn list_versions(&self, path: &str) -> Result<Vec<VersionMeta>> {
        let path = path.to_owned();
        self.read(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT version, created_at, created_by, expires_at FROM secret_versions WHERE path = ?1 ORDER BY version",
                )
                .map_err(map_err)?;
            let rows = st
                .query_map([path], |r| {
                    Ok(VersionMeta {
                        version: r.get::<_, i64>(0)? as u64,
                        created_at: from_millis(r.get(1)?),
                        created_by: r.get(2)?,
                        expires_at: r.get::<_, Option<i64>>(3)?.map(from_millis),
                    })
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn update_metadata(
        &self,
        path: &str,
        tags: Option<Vec<String>>,
        description: Option<String>,
        now: OffsetDateTime,
    ) -> Result<bool> {
        self.write_secret(path.to_owned(), move |c, path| {
            let n = c
                .execute(
                    "UPDATE secrets SET tags = COALESCE(?2, tags), description = COALESCE(?3, description), updated_at = ?4 WHERE path = ?1",
                    params![path, tags.as_deref().map(tags_json), description, to_millis(now)],
                )
                .map_err(map_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn soft_delete(&self, path: &str, now: OffsetDateTime) -> Result<bool> {
        self.write_secret(path.to_owned(), move |c, path| {
            let n = c
                .execute(
                    "UPDATE secrets SET deleted_at = COALESCE(deleted_at, ?2) WHERE path = ?1",
                    params![path, to_millis(now)],
                )
                .map_err(map_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn restore(&self, path: &str, now: OffsetDateTime) -> Result<RestoreOutcome> {
        self.write_secret(path.to_owned(), move |c, path| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(map_err)?;
            let deleted: Option<Option<i64>> = tx
                .query_row(
                    "SELECT deleted_at FROM secrets WHERE path = ?1",
                    [path],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?;
            let outcome = match deleted {
                None => RestoreOutcome::NotFound,
                Some(None) => RestoreOutcome::NotDeleted,
                Some(Some(_)) => {
                    tx.execute(
                        "UPDATE secrets SET deleted_at = NULL, updated_at = ?2 WHERE path = ?1",
                        params![path, to_millis(now)],
                    )
                    .map_err(map_err)?;
                    RestoreOutcome::Restored
                }
            };
            tx.commit().map_err(map_err)?;
            Ok(outcome)
        })
        .await
    }

    async fn destroy(&self, path: &str) -> Result<bool> {
        self.write_secret(path.to_owned(), move |c, path| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(map_err)?;
            tx.execute("DELETE FROM secret_versions WHERE path = ?1", [path])
                .map_err(map_err)?;
            tx.execute("DELETE FROM access_counts WHERE path = ?1", [path])
                .map_err(map_err)?;
            let n = tx
                .execute("DELETE FROM secrets WHERE path = ?1", [path])
                .map_err(map_err)?;
            tx.commit().map_err(map_err)?;
            Ok(n > 0)
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
                "SELECT {SECRET_COLUMNS} FROM secrets s WHERE s.path {} ?2 AND s.path < ?3 AND (?4 OR s.deleted_at IS NULL) ORDER BY s.path LIMIT ?5",
                if strict { ">" } else { ">=" }
            );
            let mut st = c.prepare_cached(&sql).map_err(map_err)?;
            let rows = st
                .query_map(
                    params![day_30_ago(), lower, upper, query.include_deleted, query.limit as i64],
                    secret_from_row,
                )
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn purge_expired(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<String>> {
        let cache = Arc::clone(&self.cache);
        self.write(move |c| {
            let purged = purge_expired_in(c, now, limit);
            // Drop only what went: this runs every purge interval, mostly purging nothing,
            // and must not empty the cache each time. After a failure nothing is certain.
            match &purged {
                Ok(paths) => paths.iter().for_each(|path| cache.invalidate(path)),
                Err(_) => cache.clear(),
            }
            purged
        })
        .await
    }

    async fn add_access_counts(&self, day: i64, counts: Vec<(String, u64)>) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_err)?;
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT INTO access_counts (path, day, count) SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM secrets WHERE path = ?1) \
                         ON CONFLICT(path, day) DO UPDATE SET count = count + excluded.count",
                    )
                    .map_err(map_err)?;
                for (path, count) in &counts {
                    st.execute(params![path, day, *count as i64]).map_err(map_err)?;
                }
            }
            tx.commit().map_err(map_err)
        })
        .await
    }

    async fn prune_access_counts(&self, before_day: i64) -> Result<()> {
        self.write(move |c| {
            c.execute("DELETE FROM access_counts WHERE day < ?1", [before_day])
                .map(|_| ())
                .map_err(map_err)
        })
        .await
    }

    async fn insert_token(&self, token: TokenRow) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO tokens (hash, accessor, identity_id, identity_type, policies, display_name, issued_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    token.hash.to_vec(),
                    token.accessor,
                    token.identity_id,
                    token.identity_type,
                    serde_json::to_string(&token.policies).unwrap_or_else(|_| "[]".into()),
                    token.display_name,
                    to_millis(token.issued_at),
                    token.expires_at.map(to_millis)
                ],
            )
            .map(|_| ())
            .map_err(map_err)
        })
        .await
    }

    async fn token_by_hash(&self, hash: [u8; 32]) -> Result<Option<TokenRow>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_at IS NULL"
            );
            c.prepare_cached(&sql)
                .and_then(|mut st| st.query_row([hash.to_vec()], token_from_row).optional())
                .map_err(map_err)
        })
        .await
    }

    async fn list_tokens(&self, now: OffsetDateTime) -> Result<Vec<TokenRow>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1) ORDER BY issued_at"
            );
            let mut st = c.prepare(&sql).map_err(map_err)?;
            let rows = st.query_map([to_millis(now)], token_from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn revoke_token(&self, accessor: &str) -> Result<Option<[u8; 32]>> {
        let accessor = accessor.to_owned();
        self.write(move |c| {
            let hash: Option<Vec<u8>> = c
                .query_row(
                    "UPDATE tokens SET revoked_at = ?2 WHERE accessor = ?1 AND revoked_at IS NULL RETURNING hash",
                    params![accessor, to_millis(OffsetDateTime::now_utc())],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?;
            Ok(hash.and_then(|h| h.try_into().ok()))
        })
        .await
    }

    async fn purge_expired_tokens(&self, now: OffsetDateTime) -> Result<u64> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                [to_millis(now)],
            )
            .map(|n| n as u64)
            .map_err(map_err)
        })
        .await
    }

    async fn create_policy(&self, p: PolicyRow) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO policies (id, name, description, rules, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![p.id, p.name, p.description, p.rules_json, to_millis(p.created_at), to_millis(p.updated_at)],
            )
            .map(|_| ())
            .map_err(|e| if is_constraint(&e) { StoreError::Conflict } else { map_err(e) })
        })
        .await
    }

    async fn update_policy(&self, p: PolicyRow) -> Result<bool> {
        self.write(move |c| {
            c.execute(
                "UPDATE policies SET name = ?2, description = ?3, rules = ?4, updated_at = ?5 WHERE id = ?1",
                params![p.id, p.name, p.description, p.rules_json, to_millis(p.updated_at)],
            )
            .map(|n| n > 0)
            .map_err(|e| if is_constraint(&e) { StoreError::Conflict } else { map_err(e) })
        })
        .await
    }

    async fn get_policy(&self, id: &str) -> Result<Option<PolicyRow>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT id, name, description, rules, created_at, updated_at FROM policies WHERE id = ?1",
                [id],
                policy_from_row,
            )
            .optional()
            .map_err(map_err)
        })
        .await
    }

    async fn list_policies(&self) -> Result<Vec<PolicyRow>> {
        self.read(|c| {
            let mut st = c
                .prepare("SELECT id, name, description, rules, created_at, updated_at FROM policies ORDER BY name")
                .map_err(map_err)?;
            let rows = st.query_map([], policy_from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn delete_policy(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            c.execute("DELETE FROM policies WHERE id = ?1", [id])
                .map(|n| n > 0)
                .map_err(map_err)
        })
        .await
    }

    async fn add_binding(&self, b: BindingRow) -> Result<()> {
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_err)?;
            let exists: Option<i64> = tx
                .query_row("SELECT 1 FROM policies WHERE id = ?1", [&b.policy_id], |r| r.get(0))
                .optional()
                .map_err(map_err)?;
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
            tx.execute(
                "INSERT INTO policy_bindings (policy_id, identity_type, identity_id, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(policy_id, identity_id) DO NOTHING",
                params![b.policy_id, b.identity_type, b.identity_id, to_millis(b.created_at)],
            )
            .map_err(map_err)?;
            tx.commit().map_err(map_err)
        })
        .await
    }

    async fn list_bindings(&self, policy_id: Option<&str>) -> Result<Vec<BindingRow>> {
        let policy_id = policy_id.map(str::to_owned);
        self.read(move |c| {
            let mut st = c
                .prepare(
                    "SELECT policy_id, identity_type, identity_id, created_at FROM policy_bindings \
                     WHERE ?1 IS NULL OR policy_id = ?1 ORDER BY policy_id, identity_id",
                )
                .map_err(map_err)?;
            let rows = st
                .query_map([policy_id], binding_from_row)
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn delete_binding(&self, policy_id: &str, identity_id: &str) -> Result<bool> {
        let (policy_id, identity_id) = (policy_id.to_owned(), identity_id.to_owned());
        self.write(move |c| {
            c.execute(
                "DELETE FROM policy_bindings WHERE policy_id = ?1 AND identity_id = ?2",
                params![policy_id, identity_id],
            )
            .map(|n| n > 0)
            .map_err(map_err)
        })
        .await
    }

    async fn create_identity(&self, i: IdentityRow) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO identities (id, identity_type, display_name, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![i.id, i.identity_type, i.display_name, to_millis(i.created_at)],
            )
            .map(|_| ())
            .map_err(|e| if is_constraint(&e) { StoreError::Conflict } else { map_err(e) })
        })
        .await
    }

    async fn list_identities(&self) -> Result<Vec<IdentityRow>> {
        self.read(|c| {
            let mut st = c
                .prepare("SELECT id, identity_type, display_name, created_at FROM identities ORDER BY id")
                .map_err(map_err)?;
            let rows = st.query_map([], identity_from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn get_identity(&self, id: &str) -> Result<Option<IdentityRow>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT id, identity_type, display_name, created_at FROM identities WHERE id = ?1",
                [id],
                identity_from_row,
            )
            .optional()
            .map_err(map_err)
        })
        .await
    }

    async fn claim_idempotency(&self, claim: IdempotencyClaim) -> Result<ClaimOutcome> {
        self.write(move |c| idempotency::claim(c, &claim)).await
    }

    async fn complete_idempotency(
        &self,
        scope: &str,
        key: &str,
        answer: StoredAnswer,
    ) -> Result<()> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        self.write(move |c| idempotency::complete(c, &scope, &key, &answer))
            .await
    }

    async fn release_idempotency(&self, scope: &str, key: &str) -> Result<()> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        self.write(move |c| idempotency::release(c, &scope, &key))
            .await
    }

    async fn purge_expired_idempotency(&self, now: OffsetDateTime, limit: usize) -> Result<u64> {
        self.write(move |c| idempotency::purge_expired(c, now, limit))
            .await
    }
}
