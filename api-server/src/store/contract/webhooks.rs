//! Webhooks and deliveries: the limit and unique names, settings replaced without
//! touching the cursor, the cursor that only moves forward (so two runners cannot queue
//! one event twice), the oldest pending delivery first, history pages newest first,
//! deletion taking the deliveries along, and the two events the dispatcher raises.

use std::sync::Arc;

use super::at;
use crate::store::webhooks::{DeliveryQuery, DeliveryRow, WebhookRow};
use crate::store::{ChangeKind, Result, Store, StoreError};

fn webhook(id: &str, name: &str) -> WebhookRow {
    WebhookRow {
        id: id.to_owned(),
        name: name.to_owned(),
        settings: r#"{"url":"https://example.com/"}"#.to_owned(),
        enabled: true,
        disabled_reason: None,
        failing_since: None,
        secret: vec![1, 2, 3],
        previous_secret: None,
        previous_secret_until: None,
        secret_set_at: at(0),
        created_at: at(0),
        updated_at: at(0),
        cursor: 0,
    }
}

fn delivery(webhook_id: &str, seq: u64) -> DeliveryRow {
    DeliveryRow {
        webhook_id: webhook_id.to_owned(),
        seq,
        status: "pending".to_owned(),
        attempts: 0,
        next_attempt_at: Some(at(1)),
        body: format!(r#"{{"seq":{seq}}}"#),
        created_at: at(1),
        updated_at: at(1),
    }
}

fn query(webhook_id: &str, status: Option<&str>, before: Option<u64>) -> DeliveryQuery {
    DeliveryQuery {
        webhook_id: webhook_id.to_owned(),
        status: status.map(str::to_owned),
        before,
        limit: 10,
    }
}

pub(crate) async fn webhooks_are_limited_named_and_updated(store: Arc<dyn Store>) -> Result<()> {
    assert!(
        store
            .apply(|u| u.webhooks().create(webhook("wh_a", "a"), 2))
            .await?
    );
    let taken = store
        .apply(|u| u.webhooks().create(webhook("wh_b", "a"), 2))
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict)), "{taken:?}");
    assert!(
        store
            .apply(|u| u.webhooks().create(webhook("wh_b", "b"), 2))
            .await?
    );
    // At the limit, refused without an error.
    assert!(
        !store
            .apply(|u| u.webhooks().create(webhook("wh_c", "c"), 2))
            .await?
    );
    let names: Vec<String> = store
        .webhooks()
        .await?
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, ["a", "b"]);

    // An update replaces the settings and secrets but never the cursor.
    assert!(store.apply(|u| u.webhooks().take("wh_a", 7, None)).await?);
    let mut changed = webhook("wh_a", "renamed");
    changed.secret = vec![9];
    changed.previous_secret = Some(vec![1, 2, 3]);
    changed.previous_secret_until = Some(at(100));
    assert!(store.apply(|u| u.webhooks().update(changed)).await?);
    let row = store.webhook("wh_a").await?.ok_or(StoreError::NotFound)?;
    assert_eq!(
        (row.name.as_str(), row.cursor, row.secret.as_slice()),
        ("renamed", 7, &[9u8][..])
    );
    assert_eq!(row.previous_secret_until, Some(at(100)));
    assert!(
        !store
            .apply(|u| u.webhooks().update(webhook("wh_x", "x")))
            .await?
    );

    // Failing, disabled once (one event), re-enabled by an update clearing failing_since.
    assert!(
        store
            .apply(|u| u.webhooks().failing("wh_a", Some(at(5))))
            .await?
    );
    assert!(
        store
            .apply(|u| u.webhooks().disable("wh_a", "down".into()))
            .await?
    );
    assert!(
        !store
            .apply(|u| u.webhooks().disable("wh_a", "down".into()))
            .await?
    );
    let row = store.webhook("wh_a").await?.ok_or(StoreError::NotFound)?;
    assert!(!row.enabled);
    assert_eq!(
        (row.disabled_reason.as_deref(), row.failing_since),
        (Some("down"), Some(at(5)))
    );
    let mut enabled = row.clone();
    enabled.enabled = true;
    enabled.disabled_reason = None;
    store.apply(|u| u.webhooks().update(enabled)).await?;
    let row = store.webhook("wh_a").await?.ok_or(StoreError::NotFound)?;
    assert!(row.enabled && row.failing_since.is_none());
    store
        .apply(|u| u.webhooks().exhausted("wh_a", "evt_3 failed".into()))
        .await?;
    let kinds: Vec<(ChangeKind, String, Option<String>)> = store
        .changes_after(0, 100)
        .await?
        .into_iter()
        .map(|r| (r.kind, r.subject, r.reason))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                ChangeKind::WebhookDisabled,
                "wh_a".to_owned(),
                Some("down".to_owned())
            ),
            (
                ChangeKind::WebhookExhausted,
                "wh_a".to_owned(),
                Some("evt_3 failed".to_owned())
            ),
        ]
    );
    Ok(())
}

pub(crate) async fn deliveries_are_taken_once_and_sent_oldest_first(
    store: Arc<dyn Store>,
) -> Result<()> {
    store
        .apply(|u| u.webhooks().create(webhook("wh_d", "d"), 10))
        .await?;
    assert!(
        store
            .apply(|u| u.webhooks().take("wh_d", 3, Some(delivery("wh_d", 3))))
            .await?
    );
    // A second runner taking the same or an older event changes nothing.
    assert!(
        !store
            .apply(|u| u.webhooks().take("wh_d", 3, Some(delivery("wh_d", 3))))
            .await?
    );
    assert!(!store.apply(|u| u.webhooks().take("wh_d", 2, None)).await?);
    assert!(
        store
            .apply(|u| u.webhooks().take("wh_d", 5, Some(delivery("wh_d", 5))))
            .await?
    );
    assert!(
        !store
            .apply(|u| u.webhooks().take("wh_gone", 9, None))
            .await?
    );
    assert_eq!(store.webhook("wh_d").await?.map(|w| w.cursor), Some(5));

    assert_eq!(store.next_delivery("wh_d").await?.map(|d| d.seq), Some(3));
    let mut sent = delivery("wh_d", 3);
    sent.status = "succeeded".to_owned();
    sent.attempts = 1;
    sent.next_attempt_at = None;
    sent.body = r#"{"seq":3,"log":[1]}"#.to_owned();
    sent.updated_at = at(2);
    assert!(store.apply(|u| u.webhooks().record(sent.clone())).await?);
    assert_eq!(store.delivery("wh_d", 3).await?, Some(sent));
    assert_eq!(store.next_delivery("wh_d").await?.map(|d| d.seq), Some(5));
    assert!(
        !store
            .apply(|u| u.webhooks().record(delivery("wh_d", 99)))
            .await?
    );

    let seqs = |rows: Vec<DeliveryRow>| rows.into_iter().map(|d| d.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.deliveries(query("wh_d", None, None)).await?),
        [5, 3]
    );
    assert_eq!(
        seqs(store.deliveries(query("wh_d", None, Some(5))).await?),
        [3]
    );
    assert_eq!(
        seqs(
            store
                .deliveries(query("wh_d", Some("pending"), None))
                .await?
        ),
        [5]
    );

    assert!(store.apply(|u| u.webhooks().delete("wh_d")).await?);
    assert!(!store.apply(|u| u.webhooks().delete("wh_d")).await?);
    assert!(
        store
            .deliveries(query("wh_d", None, None))
            .await?
            .is_empty()
    );
    assert!(store.next_delivery("wh_d").await?.is_none());
    Ok(())
}
