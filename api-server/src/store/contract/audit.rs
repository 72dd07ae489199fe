//! The audit store: batches appended whole and in order, the chain's tail, filtered and
//! paged queries, retention with its checkpoint, export jobs.

use std::sync::Arc;

use super::{Present, at};
use crate::store::{AuditQuery, AuditRow, AuditStore, Result, StoreError};

fn record(seq: u64, seconds: i64, identity: &str, path: &str, action: &str) -> AuditRow {
    AuditRow {
        seq,
        timestamp: at(seconds),
        identity_id: Some(identity.into()),
        path: Some(path.into()),
        action: action.into(),
        outcome: "success".into(),
        phase: None,
        request_seq: None,
        body: format!("{{\"seq\":{seq}}}"),
        hash: format!("h{seq}"),
    }
}

/// The two records of a mutating request: its request record, then its answer.
fn request_pair(seq: u64, seconds: i64) -> [AuditRow; 2] {
    let request = AuditRow {
        phase: Some("request".into()),
        ..record(seq, seconds, "root", "app/db", "secret.write")
    };
    let response = AuditRow {
        phase: Some("response".into()),
        request_seq: Some(seq),
        ..record(seq + 1, seconds, "root", "app/db", "secret.write")
    };
    [request, response]
}

/// Appends `rows` as they are, whatever the tail. `append` blocks (the audit writer calls
/// it from its own thread).
async fn append(store: &Arc<dyn AuditStore>, rows: Vec<AuditRow>) -> Result<()> {
    let store = Arc::clone(store);
    let mut rows = Some(rows);
    tokio::task::spawn_blocking(move || store.append(&mut |_| rows.take().unwrap_or_default()))
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .map(|_| ())
}

/// Several writers (replicas) appending at once each continue the tail the previous batch
/// committed: one unbroken chain, every record's body naming the hash before it.
pub(crate) async fn concurrent_appends_form_one_chain(store: Arc<dyn AuditStore>) -> Result<()> {
    const WRITERS: u64 = 4;
    const BATCHES: u64 = 25;
    let writers = (0..WRITERS).map(|writer| {
        let store = Arc::clone(&store);
        tokio::task::spawn_blocking(move || -> Result<()> {
            for _ in 0..BATCHES {
                let mut seal = |(seq, prev): &(u64, String)| {
                    (1..=2)
                        .map(|i| AuditRow {
                            body: format!("{{\"prev\":\"{prev}\",\"writer\":{writer},\"i\":{i}}}"),
                            hash: format!("h{}", seq + i),
                            ..record(seq + i, 0, "root", "a/b", "x")
                        })
                        .collect()
                };
                let tail = store.append(&mut seal)?;
                assert_eq!(tail.1, format!("h{}", tail.0));
            }
            Ok(())
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??;
    }
    let rows = store
        .query(AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .await?;
    let total = WRITERS * BATCHES * 2;
    assert_eq!(seqs(&rows), (1..=total).collect::<Vec<_>>());
    // A batch's first record chains from the previous batch's last, whoever wrote it.
    for pair in rows.windows(2).filter(|w| w[1].body.ends_with("\"i\":1}")) {
        assert!(
            pair[1]
                .body
                .contains(&format!("\"prev\":\"{}\"", pair[0].hash)),
            "{} does not continue {}",
            pair[1].body,
            pair[0].hash
        );
    }
    assert_eq!(
        store.last_record().await?,
        Some((total, format!("h{total}")))
    );
    Ok(())
}

fn seqs(rows: &[AuditRow]) -> Vec<u64> {
    rows.iter().map(|r| r.seq).collect()
}

fn everything() -> AuditQuery {
    AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    }
}

pub(crate) async fn appends_whole_batches(store: Arc<dyn AuditStore>) -> Result<()> {
    assert!(store.last_record().await?.is_none());
    append(&store, request_pair(1, 0).to_vec()).await?;
    append(&store, vec![record(3, 1, "sa:ci", "app/x", "secret.read")]).await?;
    assert_eq!(store.last_record().await?, Some((3, "h3".to_owned())));
    // A batch that repeats a sequence number lands not at all.
    let repeat = vec![
        record(4, 2, "root", "a/b", "x"),
        record(3, 2, "root", "a/b", "x"),
    ];
    let refused = append(&store, repeat).await;
    assert!(matches!(refused, Err(StoreError::Conflict)), "{refused:?}");
    assert_eq!(store.last_record().await?, Some((3, "h3".to_owned())));
    let stored = store.query(everything()).await?;
    assert_eq!(seqs(&stored), [1, 2, 3]);
    let answer = &stored[1];
    assert_eq!(answer.phase.as_deref(), Some("response"));
    assert_eq!(answer.request_seq, Some(1));
    assert_eq!(
        (answer.body.as_str(), answer.timestamp),
        ("{\"seq\":2}", at(0))
    );
    Ok(())
}

pub(crate) async fn queries_filter_and_page(store: Arc<dyn AuditStore>) -> Result<()> {
    let mut rows = request_pair(1, 0).to_vec();
    rows.push(record(3, 10, "sa:ci", "app/x", "secret.read"));
    rows.push(AuditRow {
        outcome: "denied".into(),
        ..record(4, 20, "sa:ci", "app/y", "secret.read")
    });
    // A request whose answer never came stays visible.
    rows.push(AuditRow {
        phase: Some("request".into()),
        ..record(5, 30, "root", "app/z", "secret.delete")
    });
    append(&store, rows).await?;
    let query = |q: AuditQuery| {
        let store = Arc::clone(&store);
        async move { Ok::<_, StoreError>(seqs(&store.query(q).await?)) }
    };
    assert_eq!(query(everything()).await?, [1, 2, 3, 4, 5]);
    let hidden = AuditQuery {
        hide_answered_requests: true,
        ..everything()
    };
    assert_eq!(query(hidden).await?, [2, 3, 4, 5]);
    let by = |f: fn(&mut AuditQuery)| {
        let mut q = everything();
        f(&mut q);
        q
    };
    let filtered = [
        (by(|q| q.identity_id = Some("sa:ci".into())), vec![3, 4]),
        (by(|q| q.path = Some("app/z".into())), vec![5]),
        (by(|q| q.action = Some("secret.read".into())), vec![3, 4]),
        (by(|q| q.outcome = Some("denied".into())), vec![4]),
        (by(|q| q.from = Some(at(10))), vec![3, 4, 5]),
        (by(|q| q.to = Some(at(10))), vec![1, 2, 3]),
        (by(|q| q.after_seq = Some(2)), vec![3, 4, 5]),
        (by(|q| q.to_seq = Some(3)), vec![1, 2, 3]),
        (by(|q| q.limit = 2), vec![1, 2]),
    ];
    for (q, expected) in filtered {
        let described = format!("{q:?}");
        assert_eq!(query(q).await?, expected, "{described}");
    }
    // Cursor paging: each page starts after the last one's end.
    let page = |after| AuditQuery {
        after_seq: after,
        limit: 2,
        ..AuditQuery::default()
    };
    assert_eq!(query(page(None)).await?, [1, 2]);
    assert_eq!(query(page(Some(2))).await?, [3, 4]);
    assert_eq!(query(page(Some(4))).await?, [5]);
    assert_eq!(store.record_before(3).await?.present().seq, 2);
    assert!(store.record_before(1).await?.is_none());
    Ok(())
}

pub(crate) async fn retention_and_exports(store: Arc<dyn AuditStore>) -> Result<()> {
    let rows = (1..=4)
        .map(|seq| record(seq, seq as i64 * 10, "root", "a/b", "x"))
        .collect();
    append(&store, rows).await?;
    assert!(store.checkpoint().await?.is_none());
    assert!(store.purge_point(at(10)).await?.is_none(), "nothing older");
    let point = store.purge_point(at(25)).await?.present();
    assert_eq!(point, (2, "h2".to_owned()));
    assert_eq!(store.purge_through(point.0, point.1.clone()).await?, 2);
    assert_eq!(store.checkpoint().await?, Some(point));
    assert_eq!(seqs(&store.query(everything()).await?), [3, 4]);
    // The chain continues after retention, even when it removed every record.
    assert_eq!(store.last_record().await?, Some((4, "h4".to_owned())));
    assert_eq!(store.purge_through(4, "h4".into()).await?, 2);
    let appender = Arc::clone(&store);
    let continued = tokio::task::spawn_blocking(move || {
        let mut seen = None;
        appender.append(&mut |tail| {
            seen = Some(tail.clone());
            vec![record(tail.0 + 1, 40, "root", "a/b", "x")]
        })?;
        Ok::<_, StoreError>(seen)
    })
    .await
    .map_err(|e| StoreError::Unavailable(e.to_string()))??;
    assert_eq!(continued, Some((4, "h4".to_owned())));
    assert!(store.get_export("exp_1").await?.is_none());
    store
        .save_export("exp_1", "{\"state\":\"running\"}".into(), true)
        .await?;
    store
        .save_export("exp_2", "{\"state\":\"queued\"}".into(), true)
        .await?;
    assert_eq!(
        store.running_exports().await?,
        ["{\"state\":\"running\"}", "{\"state\":\"queued\"}"]
    );
    store
        .save_export("exp_1", "{\"state\":\"done\"}".into(), false)
        .await?;
    assert_eq!(
        store.get_export("exp_1").await?.as_deref(),
        Some("{\"state\":\"done\"}")
    );
    assert_eq!(store.running_exports().await?, ["{\"state\":\"queued\"}"]);
    Ok(())
}
