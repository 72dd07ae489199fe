//! The keyring and meta in PostgreSQL: `keyring` (wrapped data keys) and `meta`.

use async_trait::async_trait;

use super::{PostgresStore, Tx, exec, get, get_u64, query_opt};
use crate::store::keyring::KeyringChange;
use crate::store::unit_of_work::Applied;
use crate::store::{KeyRow, KeyringReads, Result, from_millis, to_millis};

/// Applies one change inside the unit's transaction.
pub(super) async fn apply(c: &Tx<'_>, change: KeyringChange) -> Result<Applied> {
    match change {
        KeyringChange::InsertKey(key) => exec(
            c,
            "INSERT INTO keyring (key_id, wrapped, created_at) VALUES ($1, $2, $3)",
            &[
                &i64::from(key.key_id),
                &key.wrapped,
                &to_millis(key.created_at),
            ],
        )
        .await
        .map(|_| Applied::Done),
        KeyringChange::PutMeta { key, value } => {
            put_meta(c, &key, &value).await.map(|()| Applied::Done)
        }
        KeyringChange::ReplaceMeta {
            key,
            expected,
            value,
        } => {
            // The row lock holds off a concurrent replace until this unit ends; two
            // creators of an absent setting meet on the primary key (a conflict).
            let current = query_opt(
                c,
                "SELECT value FROM meta WHERE key = $1 FOR UPDATE",
                &[&key],
            )
            .await?
            .map(|r| get::<Vec<u8>>(&r, 0))
            .transpose()?;
            let matches = current == expected;
            if matches {
                put_meta(c, &key, &value).await?;
            }
            Ok(Applied::Found(matches))
        }
    }
}

async fn put_meta(c: &Tx<'_>, key: &str, value: &[u8]) -> Result<()> {
    exec(
        c,
        "INSERT INTO meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        &[&key, &value],
    )
    .await
    .map(|_| ())
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
