//! Background loops (expiry purge, access-count flush, token, idempotency-key and
//! change-feed cleanup) and their status, which `/v1/health/detailed` reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::metrics::{JobLabels, Metrics};
use crate::secrets::AccessCounter;
use crate::store::feed::FEED_RETENTION;
use crate::store::{Store, UnitOfWork};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobStatus {
    pub runs: u64,
    pub failures: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_run_at: Option<OffsetDateTime>,
    pub last_duration_ms: f64,
    pub last_error: Option<String>,
    pub interval_secs: u64,
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
        match result {
            Ok(()) => status.last_error = None,
            Err(e) => {
                status.failures += 1;
                status.last_error = Some(e.clone());
            }
        }
    }

    /// A job is stale when it has not completed within three of its intervals.
    pub fn stale(&self, started: Instant) -> Vec<String> {
        let now = OffsetDateTime::now_utc();
        self.statuses
            .iter()
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
}

const PURGE_BATCH: usize = 500;
/// Idempotency entries live 24 h; purging every 10 minutes keeps at most that much extra.
const IDEMPOTENCY_PURGE_INTERVAL: Duration = Duration::from_secs(600);
/// The feed holds a week; pruning it hourly keeps at most an hour beyond that.
const FEED_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
const ACCESS_WINDOW_DAYS: i64 = 30;

impl Jobs {
    /// Starts every loop; they stop when `shutdown` flips to true.
    pub fn spawn(
        self: Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        let this = Arc::clone(&self);
        handles.push(spawn_loop(
            "expiry_purge",
            self.intervals.expiry_purge,
            shutdown.clone(),
            Arc::clone(&self),
            move || {
                let this = Arc::clone(&this);
                async move { this.purge_expired().await }
            },
        ));
        let this = Arc::clone(&self);
        handles.push(spawn_loop(
            "access_flush",
            self.intervals.access_flush,
            shutdown.clone(),
            Arc::clone(&self),
            move || {
                let this = Arc::clone(&this);
                async move { this.flush_access_counts().await }
            },
        ));
        let this = Arc::clone(&self);
        handles.push(spawn_loop(
            "idempotency_purge",
            IDEMPOTENCY_PURGE_INTERVAL,
            shutdown.clone(),
            Arc::clone(&self),
            move || {
                let this = Arc::clone(&this);
                async move { this.purge_idempotency_keys().await }
            },
        ));
        let this = Arc::clone(&self);
        handles.push(spawn_loop(
            "feed_prune",
            FEED_PRUNE_INTERVAL,
            shutdown.clone(),
            Arc::clone(&self),
            move || {
                let this = Arc::clone(&this);
                async move { this.prune_feed().await }
            },
        ));
        let this = Arc::clone(&self);
        handles.push(spawn_loop(
            "token_purge",
            self.intervals.token_purge,
            shutdown,
            Arc::clone(&self),
            move || {
                let this = Arc::clone(&this);
                async move { this.purge_tokens().await }
            },
        ));
        handles
    }

    async fn purge_expired(&self) -> Result<(), String> {
        loop {
            let purged = self
                .store
                .apply(|u| {
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
    async fn purge_idempotency_keys(&self) -> Result<(), String> {
        loop {
            let purged = self
                .store
                .apply(|u| {
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
    async fn prune_feed(&self) -> Result<(), String> {
        let before = OffsetDateTime::now_utc() - FEED_RETENTION;
        loop {
            let pruned = self
                .store
                .apply(|u| u.maintenance().prune_changes(before, PURGE_BATCH))
                .await
                .map_err(|e| e.to_string())?;
            if pruned < PURGE_BATCH as u64 {
                return Ok(());
            }
        }
    }

    async fn purge_tokens(&self) -> Result<(), String> {
        self.store
            .apply(|u| {
                u.maintenance()
                    .purge_expired_tokens(OffsetDateTime::now_utc())
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn spawn_loop<F, Fut>(
    name: &'static str,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    jobs: Arc<Jobs>,
    run: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let started = Instant::now();
            let result = run().await;
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
    })
}
