//! The embedded SQLite backend: one file in WAL mode, one writer connection and a small
//! pool of readers, every call on the blocking thread pool; reads of current versions are
//! served from a cache of committed rows when they can be ([`ReadCache`]).
//!
//! Units of work are committed by the data writer thread, many to one `BEGIN IMMEDIATE`
//! transaction with a savepoint each ([`group_commit`]): no await while the write lock is
//! held, and one fsync for every unit of a batch. Each aggregate's SQL
//! lives in its own module (`secrets`, `tokens`, ...), which reads through the reader
//! pool and applies its changes inside the unit's transaction.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::feed::Planned;
use super::read_cache::ReadCache;
use super::unit_of_work::{Applied, Change, Committed, UnitOfWork};
use super::wal_checkpoint::{Checkpointer, DATA_PAUSE_SECONDS, NO_AUTOCHECKPOINT};
use super::{Result, Store, StoreError};
use group_commit::GroupCommitter;
pub use group_commit::{DATA_COMMIT_SECONDS, DATA_COMMIT_UNITS};

pub mod audit;
mod feed;
mod group_commit;
mod idempotency;
mod jobs;
mod keyring;
mod maintenance;
pub(crate) mod migrations;
mod policies;
mod rotation;
mod secrets;
mod tokens;
mod webhooks;

const READERS: usize = 4;
/// Current versions kept in memory: ~0.5 KiB each typically, bounded in bytes because a
/// value may be up to 64 KiB.
const CACHED_SECRETS: usize = 16_384;
const CACHED_BYTES: u64 = 32 * 1024 * 1024;

pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    committer: GroupCommitter,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    cache: Arc<ReadCache>,
    checkpointer: Arc<Checkpointer>,
    /// Woken after each commit that recorded changes (see `FeedReads::notify_changes`).
    /// Who hears of commits that recorded changes (the event hub, a follower).
    changes_notify: std::sync::RwLock<Vec<Arc<tokio::sync::Notify>>>,
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
        // UNIQUE, PRIMARY KEY, FOREIGN KEY, CHECK, NOT NULL: the write met rows it may not
        // coexist with (a taken name, a duplicate key); the contract suite holds every
        // backend to this.
        rusqlite::Error::SqliteFailure(f, _) if f.code == C::ConstraintViolation => {
            StoreError::Conflict
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
        let cache = Arc::new(ReadCache::new(CACHED_SECRETS, CACHED_BYTES));
        let checkpointer = Arc::new(checkpointer);
        let committer = GroupCommitter::start(
            Arc::clone(&writer),
            Arc::clone(&cache),
            Arc::clone(&checkpointer),
        )?;
        Ok(SqliteStore {
            writer,
            committer,
            readers: Arc::new(readers),
            next_reader: AtomicUsize::new(0),
            cache,
            checkpointer,
            changes_notify: std::sync::RwLock::default(),
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

/// Every row `sql` selects, decoded by `decode` (statements are cached per connection).
fn all_rows<T, P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
    decode: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut st = c.prepare_cached(sql).map_err(map_err)?;
    let rows = st.query_map(params, decode).map_err(map_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
}

/// The row `sql` selects, if any.
fn one_row<T, P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
    decode: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    c.prepare_cached(sql)
        .and_then(|mut st| st.query_row(params, decode).optional())
        .map_err(map_err)
}

/// What a unit does to the read cache: entries it must drop after the transaction,
/// whether it commits or not (dropping an entry is always safe).
struct CacheEffects {
    paths: Vec<String>,
    /// The unit purges expired secrets: which ones is known only from its result.
    purges: bool,
}

impl CacheEffects {
    fn of(changes: &[Change]) -> Self {
        let mut effects = CacheEffects {
            paths: Vec::new(),
            purges: false,
        };
        for change in changes {
            match change {
                Change::Secret(c) => effects.paths.push(c.path().to_owned()),
                Change::Maintenance(
                    super::maintenance::MaintenanceChange::PurgeExpiredSecrets { .. },
                ) => effects.purges = true,
                _ => {}
            }
        }
        effects
    }

    fn apply(&self, cache: &ReadCache, outcome: &Result<Committed>) {
        self.paths.iter().for_each(|path| cache.invalidate(path));
        if !self.purges {
            return;
        }
        // Drop only what went: the purge runs every interval, mostly purging nothing, and
        // must not empty the cache each time. After a failure nothing is certain.
        match outcome {
            Ok(committed) => committed.iter().for_each(|applied| {
                if let Applied::Erased(paths) = applied {
                    paths.iter().for_each(|path| cache.invalidate(path));
                }
            }),
            Err(_) => cache.clear(),
        }
    }
}

fn apply(c: &Connection, change: Change) -> Result<Applied> {
    match change {
        Change::Secret(change) => secrets::apply(c, change),
        Change::Token(change) => tokens::apply(c, change),
        Change::Policy(change) => policies::apply(c, change),
        Change::Keyring(change) => keyring::apply(c, change),
        Change::Idempotency(change) => idempotency::apply(c, change),
        Change::Maintenance(change) => maintenance::apply(c, change),
        Change::Job(change) => jobs::apply(c, change),
        Change::Rotation(change) => rotation::apply(c, change),
        Change::Webhook(change) => webhooks::apply(c, change),
    }
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

    async fn commit(&self, unit: UnitOfWork) -> Result<Committed> {
        if unit.is_empty() {
            return Ok(Committed::default());
        }
        // The writer thread drops the cache entries right after the transaction, so it
        // happens even if the caller stops waiting (a cancelled request must not leave a
        // stale entry behind).
        let effects = CacheEffects::of(unit.changes());
        // Only units that record a change wake the listeners.
        let listeners = if unit
            .changes()
            .iter()
            .any(|c| !matches!(Planned::of(c), Planned::Nothing))
        {
            self.changes_notify
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone()
        } else {
            Vec::new()
        };
        let committed = self.committer.commit(unit.prepare(), effects).await?;
        listeners.iter().for_each(|notify| notify.notify_one());
        Ok(committed)
    }
}

#[cfg(test)]
mod contract_tests {
    use std::sync::Arc;

    use super::SqliteStore;
    use super::audit::{AuditSync, SqliteAuditStore};
    use crate::store::contract::{Fresh, store_contract_tests};
    use crate::store::{AuditStore, Result, Store, StoreError};

    fn temp_dir() -> Result<tempfile::TempDir> {
        tempfile::tempdir().map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// A new database file in its own temporary directory.
    fn fresh() -> Result<Fresh<dyn Store>> {
        let dir = temp_dir()?;
        let store = SqliteStore::open(&dir.path().join("vault.db"))?;
        Ok(Fresh {
            store: Arc::new(store),
            keep: Box::new(dir),
        })
    }

    fn fresh_audit() -> Result<Fresh<dyn AuditStore>> {
        let dir = temp_dir()?;
        let store = SqliteAuditStore::open(&dir.path().join("audit.db"), AuditSync::Full)?;
        Ok(Fresh {
            store: Arc::new(store),
            keep: Box::new(dir),
        })
    }

    store_contract_tests!(super::fresh(), super::fresh_audit());
}
