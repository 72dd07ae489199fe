//! The barrier's wrapped data keys and the vault's sealed settings (`meta`: the token
//! HMAC key, the audit signing key, the audit checkpoint, the initialisation time).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Result;
use super::Slot;
use super::unit_of_work::aggregate_writes;

/// One wrapped data key of the keyring.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub key_id: u32,
    pub wrapped: Vec<u8>,
    pub created_at: OffsetDateTime,
}

#[async_trait]
pub trait KeyringReads: Send + Sync + 'static {
    /// Every data key, by id.
    async fn list_keys(&self) -> Result<Vec<KeyRow>>;
    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
}

/// Writes to the keyring and meta; build them with [`super::UnitOfWork::keyring`].
#[derive(Debug)]
pub enum KeyringChange {
    InsertKey(KeyRow),
    PutMeta {
        key: String,
        value: Vec<u8>,
    },
    ReplaceMeta {
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    },
}

aggregate_writes!(KeyringWrites, keyring, Keyring(KeyringChange));

impl KeyringWrites<'_> {
    /// Fails the unit with `Conflict` when the key id is taken (keys are never replaced).
    pub fn insert_key(self, key: KeyRow) -> Slot<()> {
        self.push(KeyringChange::InsertKey(key))
    }

    /// Sets (or replaces) one setting.
    pub fn put_meta(self, key: &str, value: Vec<u8>) -> Slot<()> {
        self.push(KeyringChange::PutMeta {
            key: key.to_owned(),
            value,
        })
    }

    /// Sets one setting only if it still holds `expected` (`None`: absent); yields whether
    /// it did. Two servers updating one setting from what each read (the audit
    /// checkpoint) cannot overwrite each other's newer value.
    pub fn replace_meta(self, key: &str, expected: Option<Vec<u8>>, value: Vec<u8>) -> Slot<bool> {
        self.push(KeyringChange::ReplaceMeta {
            key: key.to_owned(),
            expected,
            value,
        })
    }
}
