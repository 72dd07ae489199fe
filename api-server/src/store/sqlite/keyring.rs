//! The keyring and meta in SQLite: `keyring` (wrapped data keys) and `meta`.

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::{SqliteStore, all_rows, map_err, one_row};
use crate::store::keyring::KeyringChange;
use crate::store::unit_of_work::Applied;
use crate::store::{KeyRow, KeyringReads, Result, from_millis, to_millis};

/// Applies one change inside the unit's transaction.
pub(super) fn apply(c: &Connection, change: KeyringChange) -> Result<Applied> {
    match change {
        KeyringChange::InsertKey(key) => c
            .execute(
                "INSERT INTO keyring (key_id, wrapped, created_at) VALUES (?1, ?2, ?3)",
                params![key.key_id, key.wrapped, to_millis(key.created_at)],
            )
            .map(|_| Applied::Done)
            .map_err(map_err),
        KeyringChange::PutMeta { key, value } => put_meta(c, &key, &value).map(|()| Applied::Done),
        KeyringChange::ReplaceMeta {
            key,
            expected,
            value,
        } => {
            // The unit holds the one writer connection: nothing changes between the two.
            let current: Option<Vec<u8>> =
                one_row(c, "SELECT value FROM meta WHERE key = ?1", [&key], |r| {
                    r.get(0)
                })?;
            let matches = current == expected;
            if matches {
                put_meta(c, &key, &value)?;
            }
            Ok(Applied::Found(matches))
        }
    }
}

fn put_meta(c: &Connection, key: &str, value: &[u8]) -> Result<()> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map(|_| ())
    .map_err(map_err)
}

#[async_trait]
impl KeyringReads for SqliteStore {
    async fn list_keys(&self) -> Result<Vec<KeyRow>> {
        self.read(|c| {
            let sql = "SELECT key_id, wrapped, created_at FROM keyring ORDER BY key_id";
            all_rows(c, sql, [], |r| {
                Ok(KeyRow {
                    key_id: r.get::<_, i64>(0)? as u32,
                    wrapped: r.get(1)?,
                    created_at: from_millis(r.get(2)?),
                })
            })
        })
        .await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.read(move |c| {
            one_row(c, "SELECT value FROM meta WHERE key = ?1", [key], |r| {
                r.get(0)
            })
        })
        .await
    }
}
