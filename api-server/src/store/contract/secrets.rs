//! Secrets: versions, check-and-set, retention, metadata, soft delete, lists.

use std::sync::Arc;

use super::{Present, at, current, sealed, version, write};
use crate::store::{ListQuery, NewVersion, RestoreOutcome, Result, Store, StoreError};

fn with_cas(path: &str, cas: u64) -> NewVersion {
    NewVersion {
        cas: Some(cas),
        ..version(path)
    }
}

fn values(rows: &[crate::store::SecretRow]) -> Vec<&str> {
    rows.iter().map(|r| r.path.as_str()).collect()
}

pub(crate) async fn writes_and_reads_versions(store: Arc<dyn Store>) -> Result<()> {
    let s = store.as_ref();
    assert_eq!(write(s, version("app/db"), "one").await?, 1);
    let second = NewVersion {
        created_by: "sa:ci".into(),
        created_at: at(5),
        ..version("app/db")
    };
    assert_eq!(write(s, second, "two").await?, 2);
    // The seal saw the version the store assigned.
    assert_eq!(current(s, "app/db").await?.as_deref(), Some("two@2"));
    let (head, old) = s.read_secret("app/db", Some(1)).await?.present();
    assert_eq!(head.current_version, 2);
    let old = old.present();
    assert_eq!((old.version, old.ciphertext.as_slice()), (1, &b"one@1"[..]));
    let (_, missing) = s.read_secret("app/db", Some(9)).await?.present();
    assert!(missing.is_none(), "a version never written");
    assert!(s.read_secret("app/none", None).await?.is_none());
    let head = s.get_secret("app/db").await?.present();
    assert_eq!((head.current_version, head.version_count), (2, 2));
    assert_eq!((head.created_at, head.updated_at), (at(0), at(5)));
    assert_eq!(head.secret_type, "generic");
    let versions = s.list_versions("app/db").await?;
    let listed: Vec<_> = versions
        .iter()
        .map(|v| (v.version, v.created_by.as_str()))
        .collect();
    assert_eq!(listed, [(1, "root"), (2, "sa:ci")]);
    assert!(s.get_secret("app/none").await?.is_none());
    assert!(s.list_versions("app/none").await?.is_empty());
    Ok(())
}

pub(crate) async fn check_and_set(store: Arc<dyn Store>) -> Result<()> {
    let s = store.as_ref();
    assert_eq!(write(s, with_cas("a/b", 0), "one").await?, 1);
    for stale in [0, 5] {
        let refused = write(s, with_cas("a/b", stale), "lost").await;
        assert!(
            matches!(refused, Err(StoreError::CasMismatch { current: 1 })),
            "{refused:?}"
        );
    }
    assert_eq!(write(s, with_cas("a/b", 1), "two").await?, 2);
    assert_eq!(current(s, "a/b").await?.as_deref(), Some("two@2"));
    // Absent counts as version 0.
    let refused = write(s, with_cas("a/new", 3), "lost").await;
    assert!(
        matches!(refused, Err(StoreError::CasMismatch { current: 0 })),
        "{refused:?}"
    );
    assert!(s.get_secret("a/new").await?.is_none());
    Ok(())
}

/// Several tasks write the same secret with the same expected version: exactly one wins
/// each round, every other one learns the version that won.
pub(crate) async fn concurrent_writers_one_wins_per_version(store: Arc<dyn Store>) -> Result<()> {
    const WRITERS: u64 = 8;
    for round in 1..=5u64 {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let value = format!("r{round}w{writer}");
                    write(store.as_ref(), with_cas("race/x", round - 1), &value).await
                })
            })
            .collect();
        let mut won = Vec::new();
        for task in tasks {
            match task.await {
                Ok(Ok(version)) => won.push(version),
                Ok(Err(StoreError::CasMismatch { current })) => assert_eq!(current, round),
                other => unreachable!("round {round}: {other:?}"),
            }
        }
        assert_eq!(won, [round], "round {round}");
    }
    assert_eq!(
        store.get_secret("race/x").await?.map(|h| h.current_version),
        Some(5)
    );
    Ok(())
}

/// Without CAS every write lands, each with its own version number.
pub(crate) async fn concurrent_writers_without_cas_lose_nothing(
    store: Arc<dyn Store>,
) -> Result<()> {
    let tasks: Vec<_> = (0..8)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                write(store.as_ref(), version("race/y"), &format!("w{writer}")).await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(version)) => versions.push(version),
            other => unreachable!("{other:?}"),
        }
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<u64>>());
    Ok(())
}

pub(crate) async fn retention_prunes_old_versions(store: Arc<dyn Store>) -> Result<()> {
    let s = store.as_ref();
    let first = NewVersion {
        max_versions: Some(3),
        ..version("keep/three")
    };
    write(s, first, "v").await?;
    for _ in 0..4 {
        // Retention is kept from the first write.
        write(s, version("keep/three"), "v").await?;
    }
    let kept: Vec<u64> = s
        .list_versions("keep/three")
        .await?
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(kept, [3, 4, 5]);
    let head = s.get_secret("keep/three").await?.present();
    assert_eq!((head.version_count, head.max_versions), (3, 3));
    let (_, pruned) = s.read_secret("keep/three", Some(1)).await?.present();
    assert!(pruned.is_none());
    // The default for a new secret.
    write(s, version("keep/default"), "v").await?;
    let head = s.get_secret("keep/default").await?.present();
    assert_eq!(
        head.max_versions,
        scaivault_api::limits::DEFAULT_MAX_VERSIONS
    );
    Ok(())
}

pub(crate) async fn type_tags_and_description(store: Arc<dyn Store>) -> Result<()> {
    let s = store.as_ref();
    let first = NewVersion {
        tags: Some(vec!["prod".into(), "db".into()]),
        description: Some("the database".into()),
        ..version("m/x")
    };
    write(s, first, "v").await?;
    // Unset fields keep what is stored.
    let typed = NewVersion {
        secret_type: Some("password".into()),
        ..version("m/x")
    };
    write(s, typed, "v").await?;
    let head = s.get_secret("m/x").await?.present();
    assert_eq!(head.secret_type, "password");
    assert_eq!(head.tags, ["prod", "db"]);
    assert_eq!(head.description.as_deref(), Some("the database"));
    let found = store
        .apply(|u| {
            u.secrets()
                .update_metadata("m/x", Some(vec!["dev".into()]), None, at(9))
        })
        .await?;
    assert!(found);
    let head = s.get_secret("m/x").await?.present();
    assert_eq!(head.tags, ["dev"]);
    assert_eq!(head.description.as_deref(), Some("the database"));
    assert_eq!(head.updated_at, at(9));
    let found = store
        .apply(|u| u.secrets().update_metadata("m/none", None, None, at(9)))
        .await?;
    assert!(!found);
    Ok(())
}

pub(crate) async fn soft_delete_and_restore(store: Arc<dyn Store>) -> Result<()> {
    let s = store.as_ref();
    write(s, version("d/x"), "v").await?;
    write(s, version("d/y"), "v").await?;
    assert!(
        store
            .apply(|u| u.secrets().soft_delete("d/x", at(1)))
            .await?
    );
    // A second delete keeps the first time.
    assert!(
        store
            .apply(|u| u.secrets().soft_delete("d/x", at(2)))
            .await?
    );
    let head = s.get_secret("d/x").await?.present();
    assert_eq!(head.deleted_at, Some(at(1)));
    assert!(
        !store
            .apply(|u| u.secrets().soft_delete("d/none", at(1)))
            .await?
    );
    let live = ListQuery {
        prefix: "d/".into(),
        limit: 10,
        ..ListQuery::default()
    };
    assert_eq!(values(&s.list_secrets(live.clone()).await?), ["d/y"]);
    let all = ListQuery {
        include_deleted: true,
        ..live.clone()
    };
    assert_eq!(values(&s.list_secrets(all).await?), ["d/x", "d/y"]);
    let restore = |path: &'static str| {
        let store = Arc::clone(&store);
        async move { store.apply(|u| u.secrets().restore(path, at(3))).await }
    };
    assert_eq!(restore("d/x").await?, RestoreOutcome::Restored);
    assert_eq!(restore("d/x").await?, RestoreOutcome::NotDeleted);
    assert_eq!(restore("d/none").await?, RestoreOutcome::NotFound);
    let head = s.get_secret("d/x").await?.present();
    assert_eq!((head.deleted_at, head.updated_at), (None, at(3)));
    // A new version brings a deleted secret back too.
    store
        .apply(|u| u.secrets().soft_delete("d/y", at(1)))
        .await?;
    write(s, version("d/y"), "again").await?;
    assert_eq!(current(s, "d/y").await?.as_deref(), Some("again@2"));
    Ok(())
}

pub(crate) async fn destroy_erases_everything(store: Arc<dyn Store>) -> Result<()> {
    let s = store.as_ref();
    write(s, version("gone/x"), "v").await?;
    write(s, version("gone/x"), "v").await?;
    let today = at(0).unix_timestamp() / 86_400;
    store
        .apply(|u| {
            u.maintenance()
                .add_access_counts(today, vec![("gone/x".into(), 7)])
        })
        .await?;
    assert!(store.apply(|u| u.secrets().destroy("gone/x")).await?);
    assert!(s.get_secret("gone/x").await?.is_none());
    assert!(s.read_secret("gone/x", None).await?.is_none());
    assert!(s.list_versions("gone/x").await?.is_empty());
    assert!(!store.apply(|u| u.secrets().destroy("gone/x")).await?);
    // A secret written again at that path starts over, read counts included.
    assert_eq!(write(s, version("gone/x"), "v").await?, 1);
    let head = s.get_secret("gone/x").await?.present();
    assert_eq!(head.access_count_30d, 0);
    Ok(())
}

pub(crate) async fn list_pages_in_path_order(store: Arc<dyn Store>) -> Result<()> {
    let s = store.as_ref();
    for path in ["app/b", "apps/x", "app/c/d", "other/y", "app/a", "app/e"] {
        write(s, version(path), "v").await?;
    }
    let page = |prefix: &str, after: Option<&str>, limit: usize| ListQuery {
        prefix: prefix.into(),
        after: after.map(str::to_owned),
        limit,
        include_deleted: false,
    };
    let first = s.list_secrets(page("app/", None, 2)).await?;
    assert_eq!(values(&first), ["app/a", "app/b"]);
    assert_eq!(first[0].version_count, 1);
    let next = s.list_secrets(page("app/", Some("app/b"), 2)).await?;
    assert_eq!(values(&next), ["app/c/d", "app/e"]);
    let last = s.list_secrets(page("app/", Some("app/e"), 2)).await?;
    assert!(last.is_empty(), "the prefix bounds the page: no apps/x");
    // A cursor before the prefix starts at the prefix; an empty prefix lists everything.
    let before = s.list_secrets(page("app/", Some("aaa"), 1)).await?;
    assert_eq!(values(&before), ["app/a"]);
    let everything = s.list_secrets(page("", None, 100)).await?;
    assert_eq!(
        values(&everything),
        ["app/a", "app/b", "app/c/d", "app/e", "apps/x", "other/y"]
    );
    assert!(s.list_secrets(page("none/", None, 10)).await?.is_empty());
    Ok(())
}

pub(crate) async fn seal_failure_writes_nothing(store: Arc<dyn Store>) -> Result<()> {
    let failing = Box::new(|_version: u64| Err("no key".to_owned()));
    let refused = store
        .apply(|u| u.secrets().write_version(version("seal/x"), failing))
        .await;
    assert!(matches!(refused, Err(StoreError::Seal(_))), "{refused:?}");
    assert!(store.get_secret("seal/x").await?.is_none());
    Ok(())
}

/// Whatever a backend caches, a read after a write (or a failed unit) sees the database.
pub(crate) async fn cached_reads_follow_writes(store: Arc<dyn Store>) -> Result<()> {
    let s = store.as_ref();
    write(s, version("c/x"), "one").await?;
    for _ in 0..2 {
        assert_eq!(current(s, "c/x").await?.as_deref(), Some("one@1"));
    }
    write(s, version("c/x"), "two").await?;
    assert_eq!(current(s, "c/x").await?.as_deref(), Some("two@2"));
    // A unit that writes and then fails leaves the value as it was.
    let mut unit = crate::store::UnitOfWork::new();
    unit.secrets().write_version(version("c/x"), sealed("lost"));
    unit.secrets()
        .write_version(with_cas("c/x", 1), sealed("lost"));
    assert!(store.commit(unit).await.is_err());
    assert_eq!(current(s, "c/x").await?.as_deref(), Some("two@2"));
    store
        .apply(|u| u.secrets().soft_delete("c/x", at(1)))
        .await?;
    let (head, _) = s.read_secret("c/x", None).await?.present();
    assert!(head.deleted_at.is_some());
    store.apply(|u| u.secrets().destroy("c/x")).await?;
    assert!(s.read_secret("c/x", None).await?.is_none());
    Ok(())
}
