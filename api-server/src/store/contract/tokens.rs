//! Tokens: lookup by hash, listing, revocation, the expiry purge, unique keys.

use std::sync::Arc;

use super::{Present, at};
use crate::store::{Result, Store, StoreError, TokenRow};

fn token(n: u8, issued: i64, expires: Option<i64>) -> TokenRow {
    TokenRow {
        hash: [n; 32],
        accessor: format!("acc_{n:02x}"),
        identity_id: format!("sa:svc-{n}"),
        identity_type: "service_account".into(),
        policies: vec!["readers".into()],
        display_name: Some(format!("token {n}")),
        issued_at: at(issued),
        expires_at: expires.map(at),
    }
}

pub(crate) async fn issue_find_list_revoke_purge(store: Arc<dyn Store>) -> Result<()> {
    let rows = [
        token(1, 2, Some(3600)),
        token(2, 1, None),
        token(3, 0, Some(-1)),
    ];
    for row in rows.clone() {
        store.apply(|u| u.tokens().insert(row)).await?;
    }
    let found = store.token_by_hash([1; 32]).await?.present();
    assert_eq!(found.accessor, "acc_01");
    assert_eq!(found.identity_id, "sa:svc-1");
    assert_eq!(found.policies, ["readers"]);
    assert_eq!(found.display_name.as_deref(), Some("token 1"));
    assert_eq!((found.issued_at, found.expires_at), (at(2), Some(at(3600))));
    // An expired token is still found by hash: the caller checks expiry.
    assert!(store.token_by_hash([3; 32]).await?.is_some());
    assert!(store.token_by_hash([9; 32]).await?.is_none());
    let live: Vec<_> = store
        .list_tokens(at(0))
        .await?
        .into_iter()
        .map(|t| t.accessor)
        .collect();
    assert_eq!(live, ["acc_02", "acc_01"], "live tokens, oldest first");
    let revoke = |accessor: &'static str| {
        let store = Arc::clone(&store);
        async move { store.apply(|u| u.tokens().revoke(accessor, at(5))).await }
    };
    assert_eq!(revoke("acc_01").await?, Some([1; 32]));
    assert_eq!(revoke("acc_01").await?, None, "already revoked");
    assert_eq!(revoke("acc_ff").await?, None);
    assert!(store.token_by_hash([1; 32]).await?.is_none());
    assert_eq!(store.list_tokens(at(0)).await?.len(), 1);
    let purged = store
        .apply(|u| u.maintenance().purge_expired_tokens(at(0)))
        .await?;
    assert_eq!(purged, 1);
    assert!(store.token_by_hash([3; 32]).await?.is_none());
    assert!(store.token_by_hash([2; 32]).await?.is_some());
    Ok(())
}

pub(crate) async fn taken_hash_or_accessor_is_a_conflict(store: Arc<dyn Store>) -> Result<()> {
    store
        .apply(|u| u.tokens().insert(token(1, 0, None)))
        .await?;
    let same_accessor = TokenRow {
        hash: [7; 32],
        ..token(1, 0, None)
    };
    let same_hash = TokenRow {
        accessor: "acc_77".into(),
        ..token(1, 0, None)
    };
    for row in [same_accessor, same_hash] {
        let refused = store.apply(|u| u.tokens().insert(row)).await;
        assert!(matches!(refused, Err(StoreError::Conflict)), "{refused:?}");
    }
    assert!(store.token_by_hash([7; 32]).await?.is_none());
    Ok(())
}
