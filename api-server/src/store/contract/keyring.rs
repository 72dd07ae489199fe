//! The keyring (data keys never replaced) and meta (settings replaced in place).

use std::sync::Arc;

use super::at;
use crate::store::{KeyRow, Result, Store, StoreError};

pub(crate) async fn keys_and_meta(store: Arc<dyn Store>) -> Result<()> {
    let key = |key_id: u32| KeyRow {
        key_id,
        wrapped: vec![key_id as u8; 40],
        created_at: at(i64::from(key_id)),
    };
    for key_id in [2, 1] {
        store.apply(|u| u.keyring().insert_key(key(key_id))).await?;
    }
    let taken = store.apply(|u| u.keyring().insert_key(key(2))).await;
    assert!(matches!(taken, Err(StoreError::Conflict)), "{taken:?}");
    let keys: Vec<_> = store
        .list_keys()
        .await?
        .into_iter()
        .map(|k| (k.key_id, k.wrapped, k.created_at))
        .collect();
    assert_eq!(
        keys,
        [1, 2].map(|id| (id, vec![id as u8; 40], at(i64::from(id))))
    );
    assert!(store.get_meta("token_hmac_key").await?.is_none());
    for value in [b"first".to_vec(), b"second".to_vec()] {
        store
            .apply(|u| u.keyring().put_meta("token_hmac_key", value))
            .await?;
    }
    assert_eq!(
        store.get_meta("token_hmac_key").await?.as_deref(),
        Some(&b"second"[..])
    );
    // Compare-and-set: only over the value the writer read (or over nothing).
    let replace = |expected: Option<&[u8]>, value: &[u8]| {
        let (expected, value) = (expected.map(<[u8]>::to_vec), value.to_vec());
        let store = Arc::clone(&store);
        async move {
            store
                .apply(|u| u.keyring().replace_meta("checkpoint", expected, value))
                .await
        }
    };
    assert!(replace(None, b"one").await?);
    assert!(!replace(None, b"two").await?);
    assert!(!replace(Some(b"zero"), b"two").await?);
    assert!(replace(Some(b"one"), b"two").await?);
    assert_eq!(
        store.get_meta("checkpoint").await?.as_deref(),
        Some(&b"two"[..])
    );
    Ok(())
}
