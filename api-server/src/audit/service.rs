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

use super::checkpoint::{Checkpoints, checkpoint_problem};
use super::log::{AuditWriter, Tail};
use super::record::{Chain, ChainKey, Chained, GENESIS_HASH, UNKNOWN_OUTCOME};
use crate::crypto::token::hex;
use crate::error::{Error, Result};
use crate::store::{AuditQuery, AuditRow, AuditStore};

/// The values `outcome` takes.
pub const OUTCOMES: [&str; 5] = [
    "success",
    "denied",
    "unauthenticated",
    "failure",
    UNKNOWN_OUTCOME,
];

/// Most records an identity summary reads (its `logs` hold the first page only).
const SUMMARY_SCAN_LIMIT: usize = 100_000;

/// Largest page of a log query.
pub const MAX_PAGE: usize = 1000;
const VERIFY_PAGE: usize = 2000;

pub struct AuditService {
    pub store: Arc<dyn AuditStore>,
    pub writer: Option<AuditWriter>,
    pub checkpoints: Arc<Checkpoints>,
    hmac_key: hmac::Key,
    chain_key: ChainKey,
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
    pub fn new(
        store: Arc<dyn AuditStore>,
        writer: Option<AuditWriter>,
        checkpoints: Arc<Checkpoints>,
        hmac_key: &[u8],
        chain_key: &[u8],
    ) -> Self {
        AuditService {
            store,
            writer,
            checkpoints,
            hmac_key: hmac::Key::new(hmac::HMAC_SHA256, hmac_key),
            chain_key: ChainKey::new(chain_key),
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
                hide_answered_requests: true,
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

    /// Re-computes the chain over a range and reports the first record that does not fit,
    /// then checks the newest signed checkpoint: its signature, and that the records it
    /// covers are all still there with the hash it signed.
    pub async fn verify(
        &self,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Result<VerifyResponse> {
        let checkpoint = self.checkpoints.latest().await?;
        let problem = checkpoint
            .as_ref()
            .and_then(|c| checkpoint_problem(c, &self.checkpoints.public_key()));
        let trusted = checkpoint.as_ref().filter(|_| problem.is_none());
        // Without a trusted checkpoint every record must be keyed and nothing was purged.
        let keyed_from = trusted.map_or(1, |c| c.keyed_from);
        let purged: Tail = trusted.map_or((0, GENESIS_HASH.to_owned()), |c| {
            (c.purged_seq, c.purged_hash.clone())
        });
        let mut report = VerifyResponse {
            verified: true,
            checked: 0,
            first_seq: None,
            last_seq: None,
            first_broken: None,
            keyed: 0,
            legacy_unkeyed: 0,
            checkpoint: checkpoint.clone(),
        };
        let mut expected: Option<Tail> = None;
        let mut after_seq = None;
        'pages: loop {
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
                // Retention signed these away; their deletion had not happened yet.
                if row.seq <= purged.0 {
                    continue;
                }
                let (prev_seq, prev_hash) = match expected.take() {
                    Some(e) => e,
                    None => self.anchor(row.seq, &purged).await?,
                };
                let keyed = row.seq >= keyed_from;
                let chain = if keyed {
                    Chain::Keyed(&self.chain_key)
                } else {
                    Chain::Unkeyed
                };
                if let Some(reason) = check(row, prev_seq, &prev_hash, chain) {
                    report.first_broken = Some(BrokenRecord {
                        seq: row.seq,
                        reason,
                    });
                    break 'pages;
                }
                report.checked += 1;
                if keyed {
                    report.keyed += 1;
                } else {
                    report.legacy_unkeyed += 1;
                }
                report.first_seq.get_or_insert(row.seq);
                report.last_seq = Some(row.seq);
                expected = Some((row.seq, row.hash.clone()));
            }
            if rows.len() < VERIFY_PAGE {
                break;
            }
        }
        if report.first_broken.is_none() {
            report.first_broken = self
                .checkpoint_break(checkpoint.as_ref(), problem, &purged)
                .await?;
        }
        report.verified = report.first_broken.is_none();
        Ok(report)
    }

    /// What the newest checkpoint says is wrong with the stored log, if anything.
    async fn checkpoint_break(
        &self,
        checkpoint: Option<&scaivault_api::audit::AuditCheckpoint>,
        problem: Option<String>,
        purged: &Tail,
    ) -> Result<Option<BrokenRecord>> {
        let last = self.store.last_record().await?;
        let Some(checkpoint) = checkpoint else {
            return Ok(last.map(|_| BrokenRecord {
                seq: purged.0 + 1,
                reason: "no signed checkpoint in the data store: the log's anchor was removed"
                    .into(),
            }));
        };
        if let Some(reason) = problem {
            return Ok(Some(BrokenRecord {
                seq: checkpoint.seq,
                reason,
            }));
        }
        if checkpoint.seq <= purged.0 {
            return Ok(None);
        }
        let newest = last.map_or(0, |(seq, _)| seq);
        if newest < checkpoint.seq {
            return Ok(Some(BrokenRecord {
                seq: newest + 1,
                reason: format!(
                    "records {}..{} are missing: the signed checkpoint of {} covers them (tail truncated)",
                    newest + 1,
                    checkpoint.seq,
                    checkpoint.created_at.format(&Rfc3339).unwrap_or_default(),
                ),
            }));
        }
        let at = self
            .store
            .record_before(checkpoint.seq + 1)
            .await?
            .filter(|r| r.seq == checkpoint.seq);
        Ok(match at {
            None => Some(BrokenRecord {
                seq: checkpoint.seq,
                reason: "the record the signed checkpoint names is missing".into(),
            }),
            Some(row) if row.hash != checkpoint.hash => Some(BrokenRecord {
                seq: checkpoint.seq,
                reason: "record hash differs from the signed checkpoint (rewritten)".into(),
            }),
            Some(_) => None,
        })
    }

    /// What precedes the first verified record: the stored record before it, the signed
    /// retention point, or the genesis hash.
    async fn anchor(&self, seq: u64, purged: &Tail) -> Result<Tail> {
        if let Some(before) = self.store.record_before(seq).await? {
            return Ok((before.seq, before.hash));
        }
        Ok(purged.clone())
    }
}

/// Why a stored row breaks the chain, if it does.
fn check(row: &AuditRow, prev_seq: u64, prev_hash: &str, chain: Chain<'_>) -> Option<String> {
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
    if record.compute_hash(chain) != record.hash || record.hash != row.hash {
        return Some(match chain {
            Chain::Keyed(_) => {
                "record content does not match its keyed hash (edited or re-hashed)".into()
            }
            Chain::Unkeyed => "record content does not match its hash (edited)".into(),
        });
    }
    if record.identity_id != row.identity_id
        || record.path != row.path
        || record.action != row.action
        || record.outcome != row.outcome
        || record.phase.map(|p| p.as_str()) != row.phase.as_deref()
        || record.request_seq != row.request_seq
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

/// The response record of a mutation could not be written: its request record is durable,
/// so the change is attributed, but the caller cannot be told that it succeeded.
pub fn audit_outcome_unavailable(detail: &str) -> Error {
    tracing::error!(error = %detail, "audit log unavailable after a recorded request; its outcome is unknown");
    Error {
        code: ErrorCode::AuditUnavailable,
        message: "the audit log cannot record this request's outcome; the request was recorded before it ran and may have been applied".into(),
        retry_after: Some(crate::error::STORAGE_RETRY_AFTER_SECS),
    }
}
