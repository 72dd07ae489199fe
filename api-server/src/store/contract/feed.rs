//! The change feed: one record per applied change, in commit order, only for units that
//! committed, pageable, pruned by age without a `seq` ever coming back.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use time::Duration;

use super::{at, sealed, version};
use crate::store::{
    BindingRow, ChangeKind, IdentityRow, KeyRow, NewVersion, PolicyRow, Result, Store, StoreError,
    TokenRow, now_millis,
};

fn kinds(records: &[crate::store::ChangeRecord]) -> Vec<(ChangeKind, &str)> {
    records
        .iter()
        .map(|r| (r.kind, r.subject.as_str()))
        .collect()
}

pub(crate) async fn every_change_is_recorded_in_order(store: Arc<dyn Store>) -> Result<()> {
    use ChangeKind as K;
    assert_eq!(store.last_change_seq().await?, 0);
    assert!(store.changes_after(0, 100).await?.is_empty());
    let before = now_millis();
    store
        .apply(|u| u.secrets().write_version(version("f/a"), sealed("v")))
        .await?;
    // Changes that found nothing to change record nothing.
    store
        .apply(|u| u.secrets().update_metadata("f/absent", None, None, at(1)))
        .await?;
    store
        .apply(|u| {
            u.secrets()
                .update_metadata("f/a", Some(vec!["t".into()]), None, at(1))
        })
        .await?;
    store
        .apply(|u| u.secrets().soft_delete("f/a", at(2)))
        .await?;
    store.apply(|u| u.secrets().restore("f/a", at(3))).await?;
    store.apply(|u| u.secrets().restore("f/a", at(3))).await?;
    store.apply(|u| u.secrets().destroy("f/a")).await?;
    store.apply(|u| u.secrets().destroy("f/a")).await?;
    let token = TokenRow {
        hash: [9; 32],
        accessor: "acc_feed".into(),
        identity_id: "sa:feed".into(),
        identity_type: "service_account".into(),
        policies: vec![],
        display_name: None,
        issued_at: at(0),
        expires_at: None,
    };
    store.apply(|u| u.tokens().insert(token)).await?;
    store
        .apply(|u| u.tokens().revoke("acc_feed", at(4)))
        .await?;
    store
        .apply(|u| u.tokens().revoke("acc_feed", at(4)))
        .await?;
    let policy = PolicyRow {
        id: "pol_f".into(),
        name: "feed".into(),
        description: None,
        rules_json: "[]".into(),
        created_at: at(0),
        updated_at: at(0),
    };
    store
        .apply(|u| u.policies().create_policy(policy.clone()))
        .await?;
    store.apply(|u| u.policies().update_policy(policy)).await?;
    let binding = BindingRow {
        policy_id: "pol_f".into(),
        identity_type: "user".into(),
        identity_id: "u1".into(),
        created_at: at(0),
    };
    store.apply(|u| u.policies().add_binding(binding)).await?;
    store
        .apply(|u| u.policies().delete_binding("pol_f", "u1"))
        .await?;
    store.apply(|u| u.policies().delete_policy("pol_f")).await?;
    let identity = IdentityRow {
        id: "u1".into(),
        identity_type: "user".into(),
        display_name: None,
        created_at: at(0),
    };
    store
        .apply(|u| u.policies().create_identity(identity))
        .await?;
    let key = KeyRow {
        key_id: 2,
        wrapped: vec![1],
        created_at: at(0),
    };
    store.apply(|u| u.keyring().insert_key(key)).await?;
    store
        .apply(|u| u.keyring().put_meta("initialized_at", b"x".to_vec()))
        .await?;
    // Bookkeeping records nothing.
    store
        .apply(|u| {
            u.maintenance()
                .add_access_counts(0, vec![("f/b".into(), 1)])
        })
        .await?;

    let records = store.changes_after(0, 100).await?;
    assert_eq!(
        kinds(&records),
        [
            (K::SecretWritten, "f/a"),
            (K::SecretMetadataUpdated, "f/a"),
            (K::SecretDeleted, "f/a"),
            (K::SecretRestored, "f/a"),
            (K::SecretDestroyed, "f/a"),
            (K::TokenCreated, "acc_feed"),
            (K::TokenRevoked, "acc_feed"),
            (K::PolicyCreated, "pol_f"),
            (K::PolicyUpdated, "pol_f"),
            (K::BindingAdded, "pol_f"),
            (K::BindingRemoved, "pol_f"),
            (K::PolicyDeleted, "pol_f"),
            (K::IdentityCreated, "u1"),
            (K::KeyAdded, "2"),
            (K::MetaUpdated, "initialized_at"),
        ]
    );
    assert!(records.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(records.iter().all(|r| r.at >= before));
    assert_eq!(store.last_change_seq().await?, records[14].seq);
    assert_eq!(store.first_change_seq().await?, records[0].seq);
    // Every kind's name reads back as itself.
    for r in &records {
        assert_eq!(ChangeKind::parse(r.kind.as_str()), Some(r.kind));
    }
    Ok(())
}

pub(crate) async fn a_unit_that_fails_records_nothing(store: Arc<dyn Store>) -> Result<()> {
    store
        .apply(|u| u.secrets().write_version(version("g/a"), sealed("v")))
        .await?;
    let mut unit = crate::store::UnitOfWork::new();
    unit.secrets().write_version(version("g/b"), sealed("v"));
    let stale = NewVersion {
        cas: Some(5),
        ..version("g/a")
    };
    unit.secrets().write_version(stale, sealed("v"));
    let refused = store.commit(unit).await;
    assert!(
        matches!(refused, Err(StoreError::CasMismatch { current: 1 })),
        "{refused:?}"
    );
    let records = store.changes_after(0, 100).await?;
    assert_eq!(kinds(&records), [(ChangeKind::SecretWritten, "g/a")]);
    // The expiry purge records each secret it erased.
    let expiring = NewVersion {
        expires_at: Some(at(-10)),
        ..version("g/expired")
    };
    store
        .apply(|u| u.secrets().write_version(expiring, sealed("v")))
        .await?;
    store
        .apply(|u| u.maintenance().purge_expired_secrets(at(0), 10))
        .await?;
    let last = store.changes_after(records[0].seq, 100).await?;
    assert_eq!(
        kinds(&last),
        [
            (ChangeKind::SecretWritten, "g/expired"),
            (ChangeKind::SecretExpired, "g/expired")
        ]
    );
    Ok(())
}

pub(crate) async fn pages_and_prunes_without_reusing_seq(store: Arc<dyn Store>) -> Result<()> {
    for n in 0..5 {
        store
            .apply(|u| {
                u.secrets()
                    .write_version(version(&format!("p/{n}")), sealed("v"))
            })
            .await?;
    }
    let first = store.changes_after(0, 2).await?;
    let rest = store.changes_after(first[1].seq, 10).await?;
    assert_eq!((first.len(), rest.len()), (2, 3));
    assert_eq!(rest[0].subject, "p/2");
    let last = store.last_change_seq().await?;

    // Everything is older than a minute from now: all of it goes, in batches.
    let later = now_millis() + Duration::minutes(1);
    let pruned = store
        .apply(|u| u.maintenance().prune_changes(later, 3))
        .await?;
    assert_eq!(pruned, 3);
    assert_eq!(store.first_change_seq().await?, rest[1].seq);
    store
        .apply(|u| u.maintenance().prune_changes(later, 10))
        .await?;
    assert!(store.changes_after(0, 10).await?.is_empty());
    assert_eq!(store.first_change_seq().await?, 0);
    // The position survives an empty feed, and the next record comes after it.
    assert_eq!(store.last_change_seq().await?, last);
    store
        .apply(|u| u.secrets().write_version(version("p/next"), sealed("v")))
        .await?;
    let next = store.changes_after(0, 10).await?;
    assert_eq!(next.len(), 1);
    assert!(next[0].seq > last, "{} after {last}", next[0].seq);
    Ok(())
}

/// A reader following the feed while writers commit concurrently sees every record
/// exactly once: none appears behind a position it has passed.
pub(crate) async fn a_follower_misses_nothing_under_concurrent_writers(
    store: Arc<dyn Store>,
) -> Result<()> {
    const WRITERS: usize = 6;
    const EACH: usize = 20;
    let follower = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut position = 0;
            while seen.len() < WRITERS * EACH {
                let page = store.changes_after(position, 7).await?;
                if let Some(last) = page.last() {
                    position = last.seq;
                }
                seen.extend(page.into_iter().map(|r| r.seq));
                tokio::time::sleep(StdDuration::from_millis(1)).await;
            }
            Ok::<_, StoreError>(seen)
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for n in 0..EACH {
                    let path = format!("c/{w}/{n}");
                    store
                        .apply(|u| u.secrets().write_version(version(&path), sealed("v")))
                        .await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for writer in writers {
        writer
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??;
    }
    let seen = tokio::time::timeout(StdDuration::from_secs(30), follower)
        .await
        .map_err(|_| StoreError::Unavailable("the follower never saw every record".into()))?
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
    let all: Vec<u64> = store
        .changes_after(0, 1000)
        .await?
        .into_iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(all.len(), WRITERS * EACH);
    assert_eq!(seen, all, "the follower's records differ from the feed's");
    Ok(())
}
