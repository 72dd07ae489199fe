//! Rotation schedules: set, replaced and cleared with the secret; the cycle moved on by
//! every new version; signals raised once per cycle; the due and to-act-on queries; and
//! the change records (version, actor, reason) events are made of.

use std::sync::Arc;

use time::Duration;

use super::{Present, at, sealed, version};
use crate::store::rotation::{DueQuery, Schedule, Signal, next_rotation};
use crate::store::{ChangeKind, Result, Store};

const DAY: i64 = 86_400;

fn schedule(strategy: &str, interval_secs: u64, grace_secs: u64) -> Schedule {
    Schedule {
        policy: format!(r#"{{"interval":"{interval_secs}s","strategy":"{strategy}"}}"#),
        strategy: strategy.to_owned(),
        interval_secs,
        grace_secs,
        rotate_at_minute: None,
    }
}

async fn write(store: &dyn Store, path: &str, seconds: i64) -> Result<u64> {
    let mut new = version(path);
    new.created_at = at(seconds);
    let mut unit = crate::store::UnitOfWork::new();
    let slot = unit.secrets().write_version(new, sealed("v"));
    unit.rotation().rotated(path, at(seconds), None);
    store.commit(unit).await?.take(slot)
}

fn due(prefix: &str, until: i64, exclude_overdue_at: Option<i64>) -> DueQuery {
    DueQuery {
        prefix: prefix.to_owned(),
        after: None,
        limit: 100,
        until: at(until),
        exclude_overdue_at: exclude_overdue_at.map(at),
    }
}

pub(crate) async fn schedules_follow_their_secret(store: Arc<dyn Store>) -> Result<()> {
    // No live secret, no schedule.
    assert!(
        !store
            .apply(|u| u
                .rotation()
                .set("r/absent", schedule("external", DAY as u64, 0), at(0)))
            .await?
    );
    write(store.as_ref(), "r/a", 0).await?;
    assert!(
        store
            .apply(|u| u
                .rotation()
                .set("r/a", schedule("external", DAY as u64, 3600), at(0)))
            .await?
    );
    let row = store.rotation("r/a").await?.present();
    assert_eq!(row.next_at, at(DAY));
    assert_eq!(row.last_rotated_at, None);
    assert_eq!(row.overdue_at(), at(DAY + 3600));
    // Metadata and lists carry the schedule; reads of the value need not.
    let head = store.get_secret("r/a").await?.present();
    assert_eq!(head.rotation.map(|r| r.next_at), Some(at(DAY)));
    let listed = store
        .list_secrets(crate::store::ListQuery {
            prefix: "r/".into(),
            limit: 10,
            ..Default::default()
        })
        .await?;
    assert!(listed[0].rotation.is_some());

    // A new version moves the cycle on from its time, and yields the version.
    let v2 = {
        let mut new = version("r/a");
        new.created_at = at(100);
        let mut unit = crate::store::UnitOfWork::new();
        let slot = unit.secrets().write_version(new, sealed("v2"));
        let rotated = unit
            .rotation()
            .rotated("r/a", at(100), Some("because".into()));
        let mut committed = store.commit(unit).await?;
        (committed.take(slot)?, committed.take(rotated)?)
    };
    assert_eq!(v2, (2, Some(2)));
    let row = store.rotation("r/a").await?.present();
    assert_eq!(
        (row.last_rotated_at, row.next_at),
        (Some(at(100)), at(100 + DAY))
    );
    // Unscheduled secrets: nothing to move.
    write(store.as_ref(), "r/plain", 0).await?;
    assert_eq!(
        store
            .apply(|u| u.rotation().rotated("r/plain", at(1), None))
            .await?,
        None
    );
    // Replacing a schedule restarts the cycle from the last rotation.
    store
        .apply(|u| {
            u.rotation()
                .set("r/a", schedule("manual", 2 * DAY as u64, 0), at(500))
        })
        .await?;
    let row = store.rotation("r/a").await?.present();
    assert_eq!(
        (row.schedule.strategy.as_str(), row.next_at),
        ("manual", at(100 + 2 * DAY))
    );
    // Clearing removes it; destroying the secret removes it too.
    assert!(store.apply(|u| u.rotation().clear("r/a")).await?);
    assert!(!store.apply(|u| u.rotation().clear("r/a")).await?);
    assert!(store.rotation("r/a").await?.is_none());
    store
        .apply(|u| {
            u.rotation()
                .set("r/a", schedule("external", DAY as u64, 0), at(0))
        })
        .await?;
    store.apply(|u| u.secrets().destroy("r/a")).await?;
    assert!(store.rotation("r/a").await?.is_none());
    Ok(())
}

pub(crate) async fn signals_are_raised_once_per_cycle(store: Arc<dyn Store>) -> Result<()> {
    write(store.as_ref(), "s/a", 0).await?;
    store
        .apply(|u| {
            u.rotation()
                .set("s/a", schedule("external", DAY as u64, 60), at(0))
        })
        .await?;
    let cycle = store.rotation("s/a").await?.present().next_at;
    let signal = |signal: Signal, cycle| {
        let store = Arc::clone(&store);
        async move {
            store
                .apply(|u| {
                    u.rotation()
                        .signal("s/a", signal, cycle, Some("why".into()))
                })
                .await
        }
    };
    assert!(signal(Signal::Due, cycle).await?);
    assert!(!signal(Signal::Due, cycle).await?, "twice in one cycle");
    assert!(signal(Signal::Overdue, cycle).await?);
    assert!(!signal(Signal::Failed, at(12345)).await?, "a stale cycle");
    let row = store.rotation("s/a").await?.present();
    assert_eq!(
        (
            row.due_signalled,
            row.overdue_signalled,
            row.failed_signalled
        ),
        (Some(cycle), Some(cycle), None)
    );
    // The next cycle may be signalled again.
    write(store.as_ref(), "s/a", 10).await?;
    let next = store.rotation("s/a").await?.present().next_at;
    assert_eq!(next, at(10 + DAY));
    assert!(signal(Signal::Due, next).await?);
    // A request changes nothing but the feed; an unscheduled secret has none to make.
    assert_eq!(
        store.apply(|u| u.rotation().requested("s/a", None)).await?,
        Some(2)
    );
    assert_eq!(
        store
            .apply(|u| u.rotation().requested("s/none", None))
            .await?,
        None
    );
    Ok(())
}

pub(crate) async fn due_and_to_act_on_queries(store: Arc<dyn Store>) -> Result<()> {
    for (path, interval, strategy) in [
        ("q/a/one", DAY, "external"),
        ("q/a/two", 2 * DAY, "external"),
        ("q/b/gen", DAY, "generate"),
        ("q/a/ten", 10 * DAY, "manual"),
    ] {
        write(store.as_ref(), path, 0).await?;
        store
            .apply(|u| {
                u.rotation()
                    .set(path, schedule(strategy, interval as u64, 3600), at(0))
            })
            .await?;
    }
    let paths = |rows: Vec<crate::store::RotationRow>| -> Vec<String> {
        rows.into_iter().map(|r| r.path).collect()
    };
    assert_eq!(
        paths(store.rotations_due(due("q/", 3 * DAY, None)).await?),
        ["q/a/one", "q/a/two", "q/b/gen"]
    );
    assert_eq!(
        paths(store.rotations_due(due("q/a/", 3 * DAY, None)).await?),
        ["q/a/one", "q/a/two"]
    );
    // At 1.5 days: one-day schedules are past their hour of grace.
    let now = DAY + DAY / 2;
    assert_eq!(
        paths(store.rotations_due(due("q/", now + DAY, Some(now))).await?),
        ["q/a/two"]
    );
    let mut page = due("q/", 3 * DAY, None);
    page.after = Some("q/a/one".into());
    page.limit = 1;
    assert_eq!(paths(store.rotations_due(page).await?), ["q/a/two"]);
    // To act on at 1.5 days: the two one-day schedules; a `generate` one stays until
    // rotated, others drop out once due and overdue are signalled.
    assert_eq!(
        paths(store.rotations_to_act_on(at(now), 100).await?),
        ["q/a/one", "q/b/gen"]
    );
    let cycle = at(DAY);
    store
        .apply(|u| {
            u.rotation().signal("q/a/one", Signal::Due, cycle, None);
            u.rotation().signal("q/a/one", Signal::Overdue, cycle, None)
        })
        .await?;
    store
        .apply(|u| u.rotation().signal("q/b/gen", Signal::Due, cycle, None))
        .await?;
    assert_eq!(
        paths(store.rotations_to_act_on(at(now), 100).await?),
        ["q/b/gen"]
    );
    // Soft-deleted secrets are neither due nor acted on.
    store
        .apply(|u| u.secrets().soft_delete("q/b/gen", at(1)))
        .await?;
    assert!(store.rotations_to_act_on(at(now), 100).await?.is_empty());
    assert_eq!(
        paths(store.rotations_due(due("q/b/", 3 * DAY, None)).await?),
        Vec::<String>::new()
    );
    Ok(())
}

pub(crate) async fn records_carry_version_actor_and_reason(store: Arc<dyn Store>) -> Result<()> {
    use ChangeKind as K;
    write(store.as_ref(), "c/a", 0).await?;
    store
        .apply(|u| {
            u.rotation()
                .set("c/a", schedule("external", DAY as u64, 0), at(0))
        })
        .await?;
    let cycle = store.rotation("c/a").await?.present().next_at;
    store
        .apply(|u| {
            u.rotation()
                .signal("c/a", Signal::Due, cycle, Some("on time".into()))
        })
        .await?;
    store
        .apply(|u| u.rotation().requested("c/a", Some("compromise".into())))
        .await?;
    let mut unit = crate::store::UnitOfWork::new();
    unit.secrets().write_version(version("c/a"), sealed("v2"));
    unit.rotation()
        .rotated("c/a", at(5), Some("compromise".into()));
    store.commit(unit).await?;
    let records = store.changes_after(0, 100).await?;
    let seen: Vec<(ChangeKind, Option<u64>, Option<&str>)> = records
        .iter()
        .map(|r| (r.kind, r.version, r.reason.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (K::SecretWritten, Some(1), None),
            (K::SecretMetadataUpdated, None, None),
            (K::RotationDue, None, Some("on time")),
            (K::RotationRequested, Some(1), Some("compromise")),
            (K::SecretWritten, Some(2), None),
            (K::RotationCompleted, Some(2), Some("compromise")),
        ]
    );
    // Outside a request no one is noted as acting: the server's own jobs.
    assert!(records.iter().all(|r| r.actor.is_none()));
    assert_eq!(
        next_rotation(at(0), 60, None) - at(0),
        Duration::seconds(60)
    );
    Ok(())
}
