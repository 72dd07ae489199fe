//! Tokens in SQLite: the `tokens` table, keyed by the token's hash; revocation keeps the
//! row (with `revoked_at`) until it expires.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::{SqliteStore, all_rows, map_err, one_row};
use crate::store::tokens::TokenChange;
use crate::store::unit_of_work::Applied;
use crate::store::{Result, TokenReads, TokenRow, from_millis, to_millis};

const TOKEN_COLUMNS: &str =
    "hash, accessor, identity_id, identity_type, policies, display_name, issued_at, expires_at";

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

/// Applies one change inside the unit's transaction.
pub(super) fn apply(c: &Connection, change: TokenChange) -> Result<Applied> {
    match change {
        TokenChange::Insert(token) => c
            .execute(
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
            .map(|_| Applied::Done)
            .map_err(map_err),
        TokenChange::Revoke { accessor, now } => {
            let hash: Option<Vec<u8>> = c
                .query_row(
                    "UPDATE tokens SET revoked_at = ?2 WHERE accessor = ?1 AND revoked_at IS NULL RETURNING hash",
                    params![accessor, to_millis(now)],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?;
            Ok(Applied::Revoked(hash.and_then(|h| h.try_into().ok())))
        }
    }
}

/// Erases tokens expired at or before `now` (the token purge job).
pub(super) fn purge_expired(c: &Connection, now: OffsetDateTime) -> Result<u64> {
    c.execute(
        "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ?1",
        [to_millis(now)],
    )
    .map(|n| n as u64)
    .map_err(map_err)
}

#[async_trait]
impl TokenReads for SqliteStore {
    async fn token_by_hash(&self, hash: [u8; 32]) -> Result<Option<TokenRow>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_at IS NULL"
            );
            one_row(c, &sql, [hash.to_vec()], token_from_row)
        })
        .await
    }

    async fn list_tokens(&self, now: OffsetDateTime) -> Result<Vec<TokenRow>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1) ORDER BY issued_at"
            );
            all_rows(c, &sql, [to_millis(now)], token_from_row)
        })
        .await
    }
}
