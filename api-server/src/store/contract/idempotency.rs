//! Idempotency keys: one run per caller and key, replays of the kept answer, release of
//! a key whose request applied nothing, takeover of an abandoned claim, the purge.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::{at, version, write};
use crate::store::idempotency::{HeldKey, while_held};
use crate::store::{ClaimOutcome, IdempotencyClaim, NewVersion, Result, Store, StoredAnswer};

fn stale(path: &str) -> NewVersion {
    NewVersion {
        cas: Some(9),
        ..version(path)
    }
}

fn claim(scope: &str, fingerprint: u8, now: OffsetDateTime) -> IdempotencyClaim {
    IdempotencyClaim {
        scope: scope.into(),
        key: "key-0001".into(),
        fingerprint: [fingerprint; 32],
        now,
        expires_at: now + Duration::hours(24),
        abandoned_before: now - Duration::minutes(5),
    }
}

/// The outcome as text, the replayed answer included, for compact assertions.
async fn outcome(store: &dyn Store, request: IdempotencyClaim) -> Result<String> {
    Ok(
        match store.apply(|u| u.idempotency().claim(request)).await? {
            ClaimOutcome::Replay(a) => format!("replay {} {:?}", a.status, a.sealed_body),
            other => format!("{other:?}"),
        },
    )
}

async fn complete(store: &dyn Store, scope: &str) -> Result<()> {
    let answer = StoredAnswer {
        status: 201,
        content_type: Some("application/json".into()),
        sealed_body: Some(vec![1, 2, 3]),
    };
    store
        .apply(|u| u.idempotency().complete(scope, "key-0001", answer))
        .await
}

async fn release(store: &dyn Store, scope: &str) -> Result<()> {
    store
        .apply(|u| u.idempotency().release(scope, "key-0001"))
        .await
}

pub(crate) async fn claim_complete_replay_release_purge(store: Arc<dyn Store>) -> Result<()> {
    let s = store.as_ref();
    let t0 = at(0);
    assert_eq!(outcome(s, claim("root", 1, t0)).await?, "Claimed");
    assert_eq!(outcome(s, claim("root", 1, t0)).await?, "InFlight");
    assert_eq!(outcome(s, claim("root", 2, t0)).await?, "Mismatch");
    // Another identity's same key is another entry.
    assert_eq!(outcome(s, claim("sa:ci", 2, t0)).await?, "Claimed");
    complete(s, "root").await?;
    let later = t0 + Duration::hours(23);
    assert_eq!(
        outcome(s, claim("root", 1, later)).await?,
        "replay 201 Some([1, 2, 3])"
    );
    assert_eq!(outcome(s, claim("root", 2, t0)).await?, "Mismatch");
    // Released only while in flight: a completed answer stays.
    release(s, "root").await?;
    assert_eq!(
        outcome(s, claim("root", 1, t0)).await?,
        "replay 201 Some([1, 2, 3])"
    );
    release(s, "sa:ci").await?;
    assert_eq!(outcome(s, claim("sa:ci", 3, t0)).await?, "Claimed");
    // After 24 h a key is free again, for any request, and purged in batches.
    let t1 = t0 + Duration::hours(24);
    let purge = |limit: usize| {
        let store = Arc::clone(&store);
        async move {
            store
                .apply(|u| u.maintenance().purge_expired_idempotency(t1, limit))
                .await
        }
    };
    assert_eq!(purge(1).await?, 1);
    assert_eq!(purge(10).await?, 1);
    assert_eq!(purge(10).await?, 0);
    assert_eq!(outcome(s, claim("root", 2, t1)).await?, "Claimed");
    Ok(())
}

pub(crate) async fn abandoned_claims_are_taken_again(store: Arc<dyn Store>) -> Result<()> {
    let s = store.as_ref();
    let t0 = at(0);
    assert_eq!(outcome(s, claim("root", 1, t0)).await?, "Claimed");
    // Still in flight 4 minutes later; abandoned after 5.
    let later = t0 + Duration::minutes(4);
    assert_eq!(outcome(s, claim("root", 1, later)).await?, "InFlight");
    let later = t0 + Duration::minutes(6);
    assert_eq!(outcome(s, claim("root", 2, later)).await?, "Mismatch");
    assert_eq!(outcome(s, claim("root", 1, later)).await?, "Claimed");
    // The takeover keeps the first use's expiry: gone 24 h after the first claim.
    let purged = store
        .apply(|u| {
            u.maintenance()
                .purge_expired_idempotency(t0 + Duration::hours(24), 10)
        })
        .await?;
    assert_eq!(purged, 1);
    Ok(())
}

/// A change committed while the request holds its key marks the key applied in the same
/// transaction: after a crash before the answer was kept, a retry must not run again.
pub(crate) async fn a_change_marks_its_held_key_applied(store: Arc<dyn Store>) -> Result<()> {
    let s = store.as_ref();
    let t0 = at(0);
    assert_eq!(outcome(s, claim("root", 1, t0)).await?, "Claimed");
    let held = HeldKey {
        scope: "root".into(),
        key: "key-0001".into(),
    };
    let change = async {
        // A failed unit marks nothing; the next one does.
        let refused = write(s, stale("held/x"), "v").await;
        assert!(refused.is_err(), "{refused:?}");
        write(s, version("held/x"), "v").await
    };
    assert_eq!(while_held(held, change).await?, 1);
    // The server "stops" here: no answer kept. Once the claim is abandoned, a retry
    // learns the change was applied instead of applying it again.
    let abandoned = t0 + Duration::minutes(6);
    assert_eq!(
        outcome(s, claim("root", 1, abandoned)).await?,
        "AppliedWithoutAnswer"
    );
    // Releasing the key of a request that applied a change does not free it.
    release(s, "root").await?;
    assert_eq!(
        outcome(s, claim("root", 1, t0)).await?,
        "AppliedWithoutAnswer"
    );
    // Another caller's key with the same name was not held: it runs.
    assert_eq!(outcome(s, claim("sa:ci", 1, abandoned)).await?, "Claimed");
    release(s, "sa:ci").await?;
    assert_eq!(outcome(s, claim("sa:ci", 1, abandoned)).await?, "Claimed");
    Ok(())
}
