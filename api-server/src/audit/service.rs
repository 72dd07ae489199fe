//! Queries, summaries, verification and the HMAC helper over the stored log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_lc_rs::hmac;
use scaivault_api::ErrorCode;
use scaivault_api::audit::{
    AuditLogsResponse, AuditRecord, BrokenRecord, IdentityAuditResponse, IdentitySummary,
    VerifyResponse,
};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

use super::log::AuditWriter;
use super::record::{Chained, GENESIS_HASH};
use crate::crypto::token::hex;
use crate::error::{Error, Result};
use crate::store::{AuditQuery, AuditRow, AuditStore};

/// The values `outcome` takes.
pub const OUTCOMES: [&str; 4] = ["success", "denied", "unauthenticated", "failure"];

/// Most records an identity summary reads (its `logs` hold the first page only).
const SUMMARY_SCAN_LIMIT: usize = 100_000;

/// Largest page of a log query.
pub const MAX_PAGE: usize = 1000;
const VERIFY_PAGE: usize = 2000;

pub struct AuditService {
    pub store: Arc<dyn AuditStore>,
    pub writer: Option<AuditWriter>,
    hmac_key: hmac::Key,
}

/// Filters of `GET /v1/audit/logs`, already parsed.
#[derive(Debug, Default)]
pub struct LogFilters {
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub identity: Option<String>,
    pub path: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

/// Parses `2026-04-01T00:00:00Z` or `2026-04-01` (midnight UTC; with `end_of_day`, the
/// day's last millisecond, so `to=2026-04-30` includes the 30th).
pub fn parse_time(text: &str, end_of_day: bool) -> Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = Date::parse(text, &format).map_err(|_| {
        Error::invalid(format!(
            "{text:?} is not an RFC 3339 time or a YYYY-MM-DD date"
        ))
    })?;
    let time = if end_of_day {
        Time::from_hms_milli(23, 59, 59, 999).unwrap_or(Time::MIDNIGHT)
    } else {
        Time::MIDNIGHT
    };
    Ok(date.with_time(time).assume_utc())
}

fn decode(row: &AuditRow) -> Result<AuditRecord> {
    serde_json::from_str(&row.body)
        .map_err(|_| Error::internal(format!("audit record {} does not decode", row.seq)))
}

impl AuditService {
    pub fn new(store: Arc<dyn AuditStore>, writer: Option<AuditWriter>, hmac_key: &[u8]) -> Self {
        AuditService {
            store,
            writer,
            hmac_key: hmac::Key::new(hmac::HMAC_SHA256, hmac_key),
        }
    }

    pub fn enabled(&self) -> bool {
        self.writer.is_some()
    }

    /// Requests can be audited: the log is off, or its writer runs.
    pub fn is_writable(&self) -> bool {
        self.writer.as_ref().is_none_or(AuditWriter::is_running)
    }

    /// HMAC-SHA256 under the deployment's audit key, as it appears in records.
    pub fn hmac(&self, input: &str) -> String {
        hex(hmac::sign(&self.hmac_key, input.as_bytes()).as_ref())
    }

    pub async fn logs(&self, f: LogFilters) -> Result<AuditLogsResponse> {
        if let Some(outcome) = &f.outcome
            && !OUTCOMES.contains(&outcome.as_str())
        {
            return Err(Error::invalid(format!(
                "outcome must be one of {}",
                OUTCOMES.join(", ")
            )));
        }
        let limit = f.limit.unwrap_or(100);
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let after_seq = f
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<u64>()
                    .map_err(|_| Error::invalid("cursor is not one this server issued"))
            })
            .transpose()?;
        let rows = self
            .store
            .query(AuditQuery {
                from: f.from,
                to: f.to,
                identity_id: f.identity,
                path: f.path,
                action: f.action,
                outcome: f.outcome,
                after_seq,
                to_seq: None,
                limit: limit + 1,
            })
            .await?;
        let more = rows.len() > limit;
        let logs = rows
            .iter()
            .take(limit)
            .map(decode)
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = if more {
            logs.last().map(|r| r.seq.to_string())
        } else {
            None
        };
        Ok(AuditLogsResponse { logs, next_cursor })
    }

    /// The first page of an identity's records and a summary over all of them (up to
    /// `SUMMARY_SCAN_LIMIT` records).
    pub async fn for_identity(
        &self,
        identity: &str,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Result<IdentityAuditResponse> {
        let mut by_action: BTreeMap<String, u64> = BTreeMap::new();
        let mut resources = BTreeSet::new();
        let mut first_page: Option<Vec<AuditRecord>> = None;
        let (mut total, mut first_seen, mut last_seen) = (0u64, None, None);
        let mut cursor = None;
        loop {
            let page = self
                .logs(LogFilters {
                    from,
                    to,
                    identity: Some(identity.to_owned()),
                    cursor,
                    limit: Some(MAX_PAGE),
                    ..Default::default()
                })
                .await?;
            for record in &page.logs {
                total += 1;
                *by_action.entry(record.action.clone()).or_default() += 1;
                if record.outcome == "success"
                    && let Some(path) = &record.path
                {
                    resources.insert(path.clone());
                }
                first_seen.get_or_insert(record.timestamp);
                last_seen = Some(record.timestamp);
            }
            cursor = page.next_cursor.clone();
            first_page.get_or_insert(page.logs);
            if cursor.is_none() || total as usize >= SUMMARY_SCAN_LIMIT {
                break;
            }
        }
        let summary = IdentitySummary {
            total,
            by_action,
            resources_accessed: resources.into_iter().collect(),
            first_seen,
            last_seen,
        };
        Ok(IdentityAuditResponse {
            logs: first_page.unwrap_or_default(),
            summary,
        })
    }

    /// Re-computes the chain over a range and reports the first record that does not fit.
    pub async fn verify(
        &self,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Result<VerifyResponse> {
        let mut checked = 0u64;
        let mut first_seq = None;
        let mut last_seq = None;
        let mut expected: Option<(u64, String)> = None;
        let mut after_seq = None;
        loop {
            let rows = self
                .store
                .query(AuditQuery {
                    from,
                    to,
                    after_seq,
                    limit: VERIFY_PAGE,
                    ..Default::default()
                })
                .await?;
            let Some(last_row) = rows.last() else { break };
            after_seq = Some(last_row.seq);
            for row in &rows {
                let (prev_seq, prev_hash) = match expected.take() {
                    Some(e) => e,
                    None => self.anchor(row.seq).await?,
                };
                if let Some(reason) = check(row, prev_seq, &prev_hash) {
                    return Ok(VerifyResponse {
                        verified: false,
                        checked,
                        first_seq,
                        last_seq,
                        first_broken: Some(BrokenRecord {
                            seq: row.seq,
                            reason,
                        }),
                    });
                }
                checked += 1;
                first_seq.get_or_insert(row.seq);
                last_seq = Some(row.seq);
                expected = Some((row.seq, row.hash.clone()));
            }
            if rows.len() < VERIFY_PAGE {
                break;
            }
        }
        Ok(VerifyResponse {
            verified: true,
            checked,
            first_seq,
            last_seq,
            first_broken: None,
        })
    }

    /// What precedes the first verified record: the stored record before it, the
    /// retention checkpoint, or the genesis hash.
    async fn anchor(&self, seq: u64) -> Result<(u64, String)> {
        if let Some(before) = self.store.record_before(seq).await? {
            return Ok((before.seq, before.hash));
        }
        if let Some(checkpoint) = self.store.checkpoint().await? {
            return Ok(checkpoint);
        }
        Ok((0, GENESIS_HASH.to_owned()))
    }
}

/// Why a stored row breaks the chain, if it does.
fn check(row: &AuditRow, prev_seq: u64, prev_hash: &str) -> Option<String> {
    if row.seq != prev_seq + 1 {
        return Some(format!(
            "records {}..{} are missing",
            prev_seq + 1,
            row.seq - 1
        ));
    }
    let Ok(record) = serde_json::from_str::<AuditRecord>(&row.body) else {
        return Some("record body does not decode".into());
    };
    if record.seq != row.seq {
        return Some("sequence number was changed".into());
    }
    if record.prev_hash != prev_hash {
        return Some("previous-hash link does not match the record before it".into());
    }
    if record.compute_hash() != record.hash || record.hash != row.hash {
        return Some("record content does not match its hash (edited)".into());
    }
    if record.identity_id != row.identity_id
        || record.path != row.path
        || record.action != row.action
        || record.outcome != row.outcome
    {
        return Some("indexed columns differ from the hashed record (edited)".into());
    }
    None
}

/// `ErrorCode` for an audit write failure: the request fails closed.
pub fn audit_unavailable(detail: &str) -> Error {
    tracing::error!(error = %detail, "audit log unavailable; refusing the request");
    Error {
        code: ErrorCode::AuditUnavailable,
        message: "the audit log cannot be written; the request was refused (fail closed)".into(),
        retry_after: Some(crate::error::STORAGE_RETRY_AFTER_SECS),
    }
}
