//! Policies (unique names), bindings (to existing policies, deleted with them) and
//! identities.

use std::sync::Arc;

use super::{Present, at};
use crate::store::{BindingRow, IdentityRow, PolicyRow, Result, Store, StoreError};

fn policy(id: &str, name: &str) -> PolicyRow {
    PolicyRow {
        id: id.into(),
        name: name.into(),
        description: Some(format!("{name} policy")),
        rules_json: r#"[{"path_pattern":"app/*","permissions":["read"]}]"#.into(),
        created_at: at(0),
        updated_at: at(0),
    }
}

fn binding(policy_id: &str, identity_id: &str, seconds: i64) -> BindingRow {
    BindingRow {
        policy_id: policy_id.into(),
        identity_type: "user".into(),
        identity_id: identity_id.into(),
        created_at: at(seconds),
    }
}

pub(crate) async fn policies_with_unique_names(store: Arc<dyn Store>) -> Result<()> {
    for row in [policy("pol_2", "writers"), policy("pol_1", "readers")] {
        store.apply(|u| u.policies().create_policy(row)).await?;
    }
    for taken in [policy("pol_3", "readers"), policy("pol_1", "other")] {
        let refused = store.apply(|u| u.policies().create_policy(taken)).await;
        assert!(matches!(refused, Err(StoreError::Conflict)), "{refused:?}");
    }
    let names: Vec<_> = store
        .list_policies()
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["readers", "writers"], "by name");
    let found = store.get_policy("pol_1").await?.present();
    assert_eq!(found.rules_json, policy("pol_1", "readers").rules_json);
    assert!(store.get_policy("pol_9").await?.is_none());
    let renamed = PolicyRow {
        updated_at: at(7),
        ..policy("pol_2", "editors")
    };
    assert!(store.apply(|u| u.policies().update_policy(renamed)).await?);
    let updated = store.get_policy("pol_2").await?.present();
    assert_eq!(
        (updated.name.as_str(), updated.updated_at),
        ("editors", at(7))
    );
    let clash = store
        .apply(|u| u.policies().update_policy(policy("pol_2", "readers")))
        .await;
    assert!(matches!(clash, Err(StoreError::Conflict)), "{clash:?}");
    let unknown = store
        .apply(|u| u.policies().update_policy(policy("pol_9", "x")))
        .await?;
    assert!(!unknown);
    assert!(store.apply(|u| u.policies().delete_policy("pol_2")).await?);
    assert!(!store.apply(|u| u.policies().delete_policy("pol_2")).await?);
    assert_eq!(store.list_policies().await?.len(), 1);
    Ok(())
}

pub(crate) async fn bindings(store: Arc<dyn Store>) -> Result<()> {
    for row in [policy("pol_a", "a"), policy("pol_b", "b")] {
        store.apply(|u| u.policies().create_policy(row)).await?;
    }
    for row in [
        binding("pol_b", "user:zoe", 1),
        binding("pol_a", "user:zoe", 2),
        binding("pol_a", "user:ann", 3),
        // Binding twice is a no-op: the first binding's time stays.
        binding("pol_a", "user:ann", 9),
    ] {
        store.apply(|u| u.policies().add_binding(row)).await?;
    }
    let missing = store
        .apply(|u| u.policies().add_binding(binding("pol_x", "user:ann", 0)))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    let all: Vec<_> = store
        .list_bindings(None)
        .await?
        .into_iter()
        .map(|b| (b.policy_id, b.identity_id, b.created_at))
        .collect();
    let expected = [
        ("pol_a", "user:ann", at(3)),
        ("pol_a", "user:zoe", at(2)),
        ("pol_b", "user:zoe", at(1)),
    ]
    .map(|(p, i, t)| (p.to_owned(), i.to_owned(), t));
    assert_eq!(all, expected, "by policy, then identity");
    assert_eq!(store.list_bindings(Some("pol_b")).await?.len(), 1);
    assert!(store.list_bindings(Some("pol_x")).await?.is_empty());
    let unbind = |policy_id: &'static str, identity_id: &'static str| {
        let store = Arc::clone(&store);
        async move {
            store
                .apply(|u| u.policies().delete_binding(policy_id, identity_id))
                .await
        }
    };
    assert!(unbind("pol_b", "user:zoe").await?);
    assert!(!unbind("pol_b", "user:zoe").await?);
    // Deleting a policy takes its bindings with it.
    store.apply(|u| u.policies().delete_policy("pol_a")).await?;
    assert!(store.list_bindings(None).await?.is_empty());
    Ok(())
}

pub(crate) async fn identities(store: Arc<dyn Store>) -> Result<()> {
    let identity = |id: &str| IdentityRow {
        id: id.into(),
        identity_type: "user".into(),
        display_name: Some(id.to_uppercase()),
        created_at: at(0),
    };
    for id in ["user:zoe", "user:ann"] {
        store
            .apply(|u| u.policies().create_identity(identity(id)))
            .await?;
    }
    let taken = store
        .apply(|u| u.policies().create_identity(identity("user:ann")))
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict)), "{taken:?}");
    let found = store.get_identity("user:ann").await?.present();
    assert_eq!(found.display_name.as_deref(), Some("USER:ANN"));
    assert!(store.get_identity("user:bob").await?.is_none());
    let ids: Vec<_> = store
        .list_identities()
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["user:ann", "user:zoe"], "by id");
    Ok(())
}
