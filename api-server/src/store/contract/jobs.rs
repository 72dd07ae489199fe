//! The job runner's terms, fences and per-slot claims.

use std::sync::Arc;

use super::{Present, at};
use crate::store::{Result, Store, StoreError};

pub(crate) async fn terms_fence_the_units_of_the_last(store: Arc<dyn Store>) -> Result<()> {
    assert!(store.runner_term().await?.is_none());
    // No term yet: nothing is fenced in.
    let unled = store.apply(|u| u.jobs().fence(1)).await;
    assert!(
        matches!(unled, Err(StoreError::Fenced { epoch: 1 })),
        "{unled:?}"
    );
    let first = store
        .apply(|u| u.jobs().begin_term("pod-a/1", at(0)))
        .await?;
    store.apply(|u| u.jobs().fence(first)).await?;
    let second = store
        .apply(|u| u.jobs().begin_term("pod-b/2", at(1)))
        .await?;
    assert_eq!(second, first + 1);
    let term = store.runner_term().await?.present();
    assert_eq!(
        (term.epoch, term.holder.as_str(), term.since),
        (second, "pod-b/2", at(1))
    );
    // The old runner's unit fails whole: its purge is not applied.
    let mut unit = crate::store::UnitOfWork::new();
    unit.jobs().fence(first);
    unit.keyring()
        .put_meta("written_by_old_runner", b"x".to_vec());
    let fenced = store.commit(unit).await;
    assert!(
        matches!(fenced, Err(StoreError::Fenced { .. })),
        "{fenced:?}"
    );
    assert!(store.get_meta("written_by_old_runner").await?.is_none());
    store.apply(|u| u.jobs().fence(second)).await?;
    Ok(())
}

pub(crate) async fn a_slot_runs_once(store: Arc<dyn Store>) -> Result<()> {
    let first = store.apply(|u| u.jobs().begin_term("a", at(0))).await?;
    let claim = |slot: u64, epoch: u64| {
        let store = Arc::clone(&store);
        async move {
            store
                .apply(|u| {
                    u.jobs()
                        .claim_run("expiry_purge", slot, epoch, at(slot as i64))
                })
                .await
        }
    };
    assert!(claim(10, first).await?);
    assert!(!claim(10, first).await?, "the same slot twice");
    // A successor never runs a slot its predecessor claimed, nor an earlier one.
    let second = store.apply(|u| u.jobs().begin_term("b", at(1))).await?;
    assert!(!claim(10, second).await?);
    assert!(!claim(9, second).await?);
    let stale = claim(11, first).await;
    assert!(matches!(stale, Err(StoreError::Fenced { .. })), "{stale:?}");
    assert!(claim(11, second).await?);
    let runs = store.job_runs().await?;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (
            runs[0].job.as_str(),
            runs[0].slot,
            runs[0].epoch,
            runs[0].runs
        ),
        ("expiry_purge", 11, second, 2)
    );
    // Two runners racing for one slot (a stale one and the current): one claim at most.
    let racers = (0..8).map(|_| tokio::spawn(claim(12, second)));
    let mut won = 0;
    for racer in racers.collect::<Vec<_>>() {
        if racer
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??
        {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    Ok(())
}
