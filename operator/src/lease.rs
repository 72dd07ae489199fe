//! Leader election through a `coordination.k8s.io/v1` Lease, with `resourceVersion`
//! optimistic concurrency (every write is a replace of the version read).
//!
//! Expiry is judged on the local clock, as client-go does: a standby remembers when it
//! first saw the current `(holder, renewTime)` and takes over once that record has not
//! changed for a full lease duration, so clock skew between replicas does not matter.
//! A leader that cannot renew within the lease duration steps down (the process exits,
//! see `run`), so two replicas never both believe they lead for longer than that.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("lease {name}: no answer within the renew interval")]
    Timeout { name: String },
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

    /// One round: create, renew or take over the lease. `Ok(true)` while we hold it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, Error> {
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
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.kube_err(e)),
            };
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if holder.as_deref() != Some(me.as_str()) {
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
                return Ok(false);
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
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
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

    /// Runs until `stop` turns true: publishes leadership on `leader`. A leader that has
    /// not renewed for `lease_duration - renew_interval` publishes `false` (and stays
    /// out): that is before any standby can consider the lease expired, so two leaders
    /// never overlap (the reason client-go's renewDeadline is below the duration).
    pub async fn run(
        mut self,
        leader: watch::Sender<bool>,
        mut stop: watch::Receiver<bool>,
    ) -> Self {
        let mut last_renewed: Option<Instant> = None;
        let deadline = self
            .config
            .lease_duration
            .saturating_sub(self.config.renew_interval);
        loop {
            if *stop.borrow() {
                return self;
            }
            // A hung request must not keep a leader believing it leads.
            let round =
                tokio::time::timeout(self.config.renew_interval, self.try_acquire_or_renew())
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::Timeout {
                            name: self.config.name.clone(),
                        })
                    });
            match round {
                Ok(true) => {
                    if last_renewed.is_none() {
                        tracing::info!(lease = %self.config.name, identity = %self.config.identity, "acquired the leader lease");
                    }
                    last_renewed = Some(Instant::now());
                    leader.send_replace(true);
                }
                Ok(false) => {
                    if *leader.borrow() {
                        tracing::warn!(lease = %self.config.name, "lost the leader lease");
                        leader.send_replace(false);
                        return self;
                    }
                    tracing::debug!(lease = %self.config.name, "waiting for the leader lease");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leader election round failed");
                    if let Some(at) = last_renewed
                        && at.elapsed() >= deadline
                    {
                        tracing::error!("could not renew the leader lease in time; stepping down");
                        leader.send_replace(false);
                        return self;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.renew_interval) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
