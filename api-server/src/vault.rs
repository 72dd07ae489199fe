//! Bootstrap: initialise a new vault, or open an existing one with its master key.

use std::sync::Arc;

use scaivault_api::auth::IdentityType;
use secrecy::SecretString;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::auth::TokenService;
use crate::authz::{Engine, PolicyService};
use crate::crypto::cursor::CursorKey;
use crate::crypto::signing::CheckpointSigner;
use crate::crypto::token::{TokenHasher, random_bytes};
use crate::crypto::{Barrier, MasterKey};
use crate::error::{Error, Result};
use crate::secrets::{AccessCounter, Limits, SecretsService};
use crate::store::{KeyRow, Store};

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

    /// Creates the first data key, the token HMAC key and a root token.
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
        let first_key = KeyRow {
            key_id: 1,
            wrapped: first.wrapped.clone(),
            created_at: OffsetDateTime::now_utc(),
        };
        store.apply(|u| u.keyring().insert_key(first_key)).await?;
        let barrier = Barrier::unseal(master, &[(1, first.wrapped)])
            .map_err(|e| BootstrapError::Other(e.to_string()))?;
        let hmac_key =
            random_bytes::<32>().map_err(|_| BootstrapError::Other("rng failure".into()))?;
        let wrapped = barrier
            .wrap_internal(META_TOKEN_HMAC_KEY, hmac_key.as_ref())
            .map_err(|e| BootstrapError::Other(e.to_string()))?;
        store
            .apply(|u| u.keyring().put_meta(META_TOKEN_HMAC_KEY, wrapped))
            .await?;
        let signer = new_audit_signer(store.as_ref(), &barrier).await?;
        let vault = Self::assemble(store, barrier, hmac_key.as_ref(), (signer, true), limits)?;
        let root = vault
            .tokens
            .issue(
                ROOT_IDENTITY.into(),
                IdentityType::Root,
                vec!["root".into()],
                Some("root".into()),
                None,
            )
            .await?;
        let now = OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        vault
            .store
            .apply(|u| u.keyring().put_meta(META_INITIALIZED_AT, now.into_bytes()))
            .await?;
        Ok((vault, SecretString::from(root.token)))
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
            None => (new_audit_signer(store.as_ref(), &barrier).await?, true),
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
        let next = self.barrier.next_key().map_err(Error::internal)?;
        let created_at = OffsetDateTime::now_utc();
        let key = KeyRow {
            key_id: next.key_id,
            wrapped: next.wrapped.clone(),
            created_at,
        };
        self.store.apply(|u| u.keyring().insert_key(key)).await?;
        self.barrier.install(&next).map_err(Error::internal)?;
        tracing::info!(key_id = next.key_id, "data key rotated");
        Ok((next.key_id, created_at))
    }
}

/// Generates the audit checkpoint signing key and stores it sealed under the master key.
async fn new_audit_signer(
    store: &dyn Store,
    barrier: &Barrier,
) -> Result<CheckpointSigner, BootstrapError> {
    let (pkcs8, signer) =
        CheckpointSigner::generate().map_err(|e| BootstrapError::Other(e.to_string()))?;
    let wrapped = barrier
        .wrap_internal(META_AUDIT_SIGNING_KEY, &pkcs8)
        .map_err(|e| BootstrapError::Other(e.to_string()))?;
    store
        .apply(|u| u.keyring().put_meta(META_AUDIT_SIGNING_KEY, wrapped))
        .await?;
    Ok(signer)
}
