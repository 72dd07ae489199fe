//! Tokens: stored only as the hash of their secret part, found by hash or by accessor.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Result;
use super::Slot;
use super::unit_of_work::aggregate_writes;

/// A token as stored: only the hash of its secret part.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub hash: [u8; 32],
    pub accessor: String,
    pub identity_id: String,
    pub identity_type: String,
    pub policies: Vec<String>,
    pub display_name: Option<String>,
    pub issued_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

#[async_trait]
pub trait TokenReads: Send + Sync + 'static {
    /// A token not revoked (expired ones too: the caller checks expiry).
    async fn token_by_hash(&self, hash: [u8; 32]) -> Result<Option<TokenRow>>;
    /// Tokens neither revoked nor expired at `now`, oldest first.
    async fn list_tokens(&self, now: OffsetDateTime) -> Result<Vec<TokenRow>>;
}

/// Writes to tokens; build them with [`super::UnitOfWork::tokens`].
#[derive(Debug)]
pub enum TokenChange {
    Insert(TokenRow),
    Revoke {
        accessor: String,
        now: OffsetDateTime,
    },
}

aggregate_writes!(TokenWrites, tokens, Token(TokenChange));

impl TokenWrites<'_> {
    /// Fails the unit with `Conflict` when the hash or accessor is taken.
    pub fn insert(self, token: TokenRow) -> Slot<()> {
        self.push(TokenChange::Insert(token))
    }

    /// Yields the hash of the revoked token so caches can drop it (`None`: no live token).
    pub fn revoke(self, accessor: &str, now: OffsetDateTime) -> Slot<Option<[u8; 32]>> {
        self.push(TokenChange::Revoke {
            accessor: accessor.to_owned(),
            now,
        })
    }
}
