//! Bootstrap: initialise a new vault, or open an existing one with its master key.

use std::sync::Arc;

use scaivault_api::auth::IdentityType;
use secrecy::SecretString;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::auth::{Grant, TokenService};
use crate::authz::{Engine, PolicyService};
use crate::crypto::cursor::CursorKey;
use crate::crypto::signing::CheckpointSigner;
use crate::crypto::token::{TokenHasher, generate_token, random_bytes};
use crate::crypto::{Barrier, MasterKey};
use crate::error::{Error, Result};
use crate::secrets::{AccessCounter, Limits, SecretsService};
use crate::store::{KeyRow, Store, StoreError, UnitOfWork};

const META_INITIALIZED_AT: &str = "initialized_at";
const META_TOKEN_HMAC_KEY: &str = "token_hmac_key";
const META_AUDIT_SIGNING_KEY: &str = "audit_signing_key";
pub const ROOT_IDENTITY: &str = "root";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("this data directory is already initialised")]
    AlreadyInitialized,
    #[error("this data directory is not initialised: run `scaivault-server init` first")]
    NotInitialized,
    #[error(
        "the master key does not match this vault (wrong key, or the keyring was tampered with)"
    )]
    WrongMasterKey,
    #[error("{0}")]
    Other(String),
}

impl From<Error> for BootstrapError {
    fn from(e: Error) -> Self {
        BootstrapError::Other(e.to_string())
    }
}

impl From<crate::store::StoreError> for BootstrapError {
    fn from(e: crate::store::StoreError) -> Self {
        BootstrapError::Other(e.to_string())
    }
}

/// The unsealed vault: every service, sharing one store and one barrier.
pub struct Vault {
    pub store: Arc<dyn Store>,
    pub barrier: Arc<Barrier>,
    pub secrets: SecretsService,
    pub tokens: TokenService,
    pub authz: Arc<Engine>,
    pub policies: PolicyService,
    pub access: Arc<AccessCounter>,
    /// Key of the audit log's HMACs, derived from the token key so it needs no storage.
    pub audit_hmac_key: Zeroizing<Vec<u8>>,
    /// Seals list cursors; derived from the token key like the audit key, never stored.
    pub cursors: CursorKey,
    /// Key of the audit hash chain (HMAC-SHA256), derived like `audit_hmac_key` under its
    /// own label: never stored, so whoever can write `audit.db` cannot re-hash the chain.
    pub audit_chain_key: Zeroizing<Vec<u8>>,
    /// Signs audit checkpoints; sealed under the master key in the data store.
    pub audit_signer: Arc<CheckpointSigner>,
    /// The signing key was created by this start (a new vault, or one from before signed
    /// checkpoints): the audit log has no checkpoint under it yet.
    pub audit_signer_is_new: bool,
    rotation_lock: Mutex<()>,
}

impl Vault {
    pub async fn is_initialized(store: &dyn Store) -> Result<bool, BootstrapError> {
        Ok(store.get_meta(META_INITIALIZED_AT).await?.is_some())
    }

    /// Creates the first data key, the token HMAC key, the audit signing key and a root
    /// token, committed together with the initialisation mark: a crash part-way leaves
    /// an uninitialised directory that `init` can run on again, not one with a keyring
    /// and no mark that refuses both `init` and `serve`.
    pub async fn initialize(
        store: Arc<dyn Store>,
        master: &MasterKey,
        limits: Limits,
    ) -> Result<(Vault, SecretString), BootstrapError> {
        if Self::is_initialized(store.as_ref()).await? || !store.list_keys().await?.is_empty() {
            return Err(BootstrapError::AlreadyInitialized);
        }
        let first = Barrier::generate_wrapped_key(master, 1)
            .map_err(|e| BootstrapError::Other(e.to_string()))?;
        let mut unit = UnitOfWork::new();
        unit.keyring().insert_key(KeyRow {
            key_id: 1,
            wrapped: first.wrapped.clone(),
            created_at: OffsetDateTime::now_utc(),
        });
        let barrier = Barrier::unseal(master, &[(1, first.wrapped)])
            .map_err(|e| BootstrapError::Other(e.to_string()))?;
        let hmac_key =
            random_bytes::<32>().map_err(|_| BootstrapError::Other("rng failure".into()))?;
        let wrapped = barrier
            .wrap_internal(META_TOKEN_HMAC_KEY, hmac_key.as_ref())
            .map_err(|e| BootstrapError::Other(e.to_string()))?;
        unit.keyring().put_meta(META_TOKEN_HMAC_KEY, wrapped);
        let (signer, wrapped_signer) = new_audit_signer(&barrier)?;
        unit.keyring()
            .put_meta(META_AUDIT_SIGNING_KEY, wrapped_signer);
        let vault = Self::assemble(store, barrier, hmac_key.as_ref(), (signer, true), limits)?;
        let root_token =
            generate_token().map_err(|_| BootstrapError::Other("rng failure".into()))?;
        let (root_row, root) = vault.tokens.prepare(root_token, root_grant("root"))?;
        unit.tokens().insert(root_row);
        let now = OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        unit.keyring()
            .put_meta(META_INITIALIZED_AT, now.into_bytes());
        match vault.store.commit(unit).await {
            // Another `init` committed first (its key 1 is there).
            Err(StoreError::Conflict) => Err(BootstrapError::AlreadyInitialized),
            Err(e) => Err(e.into()),
            Ok(_) => Ok((vault, SecretString::from(root.token))),
        }
    }

    /// Unseals an initialised vault; refuses a wrong master key.
    pub async fn open(
        store: Arc<dyn Store>,
        master: &MasterKey,
        limits: Limits,
    ) -> Result<Vault, BootstrapError> {
        if !Self::is_initialized(store.as_ref()).await? {
            return Err(BootstrapError::NotInitialized);
        }
        let keys: Vec<(u32, Vec<u8>)> = store
            .list_keys()
            .await?
            .into_iter()
            .map(|k| (k.key_id, k.wrapped))
            .collect();
        let barrier = Barrier::unseal(master, &keys).map_err(|_| BootstrapError::WrongMasterKey)?;
        let wrapped = store
            .get_meta(META_TOKEN_HMAC_KEY)
            .await?
            .ok_or_else(|| BootstrapError::Other("token key missing from storage".into()))?;
        let hmac_key = barrier
            .unwrap_internal(META_TOKEN_HMAC_KEY, &wrapped)
            .map_err(|_| BootstrapError::WrongMasterKey)?;
        let signer = match store.get_meta(META_AUDIT_SIGNING_KEY).await? {
            Some(wrapped) => {
                let pkcs8 = barrier
                    .unwrap_internal(META_AUDIT_SIGNING_KEY, &wrapped)
                    .map_err(|_| BootstrapError::WrongMasterKey)?;
                let signer = CheckpointSigner::from_pkcs8(&pkcs8)
                    .map_err(|e| BootstrapError::Other(e.to_string()))?;
                (signer, false)
            }
            // A vault from before signed audit checkpoints.
            None => {
                let (signer, wrapped) = new_audit_signer(&barrier)?;
                store
                    .apply(|u| u.keyring().put_meta(META_AUDIT_SIGNING_KEY, wrapped))
                    .await?;
                (signer, true)
            }
        };
        let vault = Self::assemble(store, barrier, &hmac_key, signer, limits)?;
        // Bindings made before this start must hold from the first request on.
        vault.policies.reload().await?;
        Ok(vault)
    }

    fn assemble(
        store: Arc<dyn Store>,
        barrier: Barrier,
        token_key: &[u8],
        (audit_signer, audit_signer_is_new): (CheckpointSigner, bool),
        limits: Limits,
    ) -> Result<Vault, BootstrapError> {
        let hasher = TokenHasher::new(token_key);
        let cursors =
            CursorKey::new(Zeroizing::new(hasher.hash("scaivault/list-cursor/v1")).as_ref())
                .map_err(|e| BootstrapError::Other(e.to_string()))?;
        // HMAC-SHA256 under the token key of a fixed label: the token hasher computes it.
        let audit_hmac_key = Zeroizing::new(hasher.hash("scaivault/audit-hmac/v1").to_vec());
        let audit_chain_key = Zeroizing::new(hasher.hash("scaivault/audit-chain/v1").to_vec());
        let barrier = Arc::new(barrier);
        let access = Arc::new(AccessCounter::default());
        let authz = Arc::new(Engine::default());
        Ok(Vault {
            policies: PolicyService::new(Arc::clone(&store), Arc::clone(&authz)),
            authz,
            secrets: SecretsService::new(
                Arc::clone(&store),
                Arc::clone(&barrier),
                Arc::clone(&access),
                limits,
            ),
            tokens: TokenService::new(Arc::clone(&store), hasher),
            store,
            barrier,
            access,
            audit_hmac_key,
            cursors,
            audit_chain_key,
            audit_signer: Arc::new(audit_signer),
            audit_signer_is_new,
            rotation_lock: Mutex::new(()),
        })
    }

    /// Adds a new data key for new writes; every older key stays for reads.
    pub async fn rotate_data_key(&self) -> Result<(u32, OffsetDateTime)> {
        let _guard = self.rotation_lock.lock().await;
        // Another replica may have added keys: the next id follows the newest stored.
        self.secrets.sync_keyring().await?;
        let next = self.barrier.next_key().map_err(Error::internal)?;
        let created_at = OffsetDateTime::now_utc();
        let key = KeyRow {
            key_id: next.key_id,
            wrapped: next.wrapped.clone(),
            created_at,
        };
        match self.store.apply(|u| u.keyring().insert_key(key)).await {
            Err(StoreError::Conflict) => {
                return Err(Error::new(
                    scaivault_api::ErrorCode::Conflict,
                    "another replica added a data key at the same moment; rotate again if a newer key is still wanted",
                ));
            }
            other => other?,
        }
        self.barrier.install(&next).map_err(Error::internal)?;
        tracing::info!(key_id = next.key_id, "data key rotated");
        Ok((next.key_id, created_at))
    }
}

/// The grant of a root token: every permission through the `root` policy, no expiry.
pub fn root_grant(display_name: &str) -> Grant {
    Grant {
        identity_id: ROOT_IDENTITY.into(),
        identity_type: IdentityType::Root,
        policies: vec!["root".into()],
        display_name: Some(display_name.into()),
        ttl: None,
    }
}

/// Generates the audit checkpoint signing key; returns it with its sealed form, which
/// the caller stores under `META_AUDIT_SIGNING_KEY`.
fn new_audit_signer(barrier: &Barrier) -> Result<(CheckpointSigner, Vec<u8>), BootstrapError> {
    let (pkcs8, signer) =
        CheckpointSigner::generate().map_err(|e| BootstrapError::Other(e.to_string()))?;
    let wrapped = barrier
        .wrap_internal(META_AUDIT_SIGNING_KEY, &pkcs8)
        .map_err(|e| BootstrapError::Other(e.to_string()))?;
    Ok((signer, wrapped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    /// Two `init`s racing on one database: one creates the vault, the other is told it
    /// exists (its whole unit rolled back: no second keyring entry, no second root).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn initialisation_commits_as_one_unit() -> Result<(), BootstrapError> {
        let dir = tempfile::tempdir().map_err(|e| BootstrapError::Other(e.to_string()))?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("vault.db"))?);
        let master = MasterKey::generate().map_err(|e| BootstrapError::Other(e.to_string()))?;
        let limits = Limits {
            max_value_bytes: 1024,
        };
        let (first, second) = tokio::join!(
            Vault::initialize(Arc::clone(&store), &master, limits),
            Vault::initialize(Arc::clone(&store), &master, limits),
        );
        let outcomes = [first.map(|_| ()), second.map(|_| ())];
        assert_eq!(
            outcomes.iter().filter(|o| o.is_ok()).count(),
            1,
            "{outcomes:?}"
        );
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, Err(BootstrapError::AlreadyInitialized))),
            "{outcomes:?}"
        );
        assert_eq!(store.list_keys().await?.len(), 1);
        assert_eq!(store.list_tokens(OffsetDateTime::now_utc()).await?.len(), 1);
        Vault::open(store, &master, limits).await.map(|_| ())
    }
}
