//! Envelope encryption with AES-256-GCM (aws-lc-rs).
//!
//! Data keys live in a keyring, each wrapped by the master key. A sealed value is
//! `0x01 | key_id (u32 BE) | nonce (12) | ciphertext+tag`; its AAD binds it to the purpose,
//! the secret path, the version and the key id, so a row moved to another path or version
//! no longer opens.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::master_key::MasterKey;

const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
const DATA_KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BarrierError {
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext uses unknown key {0}")]
    UnknownKey(u32),
    #[error("ciphertext failed authentication (tampered, moved, or wrong key)")]
    Authentication,
    #[error("encryption failed")]
    Seal,
    #[error("random number generator failed")]
    Rng,
    #[error("the master key does not open the keyring")]
    WrongMasterKey,
}

/// What a sealed value belongs to; becomes the AAD.
#[derive(Debug, Clone, Copy)]
pub enum Context<'a> {
    /// A version of a secret.
    Secret { path: &'a str, version: u64 },
    /// A data key wrapped by the master key.
    Keyring,
    /// A vault-internal value stored in the meta table under this name.
    Meta(&'a str),
    /// The answer kept for an idempotency key, bound to its caller identity and key so
    /// a row moved to another caller or key no longer opens.
    IdempotentAnswer { scope: &'a str, key: &'a str },
    /// A webhook's signing secret, bound to the webhook's id.
    WebhookSecret(&'a str),
}

impl Context<'_> {
    fn aad(&self, key_id: u32) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        match self {
            Context::Secret { path, version } => {
                aad.extend_from_slice(b"scaivault/secret/v1\0");
                aad.extend_from_slice(path.as_bytes());
                aad.push(0);
                aad.extend_from_slice(&version.to_be_bytes());
            }
            Context::Keyring => aad.extend_from_slice(b"scaivault/keyring/v1\0"),
            Context::Meta(name) => {
                aad.extend_from_slice(b"scaivault/meta/v1\0");
                aad.extend_from_slice(name.as_bytes());
                aad.push(0);
            }
            Context::WebhookSecret(id) => {
                aad.extend_from_slice(b"scaivault/webhook-secret/v1\0");
                aad.extend_from_slice(id.as_bytes());
                aad.push(0);
            }
            Context::IdempotentAnswer { scope, key } => {
                aad.extend_from_slice(b"scaivault/idempotency/v1\0");
                aad.extend_from_slice(scope.as_bytes());
                aad.push(0);
                aad.extend_from_slice(key.as_bytes());
                aad.push(0);
            }
        }
        aad.extend_from_slice(&key_id.to_be_bytes());
        aad
    }
}

fn seal_with(
    key: &RandomizedNonceKey,
    key_id: u32,
    context: Context<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, BarrierError> {
    let mut buffer = Vec::with_capacity(HEADER_LEN + plaintext.len() + AES_256_GCM.tag_len());
    buffer.extend_from_slice(plaintext);
    let nonce = key
        .seal_in_place_append_tag(Aad::from(context.aad(key_id)), &mut buffer)
        .map_err(|_| BarrierError::Seal)?;
    let mut out = Vec::with_capacity(HEADER_LEN + buffer.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&buffer);
    // The plaintext copy in `buffer` was encrypted in place: nothing left to wipe.
    Ok(out)
}

fn parse_header(sealed: &[u8]) -> Result<(u32, [u8; NONCE_LEN], &[u8]), BarrierError> {
    if sealed.len() < HEADER_LEN + AES_256_GCM.tag_len() || sealed[0] != FORMAT_V1 {
        return Err(BarrierError::Malformed);
    }
    let key_id = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[5..HEADER_LEN]);
    Ok((key_id, nonce, &sealed[HEADER_LEN..]))
}

fn open_with(
    key: &RandomizedNonceKey,
    key_id: u32,
    nonce: [u8; NONCE_LEN],
    context: Context<'_>,
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BarrierError> {
    let mut buffer = Zeroizing::new(body.to_vec());
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.aad(key_id)),
            &mut buffer,
        )
        .map_err(|_| BarrierError::Authentication)?
        .len();
    buffer.truncate(len);
    Ok(buffer)
}

fn new_key(bytes: &[u8]) -> Result<RandomizedNonceKey, BarrierError> {
    RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| BarrierError::Malformed)
}

/// One unwrapped data key. Holds only the aws-lc-rs key object (no raw bytes kept).
struct DataKey {
    key: RandomizedNonceKey,
}

struct Ring {
    keys: HashMap<u32, Arc<DataKey>>,
    active: u32,
}

/// The unsealed keyring. Cheap to share; rotation swaps the ring atomically.
pub struct Barrier {
    master: RandomizedNonceKey,
    ring: ArcSwap<Ring>,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("active_key", &self.active_key_id())
            .finish_non_exhaustive()
    }
}

/// A freshly generated data key, wrapped and ready to store.
pub struct WrappedKey {
    pub key_id: u32,
    pub wrapped: Vec<u8>,
}

impl Barrier {
    /// Unwraps every stored data key with the master key. Any failure means the master
    /// key is wrong (or the keyring was tampered with): the server must refuse to start.
    pub fn unseal(
        master: &MasterKey,
        wrapped_keys: &[(u32, Vec<u8>)],
    ) -> Result<Self, BarrierError> {
        let master = new_key(master.bytes())?;
        let mut keys = HashMap::new();
        let mut active = 0;
        for (key_id, wrapped) in wrapped_keys {
            let (id_in_header, nonce, body) =
                parse_header(wrapped).map_err(|_| BarrierError::WrongMasterKey)?;
            if id_in_header != *key_id {
                return Err(BarrierError::WrongMasterKey);
            }
            let raw = open_with(&master, *key_id, nonce, Context::Keyring, body)
                .map_err(|_| BarrierError::WrongMasterKey)?;
            keys.insert(
                *key_id,
                Arc::new(DataKey {
                    key: new_key(&raw)?,
                }),
            );
            active = active.max(*key_id);
        }
        if keys.is_empty() {
            return Err(BarrierError::WrongMasterKey);
        }
        Ok(Barrier {
            master,
            ring: ArcSwap::from_pointee(Ring { keys, active }),
        })
    }

    /// Generates a data key and wraps it with the master key, without activating it.
    pub fn generate_wrapped_key(
        master: &MasterKey,
        key_id: u32,
    ) -> Result<WrappedKey, BarrierError> {
        let master = new_key(master.bytes())?;
        Self::wrap_new_key(&master, key_id)
    }

    fn wrap_new_key(master: &RandomizedNonceKey, key_id: u32) -> Result<WrappedKey, BarrierError> {
        let mut raw = Zeroizing::new([0u8; DATA_KEY_LEN]);
        SystemRandom::new()
            .fill(raw.as_mut())
            .map_err(|_| BarrierError::Rng)?;
        let wrapped = seal_with(master, key_id, Context::Keyring, raw.as_ref())?;
        Ok(WrappedKey { key_id, wrapped })
    }

    /// Prepares the next data key; store it, then call [`Barrier::install`].
    pub fn next_key(&self) -> Result<WrappedKey, BarrierError> {
        let next_id = self.active_key_id() + 1;
        Self::wrap_new_key(&self.master, next_id)
    }

    /// Activates a stored wrapped key for new writes; older keys stay for reads.
    pub fn install(&self, wrapped: &WrappedKey) -> Result<(), BarrierError> {
        let (_, nonce, body) = parse_header(&wrapped.wrapped)?;
        let raw = open_with(&self.master, wrapped.key_id, nonce, Context::Keyring, body)?;
        let key = Arc::new(DataKey {
            key: new_key(&raw)?,
        });
        self.ring.rcu(|ring| {
            let mut keys = ring.keys.clone();
            keys.insert(wrapped.key_id, Arc::clone(&key));
            Ring {
                keys,
                active: ring.active.max(wrapped.key_id),
            }
        });
        Ok(())
    }

    pub fn active_key_id(&self) -> u32 {
        self.ring.load().active
    }

    pub fn key_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.ring.load().keys.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Encrypts under the active data key.
    pub fn seal(&self, context: Context<'_>, plaintext: &[u8]) -> Result<Vec<u8>, BarrierError> {
        let ring = self.ring.load();
        let key = ring
            .keys
            .get(&ring.active)
            .ok_or(BarrierError::UnknownKey(ring.active))?;
        seal_with(&key.key, ring.active, context, plaintext)
    }

    /// Decrypts with whichever data key sealed the value.
    pub fn open(
        &self,
        context: Context<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BarrierError> {
        let (key_id, nonce, body) = parse_header(sealed)?;
        let ring = self.ring.load();
        let key = ring
            .keys
            .get(&key_id)
            .ok_or(BarrierError::UnknownKey(key_id))?;
        open_with(&key.key, key_id, nonce, context, body)
    }

    /// Encrypts a vault-internal value directly under the master key (e.g. the token
    /// HMAC key), so it does not depend on the data-key ring.
    pub fn wrap_internal(&self, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, BarrierError> {
        seal_with(&self.master, 0, Context::Meta(name), plaintext)
    }

    pub fn unwrap_internal(
        &self,
        name: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BarrierError> {
        let (key_id, nonce, body) = parse_header(sealed)?;
        open_with(&self.master, key_id, nonce, Context::Meta(name), body)
            .map_err(|_| BarrierError::WrongMasterKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barrier() -> (MasterKey, Barrier) {
        let master = MasterKey::generate().unwrap_or_else(|_| unreachable!());
        let first = Barrier::generate_wrapped_key(&master, 1).unwrap_or_else(|_| unreachable!());
        let barrier =
            Barrier::unseal(&master, &[(1, first.wrapped)]).unwrap_or_else(|_| unreachable!());
        (master, barrier)
    }

    fn ctx(path: &str, version: u64) -> Context<'_> {
        Context::Secret { path, version }
    }

    #[test]
    fn round_trip() {
        let (_, b) = barrier();
        let sealed = b.seal(ctx("app/db", 1), b"hunter2").unwrap_or_default();
        assert_eq!(
            b.open(ctx("app/db", 1), &sealed).map(|v| v.to_vec()),
            Ok(b"hunter2".to_vec())
        );
        assert!(
            !sealed.windows(7).any(|w| w == b"hunter2"),
            "plaintext visible in ciphertext"
        );
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let (_, b) = barrier();
        let sealed = b.seal(ctx("app/db", 1), b"value").unwrap_or_default();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                b.open(ctx("app/db", 1), &bad).is_err(),
                "flip at byte {i} not detected"
            );
        }
    }

    #[test]
    fn moved_rows_do_not_open() {
        let (_, b) = barrier();
        let sealed = b.seal(ctx("app/db", 1), b"value").unwrap_or_default();
        assert_eq!(
            b.open(ctx("app/other", 1), &sealed).err(),
            Some(BarrierError::Authentication)
        );
        assert_eq!(
            b.open(ctx("app/db", 2), &sealed).err(),
            Some(BarrierError::Authentication)
        );
        // Path/version boundary ambiguity: "a" + "b/..." vs "ab/..." differ by the separator.
        let s2 = b.seal(ctx("a", 1), b"v").unwrap_or_default();
        assert!(b.open(ctx("a\0", 1), &s2).is_err());
    }

    #[test]
    fn idempotent_answers_open_only_for_their_caller_and_key() {
        let (_, b) = barrier();
        let at = |scope, key| Context::IdempotentAnswer { scope, key };
        let sealed = b.seal(at("root", "key-1"), b"answer").unwrap_or_default();
        assert_eq!(
            b.open(at("root", "key-1"), &sealed)
                .map(|p| p.to_vec())
                .ok(),
            Some(b"answer".to_vec())
        );
        for (scope, key) in [("sa:ci", "key-1"), ("root", "key-2"), ("rootk", "ey-1")] {
            assert!(b.open(at(scope, key), &sealed).is_err(), "{scope} {key}");
        }
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_seals_with_the_new_key() {
        let (_, b) = barrier();
        let old = b.seal(ctx("p", 1), b"old").unwrap_or_default();
        let next = b.next_key().unwrap_or_else(|_| unreachable!());
        b.install(&next).unwrap_or_else(|_| unreachable!());
        assert_eq!(b.active_key_id(), 2);
        let new = b.seal(ctx("p", 2), b"new").unwrap_or_default();
        assert_eq!(u32::from_be_bytes([new[1], new[2], new[3], new[4]]), 2);
        assert_eq!(
            b.open(ctx("p", 1), &old).map(|v| v.to_vec()),
            Ok(b"old".to_vec())
        );
        assert_eq!(
            b.open(ctx("p", 2), &new).map(|v| v.to_vec()),
            Ok(b"new".to_vec())
        );
    }

    #[test]
    fn wrong_master_key_is_refused() {
        let (master, _) = barrier();
        let wrapped = Barrier::generate_wrapped_key(&master, 1).unwrap_or_else(|_| unreachable!());
        let other = MasterKey::generate().unwrap_or_else(|_| unreachable!());
        assert_eq!(
            Barrier::unseal(&other, &[(1, wrapped.wrapped)]).err(),
            Some(BarrierError::WrongMasterKey)
        );
    }

    #[test]
    fn debug_shows_no_key_material() {
        let (_, b) = barrier();
        let shown = format!("{b:?}");
        assert!(shown.starts_with("Barrier"), "{shown}");
        assert!(shown.len() < 64);
    }
}
