//! The PostgreSQL backend: what several replicas share. A pool of connections
//! (`deadpool-postgres` over `tokio-postgres`), every statement prepared once per
//! connection, a statement and lock timeout on every session so nothing waits forever,
//! and TLS through rustls when the URL asks for it.
//!
//! A unit of work is one `READ COMMITTED` transaction on one pooled connection. Writers
//! of one secret (or one idempotency key) serialise on a transaction-scoped advisory
//! lock taken before they read the row, which also covers a row that does not exist
//! yet: two creators of one path end as versions 1 and 2, or with one CAS mismatch,
//! exactly as on SQLite.
//!
//! No read cache of secrets: another replica may have written the row a moment ago, and
//! a read must see every write acknowledged before it, through whichever replica. What
//! a replica does keep in memory (the policy index, the keyring, looked-up tokens)
//! follows the change feed (`cluster::follower`).

use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::feed::Planned;
use super::unit_of_work::{Applied, Change, Committed, UnitOfWork};
use super::{Result, Store, StoreError, now_millis};

mod audit;
mod feed;
mod idempotency;
mod jobs;
mod keyring;
mod locks;
mod maintenance;
pub(crate) mod migrations;
mod policies;
mod rotation;
mod secrets;
mod sessions;
mod tls;
mod tokens;
mod webhooks;

pub use audit::PostgresAuditStore;
pub use tls::TlsSettings;

/// Connections per replica: enough for the writers and readers of a busy server, small
/// enough that ten replicas stay far below PostgreSQL's default `max_connections` (100).
const POOL_SIZE: usize = 8;
/// How long a request waits for a pooled connection, or for a new one to be made.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// Per-session limits: a statement or a lock wait longer than this is cancelled and
/// answered 503, never a request that hangs.
const STATEMENT_TIMEOUT_MS: u32 = 10_000;
const LOCK_TIMEOUT_MS: u32 = 5_000;

/// Where the database is and how to reach it.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/db?sslmode=...` (libpq's URL form); it may
    /// hold the password, so it is never printed.
    pub url: secrecy::SecretString,
    pub tls: TlsSettings,
}

pub struct PostgresStore {
    pool: Pool,
    /// What the sessions outside the pool connect with (the runner's lock, `LISTEN`).
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

/// A constraint violation is a conflict of the caller's (409); a connection that failed,
/// a cancelled statement, a lock or serialisation failure and a database shutting down
/// are the database being unavailable for now (503 with Retry-After); anything else is a
/// bug or corruption.
pub(crate) fn map_err(e: tokio_postgres::Error) -> StoreError {
    let Some(state) = e.code() else {
        // No SQLSTATE: the connection broke or could not be made; the causes (a refused
        // connection, an unverifiable certificate) are what an operator needs to read.
        return StoreError::Unavailable(with_causes(&e));
    };
    let class = &state.code()[..2];
    if [
        SqlState::UNIQUE_VIOLATION,
        SqlState::FOREIGN_KEY_VIOLATION,
        SqlState::CHECK_VIOLATION,
        SqlState::NOT_NULL_VIOLATION,
        SqlState::EXCLUSION_VIOLATION,
    ]
    .contains(state)
    {
        return StoreError::Conflict;
    }
    // 08 connection, 40 transaction rollback (serialisation, deadlock), 53 resources,
    // 55 lock not available, 57 operator intervention (cancel, shutdown), 25006 read-only.
    if matches!(class, "08" | "40" | "53" | "55" | "57")
        || *state == SqlState::READ_ONLY_SQL_TRANSACTION
    {
        return StoreError::Unavailable(e.to_string());
    }
    StoreError::Corrupt(e.to_string())
}

/// The error and its chain of causes, `: `-separated.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => map_err(e),
        other => StoreError::Unavailable(format!("no database connection: {other}")),
    }
}

impl PostgresStore {
    /// Connects the pool (lazily: the first request makes the first connection) and checks
    /// the schema is current; [`migrations::run`] brings it there.
    pub async fn connect(settings: &PostgresSettings) -> Result<Self> {
        let store = Self::pool_only(settings)?;
        let client = store.client().await?;
        migrations::check(&client).await?;
        Ok(store)
    }

    /// Connects and applies pending migrations first (`scaivault-server migrate`, or
    /// `--storage-migrate` on start).
    pub async fn connect_and_migrate(settings: &PostgresSettings) -> Result<Self> {
        let store = Self::pool_only(settings)?;
        let mut client = store.client().await?;
        migrations::run(&mut client).await?;
        Ok(store)
    }

    fn pool_only(settings: &PostgresSettings) -> Result<Self> {
        use secrecy::ExposeSecret as _;
        let mut config =
            tokio_postgres::Config::from_str(settings.url.expose_secret()).map_err(|e| {
                StoreError::Unavailable(format!("the PostgreSQL URL does not parse: {e}"))
            })?;
        let options = format!(
            "-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS} \
             -c idle_in_transaction_session_timeout={STATEMENT_TIMEOUT_MS}"
        );
        let options = match config.get_options() {
            Some(given) => format!("{given} {options}"),
            None => options,
        };
        config.options(&options);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(POOL_WAIT);
        }
        if config.get_application_name().is_none() {
            config.application_name("scaivault-server");
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let tls = settings.tls.connector()?;
        let manager = Manager::from_config(config.clone(), tls.clone(), manager_config);
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("building the connection pool: {e}")))?;
        Ok(PostgresStore { pool, config, tls })
    }

    /// The audit log in the same database, on the same pool.
    pub fn audit_store(&self) -> Result<PostgresAuditStore> {
        PostgresAuditStore::new(self.pool.clone())
    }

    /// The lock whose holder runs the background jobs, one replica at a time.
    pub fn runner_lock(&self) -> std::sync::Arc<dyn crate::jobs::leadership::RunnerLock> {
        std::sync::Arc::new(sessions::SessionRunnerLock {
            config: self.config.clone(),
            tls: self.tls.clone(),
        })
    }

    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(pool_err)
    }

    async fn rows<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        decode: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        pool_rows(&self.pool, sql, params, decode).await
    }

    async fn row<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        decode: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        pool_row(&self.pool, sql, params, decode).await
    }
}

/// Every row `sql` selects, on a pooled connection (the statement is prepared once per
/// connection).
async fn pool_rows<T>(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    decode: impl FnMut(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    let client = pool.get().await.map_err(pool_err)?;
    let statement = client.prepare_cached(sql).await.map_err(map_err)?;
    let rows = client.query(&statement, params).await.map_err(map_err)?;
    rows.iter().map(decode).collect()
}

/// The first row `sql` selects, if any (the statements used select one at most).
async fn pool_row<T>(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    decode: impl FnMut(&Row) -> Result<T>,
) -> Result<Option<T>> {
    Ok(pool_rows(pool, sql, params, decode)
        .await?
        .into_iter()
        .next())
}

/// A column of a row, a wrong type being corruption (the schema is ours).
fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, index: usize) -> Result<T> {
    row.try_get(index)
        .map_err(|e| StoreError::Corrupt(format!("column {index}: {e}")))
}

/// Counts and versions are `BIGINT`; never negative in rows we wrote.
fn get_u64(row: &Row, index: usize) -> Result<u64> {
    get::<i64>(row, index).map(|n| n.max(0) as u64)
}

fn opt_u64(value: Option<u64>) -> Option<i64> {
    value.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The unit's transaction; its statements are prepared once per pooled connection.
type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// Runs a write statement in the unit's transaction; the number of rows it touched.
async fn exec(c: &Tx<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
    let statement = c.prepare_cached(sql).await.map_err(map_err)?;
    c.execute(&statement, params).await.map_err(map_err)
}

/// The rows a statement of the unit's transaction returns.
async fn query(c: &Tx<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(map_err)?;
    c.query(&statement, params).await.map_err(map_err)
}

async fn query_opt(c: &Tx<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(map_err)?;
    c.query_opt(&statement, params).await.map_err(map_err)
}

/// Serialises the unit's writers of one key (a secret's path, an idempotency key) until
/// the transaction ends; `scope` keeps the key spaces apart.
async fn lock_key(c: &Tx<'_>, scope: &str, key: &str) -> Result<()> {
    let key = format!("{scope}:{key}");
    query(
        c,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&key],
    )
    .await
    .map(|_| ())
}

async fn apply(c: &Tx<'_>, change: Change) -> Result<Applied> {
    match change {
        Change::Secret(change) => secrets::apply(c, change).await,
        Change::Token(change) => tokens::apply(c, change).await,
        Change::Policy(change) => policies::apply(c, change).await,
        Change::Keyring(change) => keyring::apply(c, change).await,
        Change::Idempotency(change) => idempotency::apply(c, change).await,
        Change::Maintenance(change) => maintenance::apply(c, change).await,
        Change::Job(change) => jobs::apply(c, change).await,
        Change::Rotation(change) => rotation::apply(c, change).await,
        Change::Webhook(change) => webhooks::apply(c, change).await,
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        let client = self.client().await?;
        // A read-only standby (a failover that went wrong) must show up in health.
        let read_only: String = client
            .query_one("SHOW transaction_read_only", &[])
            .await
            .map_err(map_err)
            .and_then(|row| get(&row, 0))?;
        if read_only == "on" {
            return Err(StoreError::Unavailable(
                "the database accepts no writes (transaction_read_only = on)".into(),
            ));
        }
        Ok(())
    }

    async fn commit(&self, unit: UnitOfWork) -> Result<Committed> {
        if unit.is_empty() {
            return Ok(Committed::default());
        }
        let unit = unit.prepare();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_err)?;
        let mut applied = Vec::with_capacity(unit.changes.len());
        let mut records = Vec::new();
        for change in unit.changes {
            let planned = Planned::of(&change);
            // Dropping `tx` on the first error rolls the whole unit back.
            let outcome = apply(&tx, change).await?;
            records.extend(planned.entries(&outcome));
            applied.push(outcome);
        }
        feed::append(&tx, now_millis(), unit.actor.as_deref(), &records).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Committed::new(applied))
    }
}

#[cfg(test)]
mod contract_tests {
    use std::sync::{Arc, LazyLock};

    use scaivault_testkit::postgres::Postgres;

    use super::{PostgresSettings, PostgresStore, TlsSettings};
    use crate::store::contract::{Fresh, store_contract_tests};
    use crate::store::{AuditStore, Result, Store};

    /// One server for the test binary; every case gets a database of its own.
    static SERVER: LazyLock<Postgres> = LazyLock::new(Postgres::start_shared);

    /// A migrated store on a database of its own.
    async fn migrated() -> Result<PostgresStore> {
        let settings = PostgresSettings {
            url: SERVER.create_database().into(),
            tls: TlsSettings::default(),
        };
        PostgresStore::connect_and_migrate(&settings).await
    }

    async fn fresh() -> Result<Fresh<dyn Store>> {
        Ok(Fresh {
            store: Arc::new(migrated().await?),
            keep: Box::new(()),
        })
    }

    async fn fresh_audit() -> Result<Fresh<dyn AuditStore>> {
        Ok(Fresh {
            store: Arc::new(migrated().await?.audit_store()?),
            keep: Box::new(()),
        })
    }

    store_contract_tests!(super::fresh().await, super::fresh_audit().await);
}
