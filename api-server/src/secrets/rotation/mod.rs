//! Rotation of secrets: schedules set with a write or a metadata update, forced rotation,
//! the due/overdue query, and the generated versions of `generate` schedules (which the
//! scheduler in `jobs::rotation` writes on time).

mod generate;
mod schedule;

use scaivault_api::ErrorCode;
use scaivault_api::rotation::{
    DueSecret, MAX_ROTATION_REASON_CHARS, RotateOutcome, RotateResponse, RotationPolicy,
    RotationStrategy,
};
use scaivault_api::secrets::SecretType;
use time::OffsetDateTime;

pub use schedule::{policy_of, status_of};

use super::{SecretsService, listing, not_found, parse_type, validate};
use crate::crypto::barrier::Context;
use crate::error::{Error, Result};
use crate::store::rotation::{DueQuery, RotationRow, Schedule};
use crate::store::{NewVersion, UnitOfWork, now_millis};

/// What the due query asks, already parsed and bounded.
#[derive(Debug, Clone)]
pub struct DueParams {
    pub prefix: String,
    pub within: time::Duration,
    pub include_overdue: bool,
    pub limit: usize,
    pub after: Option<String>,
}

/// One page of the due query, before its position is sealed into a cursor.
#[derive(Debug)]
pub struct DuePage {
    pub secrets: Vec<DueSecret>,
    pub next_after: Option<String>,
}

impl listing::Pathed for RotationRow {
    fn path(&self) -> &str {
        &self.path
    }
}

pub fn check_reason(reason: Option<&str>) -> Result<()> {
    match reason {
        Some(r) if r.chars().count() > MAX_ROTATION_REASON_CHARS => Err(Error::invalid(format!(
            "reason is at most {MAX_ROTATION_REASON_CHARS} characters"
        ))),
        Some(r) if r.chars().any(char::is_control) => {
            Err(Error::invalid("reason must not hold control characters"))
        }
        _ => Ok(()),
    }
}

impl SecretsService {
    /// The schedule `policy` makes for the secret at `path`, whose type is `secret_type`
    /// when the write gives one, else the stored one.
    pub(super) async fn schedule_for(
        &self,
        path: &str,
        policy: &RotationPolicy,
        secret_type: Option<SecretType>,
    ) -> Result<Schedule> {
        let secret_type = match secret_type {
            Some(t) => t,
            None => self
                .store
                .get_secret(path)
                .await?
                .map(|head| parse_type(&head.secret_type))
                .unwrap_or_default(),
        };
        schedule::schedule_of(policy, secret_type)
    }

    /// `POST /v1/secrets/{path}/rotate`: a new generated version now (`generate`), or a
    /// `rotation.requested` event for whoever rotates the secret (`external`, `manual`).
    pub async fn rotate(
        &self,
        author: &str,
        path: &str,
        reason: Option<String>,
    ) -> Result<RotateResponse> {
        validate::path(path)?;
        check_reason(reason.as_deref())?;
        let head = self
            .store
            .get_secret(path)
            .await?
            .filter(|h| h.deleted_at.is_none())
            .ok_or_else(|| not_found(path))?;
        let row = head.rotation.ok_or_else(|| {
            Error::new(
                ErrorCode::RotationNotConfigured,
                format!(
                    "secret {path} has no rotation schedule; set metadata.rotation first, or write a new version"
                ),
            )
        })?;
        let policy = policy_of(&row)?;
        let (outcome, version) = match policy.strategy {
            RotationStrategy::Generate => {
                let version = self
                    .write_generated(UnitOfWork::new(), author, &row, reason)
                    .await?;
                (RotateOutcome::Rotated, version)
            }
            RotationStrategy::External | RotationStrategy::Manual => {
                let version = self
                    .store
                    .apply(|u| u.rotation().requested(path, reason))
                    .await?
                    .ok_or_else(|| not_found(path))?;
                (RotateOutcome::Requested, version)
            }
        };
        let rotation = self.store.rotation(path).await?;
        Ok(RotateResponse {
            path: path.to_owned(),
            outcome,
            version,
            rotation: status_of(rotation.as_ref(), OffsetDateTime::now_utc()),
        })
    }

    /// Writes a generated version of the scheduled secret `row`, after what `unit` holds
    /// (a job's fence and signal). Check-and-set on the version it read: a write that
    /// lands meanwhile wins, and counts as the rotation.
    pub async fn write_generated(
        &self,
        unit: UnitOfWork,
        author: &str,
        row: &RotationRow,
        reason: Option<String>,
    ) -> Result<u64> {
        let path = row.path.as_str();
        let policy = policy_of(row)?;
        let (head, current) = self
            .store
            .read_secret(path, None)
            .await?
            .ok_or_else(|| not_found(path))?;
        let current = current.ok_or_else(|| not_found(path))?;
        let secret_type = parse_type(&current.secret_type);
        let opened = self
            .barrier
            .open(
                Context::Secret {
                    path,
                    version: current.version,
                },
                &current.ciphertext,
            )
            .map_err(Error::internal)?;
        let data: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&opened)
            .map_err(|_| Error::internal("stored value is not a JSON object"))?;
        let generator = policy.generator.clone().unwrap_or_default();
        let next = generate::regenerate(&generator, secret_type, &data)?;
        let seal = self.sealer(path, &next)?;
        let now = now_millis();
        let new = NewVersion {
            path: path.to_owned(),
            secret_type: None,
            created_by: author.to_owned(),
            created_at: now,
            // A generated version keeps the lifetime the current one was given.
            expires_at: current.expires_at.map(|at| now + (at - current.created_at)),
            cas: Some(head.current_version),
            max_versions: None,
            tags: None,
            description: None,
        };
        self.commit_write(unit, new, seal, None, reason).await
    }

    /// One page of the schedules due within `params.within` under `params.prefix` that
    /// `visible` lets the caller list, read only within `reach` (see [`Self::list`]).
    pub async fn due(
        &self,
        params: DueParams,
        reach: &[String],
        visible: impl Fn(&str) -> bool,
    ) -> Result<DuePage> {
        scaivault_api::path::validate_prefix(&params.prefix)
            .map_err(|e| Error::new(ErrorCode::InvalidPath, e.to_string()))?;
        let now = OffsetDateTime::now_utc();
        let ranges = listing::narrow(&params.prefix, reach);
        let (until, exclude_overdue_at) = (
            now + params.within,
            (!params.include_overdue).then_some(now),
        );
        let (found, next_after) = listing::page(
            &ranges,
            params.after,
            params.limit,
            |prefix, after, limit| {
                self.store.rotations_due(DueQuery {
                    prefix,
                    after,
                    limit,
                    until,
                    exclude_overdue_at,
                })
            },
            |row: &RotationRow| visible(&row.path),
        )
        .await?;
        let secrets = found
            .iter()
            .filter_map(|row| {
                let strategy = policy_of(row).ok()?.strategy;
                Some(DueSecret {
                    path: row.path.clone(),
                    next_rotation_at: row.next_at,
                    is_overdue: now >= row.overdue_at(),
                    strategy,
                    last_rotated_at: row.last_rotated_at,
                })
            })
            .collect();
        Ok(DuePage {
            secrets,
            next_after,
        })
    }
}
