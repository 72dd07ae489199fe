//! Units of work: changes across aggregates commit together, or not at all.

use std::sync::Arc;

use super::{at, current, sealed, version};
use crate::store::{KeyRow, NewVersion, Result, Store, StoreError, TokenRow, UnitOfWork};

fn token(accessor: &str) -> TokenRow {
    TokenRow {
        hash: [accessor.len() as u8; 32],
        accessor: accessor.into(),
        identity_id: "root".into(),
        identity_type: "root".into(),
        policies: vec!["root".into()],
        display_name: None,
        issued_at: at(0),
        expires_at: None,
    }
}

pub(crate) async fn changes_across_aggregates_commit_together(store: Arc<dyn Store>) -> Result<()> {
    let mut unit = UnitOfWork::new();
    let first = unit.secrets().write_version(version("u/x"), sealed("one"));
    let second = unit.secrets().write_version(version("u/x"), sealed("two"));
    let inserted = unit.tokens().insert(token("acc_1"));
    let meta = unit.keyring().put_meta("initialized_at", b"now".to_vec());
    let mut committed = store.commit(unit).await?;
    // Results come back per change; a later change sees an earlier one's rows.
    assert_eq!(committed.take(first)?, 1);
    assert_eq!(committed.take(second)?, 2);
    committed.take(inserted)?;
    committed.take(meta)?;
    assert_eq!(
        current(store.as_ref(), "u/x").await?.as_deref(),
        Some("two@2")
    );
    assert!(store.token_by_hash([5; 32]).await?.is_some());
    assert!(store.get_meta("initialized_at").await?.is_some());
    Ok(())
}

pub(crate) async fn first_error_rolls_back_the_unit(store: Arc<dyn Store>) -> Result<()> {
    let mut unit = UnitOfWork::new();
    unit.secrets().write_version(version("r/x"), sealed("v"));
    unit.keyring().put_meta("initialized_at", b"now".to_vec());
    let stale = NewVersion {
        cas: Some(7),
        ..version("r/y")
    };
    unit.secrets().write_version(stale, sealed("v"));
    unit.tokens().insert(token("acc_never"));
    let refused = store.commit(unit).await;
    assert!(
        matches!(refused, Err(StoreError::CasMismatch { current: 0 })),
        "{refused:?}"
    );
    assert!(store.get_secret("r/x").await?.is_none());
    assert!(store.get_meta("initialized_at").await?.is_none());
    assert!(store.list_tokens(at(0)).await?.is_empty());
    Ok(())
}

pub(crate) async fn constraint_violation_rolls_back_as_conflict(
    store: Arc<dyn Store>,
) -> Result<()> {
    let key = |key_id| KeyRow {
        key_id,
        wrapped: vec![0; 40],
        created_at: at(0),
    };
    store.apply(|u| u.keyring().insert_key(key(1))).await?;
    let mut unit = UnitOfWork::new();
    unit.tokens().insert(token("acc_1"));
    unit.keyring().insert_key(key(1));
    let refused = store.commit(unit).await;
    assert!(matches!(refused, Err(StoreError::Conflict)), "{refused:?}");
    assert!(store.list_tokens(at(0)).await?.is_empty());
    Ok(())
}

pub(crate) async fn empty_unit_and_ping(store: Arc<dyn Store>) -> Result<()> {
    store.commit(UnitOfWork::new()).await?;
    store.ping().await?;
    assert!(!store.backend().is_empty());
    Ok(())
}

/// Many units at once, every third one failing: each succeeds or fails alone (a backend
/// that commits them together must keep them apart), and the feed holds exactly the
/// ones that committed.
pub(crate) async fn concurrent_units_fail_alone(store: Arc<dyn Store>) -> Result<()> {
    const UNITS: usize = 60;
    let tasks: Vec<_> = (0..UNITS)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let stale = (n % 3 == 0).then_some(99);
                let mut unit = UnitOfWork::new();
                let written = unit.secrets().write_version(
                    NewVersion {
                        cas: stale,
                        ..version(&format!("b/{n}"))
                    },
                    sealed("v"),
                );
                unit.keyring().put_meta(&format!("m/{n}"), vec![1]);
                let outcome = store.commit(unit).await;
                (n, outcome.and_then(|mut c| c.take(written)))
            })
        })
        .collect();
    for task in tasks {
        let (n, outcome) = task
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if n % 3 == 0 {
            assert!(
                matches!(outcome, Err(StoreError::CasMismatch { current: 0 })),
                "unit {n}: {outcome:?}"
            );
            assert!(store.get_secret(&format!("b/{n}")).await?.is_none());
            assert!(store.get_meta(&format!("m/{n}")).await?.is_none());
        } else {
            assert_eq!(outcome?, 1, "unit {n}");
            assert!(store.get_meta(&format!("m/{n}")).await?.is_some());
        }
    }
    let written = store
        .changes_after(0, 1000)
        .await?
        .into_iter()
        .filter(|r| r.kind == crate::store::ChangeKind::SecretWritten)
        .count();
    assert_eq!(written, UNITS - UNITS / 3);
    Ok(())
}
