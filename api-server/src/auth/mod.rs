//! Tokens and the callers they authenticate.

pub mod kubernetes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use scaivault_api::ErrorCode;
use scaivault_api::auth::{
    CreateTokenRequest, CreateTokenResponse, IdentityType, TokenInfo, identity_type_of,
};
use scaivault_api::duration::parse_duration;
use scaivault_api::limits::{DEFAULT_TOKEN_TTL_SECS, MAX_TOKEN_TTL_SECS};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::crypto::token::{TokenHasher, generate_accessor, generate_token, looks_like_token};
use crate::error::{Error, Result};
use crate::store::{Store, TokenRow};

/// Who is making a request, as established by their token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity_id: String,
    pub identity_type: IdentityType,
    pub accessor: String,
    pub policies: Vec<String>,
    pub display_name: Option<String>,
    pub issued_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

impl Caller {
    /// The caller a freshly issued token stands for (logins record it in the audit log).
    pub fn from_issued(issued: &CreateTokenResponse) -> Caller {
        Caller {
            identity_id: issued.identity_id.clone(),
            identity_type: issued.identity_type,
            accessor: issued.accessor.clone(),
            policies: Vec::new(),
            display_name: None,
            issued_at: issued.issued_at,
            expires_at: issued.expires_at,
        }
    }

    pub fn is_root(&self) -> bool {
        self.identity_type == IdentityType::Root
    }
}

/// How long a looked-up token is trusted from memory. Revocation on this replica drops
/// it at once; other replicas drop it when the change feed brings the revocation
/// ([`TokenService::forget_accessor`]), and this bound holds should the feed lag.
const CACHE_TTL: Duration = Duration::from_secs(30);

pub struct TokenService {
    store: Arc<dyn Store>,
    hasher: TokenHasher,
    cache: DashMap<[u8; 32], (Arc<Caller>, Instant)>,
}

fn unauthenticated() -> Error {
    Error::new(
        ErrorCode::Unauthenticated,
        "missing, invalid, expired or revoked token",
    )
}

fn caller_of(row: TokenRow) -> Result<Caller> {
    let identity_type = IdentityType::parse(&row.identity_type).ok_or_else(|| {
        Error::internal(format!(
            "token row has unknown identity type {:?}",
            row.identity_type
        ))
    })?;
    Ok(Caller {
        identity_id: row.identity_id,
        identity_type,
        accessor: row.accessor,
        policies: row.policies,
        display_name: row.display_name,
        issued_at: row.issued_at,
        expires_at: row.expires_at,
    })
}

fn info_of(row: TokenRow) -> Option<TokenInfo> {
    let identity_type = IdentityType::parse(&row.identity_type)?;
    Some(TokenInfo {
        accessor: row.accessor,
        identity_id: row.identity_id,
        identity_type,
        issued_at: row.issued_at,
        expires_at: row.expires_at,
        display_name: row.display_name,
    })
}

/// Who a new token speaks for, with which policies, and for how long.
#[derive(Debug, Clone)]
pub struct Grant {
    pub identity_id: String,
    pub identity_type: IdentityType,
    pub policies: Vec<String>,
    pub display_name: Option<String>,
    /// `None`: the token never expires (root tokens).
    pub ttl: Option<Duration>,
}

impl TokenService {
    pub fn new(store: Arc<dyn Store>, hasher: TokenHasher) -> Self {
        TokenService {
            store,
            hasher,
            cache: DashMap::new(),
        }
    }

    /// Resolves a presented token to its caller, or `unauthenticated`.
    pub async fn authenticate(&self, token: &SecretString) -> Result<Arc<Caller>> {
        if !looks_like_token(token) {
            return Err(unauthenticated());
        }
        let hash = self.hasher.hash(token.expose_secret());
        let now = OffsetDateTime::now_utc();
        if let Some(entry) = self.cache.get(&hash) {
            let (caller, cached_at) = entry.value();
            if cached_at.elapsed() < CACHE_TTL {
                if caller.expires_at.is_some_and(|t| t <= now) {
                    return Err(unauthenticated());
                }
                return Ok(Arc::clone(caller));
            }
        }
        let row = self
            .store
            .token_by_hash(hash)
            .await?
            .ok_or_else(unauthenticated)?;
        if row.expires_at.is_some_and(|t| t <= now) {
            return Err(unauthenticated());
        }
        let caller = Arc::new(caller_of(row)?);
        self.cache
            .insert(hash, (Arc::clone(&caller), Instant::now()));
        Ok(caller)
    }

    /// Issues a token for an identity. Returns the token in clear, once.
    pub async fn create(&self, request: CreateTokenRequest) -> Result<CreateTokenResponse> {
        let identity_type =
            identity_type_of(&request.identity_id).map_err(|e| Error::invalid(e.to_string()))?;
        let ttl = match &request.ttl {
            Some(text) => parse_duration(text)
                .map_err(|e| Error::new(ErrorCode::InvalidTtl, format!("ttl: {e}")))?,
            None => Duration::from_secs(DEFAULT_TOKEN_TTL_SECS),
        };
        if ttl > Duration::from_secs(MAX_TOKEN_TTL_SECS) {
            return Err(Error::new(ErrorCode::InvalidTtl, "ttl may be at most 30d"));
        }
        if let Some(name) = &request.display_name
            && name.chars().count() > 128
        {
            return Err(Error::invalid("display_name is longer than 128 characters"));
        }
        self.issue(Grant {
            identity_id: request.identity_id,
            identity_type,
            policies: Vec::new(),
            display_name: request.display_name,
            ttl: Some(ttl),
        })
        .await
    }

    /// Stores a new token; used by `create` and by Kubernetes login.
    pub async fn issue(&self, grant: Grant) -> Result<CreateTokenResponse> {
        let token = generate_token().map_err(|_| Error::internal("rng failure"))?;
        self.issue_with(token, grant).await
    }

    /// Stores a token whose value the caller chose (dev mode's `--root-token`).
    pub async fn issue_with(
        &self,
        token: SecretString,
        grant: Grant,
    ) -> Result<CreateTokenResponse> {
        let (row, issued) = self.prepare(token, grant)?;
        self.store.apply(|u| u.tokens().insert(row)).await?;
        Ok(issued)
    }

    /// The row to store for a token and the answer that hands it out, for a caller that
    /// commits the row with other changes (bootstrap's unit of work).
    pub fn prepare(
        &self,
        token: SecretString,
        grant: Grant,
    ) -> Result<(TokenRow, CreateTokenResponse)> {
        let Grant {
            identity_id,
            identity_type,
            policies,
            display_name,
            ttl,
        } = grant;
        let accessor = generate_accessor().map_err(|_| Error::internal("rng failure"))?;
        let now = OffsetDateTime::now_utc();
        let expires_at = ttl.map(|d| now + d);
        let row = TokenRow {
            hash: self.hasher.hash(token.expose_secret()),
            accessor: accessor.clone(),
            identity_id: identity_id.clone(),
            identity_type: identity_type.as_str().to_owned(),
            policies,
            display_name,
            issued_at: now,
            expires_at,
        };
        let issued = CreateTokenResponse {
            token: token.expose_secret().to_owned(),
            accessor,
            identity_id,
            identity_type,
            issued_at: now,
            expires_at,
        };
        Ok((row, issued))
    }

    /// Whether a token with this exact value exists (dev-mode bootstrap).
    pub async fn exists(&self, token: &SecretString) -> Result<bool> {
        Ok(self
            .store
            .token_by_hash(self.hasher.hash(token.expose_secret()))
            .await?
            .is_some())
    }

    pub async fn list(&self) -> Result<Vec<TokenInfo>> {
        let rows = self.store.list_tokens(OffsetDateTime::now_utc()).await?;
        Ok(rows.into_iter().filter_map(info_of).collect())
    }

    /// Drops a token another replica revoked from this one's memory.
    pub fn forget_accessor(&self, accessor: &str) {
        self.cache
            .retain(|_, (caller, _)| caller.accessor != accessor);
    }

    /// Drops every token from memory (after missing part of the change feed).
    pub fn forget_all(&self) {
        self.cache.clear();
    }

    pub async fn revoke(&self, accessor: &str) -> Result<()> {
        if !accessor.starts_with("acc_") || accessor.len() > 64 {
            return Err(Error::invalid("accessor must look like acc_<hex>"));
        }
        let revoked = self
            .store
            .apply(|u| u.tokens().revoke(accessor, OffsetDateTime::now_utc()))
            .await?;
        let hash = revoked.ok_or_else(|| {
            Error::new(
                ErrorCode::TokenNotFound,
                format!("no active token with accessor {accessor}"),
            )
        })?;
        self.cache.remove(&hash);
        Ok(())
    }
}
