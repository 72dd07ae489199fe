//! The VaultSecret controller: vault path -> Kubernetes Secret, read as the namespace's
//! ServiceAccount.
//!
//! observe (vault value as the SA, the current Secret) -> plan (render, MAC, decide what
//! changed; pure) -> apply (Secret by server-side apply, rollout restarts, status).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, ObjectMeta, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use scaivault_api::duration::parse_duration;
use serde_json::json;

use crate::conditions::{self, reason};
use crate::context::{
    Context, FIELD_MANAGER, LastSync, MANAGED_BY_LABEL, MANAGED_BY_VALUE, object_key,
    reconcile_parsed,
};
use crate::crd::{ConditionStatus, RolloutKind, VaultSecret, VaultSecretStatus};
use crate::owned_secret::OwnedSecret;
use crate::shared_reads::{self, ReadKey};
use crate::{render, schedule, vault_auth};

pub const KIND: &str = "VaultSecret";
/// Pod-template annotation patched to restart a workload (what `kubectl rollout restart`
/// does with its own key).
pub use scaivault_kube_api::annotations::RESTARTED_AT;
/// ServiceAccount used when `spec.serviceAccountName` is unset.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// What the VaultSecret cache keeps of an object's metadata: what the reconciler reads
/// (name, namespace, uid, generation, a deletion in progress). Labels, annotations
/// (kubectl's last-applied copy of the whole object among them), managedFields, owner
/// references and the resourceVersion are read by nothing here; without them an
/// object, and every reference to it the Controller keeps, is smaller.
pub fn slim(meta: &mut ObjectMeta) {
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        generation: meta.generation,
        deletion_timestamp: meta.deletion_timestamp.take(),
        ..ObjectMeta::default()
    };
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error(transparent)]
    Auth(#[from] vault_auth::Error),
    #[error(
        "ServiceAccount {namespace}/{service_account} (vault identity k8s:{namespace}/{service_account}) may not read vault path {path:?}: bind a policy granting read on it, e.g. a VaultPolicy listing the ServiceAccount under serviceAccounts"
    )]
    PermissionDenied {
        namespace: String,
        service_account: String,
        path: String,
    },
    #[error("vault path {path:?} has no secret{}", version.map(|v| format!(" version {v}")).unwrap_or_default())]
    NotFound { path: String, version: Option<u64> },
    #[error("reading vault path {path:?}: {source}")]
    Vault {
        path: String,
        #[source]
        source: scaivault_client::Error,
    },
    #[error("rendering Secret data: {0}")]
    Render(#[from] render::Error),
    #[error("Secret {name} exists and is not owned by this VaultSecret; refusing to overwrite it")]
    Conflict { name: String },
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// An answer the same read would give again (unlike a vault or apiserver outage).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Error::InvalidSpec(_)
                | Error::PermissionDenied { .. }
                | Error::NotFound { .. }
                | Error::Render(_)
                | Error::Conflict { .. }
        )
    }

    /// The Ready reason this error is reported with.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => reason::INVALID_SPEC,
            Error::Auth(_) => reason::LOGIN_FAILED,
            Error::PermissionDenied { .. } => reason::PERMISSION_DENIED,
            Error::NotFound { .. } => reason::SECRET_NOT_FOUND,
            Error::Vault { .. } => reason::VAULT_ERROR,
            Error::Render(_) => reason::TEMPLATE_ERROR,
            Error::Conflict { .. } => reason::SECRET_CONFLICT,
            Error::Kube { .. } => reason::KUBERNETES_ERROR,
        }
    }
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

/// What a sync did, for events and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The Secret did not exist.
    Created,
    /// The vault value changed since the last sync.
    Updated,
    /// The Secret was edited by hand; rewritten.
    DriftRepaired,
    /// Nothing to write.
    Unchanged,
}

/// The pure decision of a sync. `previous_mac` is `status.secretMAC`, `current_mac` the
/// MAC of the Secret as it is now (None: absent), `desired_mac` of the rendered data.
pub fn plan(
    previous_mac: Option<&str>,
    current_mac: Option<&str>,
    desired_mac: &str,
) -> (Change, bool) {
    // Restart only when the synced data really changed: never on the first sync (no
    // previous MAC) and never after an operator restart (the MAC key persists, so an
    // unchanged value has an unchanged MAC). Repairing drift restores the synced value,
    // which is not a change either.
    let restart = previous_mac.is_some_and(|p| p != desired_mac);
    let change = match current_mac {
        None => Change::Created,
        Some(c) if c == desired_mac => Change::Unchanged,
        Some(_) if restart => Change::Updated,
        Some(_) if previous_mac.is_none() => Change::Updated,
        Some(_) => Change::DriftRepaired,
    };
    (change, restart)
}

fn owner_reference(vs: &VaultSecret) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: VaultSecret::api_version(&()).into_owned(),
        kind: VaultSecret::kind(&()).into_owned(),
        name: vs.metadata.name.clone()?,
        uid: vs.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Reads the vault value as the VaultSecret's ServiceAccount; a 401 (token revoked or
/// expired early) drops the cached token and tries once more.
async fn read_as_service_account(
    ctx: &Context,
    namespace: &str,
    service_account: &str,
    path: &str,
    version: Option<u64>,
) -> Result<scaivault_client::api::secrets::SecretResponse, Error> {
    let read = || async {
        let client = ctx
            .vault_auth
            .client_for(namespace, service_account)
            .await?;
        Ok::<_, Error>(match version {
            Some(v) => client.read_version(path, v).await,
            None => client.read(path).await,
        })
    };
    let mut answer = read().await?;
    if matches!(&answer, Err(e) if e.status() == Some(401)) {
        ctx.vault_auth.invalidate(namespace, service_account).await;
        answer = read().await?;
    }
    answer.map_err(|e| {
        if e.status() == Some(403) {
            Error::PermissionDenied {
                namespace: namespace.to_owned(),
                service_account: service_account.to_owned(),
                path: path.to_owned(),
            }
        } else if e.is_not_found() {
            Error::NotFound {
                path: path.to_owned(),
                version,
            }
        } else {
            Error::Vault {
                path: path.to_owned(),
                source: e,
            }
        }
    })
}

struct Synced {
    refresh: Duration,
    version: u64,
    mac: String,
    change: Change,
    /// Refresh schedule key (namespace, ServiceAccount, path, version).
    schedule: u64,
    /// When the read of the value was sent (`changed::Changed::clear`).
    read_sent: Instant,
}

/// The target Secret as the owned-Secret watch sees it. A Secret missing there is absent,
/// or lacks our label (someone else's, or a hand edit removed it): one GET tells.
async fn observe_target(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<Arc<OwnedSecret>>, Error> {
    if let Some(cached) = ctx.secrets.get(&ObjectRef::new(name).within(namespace)) {
        return Ok(Some(cached));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let found = secrets
        .get_opt(name)
        .await
        .map_err(kube_err(format!("reading Secret {name}")))?;
    Ok(found.map(|s| Arc::new(OwnedSecret::project(s, &ctx.mac_key))))
}

async fn sync(
    vs: &VaultSecret,
    ctx: &Context,
    previous_mac: Option<&str>,
    applied_generation: Option<i64>,
) -> Result<Synced, Error> {
    let namespace = vs
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("a VaultSecret is namespaced".into()))?;
    let uid = vs
        .metadata
        .uid
        .clone()
        .ok_or_else(|| Error::InvalidSpec("object has no uid".into()))?;
    let spec = &vs.spec;
    let refresh = parse_duration(&spec.refresh_interval)
        .map_err(|e| Error::InvalidSpec(format!("refreshInterval: {e}")))?;
    let version = spec
        .version
        .map(|v| u64::try_from(v).map_err(|_| Error::InvalidSpec("version must be >= 1".into())))
        .transpose()?;
    let service_account = spec
        .service_account_name
        .as_deref()
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT);

    // observe: the vault value (shared with VaultSecrets reading the same path as the same
    // ServiceAccount in this refresh window) and the Secret from the watch.
    let read_key = ReadKey {
        namespace: namespace.clone(),
        service_account: service_account.to_owned(),
        path: spec.path.clone(),
        version,
    };
    let schedule = {
        let mut h = DefaultHasher::new();
        read_key.hash(&mut h);
        h.finish()
    };
    // After a change the stream reported, only a read sent since then will do.
    let changed_at = ctx.changed.since(&uid);
    let read = ctx
        .reads
        .get_or_read(
            read_key,
            shared_reads::max_age(refresh),
            changed_at,
            || async {
                ctx.metrics.vault_reads.inc();
                read_as_service_account(ctx, &namespace, service_account, &spec.path, version).await
            },
        )
        .await?;
    let secret = read.value;
    let target = &spec.target;
    let existing = observe_target(ctx, &namespace, &target.name).await?;
    if let Some(existing) = &existing
        && !existing.owned_by(&uid)
    {
        return Err(Error::Conflict {
            name: target.name.clone(),
        });
    }

    // plan
    let type_name = render::type_name(target.r#type);
    let data = render::render(target.r#type, target.template.as_ref(), &secret.data)?;
    let desired_mac = ctx.mac_key.mac(type_name, &data);
    let current_mac = existing.as_deref().map(OwnedSecret::mac);
    let (change, restart) = plan(previous_mac, current_mac, &desired_mac);

    let mut labels = target.labels.clone();
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
    let desired = Secret {
        metadata: ObjectMeta {
            name: Some(target.name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            annotations: Some(target.annotations.clone()).filter(|a| !a.is_empty()),
            owner_references: owner_reference(vs).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some(type_name.to_owned()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Secret::default()
    };
    // apply only when something would change: the data, or a spec not applied yet (a
    // removed label is only dropped by an apply of the new generation).
    let up_to_date = change == Change::Unchanged
        && applied_generation.is_some()
        && applied_generation == vs.metadata.generation
        && existing.as_deref().is_some_and(|e| e.has_applied(&desired));
    if !up_to_date {
        let mut apply = serde_json::to_value(&desired).map_err(|e| {
            Error::InvalidSpec(format!("encoding the Secret failed at {}", e.line()))
        })?;
        apply["apiVersion"] = json!("v1");
        apply["kind"] = json!("Secret");
        Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
            .patch(
                &target.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&apply),
            )
            .await
            .map_err(kube_err(format!("applying Secret {}", target.name)))?;
    }
    if change != Change::Unchanged {
        ctx.metrics
            .secret_writes
            .get_or_create(&crate::metrics::KindLabels { kind: KIND })
            .inc();
    }

    if restart {
        restart_targets(vs, ctx, &namespace).await?;
    }
    Ok(Synced {
        refresh,
        version: secret.version,
        mac: desired_mac,
        change,
        schedule,
        read_sent: read.sent,
    })
}

async fn restart_targets(vs: &VaultSecret, ctx: &Context, namespace: &str) -> Result<(), Error> {
    let now = Timestamp::now().to_string();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    for target in &vs.spec.rollout_restart_targets {
        let what = format!("restarting {:?} {}", target.kind, target.name);
        // A merge patch of one annotation, as `kubectl rollout restart` does.
        let resource = match target.kind {
            RolloutKind::Deployment => ApiResource::erase::<Deployment>(&()),
            RolloutKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            RolloutKind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
        };
        let result =
            Api::<DynamicObject>::namespaced_with(ctx.client.clone(), namespace, &resource)
                .patch(&target.name, &params, &Patch::Merge(&patch))
                .await
                .map(|_| ());
        match result {
            Ok(()) => {
                ctx.metrics.rollout_restarts.inc();
                ctx.event(
                    &vs.object_ref(&()),
                    EventType::Normal,
                    "RolloutRestarted",
                    "RolloutRestart",
                    format!(
                        "restarted {:?} {} after the Secret changed",
                        target.kind, target.name
                    ),
                )
                .await;
            }
            // Nothing to restart; say so, but do not hold the sync back for it.
            Err(kube::Error::Api(s)) if s.code == 404 => {
                ctx.event(
                    &vs.object_ref(&()),
                    EventType::Warning,
                    "RolloutTargetNotFound",
                    "RolloutRestart",
                    format!(
                        "{:?} {} does not exist; not restarted",
                        target.kind, target.name
                    ),
                )
                .await;
            }
            Err(source) => return Err(Error::Kube { what, source }),
        }
    }
    Ok(())
}

async fn patch_status(
    vs: &VaultSecret,
    ctx: &Context,
    status: &VaultSecretStatus,
) -> Result<(), Error> {
    let (Some(namespace), Some(name)) = (vs.namespace(), vs.metadata.name.clone()) else {
        return Ok(());
    };
    let api: Api<VaultSecret> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = json!({
        "apiVersion": VaultSecret::api_version(&()),
        "kind": KIND,
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(kube_err(format!(
        "writing the status of VaultSecret {name}"
    )))?;
    Ok(())
}

/// The generation whose spec the Secret was last applied for: ours from memory, else (after
/// a restart) the `observedGeneration` of a `Ready=True`.
fn applied_generation(vs: &VaultSecret, last: Option<&LastSync>) -> Option<i64> {
    match last {
        Some(last) => last.generation,
        None => {
            vs.status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| {
                    c.r#type == crate::crd::CONDITION_READY && c.status == ConditionStatus::True
                })?
                .observed_generation
        }
    }
}

/// Nothing to do, decided without any I/O: the spec was applied, the refresh is not due,
/// the stream reported no change of the source since, and the Secret is as last written. What a reconcile triggered by our own Secret write,
/// or a resync, comes to: no vault read, no apiserver request.
pub fn not_due(vs: &VaultSecret, ctx: &Context) -> Option<Action> {
    let uid = vs.metadata.uid.as_deref()?;
    if ctx.changed.since(uid).is_some() {
        return None;
    }
    let last = ctx.last_sync(uid)?;
    if last.generation != vs.metadata.generation || last.target != vs.spec.target.name {
        return None;
    }
    let left = last.next_refresh.checked_duration_since(Instant::now())?;
    if left.is_zero() {
        return None;
    }
    let namespace = vs.namespace()?;
    let secret = ctx
        .secrets
        .get(&ObjectRef::new(&vs.spec.target.name).within(&namespace))?;
    let written_mac = last.status(vs)?.secret_mac.as_deref();
    (secret.owned_by(uid) && Some(secret.mac()) == written_mac).then(|| Action::requeue(left))
}

/// The reconciler given to the Controller.
pub async fn reconcile(vs: Arc<VaultSecret>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = object_key(vs.as_ref());
    let uid = vs.metadata.uid.clone().unwrap_or_default();
    let last = ctx.last_sync(&uid);
    // Our own last write wins over a possibly stale cached status.
    let previous = match &last {
        Some(last) => last.status(&vs).cloned().unwrap_or_default(),
        None => vs.status.clone().unwrap_or_default(),
    };
    let applied = applied_generation(&vs, last.as_ref());
    let generation = vs.metadata.generation;
    let changed_at = ctx.changed.since(&uid);
    match sync(&vs, &ctx, previous.secret_mac.as_deref(), applied).await {
        Ok(synced) => {
            let message = format!(
                "synced version {} of {} into Secret {}",
                synced.version, vs.spec.path, vs.spec.target.name
            );
            // `lastSyncedAt` is when the Secret's data was last written: a refresh that
            // finds nothing new changes no field, so it writes nothing.
            let last_synced_at = match (synced.change, &previous.last_synced_at) {
                (Change::Unchanged, Some(at)) => Some(at.clone()),
                _ => Some(conditions::now()),
            };
            let status = VaultSecretStatus {
                conditions: vec![conditions::ready(
                    &previous.conditions,
                    ConditionStatus::True,
                    reason::SYNCED,
                    message.clone(),
                    generation,
                )],
                synced_version: i64::try_from(synced.version).ok(),
                last_synced_at,
                secret_mac: Some(synced.mac.clone()),
            };
            let cached = vs.status.as_ref() == Some(&status);
            let written = if cached {
                Ok(())
            } else {
                patch_status(&vs, &ctx, &status).await
            };
            let wait =
                schedule::until_next_refresh(synced.schedule, synced.refresh, ctx.epoch.elapsed());
            if written.is_ok() {
                ctx.changed.clear(&uid, synced.read_sent);
                ctx.remember_sync(
                    &uid,
                    LastSync {
                        // Kept until the cache shows it.
                        status: (!cached).then(|| Box::new(status)),
                        generation,
                        target: vs.spec.target.name.clone(),
                        next_refresh: Instant::now() + wait,
                    },
                );
            }
            let event = match synced.change {
                Change::Created => Some((
                    "Created",
                    format!("created Secret {}: {message}", vs.spec.target.name),
                )),
                Change::Updated => Some(("Updated", message)),
                Change::DriftRepaired => Some((
                    "DriftRepaired",
                    format!(
                        "Secret {} was changed outside the operator; restored it",
                        vs.spec.target.name
                    ),
                )),
                Change::Unchanged => None,
            };
            if let Some((reason, note)) = event {
                ctx.event(&vs.object_ref(&()), EventType::Normal, reason, "Sync", note)
                    .await;
            }
            if let Err(e) = written {
                ctx.metrics
                    .reconciled(KIND, started.elapsed(), Some(e.reason()));
                return Err(e);
            }
            if synced.change == Change::Unchanged {
                tracing::debug!(vaultsecret = %key, version = synced.version, "up to date");
            } else {
                tracing::info!(vaultsecret = %key, version = synced.version, change = ?synced.change, "synced");
            }
            ctx.secret_backoff.succeeded(&key);
            ctx.metrics.reconciled(KIND, started.elapsed(), None);
            Ok(Action::requeue(wait))
        }
        Err(e) => {
            tracing::warn!(vaultsecret = %key, reason = e.reason(), error = %e, "sync failed");
            // A change the vault answered for (the secret is gone, unreadable, unrenderable)
            // is handled: the Secret keeps its last value and the status says why. Retrying
            // it with the error backoff would only repeat the answer.
            if let Some(at) = changed_at
                && e.is_final()
            {
                ctx.changed.clear(&uid, at);
            }
            // Keep what the last good sync recorded (SSA would drop omitted fields).
            let status = VaultSecretStatus {
                conditions: vec![conditions::ready(
                    &previous.conditions,
                    ConditionStatus::False,
                    e.reason(),
                    e.to_string(),
                    generation,
                )],
                ..previous.clone()
            };
            if status != previous
                && let Err(se) = patch_status(&vs, &ctx, &status).await
            {
                tracing::warn!(vaultsecret = %key, error = %se, "writing the failure status failed");
            }
            ctx.event(
                &vs.object_ref(&()),
                EventType::Warning,
                e.reason(),
                "Sync",
                e.to_string(),
            )
            .await;
            ctx.metrics
                .reconciled(KIND, started.elapsed(), Some(e.reason()));
            Err(e)
        }
    }
}

/// Exponential per-object backoff.
pub fn error_policy(
    obj: Arc<DeserializeGuard<VaultSecret>>,
    _error: &Error,
    ctx: Arc<Context>,
) -> Action {
    Action::requeue(ctx.secret_backoff.failed(&object_key(obj.as_ref())))
}

/// The Controller's entry point: takes a slot at the fair gate, then reconciles. Without
/// a free slot the object is parked and this ends at once; the gate calls it (the
/// Controller reconciles it again) when its namespace's turn comes.
pub async fn reconcile_guarded(
    obj: Arc<DeserializeGuard<VaultSecret>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    if let Ok(vs) = &obj.0
        && let Some(action) = not_due(vs, &ctx)
    {
        // Called for nothing (another trigger got there first): the slot goes on.
        ctx.gate.forfeit(&namespace, &name);
        return Ok(action);
    }
    let Some(_permit) = ctx.gate.admit(&namespace, &name) else {
        return Ok(Action::await_change());
    };
    // A cold start would GET every target Secret before the watch has listed them.
    let _ = ctx.secrets_ready.clone().wait_for(|ready| *ready).await;
    // Boxed: a reconcile that parks never allocates the work's (large) future.
    Box::pin(reconcile_parsed(obj, ctx, KIND, reconcile)).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        // (previous, current, desired) -> (change, restart)
        let cases = [
            (None, None, "a", Change::Created, false),
            (None, Some("a"), "a", Change::Unchanged, false),
            (None, Some("x"), "a", Change::Updated, false),
            (Some("a"), Some("a"), "a", Change::Unchanged, false),
            (Some("a"), Some("x"), "a", Change::DriftRepaired, false),
            (Some("a"), Some("a"), "b", Change::Updated, true),
            (Some("a"), Some("x"), "b", Change::Updated, true),
            (Some("a"), None, "a", Change::Created, false),
            (Some("a"), None, "b", Change::Created, true),
        ];
        for (prev, cur, want, change, restart) in cases {
            assert_eq!(
                plan(prev, cur, want),
                (change, restart),
                "{prev:?} {cur:?} {want}"
            );
        }
    }
}
