//! The keyring and meta in PostgreSQL: `keyring` (wrapped data keys) and `meta`.

use async_trait::async_trait;

use super::{PostgresStore, Tx, exec, get, get_u64};
use crate::store::keyring::KeyringChange;
use crate::store::unit_of_work::Applied;
use crate::store::{KeyRow, KeyringReads, Result, from_millis, to_millis};

/// Applies one change inside the unit's transaction.
pub(super) async fn apply(c: &Tx<'_>, change: KeyringChange) -> Result<Applied> {
    match change {
        KeyringChange::InsertKey(key) => {
            exec(
                c,
                "INSERT INTO keyring (key_id, wrapped, created_at) VALUES ($1, $2, $3)",
                &[
                    &i64::from(key.key_id),
                    &key.wrapped,
                    &to_millis(key.created_at),
                ],
            )
            .await
        }
        KeyringChange::PutMeta { key, value } => {
            exec(
                c,
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&key, &value],
            )
            .await
        }
    }
    .map(|_| Applied::Done)
}

#[async_trait]
impl KeyringReads for PostgresStore {
    async fn list_keys(&self) -> Result<Vec<KeyRow>> {
        self.rows(
            "SELECT key_id, wrapped, created_at FROM keyring ORDER BY key_id",
            &[],
            |r| {
                Ok(KeyRow {
                    key_id: get_u64(r, 0)? as u32,
                    wrapped: get(r, 1)?,
                    created_at: from_millis(get(r, 2)?),
                })
            },
        )
        .await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.row("SELECT value FROM meta WHERE key = $1", &[&key], |r| {
            get(r, 0)
        })
        .await
    }
}
