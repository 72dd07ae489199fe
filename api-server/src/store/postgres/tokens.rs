//! Tokens in PostgreSQL: the `tokens` table, keyed by the token's hash; revocation keeps
//! the row (with `revoked_at`) until it expires.

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{PostgresStore, Tx, exec, get, query_opt};
use crate::store::tokens::TokenChange;
use crate::store::unit_of_work::Applied;
use crate::store::{Result, StoreError, TokenReads, TokenRow, from_millis, to_millis};

const TOKEN_COLUMNS: &str =
    "hash, accessor, identity_id, identity_type, policies, display_name, issued_at, expires_at";

fn hash_of(bytes: Vec<u8>) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a token hash is not 32 bytes".into()))
}

fn token_from_row(row: &Row) -> Result<TokenRow> {
    let policies: &str = get(row, 4)?;
    Ok(TokenRow {
        hash: hash_of(get(row, 0)?)?,
        accessor: get(row, 1)?,
        identity_id: get(row, 2)?,
        identity_type: get(row, 3)?,
        policies: serde_json::from_str(policies)
            .map_err(|e| StoreError::Corrupt(format!("token policies: {e}")))?,
        display_name: get(row, 5)?,
        issued_at: from_millis(get(row, 6)?),
        expires_at: get::<Option<i64>>(row, 7)?.map(from_millis),
    })
}

/// Applies one change inside the unit's transaction.
pub(super) async fn apply(c: &Tx<'_>, change: TokenChange) -> Result<Applied> {
    match change {
        TokenChange::Insert(token) => {
            let policies = serde_json::to_string(&token.policies).unwrap_or_else(|_| "[]".into());
            exec(
                c,
                "INSERT INTO tokens (hash, accessor, identity_id, identity_type, policies, display_name, issued_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &token.hash.as_slice(),
                    &token.accessor,
                    &token.identity_id,
                    &token.identity_type,
                    &policies,
                    &token.display_name,
                    &to_millis(token.issued_at),
                    &token.expires_at.map(to_millis),
                ],
            )
            .await
            .map(|_| Applied::Done)
        }
        TokenChange::Revoke { accessor, now } => {
            let row = query_opt(
                c,
                "UPDATE tokens SET revoked_at = $2 WHERE accessor = $1 AND revoked_at IS NULL RETURNING hash",
                &[&accessor, &to_millis(now)],
            )
            .await?;
            let hash = row.map(|r| get(&r, 0).and_then(hash_of)).transpose()?;
            Ok(Applied::Revoked(hash))
        }
    }
}

/// Erases tokens expired at or before `now` (the token purge job).
pub(super) async fn purge_expired(c: &Tx<'_>, now: OffsetDateTime) -> Result<u64> {
    exec(
        c,
        "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= $1",
        &[&to_millis(now)],
    )
    .await
}

#[async_trait]
impl TokenReads for PostgresStore {
    async fn token_by_hash(&self, hash: [u8; 32]) -> Result<Option<TokenRow>> {
        let sql =
            format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1 AND revoked_at IS NULL");
        self.row(&sql, &[&hash.as_slice()], token_from_row).await
    }

    async fn list_tokens(&self, now: OffsetDateTime) -> Result<Vec<TokenRow>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $1) ORDER BY issued_at"
        );
        self.rows(&sql, &[&to_millis(now)], token_from_row).await
    }
}
