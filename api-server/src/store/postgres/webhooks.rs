//! Webhooks in PostgreSQL: the same rows as on SQLite.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{PostgresStore, Tx, count, exec, get, get_u64, lock_key, query_opt};
use crate::store::unit_of_work::Applied;
use crate::store::webhooks::{DeliveryQuery, DeliveryRow, WebhookChange, WebhookReads, WebhookRow};
use crate::store::{Result, from_millis, to_millis};

const WEBHOOK_COLUMNS: &str = "id, name, settings, enabled, disabled_reason, failing_since, \
    secret, previous_secret, previous_secret_until, secret_set_at, created_at, updated_at, cursor";
const DELIVERY_COLUMNS: &str =
    "webhook_id, seq, status, attempts, next_attempt_at, body, created_at, updated_at";

fn webhook(r: &Row) -> Result<WebhookRow> {
    Ok(WebhookRow {
        id: get(r, 0)?,
        name: get(r, 1)?,
        settings: get(r, 2)?,
        enabled: get(r, 3)?,
        disabled_reason: get(r, 4)?,
        failing_since: get::<Option<i64>>(r, 5)?.map(from_millis),
        secret: get(r, 6)?,
        previous_secret: get(r, 7)?,
        previous_secret_until: get::<Option<i64>>(r, 8)?.map(from_millis),
        secret_set_at: from_millis(get(r, 9)?),
        created_at: from_millis(get(r, 10)?),
        updated_at: from_millis(get(r, 11)?),
        cursor: get_u64(r, 12)?,
    })
}

fn delivery(r: &Row) -> Result<DeliveryRow> {
    Ok(DeliveryRow {
        webhook_id: get(r, 0)?,
        seq: get_u64(r, 1)?,
        status: get(r, 2)?,
        attempts: u32::try_from(get_u64(r, 3)?).unwrap_or(u32::MAX),
        next_attempt_at: get::<Option<i64>>(r, 4)?.map(from_millis),
        body: get(r, 5)?,
        created_at: from_millis(get(r, 6)?),
        updated_at: from_millis(get(r, 7)?),
    })
}

fn found(n: u64) -> Applied {
    Applied::Found(n > 0)
}

/// Applies one change inside the unit's transaction.
pub(super) async fn apply(c: &Tx<'_>, change: WebhookChange) -> Result<Applied> {
    match change {
        WebhookChange::Create { row, max } => {
            // Replicas creating at once must not pass the limit together.
            lock_key(c, "webhooks", "create").await?;
            let existing = query_opt(c, "SELECT COUNT(*) FROM webhooks", &[])
                .await?
                .map(|r| get_u64(&r, 0))
                .transpose()?
                .unwrap_or(0);
            if existing as usize >= max {
                return Ok(Applied::Found(false));
            }
            exec(
                c,
                &format!(
                    "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                ),
                &[
                    &row.id,
                    &row.name,
                    &row.settings,
                    &row.enabled,
                    &row.disabled_reason,
                    &row.failing_since.map(to_millis),
                    &row.secret,
                    &row.previous_secret,
                    &row.previous_secret_until.map(to_millis),
                    &to_millis(row.secret_set_at),
                    &to_millis(row.created_at),
                    &to_millis(row.updated_at),
                    &count(row.cursor),
                ],
            )
            .await?;
            Ok(Applied::Found(true))
        }
        WebhookChange::Update(row) => exec(
            c,
            "UPDATE webhooks SET name = $2, settings = $3, enabled = $4, disabled_reason = $5, \
             secret = $6, previous_secret = $7, previous_secret_until = $8, secret_set_at = $9, \
             updated_at = $10, \
             failing_since = CASE WHEN $4 AND NOT enabled THEN NULL ELSE failing_since END \
             WHERE id = $1",
            &[
                &row.id,
                &row.name,
                &row.settings,
                &row.enabled,
                &row.disabled_reason,
                &row.secret,
                &row.previous_secret,
                &row.previous_secret_until.map(to_millis),
                &to_millis(row.secret_set_at),
                &to_millis(row.updated_at),
            ],
        )
        .await
        .map(found),
        WebhookChange::Delete { id } => {
            exec(
                c,
                "DELETE FROM webhook_deliveries WHERE webhook_id = $1",
                &[&id],
            )
            .await?;
            exec(c, "DELETE FROM webhooks WHERE id = $1", &[&id])
                .await
                .map(found)
        }
        WebhookChange::Failing { id, since } => exec(
            c,
            "UPDATE webhooks SET failing_since = $2 WHERE id = $1",
            &[&id, &since.map(to_millis)],
        )
        .await
        .map(found),
        WebhookChange::Disable { id, reason } => exec(
            c,
            "UPDATE webhooks SET enabled = FALSE, disabled_reason = $2 WHERE id = $1 AND enabled",
            &[&id, &reason],
        )
        .await
        .map(found),
        WebhookChange::Take {
            webhook_id,
            cursor,
            delivery,
        } => {
            let moved = exec(
                c,
                "UPDATE webhooks SET cursor = $2 WHERE id = $1 AND cursor < $2",
                &[&webhook_id, &count(cursor)],
            )
            .await?;
            if moved == 0 {
                // Gone, or another runner took these events already.
                return Ok(Applied::Found(false));
            }
            if let Some(d) = delivery {
                exec(
                    c,
                    &format!(
                        "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    ),
                    &[
                        &d.webhook_id,
                        &count(d.seq),
                        &d.status,
                        &i64::from(d.attempts),
                        &d.next_attempt_at.map(to_millis),
                        &d.body,
                        &to_millis(d.created_at),
                        &to_millis(d.updated_at),
                    ],
                )
                .await?;
            }
            Ok(Applied::Found(true))
        }
        WebhookChange::Record(d) => exec(
            c,
            "UPDATE webhook_deliveries SET status = $3, attempts = $4, next_attempt_at = $5, \
             body = $6, updated_at = $7 WHERE webhook_id = $1 AND seq = $2",
            &[
                &d.webhook_id,
                &count(d.seq),
                &d.status,
                &i64::from(d.attempts),
                &d.next_attempt_at.map(to_millis),
                &d.body,
                &to_millis(d.updated_at),
            ],
        )
        .await
        .map(found),
        WebhookChange::Exhausted { .. } => Ok(Applied::Done),
    }
}

#[async_trait]
impl WebhookReads for PostgresStore {
    async fn webhooks(&self) -> Result<Vec<WebhookRow>> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY name");
        self.rows(&sql, &[], webhook).await
    }

    async fn webhook(&self, id: &str) -> Result<Option<WebhookRow>> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
        self.row(&sql, &[&id], webhook).await
    }

    async fn deliveries(&self, query: DeliveryQuery) -> Result<Vec<DeliveryRow>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
             AND ($2::TEXT IS NULL OR status = $2) AND ($3::BIGINT IS NULL OR seq < $3) \
             ORDER BY seq DESC LIMIT $4"
        );
        let before = query.before.map(count);
        let limit = count(query.limit as u64);
        self.rows(
            &sql,
            &[&query.webhook_id, &query.status, &before, &limit],
            delivery,
        )
        .await
    }

    async fn delivery(&self, webhook_id: &str, seq: u64) -> Result<Option<DeliveryRow>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 AND seq = $2"
        );
        self.row(&sql, &[&webhook_id, &count(seq)], delivery).await
    }

    async fn next_delivery(&self, webhook_id: &str) -> Result<Option<DeliveryRow>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE webhook_id = $1 AND status = 'pending' ORDER BY seq LIMIT 1"
        );
        self.row(&sql, &[&webhook_id], delivery).await
    }
}
