//! Schema migrations, applied in order and recorded in `PRAGMA user_version`.

use rusqlite::Connection;

/// Each entry moves the schema one version forward. Never edit a released entry: append.
pub const MIGRATIONS: &[&str] = &[
    // 1: the core schema.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE keyring (key_id INTEGER PRIMARY KEY, wrapped BLOB NOT NULL, created_at INTEGER NOT NULL);
    CREATE TABLE secrets (
        path TEXT PRIMARY KEY,
        secret_type TEXT NOT NULL,
        current_version INTEGER NOT NULL,
        tags TEXT NOT NULL DEFAULT '[]',
        description TEXT,
        max_versions INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        deleted_at INTEGER,
        expires_at INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX secrets_by_expiry ON secrets (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE secret_versions (
        path TEXT NOT NULL,
        version INTEGER NOT NULL,
        secret_type TEXT NOT NULL,
        ciphertext BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (path, version)
    ) WITHOUT ROWID;
    CREATE TABLE access_counts (
        path TEXT NOT NULL,
        day INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (path, day)
    ) WITHOUT ROWID;
    CREATE TABLE tokens (
        hash BLOB PRIMARY KEY,
        accessor TEXT NOT NULL UNIQUE,
        identity_id TEXT NOT NULL,
        identity_type TEXT NOT NULL,
        policies TEXT NOT NULL,
        display_name TEXT,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER
    );
    "#,
    // 2: authorization.
    r#"
    CREATE TABLE policies (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT,
        rules TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE policy_bindings (
        policy_id TEXT NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
        identity_type TEXT NOT NULL,
        identity_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (policy_id, identity_id)
    ) WITHOUT ROWID;
    CREATE INDEX policy_bindings_by_identity ON policy_bindings (identity_id);
    CREATE TABLE identities (
        id TEXT PRIMARY KEY,
        identity_type TEXT NOT NULL,
        display_name TEXT,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 3: the number of kept versions lives on the secret row, maintained by every write,
    // so a list page no longer counts each row's versions (its cost grew with history).
    r#"
    ALTER TABLE secrets ADD COLUMN version_count INTEGER NOT NULL DEFAULT 0;
    UPDATE secrets SET version_count =
        (SELECT COUNT(*) FROM secret_versions v WHERE v.path = secrets.path);
    "#,
    // 4: idempotency keys, per caller identity (`scope`). `status` is NULL while the
    // first request runs; `body` is the answer sealed by the barrier. A rowid table:
    // bodies can be large, which WITHOUT ROWID tables handle poorly.
    r#"
    CREATE TABLE idempotency_keys (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        started_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        status INTEGER,
        content_type TEXT,
        body BLOB,
        PRIMARY KEY (scope, key)
    );
    CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
    "#,
    // 5: set in the transaction of the keyed request's change, so an entry still in
    // flight is known to have changed the vault even if its answer was never kept.
    r#"
    ALTER TABLE idempotency_keys ADD COLUMN applied INTEGER NOT NULL DEFAULT 0;
    "#,
    // 6: the change feed (`store::feed`), appended in each change's own transaction.
    r#"
    CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL
    );
    CREATE INDEX changes_by_time ON changes (at);
    "#,
    // 7: the job runner's term and each periodic job's newest claimed run (`store::jobs`).
    r#"
    CREATE TABLE runner_term (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        epoch INTEGER NOT NULL,
        holder TEXT NOT NULL,
        since INTEGER NOT NULL
    );
    CREATE TABLE job_runs (
        job TEXT PRIMARY KEY,
        slot INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        runs INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 8: rotation schedules (`store::rotation`), and what change records tell events: the
    // version, who acted and why.
    r#"
    CREATE TABLE rotations (
        path TEXT PRIMARY KEY,
        policy TEXT NOT NULL,
        strategy TEXT NOT NULL,
        interval_secs INTEGER NOT NULL,
        grace_secs INTEGER NOT NULL,
        rotate_at_minute INTEGER,
        last_rotated_at INTEGER,
        next_at INTEGER NOT NULL,
        due_signalled INTEGER,
        overdue_signalled INTEGER,
        failed_signalled INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX rotations_by_next ON rotations (next_at);
    ALTER TABLE changes ADD COLUMN version INTEGER;
    ALTER TABLE changes ADD COLUMN actor TEXT;
    ALTER TABLE changes ADD COLUMN reason TEXT;
    "#,
    // 9: webhooks, and their deliveries (`store::webhooks`).
    r#"
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        settings TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        disabled_reason TEXT,
        failing_since INTEGER,
        secret BLOB NOT NULL,
        previous_secret BLOB,
        previous_secret_until INTEGER,
        secret_set_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        cursor INTEGER NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at INTEGER,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (webhook_id, seq)
    );
    CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, seq)
        WHERE status = 'pending';
    "#,
];

/// The audit database's own schema (a separate file).
pub const AUDIT_MIGRATIONS: &[&str] = &[
    // 1: the hash-chained log, retention checkpoint and export jobs.
    r#"
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        timestamp INTEGER NOT NULL,
        identity_id TEXT,
        path TEXT,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        body TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_by_time ON audit_log (timestamp);
    CREATE INDEX audit_by_identity ON audit_log (identity_id, seq);
    CREATE INDEX audit_by_path ON audit_log (path, seq);
    CREATE TABLE audit_checkpoint (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE audit_exports (id TEXT PRIMARY KEY, body TEXT NOT NULL, updated_at INTEGER NOT NULL);
    "#,
    // 2: a mutating request leaves a request record before its change and a response
    // record after it; queries hide request records that were answered. Older rows keep
    // NULL (single-phase), which is what their bodies say.
    r#"
    ALTER TABLE audit_log ADD COLUMN phase TEXT;
    ALTER TABLE audit_log ADD COLUMN request_seq INTEGER;
    CREATE INDEX audit_by_request ON audit_log (request_seq) WHERE request_seq IS NOT NULL;
    "#,
    // 3: export jobs still to finish, which the job runner resumes (`audit::export`).
    r#"
    ALTER TABLE audit_exports ADD COLUMN running INTEGER NOT NULL DEFAULT 0;
    "#,
];

pub fn run(conn: &mut Connection, migrations: &[&str]) -> rusqlite::Result<()> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (index, sql) in migrations.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_idempotent() -> rusqlite::Result<()> {
        let mut conn = Connection::open_in_memory()?;
        run(&mut conn, MIGRATIONS)?;
        run(&mut conn, MIGRATIONS)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        assert_eq!(version as usize, MIGRATIONS.len());
        Ok(())
    }

    #[test]
    fn version_counts_are_backfilled() -> rusqlite::Result<()> {
        let mut conn = Connection::open_in_memory()?;
        run(&mut conn, &MIGRATIONS[..2])?;
        conn.execute_batch(
            "INSERT INTO secrets (path, secret_type, current_version, max_versions, created_at, updated_at)
                 VALUES ('a/b', 'generic', 3, 10, 0, 0), ('c/d', 'generic', 1, 10, 0, 0);
             INSERT INTO secret_versions (path, version, secret_type, ciphertext, created_at, created_by)
                 VALUES ('a/b', 2, 'generic', x'00', 0, 'root'), ('a/b', 3, 'generic', x'00', 0, 'root'),
                        ('c/d', 1, 'generic', x'00', 0, 'root');",
        )?;
        run(&mut conn, MIGRATIONS)?;
        let counts: Vec<(String, i64)> = conn
            .prepare("SELECT path, version_count FROM secrets ORDER BY path")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        assert_eq!(counts, [("a/b".to_owned(), 2), ("c/d".to_owned(), 1)]);
        Ok(())
    }
}
