//! Background loops (expiry purge, access-count flush, token, idempotency-key and
//! change-feed cleanup, audit retention) and their status, which `/v1/health/detailed`
//! reports.
//!
//! Most jobs act on the shared storage and run once per slot of their interval, on the
//! replica that leads ([`leadership`]): the runner claims the slot, then commits the
//! job's units fenced by its term. The access-count flush moves this replica's own
//! in-memory counts, so every replica runs it.

pub mod leadership;
pub mod rotation;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::audit::checkpoint::{Checkpoints, apply_retention};
use crate::metrics::{JobLabels, Metrics};
use crate::secrets::AccessCounter;
use crate::store::feed::FEED_RETENTION;
use crate::store::{AuditStore, Store, StoreError, UnitOfWork};
use leadership::Leadership;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobStatus {
    pub runs: u64,
    pub failures: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_run_at: Option<OffsetDateTime>,
    pub last_duration_ms: f64,
    pub last_error: Option<String>,
    pub interval_secs: u64,
    /// Another replica runs this job now (or ran this slot already): this one waits.
    pub standby: bool,
}

#[derive(Default)]
pub struct JobRegistry {
    statuses: DashMap<&'static str, JobStatus>,
}

impl JobRegistry {
    pub fn snapshot(&self) -> BTreeMap<String, JobStatus> {
        self.statuses
            .iter()
            .map(|e| (e.key().to_string(), e.value().clone()))
            .collect()
    }

    fn record(
        &self,
        name: &'static str,
        interval: Duration,
        elapsed: Duration,
        result: &Result<(), String>,
    ) {
        let mut status = self.statuses.entry(name).or_default();
        status.runs += 1;
        status.last_run_at = Some(OffsetDateTime::now_utc());
        status.last_duration_ms = elapsed.as_secs_f64() * 1000.0;
        status.interval_secs = interval.as_secs();
        status.standby = false;
        match result {
            Ok(()) => status.last_error = None,
            Err(e) => {
                status.failures += 1;
                status.last_error = Some(e.clone());
            }
        }
    }

    fn record_standby(&self, name: &'static str, interval: Duration) {
        let mut status = self.statuses.entry(name).or_default();
        status.interval_secs = interval.as_secs();
        status.standby = true;
    }

    /// A job is stale when it has not completed within three of its intervals (on the
    /// replica that runs it).
    pub fn stale(&self, started: Instant) -> Vec<String> {
        let now = OffsetDateTime::now_utc();
        self.statuses
            .iter()
            .filter(|e| !e.value().standby)
            .filter(|e| {
                let limit = Duration::from_secs(e.value().interval_secs.max(1) * 3);
                match e.value().last_run_at {
                    Some(t) => (now - t).unsigned_abs() > limit,
                    None => started.elapsed() > limit,
                }
            })
            .map(|e| e.key().to_string())
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct JobIntervals {
    pub expiry_purge: Duration,
    pub access_flush: Duration,
    pub token_purge: Duration,
}

pub struct Jobs {
    pub store: Arc<dyn Store>,
    pub access: Arc<AccessCounter>,
    pub registry: Arc<JobRegistry>,
    pub metrics: Arc<Metrics>,
    pub intervals: JobIntervals,
    pub leadership: Leadership,
    pub audit_retention: Option<AuditRetention>,
}

/// Removes audit records older than `keep`, behind a signed checkpoint.
pub struct AuditRetention {
    pub store: Arc<dyn AuditStore>,
    pub checkpoints: Arc<Checkpoints>,
    pub keep: Duration,
}

/// Where a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runs {
    /// Once per slot of its interval, by the replica that leads.
    OncePerSlot,
    /// On each replica, every interval (it handles that replica's own state).
    OnEveryReplica,
}

/// What the runner may do about a job's slot.
enum Claim {
    /// This replica leads and claimed the slot: run under this term.
    Run(u64),
    /// Another replica leads, or the slot ran already.
    Standby,
    Failed(String),
}

const PURGE_BATCH: usize = 500;
/// Idempotency entries live 24 h; purging every 10 minutes keeps at most that much extra.
const IDEMPOTENCY_PURGE_INTERVAL: Duration = Duration::from_secs(600);
/// The feed holds a week; pruning it hourly keeps at most an hour beyond that.
const FEED_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
const AUDIT_RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
const ACCESS_WINDOW_DAYS: i64 = 30;

/// A job's work for one run; a job of the runner gets its term's epoch to fence with.
type Run = Box<
    dyn Fn(
            Arc<Jobs>,
            Option<u64>,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

fn boxed<F, Fut>(run: F) -> Run
where
    F: Fn(Arc<Jobs>, Option<u64>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Box::new(move |jobs, term| Box::pin(run(jobs, term)))
}

/// A job's [`Run`]: a method of [`Jobs`] taking the term.
macro_rules! job {
    ($method:ident) => {
        boxed(|jobs: Arc<Jobs>, term: Option<u64>| async move { jobs.$method(term).await })
    };
}

impl Jobs {
    /// Starts every loop; they stop when `shutdown` flips to true.
    pub fn spawn(
        self: Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut loops = vec![
            (
                "expiry_purge",
                self.intervals.expiry_purge,
                Runs::OncePerSlot,
                job!(purge_expired),
            ),
            (
                "access_flush",
                self.intervals.access_flush,
                Runs::OnEveryReplica,
                job!(flush_access),
            ),
            (
                "idempotency_purge",
                IDEMPOTENCY_PURGE_INTERVAL,
                Runs::OncePerSlot,
                job!(purge_idempotency_keys),
            ),
            (
                "feed_prune",
                FEED_PRUNE_INTERVAL,
                Runs::OncePerSlot,
                job!(prune_feed),
            ),
            (
                "token_purge",
                self.intervals.token_purge,
                Runs::OncePerSlot,
                job!(purge_tokens),
            ),
        ];
        if self.audit_retention.is_some() {
            loops.push((
                "audit_retention",
                AUDIT_RETENTION_INTERVAL,
                Runs::OncePerSlot,
                job!(retain_audit),
            ));
        }
        loops
            .into_iter()
            .map(|(name, interval, runs, run)| {
                spawn_loop(
                    name,
                    interval,
                    runs,
                    shutdown.clone(),
                    Arc::clone(&self),
                    run,
                )
            })
            .collect()
    }

    /// Starts the rotation scheduler, once per slot of `interval` on the replica that
    /// leads. Apart from [`Self::spawn`] because it needs the unsealed vault and the
    /// audit writer, which start after the jobs.
    pub fn spawn_rotation(
        self: &Arc<Self>,
        scheduler: Arc<rotation::RotationScheduler>,
        interval: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let run = boxed(move |_jobs: Arc<Jobs>, term: Option<u64>| {
            let scheduler = Arc::clone(&scheduler);
            async move { scheduler.run(term).await }
        });
        spawn_loop(
            "rotation",
            interval,
            Runs::OncePerSlot,
            shutdown,
            Arc::clone(self),
            run,
        )
    }

    /// Claims the job's current slot for this replica's term, if it leads.
    async fn claim(&self, name: &'static str, interval: Duration) -> Claim {
        let Some(epoch) = self.leadership.term() else {
            return Claim::Standby;
        };
        let now = OffsetDateTime::now_utc();
        let slot = slot_of(now, interval);
        match self
            .store
            .apply(|u| u.jobs().claim_run(name, slot, epoch, now))
            .await
        {
            Ok(true) => Claim::Run(epoch),
            Ok(false) | Err(StoreError::Fenced { .. }) => Claim::Standby,
            Err(e) => Claim::Failed(e.to_string()),
        }
    }

    async fn purge_expired(&self, term: Option<u64>) -> Result<(), String> {
        loop {
            let purged = self
                .store
                .apply(|u| {
                    fence(u, term);
                    u.maintenance()
                        .purge_expired_secrets(OffsetDateTime::now_utc(), PURGE_BATCH)
                })
                .await
                .map_err(|e| e.to_string())?;
            for path in &purged {
                self.access.forget(path);
                tracing::info!(path = %path, "purged expired secret");
            }
            if purged.len() < PURGE_BATCH {
                return Ok(());
            }
        }
    }

    async fn flush_access(&self, _term: Option<u64>) -> Result<(), String> {
        self.flush_access_counts().await
    }

    /// Moves in-memory read counts into per-day rows and drops the days out of the window,
    /// in one transaction; on failure the counts are kept for the next run, so no read
    /// goes uncounted.
    pub async fn flush_access_counts(&self) -> Result<(), String> {
        let counts = self.access.drain();
        let today = OffsetDateTime::now_utc().unix_timestamp() / 86_400;
        let mut unit = UnitOfWork::new();
        if !counts.is_empty() {
            unit.maintenance().add_access_counts(today, counts.clone());
        }
        unit.maintenance()
            .prune_access_counts(today - ACCESS_WINDOW_DAYS);
        if let Err(e) = self.store.commit(unit).await {
            self.access.restore(counts);
            return Err(e.to_string());
        }
        Ok(())
    }

    /// Forgets idempotency keys (and their sealed answers) older than their 24 h.
    async fn purge_idempotency_keys(&self, term: Option<u64>) -> Result<(), String> {
        loop {
            let purged = self
                .store
                .apply(|u| {
                    fence(u, term);
                    u.maintenance()
                        .purge_expired_idempotency(OffsetDateTime::now_utc(), PURGE_BATCH)
                })
                .await
                .map_err(|e| e.to_string())?;
            if purged < PURGE_BATCH as u64 {
                return Ok(());
            }
        }
    }

    /// Drops change records older than the feed's retention, in batches.
    async fn prune_feed(&self, term: Option<u64>) -> Result<(), String> {
        let before = OffsetDateTime::now_utc() - FEED_RETENTION;
        loop {
            let pruned = self
                .store
                .apply(|u| {
                    fence(u, term);
                    u.maintenance().prune_changes(before, PURGE_BATCH)
                })
                .await
                .map_err(|e| e.to_string())?;
            if pruned < PURGE_BATCH as u64 {
                return Ok(());
            }
        }
    }

    async fn purge_tokens(&self, term: Option<u64>) -> Result<(), String> {
        self.store
            .apply(|u| {
                fence(u, term);
                u.maintenance()
                    .purge_expired_tokens(OffsetDateTime::now_utc())
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn retain_audit(&self, _term: Option<u64>) -> Result<(), String> {
        let Some(retention) = &self.audit_retention else {
            return Ok(());
        };
        let cutoff = OffsetDateTime::now_utc() - retention.keep;
        match apply_retention(retention.store.as_ref(), &retention.checkpoints, cutoff).await {
            Ok(0) => Ok(()),
            Ok(n) => {
                tracing::info!(records = n, "audit retention removed old records");
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Fences the unit by the runner's term, when the job runs under one.
pub(crate) fn fence(unit: &mut UnitOfWork, term: Option<u64>) {
    if let Some(epoch) = term {
        unit.jobs().fence(epoch);
    }
}

/// The slot of `interval` that `at` falls in: every replica computes the same one.
fn slot_of(at: OffsetDateTime, interval: Duration) -> u64 {
    let millis = (at.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
    millis / (interval.as_millis().max(1) as u64)
}

/// How long until the next slot of `interval` begins.
fn until_next_slot(interval: Duration) -> Duration {
    let now = OffsetDateTime::now_utc();
    let step = interval.as_millis().max(1) as u64;
    let millis = (now.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
    Duration::from_millis(step - millis % step)
}

fn spawn_loop(
    name: &'static str,
    interval: Duration,
    runs: Runs,
    mut shutdown: watch::Receiver<bool>,
    jobs: Arc<Jobs>,
    run: Run,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut first = true;
        loop {
            if !first {
                let wait = match runs {
                    Runs::OncePerSlot => until_next_slot(interval),
                    Runs::OnEveryReplica => interval,
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
            }
            first = false;
            let started = Instant::now();
            let term = match runs {
                Runs::OnEveryReplica => None,
                Runs::OncePerSlot => match jobs.claim(name, interval).await {
                    Claim::Run(epoch) => Some(epoch),
                    Claim::Standby => {
                        jobs.registry.record_standby(name, interval);
                        continue;
                    }
                    Claim::Failed(e) => {
                        finish(&jobs, name, interval, started, Err(e));
                        continue;
                    }
                },
            };
            let result = run(Arc::clone(&jobs), term).await;
            finish(&jobs, name, interval, started, result);
        }
    })
}

fn finish(
    jobs: &Jobs,
    name: &'static str,
    interval: Duration,
    started: Instant,
    result: Result<(), String>,
) {
    if let Err(e) = &result {
        tracing::warn!(job = name, error = %e, "background job failed");
    }
    let outcome = if result.is_ok() { "ok" } else { "error" };
    jobs.metrics
        .job_runs
        .get_or_create(&JobLabels {
            job: name.to_owned(),
            outcome: outcome.to_owned(),
        })
        .inc();
    jobs.registry
        .record(name, interval, started.elapsed(), &result);
}
