//! The PostgreSQL schema, in versions recorded in `scaivault_schema`.
//!
//! Migrations run only when asked (`scaivault-server migrate`, or `--storage-migrate`
//! on start): on a database several replicas share, a rolling upgrade must not have the
//! first new pod change the schema under the old ones unannounced. They run in one
//! transaction under an advisory lock, so two replicas asked at once apply them once.
//!
//! Keys and ordered columns use the `C` collation: paths page in byte order, as on SQLite,
//! whatever the database's default collation is. Times are milliseconds since the epoch
//! (`BIGINT`), as on SQLite, so both backends share their row types and codecs.

use tokio_postgres::Client;

use super::locks::MIGRATION_LOCK;
use super::{get, map_err};
use crate::store::{Result, StoreError};

/// Each entry moves the schema one version forward. Never edit a released entry: append.
pub const MIGRATIONS: &[&str] = &[
    // 1: the schema of SQLite's migrations 1-5 in one step.
    r#"
    CREATE TABLE meta (key TEXT COLLATE "C" PRIMARY KEY, value BYTEA NOT NULL);
    CREATE TABLE keyring (key_id BIGINT PRIMARY KEY, wrapped BYTEA NOT NULL, created_at BIGINT NOT NULL);
    CREATE TABLE secrets (
        path TEXT COLLATE "C" PRIMARY KEY,
        secret_type TEXT NOT NULL,
        current_version BIGINT NOT NULL,
        version_count BIGINT NOT NULL DEFAULT 0,
        tags TEXT NOT NULL DEFAULT '[]',
        description TEXT,
        max_versions BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        deleted_at BIGINT,
        expires_at BIGINT
    );
    CREATE INDEX secrets_by_expiry ON secrets (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE secret_versions (
        path TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        secret_type TEXT NOT NULL,
        ciphertext BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL,
        expires_at BIGINT,
        PRIMARY KEY (path, version)
    );
    CREATE TABLE access_counts (
        path TEXT COLLATE "C" NOT NULL,
        day BIGINT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (path, day)
    );
    CREATE TABLE tokens (
        hash BYTEA PRIMARY KEY,
        accessor TEXT NOT NULL UNIQUE,
        identity_id TEXT NOT NULL,
        identity_type TEXT NOT NULL,
        policies TEXT NOT NULL,
        display_name TEXT,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT,
        revoked_at BIGINT
    );
    CREATE INDEX tokens_by_expiry ON tokens (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE policies (
        id TEXT COLLATE "C" PRIMARY KEY,
        name TEXT COLLATE "C" NOT NULL UNIQUE,
        description TEXT,
        rules TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE policy_bindings (
        policy_id TEXT COLLATE "C" NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
        identity_type TEXT NOT NULL,
        identity_id TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (policy_id, identity_id)
    );
    CREATE INDEX policy_bindings_by_identity ON policy_bindings (identity_id);
    CREATE TABLE identities (
        id TEXT COLLATE "C" PRIMARY KEY,
        identity_type TEXT NOT NULL,
        display_name TEXT,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE idempotency_keys (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint BYTEA NOT NULL,
        started_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        status BIGINT,
        content_type TEXT,
        body BYTEA,
        applied BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (scope, key)
    );
    CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
    "#,
    // 2: the change feed (`store::feed`); its identity's sequence is `changes_seq_seq`.
    r#"
    CREATE SEQUENCE changes_seq_seq AS BIGINT;
    CREATE TABLE changes (
        seq BIGINT PRIMARY KEY DEFAULT nextval('changes_seq_seq'),
        at BIGINT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT COLLATE "C" NOT NULL
    );
    ALTER SEQUENCE changes_seq_seq OWNED BY changes.seq;
    CREATE INDEX changes_by_time ON changes (at);
    "#,
    // 3: the audit log, as SQLite keeps it in `audit.db` (its migrations 1-2 in one step).
    r#"
    CREATE TABLE audit_log (
        seq BIGINT PRIMARY KEY,
        timestamp BIGINT NOT NULL,
        identity_id TEXT,
        path TEXT,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        body TEXT NOT NULL,
        hash TEXT NOT NULL,
        phase TEXT,
        request_seq BIGINT
    );
    CREATE INDEX audit_by_time ON audit_log (timestamp);
    CREATE INDEX audit_by_identity ON audit_log (identity_id, seq);
    CREATE INDEX audit_by_path ON audit_log (path, seq);
    CREATE INDEX audit_by_request ON audit_log (request_seq) WHERE request_seq IS NOT NULL;
    CREATE TABLE audit_checkpoint (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE audit_exports (id TEXT PRIMARY KEY, body TEXT NOT NULL, updated_at BIGINT NOT NULL);
    "#,
    // 4: the job runner's term and each periodic job's newest claimed run (`store::jobs`).
    r#"
    CREATE TABLE runner_term (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        epoch BIGINT NOT NULL,
        holder TEXT NOT NULL,
        since BIGINT NOT NULL
    );
    CREATE TABLE job_runs (
        job TEXT COLLATE "C" PRIMARY KEY,
        slot BIGINT NOT NULL,
        epoch BIGINT NOT NULL,
        started_at BIGINT NOT NULL,
        runs BIGINT NOT NULL
    );
    "#,
    // 5: export jobs still to finish, which the job runner resumes (`audit::export`).
    r#"
    ALTER TABLE audit_exports ADD COLUMN running BOOLEAN NOT NULL DEFAULT FALSE;
    "#,
    // 6: rotation schedules (`store::rotation`), and what change records tell events: the
    // version, who acted and why (SQLite's migration 8).
    r#"
    CREATE TABLE rotations (
        path TEXT COLLATE "C" PRIMARY KEY,
        policy TEXT NOT NULL,
        strategy TEXT NOT NULL,
        interval_secs BIGINT NOT NULL,
        grace_secs BIGINT NOT NULL,
        rotate_at_minute BIGINT,
        last_rotated_at BIGINT,
        next_at BIGINT NOT NULL,
        due_signalled BIGINT,
        overdue_signalled BIGINT,
        failed_signalled BIGINT
    );
    CREATE INDEX rotations_by_next ON rotations (next_at);
    ALTER TABLE changes ADD COLUMN version BIGINT;
    ALTER TABLE changes ADD COLUMN actor TEXT;
    ALTER TABLE changes ADD COLUMN reason TEXT;
    "#,
    // 7: webhooks, and their deliveries (`store::webhooks`; SQLite's migration 9).
    r#"
    CREATE TABLE webhooks (
        id TEXT COLLATE "C" PRIMARY KEY,
        name TEXT COLLATE "C" NOT NULL UNIQUE,
        settings TEXT NOT NULL,
        enabled BOOLEAN NOT NULL,
        disabled_reason TEXT,
        failing_since BIGINT,
        secret BYTEA NOT NULL,
        previous_secret BYTEA,
        previous_secret_until BIGINT,
        secret_set_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        cursor BIGINT NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        webhook_id TEXT COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
        seq BIGINT NOT NULL,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        next_attempt_at BIGINT,
        body TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (webhook_id, seq)
    );
    CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, seq)
        WHERE status = 'pending';
    "#,
];

async fn applied_version(client: &impl tokio_postgres::GenericClient) -> Result<usize> {
    let exists = client
        .query_one("SELECT to_regclass('scaivault_schema') IS NOT NULL", &[])
        .await
        .map_err(map_err)?;
    if !get::<bool>(&exists, 0)? {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM scaivault_schema",
            &[],
        )
        .await
        .map_err(map_err)?;
    Ok(get::<i64>(&row, 0)?.max(0) as usize)
}

/// Applies the pending migrations; returns how many.
pub async fn run(client: &mut Client) -> Result<usize> {
    let tx = client.transaction().await.map_err(map_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(map_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS scaivault_schema (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .map_err(map_err)?;
    let current = applied_version(&tx).await?;
    if current > MIGRATIONS.len() {
        return Err(newer_schema(current));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch_execute(sql).await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO scaivault_schema (version) VALUES ($1)",
            &[&((index + 1) as i64)],
        )
        .await
        .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)?;
    Ok(MIGRATIONS.len() - current)
}

/// Fails unless the schema is exactly the one this build expects.
pub async fn check(client: &Client) -> Result<()> {
    let current = applied_version(client).await?;
    match current.cmp(&MIGRATIONS.len()) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(newer_schema(current)),
        std::cmp::Ordering::Less => Err(StoreError::Unavailable(format!(
            "the database schema is at version {current}, this server needs {}: run \
             `scaivault-server migrate --storage <url>` (or start with --storage-migrate)",
            MIGRATIONS.len()
        ))),
    }
}

fn newer_schema(current: usize) -> StoreError {
    StoreError::Unavailable(format!(
        "the database schema is at version {current}, newer than this server knows ({}): \
         a newer scaivault-server migrated it; run that version",
        MIGRATIONS.len()
    ))
}
