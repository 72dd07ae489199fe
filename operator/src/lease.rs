//! Leader election through a `coordination.k8s.io/v1` Lease, with `resourceVersion`
//! optimistic concurrency (every write is a replace of the version read).
//!
//! Expiry is judged on the local clock, as client-go does: a standby remembers when it
//! first saw the current `(holder, renewTime)` and takes over once that record has not
//! changed for a full lease duration, so clock skew between replicas does not matter.
//! A leader that cannot renew within the renew deadline (lease duration minus renew
//! interval) steps down and the process exits (see `run`), so two replicas never both
//! believe they lead. A failed renewal is retried at once, within the time the lease has
//! left, instead of waiting a whole renew interval.
//!
//! `run` is given a client of its own (its own connection pool, no rate limit), so a
//! renewal never queues behind the controllers' traffic inside this process; and it runs
//! on a thread of its own ([`LeaseRuntime`]), so it never waits for a turn on the
//! controllers' thread either (the operator's main runtime has one thread: see `main.rs`).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};

/// Pause between two attempts of a failed renewal (bounded by the time left).
pub const RENEW_RETRY: Duration = Duration::from_millis(250);
/// Shortest time one renewal attempt is given, even close to the deadline.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("lease {name}: no answer within {after:?}")]
    Timeout { name: String, after: Duration },
    #[error("lease {name}: changed between read and renewal; reading it again")]
    Conflict { name: String },
    #[error("lease {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
}

/// The outcome of one election round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// We hold the lease (acquired or renewed).
    Leading,
    /// Someone else holds it (or won the race to create or take it over).
    Standby { holder: Option<String> },
}

/// Why a leader stopped leading: the process reports it and exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDown {
    /// Another replica holds the lease now (took it over, or overwrote it).
    TakenBy(Option<String>),
    /// No renewal succeeded before the renew deadline.
    RenewDeadline {
        deadline: Duration,
        last_error: String,
    },
}

impl std::fmt::Display for StepDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepDown::TakenBy(Some(h)) => write!(f, "the lease is held by {h:?} now"),
            StepDown::TakenBy(None) => f.write_str("the lease was taken by another holder"),
            StepDown::RenewDeadline {
                deadline,
                last_error,
            } => write!(
                f,
                "no renewal succeeded within the renew deadline of {deadline:?} (last error: {last_error})"
            ),
        }
    }
}

/// A current-thread tokio runtime on an OS thread of its own, for the lease: the
/// election task, its client's request queue and its connections are all driven there,
/// however long the controllers' thread is busy. The thread ends when this is dropped
/// (its tasks are cancelled).
pub struct LeaseRuntime {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl LeaseRuntime {
    pub fn start() -> std::io::Result<LeaseRuntime> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("lease".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(LeaseRuntime {
            handle,
            _stop: stop,
        })
    }

    /// Spawn onto it (`spawn`), or `enter` it to build a client whose request queue
    /// lives there.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// `(holder, renewTime)` last seen and when it was first seen.
    observed: Option<(String, Instant)>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    fn kube_err(&self, source: kube::Error) -> Error {
        Error::Kube {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// One round: create, renew or take over the lease.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Round, Error> {
        let now = MicroTime(Timestamp::now());
        let me = self.config.identity.clone();
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.kube_err(e))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(self.duration_secs()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Round::Leading),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Standby { holder: None }),
                Err(e) => Err(self.kube_err(e)),
            };
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let renewing = holder.as_deref() == Some(me.as_str());
        if !renewing {
            let record = format!(
                "{}@{}",
                holder.clone().unwrap_or_default(),
                spec.renew_time
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default()
            );
            let first_seen = match &self.observed {
                Some((r, at)) if *r == record => *at,
                _ => {
                    let at = Instant::now();
                    self.observed = Some((record, at));
                    at
                }
            };
            // The holder's own duration, not ours: it promised to renew within it.
            let held_for = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(self.config.lease_duration);
            if holder.is_some() && first_seen.elapsed() < held_for {
                return Ok(Round::Standby { holder });
            }
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            spec.holder_identity = Some(me);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.duration_secs());
        lease.spec = Some(spec);
        // `lease.metadata.resourceVersion` makes this a compare-and-swap.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Round::Leading),
            // Our own renewal lost a race (say, an earlier attempt that timed out here
            // but landed there): read again before concluding anything.
            Err(kube::Error::Api(s)) if s.code == 409 && renewing => Err(Error::Conflict {
                name: self.config.name.clone(),
            }),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Standby { holder }),
            Err(e) => Err(self.kube_err(e)),
        }
    }

    /// Gives the lease up (graceful shutdown) so a standby takes over at once.
    pub async fn release(&self) -> Result<(), Error> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.kube_err(e))?
        else {
            return Ok(());
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(self.kube_err(e)),
        }
    }

    /// Runs until `stop` turns true, or until this replica stops leading: publishes
    /// leadership on `leader` and returns why it stepped down (`None`: stopped).
    ///
    /// A leader whose renewal fails retries every `RENEW_RETRY`, each attempt bounded by
    /// the time left, until `lease_duration - renew_interval` has passed since the last
    /// renewal; then it publishes `false` and returns. That is before any standby can
    /// consider the lease expired, so two leaders never overlap (the reason client-go's
    /// renewDeadline is below the duration).
    pub async fn run(
        mut self,
        leader: watch::Sender<bool>,
        mut stop: watch::Receiver<bool>,
    ) -> (Self, Option<StepDown>) {
        let mut last_renewed: Option<Instant> = None;
        let deadline = self
            .config
            .lease_duration
            .saturating_sub(self.config.renew_interval);
        loop {
            if *stop.borrow() {
                return (self, None);
            }
            // A hung request must not keep a leader believing it leads.
            let attempt = match last_renewed {
                Some(at) => self
                    .config
                    .renew_interval
                    .min(deadline.saturating_sub(at.elapsed()))
                    .max(MIN_ATTEMPT),
                None => self.config.renew_interval,
            };
            let round = tokio::time::timeout(attempt, self.try_acquire_or_renew())
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Timeout {
                        name: self.config.name.clone(),
                        after: attempt,
                    })
                });
            let pause = match round {
                Ok(Round::Leading) => {
                    if last_renewed.is_none() {
                        tracing::info!(lease = %self.config.name, identity = %self.config.identity, "acquired the leader lease");
                    }
                    last_renewed = Some(Instant::now());
                    leader.send_replace(true);
                    self.config.renew_interval
                }
                Ok(Round::Standby { holder }) => {
                    if last_renewed.is_some() {
                        let why = StepDown::TakenBy(holder);
                        tracing::error!(lease = %self.config.name, reason = %why, "lost the leader lease");
                        leader.send_replace(false);
                        return (self, Some(why));
                    }
                    tracing::debug!(lease = %self.config.name, holder = ?holder, "waiting for the leader lease");
                    self.config.renew_interval
                }
                Err(e) => match last_renewed {
                    Some(at) if at.elapsed() >= deadline => {
                        let why = StepDown::RenewDeadline {
                            deadline,
                            last_error: e.to_string(),
                        };
                        tracing::error!(lease = %self.config.name, reason = %why, "could not renew the leader lease in time; stepping down");
                        leader.send_replace(false);
                        return (self, Some(why));
                    }
                    Some(at) => {
                        tracing::warn!(error = %e, left = ?deadline.saturating_sub(at.elapsed()), "renewing the leader lease failed; retrying");
                        RENEW_RETRY.min(deadline.saturating_sub(at.elapsed()))
                    }
                    None => {
                        tracing::warn!(error = %e, "leader election round failed");
                        self.config.renew_interval
                    }
                },
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The lease runtime's tasks progress while the thread that started them is blocked
    /// (as the controllers' single thread is during a long poll): here it blocks on a
    /// channel that only a timer of the lease runtime fills.
    #[tokio::test(flavor = "current_thread")]
    async fn runs_while_the_calling_thread_is_blocked() {
        let lease = LeaseRuntime::start().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        lease.handle().spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.send(()).unwrap();
        });
        // Blocking this runtime's only thread: nothing of this runtime could run now.
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the lease runtime ran its timer on its own thread");
    }

    /// Dropping it ends its thread's tasks.
    #[test]
    fn dropping_it_cancels_its_tasks() {
        let lease = LeaseRuntime::start().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        lease.handle().spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        drop(lease);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
