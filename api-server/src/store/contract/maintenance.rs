//! Maintenance: the expiry purge and the per-day read counters.

use std::sync::Arc;

use super::{Present, at, version, write};
use crate::store::{ListQuery, NewVersion, Result, Store};

pub(crate) async fn purges_expired_secrets(store: Arc<dyn Store>) -> Result<()> {
    let s = store.as_ref();
    let expiring = |path: &str, seconds: i64| NewVersion {
        expires_at: Some(at(seconds)),
        ..version(path)
    };
    for path in ["exp/a", "exp/b", "exp/c"] {
        write(s, expiring(path, -10), "v").await?;
    }
    write(s, expiring("exp/later", 3600), "v").await?;
    write(s, version("exp/never"), "v").await?;
    // Read once so a cache, if any, holds the row the purge erases.
    assert!(s.read_secret("exp/a", None).await?.is_some());
    let purge = |limit: usize| {
        let store = Arc::clone(&store);
        async move {
            let mut paths = store
                .apply(|u| u.maintenance().purge_expired_secrets(at(0), limit))
                .await?;
            paths.sort();
            Ok::<_, crate::store::StoreError>(paths)
        }
    };
    let first = purge(2).await?;
    assert_eq!(first.len(), 2, "the limit bounds one batch: {first:?}");
    let rest = purge(10).await?;
    let mut all = [first, rest].concat();
    all.sort();
    assert_eq!(all, ["exp/a", "exp/b", "exp/c"]);
    assert!(purge(10).await?.is_empty());
    for path in ["exp/a", "exp/b", "exp/c"] {
        assert!(s.read_secret(path, None).await?.is_none(), "{path}");
        assert!(s.list_versions(path).await?.is_empty(), "{path}");
    }
    let left = s
        .list_secrets(ListQuery {
            prefix: "exp/".into(),
            limit: 10,
            include_deleted: true,
            ..ListQuery::default()
        })
        .await?;
    let left: Vec<_> = left.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(left, ["exp/later", "exp/never"]);
    Ok(())
}

pub(crate) async fn counts_reads_per_day(store: Arc<dyn Store>) -> Result<()> {
    let s = store.as_ref();
    write(s, version("n/x"), "v").await?;
    write(s, version("n/y"), "v").await?;
    let today = at(0).unix_timestamp() / 86_400;
    let add = |day: i64, counts: Vec<(String, u64)>| {
        let store = Arc::clone(&store);
        async move {
            store
                .apply(|u| u.maintenance().add_access_counts(day, counts))
                .await
        }
    };
    // A path no longer stored is skipped, not an error.
    add(today, vec![("n/x".into(), 3), ("n/gone".into(), 5)]).await?;
    add(today, vec![("n/x".into(), 2)]).await?;
    add(today - 1, vec![("n/x".into(), 1), ("n/y".into(), 4)]).await?;
    // Outside the 30-day window.
    add(today - 40, vec![("n/x".into(), 100)]).await?;
    add(today, Vec::new()).await?;
    let count = |path: &'static str| {
        let store = Arc::clone(&store);
        async move {
            Ok::<_, crate::store::StoreError>(
                store.get_secret(path).await?.present().access_count_30d,
            )
        }
    };
    assert_eq!(count("n/x").await?, 6);
    assert_eq!(count("n/y").await?, 4);
    let listed = s
        .list_secrets(ListQuery {
            prefix: "n/".into(),
            limit: 10,
            ..ListQuery::default()
        })
        .await?;
    let counts: Vec<_> = listed.iter().map(|r| r.access_count_30d).collect();
    assert_eq!(counts, [6, 4]);
    store
        .apply(|u| u.maintenance().prune_access_counts(today))
        .await?;
    assert_eq!(count("n/x").await?, 5, "only today's rows are left");
    assert_eq!(count("n/y").await?, 0);
    Ok(())
}
