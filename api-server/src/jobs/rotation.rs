//! The rotation scheduler, a job of the runner (one replica at a time): for every live
//! secret whose cycle has begun it raises `rotation.due` once per cycle, `rotation.overdue`
//! once the grace has passed, and writes the new version of `generate` secrets, raising
//! `rotation.failed` (once per cycle, retrying every run) when it cannot.
//!
//! Each signal is recorded with its cycle in the same unit as its change record, so after
//! downtime the scheduler catches up on what it missed and raises nothing twice. Time is
//! the wall clock: tests move it (`testkit::clock`) instead of waiting for days.

use std::sync::Arc;

use scaivault_api::rotation::RotationStrategy;
use time::OffsetDateTime;

use super::fence;
use crate::audit::AuditWriter;
use crate::audit::record::AuditPhase;
use crate::audit::system::SystemChange;
use crate::secrets::rotation::policy_of;
use crate::store::UnitOfWork;
use crate::store::rotation::{RotationRow, Signal};
use crate::vault::Vault;

/// Who writes generated versions, as their `created_by` and in the audit log.
pub const ROTATION_ACTOR: &str = "system:rotation";
/// The audit action of a scheduled rotation.
const AUDIT_ACTION: &str = "secrets.rotate";
/// Schedules looked at per read; a run reads on while the previous batch was full.
const BATCH: usize = 100;
/// Batches per run at most; the next run goes on from there.
const MAX_BATCHES: usize = 20;

pub struct RotationScheduler {
    pub vault: Arc<Vault>,
    /// `None` when the audit log is disabled (benchmarks).
    pub audit: Option<AuditWriter>,
}

impl RotationScheduler {
    pub async fn run(&self, term: Option<u64>) -> Result<(), String> {
        for _ in 0..MAX_BATCHES {
            let now = OffsetDateTime::now_utc();
            let rows = self
                .vault
                .store
                .rotations_to_act_on(now, BATCH)
                .await
                .map_err(|e| e.to_string())?;
            for row in &rows {
                self.act_on(row, now, term).await?;
            }
            if rows.len() < BATCH {
                break;
            }
        }
        Ok(())
    }

    async fn act_on(
        &self,
        row: &RotationRow,
        now: OffsetDateTime,
        term: Option<u64>,
    ) -> Result<(), String> {
        let strategy = policy_of(row).map_err(|e| e.message)?.strategy;
        let mut unit = UnitOfWork::new();
        fence(&mut unit, term);
        if row.due_signalled != Some(row.next_at) {
            unit.rotation()
                .signal(&row.path, Signal::Due, row.next_at, None);
        }
        if strategy == RotationStrategy::Generate {
            return self.rotate(row, now, unit, term).await;
        }
        self.commit_with_overdue(unit, row, now).await
    }

    /// Writes the generated version (its `due` signal in the same unit), audited like a
    /// request: a record before the change and one with its outcome after.
    async fn rotate(
        &self,
        row: &RotationRow,
        now: OffsetDateTime,
        unit: UnitOfWork,
        term: Option<u64>,
    ) -> Result<(), String> {
        let request_seq = self.audit(row, AuditPhase::Request, None, 0).await?;
        let written = self
            .vault
            .secrets
            .write_generated(unit, ROTATION_ACTOR, row, Some("scheduled".to_owned()))
            .await;
        let status = match &written {
            Ok(_) => 200,
            Err(e) => e.code.status(),
        };
        self.audit(row, AuditPhase::Response, Some(request_seq), status)
            .await?;
        let Err(error) = written else {
            tracing::info!(path = %row.path, "rotated a secret on schedule");
            return Ok(());
        };
        let mut unit = UnitOfWork::new();
        fence(&mut unit, term);
        // Retried on every run; said once per cycle.
        if row.failed_signalled != Some(row.next_at) {
            tracing::warn!(path = %row.path, error = %error.message, "scheduled rotation failed");
            unit.rotation()
                .signal(&row.path, Signal::Failed, row.next_at, Some(error.message));
        } else {
            tracing::debug!(path = %row.path, error = %error.message, "scheduled rotation failed again");
        }
        self.commit_with_overdue(unit, row, now).await
    }

    /// Commits `unit`, with the cycle's `overdue` signal when its grace has passed.
    async fn commit_with_overdue(
        &self,
        mut unit: UnitOfWork,
        row: &RotationRow,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        if now >= row.overdue_at() && row.overdue_signalled != Some(row.next_at) {
            unit.rotation()
                .signal(&row.path, Signal::Overdue, row.next_at, None);
        }
        self.vault
            .store
            .commit(unit)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Writes one audit record of a scheduled rotation; its `seq`.
    async fn audit(
        &self,
        row: &RotationRow,
        phase: AuditPhase,
        request_seq: Option<u64>,
        status: u16,
    ) -> Result<u64, String> {
        let Some(writer) = &self.audit else {
            return Ok(0);
        };
        SystemChange {
            actor: ROTATION_ACTOR,
            action: AUDIT_ACTION,
            path: &row.path,
            reason: "scheduled",
        }
        .record(writer, phase, request_seq, status)
        .await
    }
}
