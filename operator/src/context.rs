//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;

use crate::crd::VaultSecretStatus;
use crate::shared_reads::SharedReads;

use crate::backoff::Backoff;
use crate::mac::MacKey;
use crate::metrics::Metrics;
use crate::vault_auth::VaultAuth;

/// The fixed server-side-apply field manager of every write.
pub const FIELD_MANAGER: &str = "scaivault-operator";
/// Label on every Secret the operator writes; the owned-Secret watch selects on it so
/// the operator never caches the cluster's other Secrets.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "scaivault-operator";

pub struct Context {
    pub client: Client,
    pub events: crate::events::Events,
    pub metrics: Arc<Metrics>,
    pub vault_auth: VaultAuth,
    /// Admin vault client for VaultPolicy; `None` disables that controller.
    pub admin: Option<crate::admin::AdminClient>,
    /// Namespaces whose VaultPolicies reach the vault (`--policy-namespaces`).
    pub policy_namespaces: crate::config::NamespaceFilter,
    pub mac_key: Arc<MacKey>,
    pub secret_backoff: Backoff,
    pub policy_backoff: Backoff,
    /// What this process last wrote to each VaultSecret's status (by uid). The
    /// reflector's copy can lag behind our own status write (a reconcile triggered by
    /// the Secret we just applied may run before the status event arrives); deciding a
    /// rollout restart on that stale MAC would restart twice.
    pub last_synced: Mutex<HashMap<String, LastSync>>,
    /// Bounds VaultSecret work and serves namespaces in turn.
    pub gate: crate::fair::FairGate,
    /// The owned Secrets as the watch sees them, slimmed to what a reconcile reads, the
    /// values to their MAC (`owned_secret`): the target is observed here, not by a GET
    /// per refresh.
    pub secrets: Store<crate::owned_secret::OwnedSecret>,
    /// Turns true once `secrets` holds the first full list. (Many reconciles wait for it:
    /// `Store::wait_until_ready` wakes only one of several concurrent waiters.)
    pub secrets_ready: tokio::sync::watch::Receiver<bool>,
    /// Vault reads shared by VaultSecrets naming the same path.
    pub reads: SharedReads,
    /// VaultSecrets whose source the event stream reported changed, until synced.
    pub changed: crate::changed::Changed,
    /// Origin of the refresh grid (`schedule::until_next_refresh`).
    pub epoch: Instant,
}

/// What the last successful sync of a VaultSecret left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastSync {
    /// The status as written, while the cache may not show it yet; `None` once the
    /// cached VaultSecret held exactly this status (then the cache's copy is the one:
    /// 10,000 copies of a status are a few MiB). Boxed: the map of these is sized for
    /// every VaultSecret, most of them `None`.
    pub status: Option<Box<VaultSecretStatus>>,
    /// The generation whose spec was applied.
    pub generation: Option<i64>,
    pub target: String,
    /// When the vault is read again.
    pub next_refresh: Instant,
}

impl LastSync {
    /// The status last written for `vs`: ours, or the cache's once it showed ours.
    pub fn status<'a>(&'a self, vs: &'a crate::crd::VaultSecret) -> Option<&'a VaultSecretStatus> {
        self.status.as_deref().or(vs.status.as_ref())
    }
}

impl Context {
    /// An object the operator cannot parse (say, written for a newer CRD version): say
    /// so on the object and skip it, instead of failing the whole watch.
    pub async fn report_invalid<K: kube::Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        kind: &'static str,
        error: &str,
    ) {
        let meta = obj.meta();
        tracing::warn!(
            kind,
            namespace = meta.namespace.as_deref().unwrap_or_default(),
            name = meta.name.as_deref().unwrap_or_default(),
            error,
            "skipping an object that does not parse"
        );
        self.metrics
            .reconciled(kind, std::time::Duration::ZERO, Some("InvalidObject"));
        self.event(
            &obj.object_ref(&()),
            EventType::Warning,
            "InvalidObject",
            "Parse",
            format!("the operator cannot read this object: {error}"),
        )
        .await;
    }

    pub fn last_sync(&self, uid: &str) -> Option<LastSync> {
        self.last_synced.lock().ok()?.get(uid).cloned()
    }

    pub fn remember_sync(&self, uid: &str, sync: LastSync) {
        if let Ok(mut map) = self.last_synced.lock() {
            map.insert(uid.to_owned(), sync);
        }
    }

    /// Publishes an event; a failure to do so is logged, never fatal.
    pub async fn event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        if let Err(e) = self
            .events
            .publish(reference, type_, reason, action, note)
            .await
        {
            tracing::warn!(error = %e, reason, "publishing an event failed");
        }
    }
}

/// `namespace/name`: the key of an object's backoff.
pub fn object_key<K: kube::ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The Controller's entry point for any of our kinds: objects that do not parse are
/// reported and skipped (linkerd's `DeserializeGuard` pattern), the rest reconciled.
pub async fn reconcile_parsed<K, E, Fut>(
    obj: Arc<kube::core::DeserializeGuard<K>>,
    ctx: Arc<Context>,
    kind: &'static str,
    reconcile: impl FnOnce(Arc<K>, Arc<Context>) -> Fut,
) -> Result<kube::runtime::controller::Action, E>
where
    K: kube::Resource<DynamicType = ()> + Clone,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, E>>,
{
    match &obj.0 {
        Ok(parsed) => reconcile(Arc::new(parsed.clone()), ctx).await,
        Err(invalid) => {
            ctx.report_invalid(obj.as_ref(), kind, &invalid.error).await;
            Ok(kube::runtime::controller::Action::await_change())
        }
    }
}
