//! Webhooks in SQLite: `webhooks` and `webhook_deliveries`.

use async_trait::async_trait;
use rusqlite::{Connection, Row, params};

use super::{SqliteStore, all_rows, map_err, one_row};
use crate::store::unit_of_work::Applied;
use crate::store::webhooks::{DeliveryQuery, DeliveryRow, WebhookChange, WebhookReads, WebhookRow};
use crate::store::{Result, from_millis, to_millis};

const WEBHOOK_COLUMNS: &str = "id, name, settings, enabled, disabled_reason, failing_since, \
    secret, previous_secret, previous_secret_until, secret_set_at, created_at, updated_at, cursor";
const DELIVERY_COLUMNS: &str =
    "webhook_id, seq, status, attempts, next_attempt_at, body, created_at, updated_at";

fn webhook(r: &Row<'_>) -> rusqlite::Result<WebhookRow> {
    Ok(WebhookRow {
        id: r.get(0)?,
        name: r.get(1)?,
        settings: r.get(2)?,
        enabled: r.get(3)?,
        disabled_reason: r.get(4)?,
        failing_since: r.get::<_, Option<i64>>(5)?.map(from_millis),
        secret: r.get(6)?,
        previous_secret: r.get(7)?,
        previous_secret_until: r.get::<_, Option<i64>>(8)?.map(from_millis),
        secret_set_at: from_millis(r.get(9)?),
        created_at: from_millis(r.get(10)?),
        updated_at: from_millis(r.get(11)?),
        cursor: r.get::<_, i64>(12)?.max(0) as u64,
    })
}

fn delivery(r: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        webhook_id: r.get(0)?,
        seq: r.get::<_, i64>(1)?.max(0) as u64,
        status: r.get(2)?,
        attempts: r.get::<_, i64>(3)?.clamp(0, i64::from(u32::MAX)) as u32,
        next_attempt_at: r.get::<_, Option<i64>>(4)?.map(from_millis),
        body: r.get(5)?,
        created_at: from_millis(r.get(6)?),
        updated_at: from_millis(r.get(7)?),
    })
}

fn found(n: usize) -> Applied {
    Applied::Found(n > 0)
}

/// Applies one change inside the unit's transaction.
pub(super) fn apply(c: &Connection, change: WebhookChange) -> Result<Applied> {
    match change {
        WebhookChange::Create { row, max } => {
            let count: i64 = c
                .query_row("SELECT COUNT(*) FROM webhooks", [], |r| r.get(0))
                .map_err(map_err)?;
            if count as usize >= max {
                return Ok(Applied::Found(false));
            }
            c.execute(
                &format!(
                    "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ),
                params![
                    row.id,
                    row.name,
                    row.settings,
                    row.enabled,
                    row.disabled_reason,
                    row.failing_since.map(to_millis),
                    row.secret,
                    row.previous_secret,
                    row.previous_secret_until.map(to_millis),
                    to_millis(row.secret_set_at),
                    to_millis(row.created_at),
                    to_millis(row.updated_at),
                    row.cursor as i64
                ],
            )
            .map_err(map_err)?;
            Ok(Applied::Found(true))
        }
        WebhookChange::Update(row) => c
            .execute(
                "UPDATE webhooks SET name = ?2, settings = ?3, enabled = ?4, disabled_reason = ?5, \
                 secret = ?6, previous_secret = ?7, previous_secret_until = ?8, secret_set_at = ?9, \
                 updated_at = ?10, \
                 failing_since = CASE WHEN ?4 AND NOT enabled THEN NULL ELSE failing_since END \
                 WHERE id = ?1",
                params![
                    row.id,
                    row.name,
                    row.settings,
                    row.enabled,
                    row.disabled_reason,
                    row.secret,
                    row.previous_secret,
                    row.previous_secret_until.map(to_millis),
                    to_millis(row.secret_set_at),
                    to_millis(row.updated_at)
                ],
            )
            .map(found)
            .map_err(map_err),
        WebhookChange::Delete { id } => {
            c.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?1", [&id])
                .map_err(map_err)?;
            c.execute("DELETE FROM webhooks WHERE id = ?1", [&id])
                .map(found)
                .map_err(map_err)
        }
        WebhookChange::Failing { id, since } => c
            .execute(
                "UPDATE webhooks SET failing_since = ?2 WHERE id = ?1",
                params![id, since.map(to_millis)],
            )
            .map(found)
            .map_err(map_err),
        WebhookChange::Disable { id, reason } => c
            .execute(
                "UPDATE webhooks SET enabled = 0, disabled_reason = ?2 WHERE id = ?1 AND enabled",
                params![id, reason],
            )
            .map(found)
            .map_err(map_err),
        WebhookChange::Take {
            webhook_id,
            cursor,
            delivery,
        } => {
            let moved = c
                .execute(
                    "UPDATE webhooks SET cursor = ?2 WHERE id = ?1 AND cursor < ?2",
                    params![webhook_id, cursor as i64],
                )
                .map_err(map_err)?;
            if moved == 0 {
                // Gone, or another runner took these events already.
                return Ok(Applied::Found(false));
            }
            if let Some(d) = delivery {
                insert_delivery(c, &d)?;
            }
            Ok(Applied::Found(true))
        }
        WebhookChange::Record(d) => c
            .execute(
                "UPDATE webhook_deliveries SET status = ?3, attempts = ?4, next_attempt_at = ?5, \
                 body = ?6, updated_at = ?7 WHERE webhook_id = ?1 AND seq = ?2",
                params![
                    d.webhook_id,
                    d.seq as i64,
                    d.status,
                    i64::from(d.attempts),
                    d.next_attempt_at.map(to_millis),
                    d.body,
                    to_millis(d.updated_at)
                ],
            )
            .map(found)
            .map_err(map_err),
        WebhookChange::Exhausted { .. } => Ok(Applied::Done),
    }
}

fn insert_delivery(c: &Connection, d: &DeliveryRow) -> Result<()> {
    c.execute(
        &format!(
            "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        params![
            d.webhook_id,
            d.seq as i64,
            d.status,
            i64::from(d.attempts),
            d.next_attempt_at.map(to_millis),
            d.body,
            to_millis(d.created_at),
            to_millis(d.updated_at)
        ],
    )
    .map(drop)
    .map_err(map_err)
}

#[async_trait]
impl WebhookReads for SqliteStore {
    async fn webhooks(&self) -> Result<Vec<WebhookRow>> {
        self.read(|c| {
            let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY name");
            all_rows(c, &sql, [], webhook)
        })
        .await
    }

    async fn webhook(&self, id: &str) -> Result<Option<WebhookRow>> {
        let id = id.to_owned();
        self.read(move |c| {
            let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1");
            one_row(c, &sql, [id], webhook)
        })
        .await
    }

    async fn deliveries(&self, query: DeliveryQuery) -> Result<Vec<DeliveryRow>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ?1 \
                 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR seq < ?3) \
                 ORDER BY seq DESC LIMIT ?4"
            );
            all_rows(
                c,
                &sql,
                params![
                    query.webhook_id,
                    query.status,
                    query.before.map(|b| b as i64),
                    query.limit as i64
                ],
                delivery,
            )
        })
        .await
    }

    async fn delivery(&self, webhook_id: &str, seq: u64) -> Result<Option<DeliveryRow>> {
        let webhook_id = webhook_id.to_owned();
        self.read(move |c| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ?1 AND seq = ?2"
            );
            one_row(c, &sql, params![webhook_id, seq as i64], delivery)
        })
        .await
    }

    async fn next_delivery(&self, webhook_id: &str) -> Result<Option<DeliveryRow>> {
        let webhook_id = webhook_id.to_owned();
        self.read(move |c| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                 WHERE webhook_id = ?1 AND status = 'pending' ORDER BY seq LIMIT 1"
            );
            one_row(c, &sql, [webhook_id], delivery)
        })
        .await
    }
}
