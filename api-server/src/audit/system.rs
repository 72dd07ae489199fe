//! Audit records of the changes the server makes by itself (a scheduled rotation, a
//! webhook disabled after days of failures): like a request's, a record before the change
//! and one with its outcome after, so no change is applied without its record.

use time::OffsetDateTime;

use super::record::{AuditPhase, UNKNOWN_OUTCOME, outcome_of};
use super::{AuditWriter, unsealed};

/// What the server is about to change, and as whom.
pub struct SystemChange<'a> {
    /// Its `identity_id`, e.g. `system:rotation`.
    pub actor: &'a str,
    pub action: &'a str,
    pub path: &'a str,
    pub reason: &'a str,
}

impl SystemChange<'_> {
    /// Writes the record of `phase` (`status` 0 before the change); its `seq`.
    pub async fn record(
        &self,
        writer: &AuditWriter,
        phase: AuditPhase,
        request_seq: Option<u64>,
        status: u16,
    ) -> Result<u64, String> {
        let mut record = unsealed(OffsetDateTime::now_utc());
        record.identity_id = Some(self.actor.to_owned());
        record.identity_type = Some("system".to_owned());
        record.action = self.action.to_owned();
        record.path = Some(self.path.to_owned());
        record.phase = Some(phase);
        record.request_seq = request_seq;
        record.reason = Some(self.reason.to_owned());
        record.status = status;
        record.outcome = match phase {
            AuditPhase::Request => UNKNOWN_OUTCOME.to_owned(),
            AuditPhase::Response => outcome_of(status).to_owned(),
        };
        writer.write(vec![record]).await
    }
}
