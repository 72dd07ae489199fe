//! Which replica runs the background jobs: the one holding the runner's lock, under the
//! term it began when it took the lock (see `store::jobs` for terms and fencing).
//!
//! On SQLite the data directory's lock already makes this process the only one, so it
//! begins a term at start and keeps it. On PostgreSQL every replica campaigns: it tries
//! the lock every second, and the holder leads until its lock session ends (the database
//! releases a session's locks when its connection closes, a killed process's included),
//! when it stops leading at once. Failover takes at most about a second of campaigning.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::store::{Result, Store};

/// How often a replica that does not lead tries the lock.
const CAMPAIGN_EVERY: Duration = Duration::from_secs(1);

/// A lock at most one replica holds at a time.
#[async_trait]
pub trait RunnerLock: Send + Sync {
    /// Takes the lock if it is free; `None` when another replica holds it.
    async fn try_take(&self) -> Result<Option<Box<dyn HeldLock>>>;
}

/// A held runner lock; dropping it releases the lock.
#[async_trait]
pub trait HeldLock: Send {
    /// Resolves when the lock is lost (its connection ended).
    async fn lost(&mut self);
}

/// This replica's view of the leadership: the epoch of its term while it leads.
#[derive(Clone)]
pub struct Leadership {
    term: watch::Receiver<Option<u64>>,
}

impl Leadership {
    /// The epoch of this replica's term, while it leads.
    pub fn term(&self) -> Option<u64> {
        *self.term.borrow()
    }

    /// The only process on its storage (SQLite, under the data directory's lock): it
    /// begins a term now and leads until it stops.
    pub async fn sole(store: &Arc<dyn Store>) -> Result<Leadership> {
        let epoch = begin_term(store).await?;
        tracing::info!(epoch, "running the background jobs (term {epoch})");
        let (_, term) = watch::channel(Some(epoch));
        Ok(Leadership { term })
    }

    /// Campaigns for `lock` until `shutdown`; leads while holding it.
    pub fn campaign(
        store: Arc<dyn Store>,
        lock: Arc<dyn RunnerLock>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Leadership {
        let (publish, term) = watch::channel(None);
        tokio::spawn(async move {
            loop {
                match lock.try_take().await {
                    Ok(Some(mut held)) => match begin_term(&store).await {
                        Ok(epoch) => {
                            publish.send_replace(Some(epoch));
                            tracing::info!(epoch, "took over the background jobs (term {epoch})");
                            tokio::select! {
                                _ = held.lost() => {}
                                _ = shutdown.changed() => {
                                    publish.send_replace(None);
                                    return;
                                }
                            }
                            publish.send_replace(None);
                            tracing::warn!(
                                epoch,
                                "lost the job runner's lock; another replica may take over"
                            );
                        }
                        Err(e) => tracing::warn!(error = %e, "beginning a term as job runner"),
                    },
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "trying the job runner's lock"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(CAMPAIGN_EVERY) => {}
                    _ = shutdown.changed() => return,
                }
            }
        });
        Leadership { term }
    }
}

/// The name a term records: the pod's (or host's) name and this process.
fn holder() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown-host".into());
    format!("{host}/{}", std::process::id())
}

async fn begin_term(store: &Arc<dyn Store>) -> Result<u64> {
    store
        .apply(|u| u.jobs().begin_term(&holder(), OffsetDateTime::now_utc()))
        .await
}
