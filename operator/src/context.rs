//! What every reconcile shares.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder};

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
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub vault_auth: VaultAuth,
    /// Admin vault client for VaultPolicy; `None` disables that controller.
    pub admin: Option<scaivault_client::Client>,
    pub mac_key: MacKey,
    pub secret_backoff: Backoff,
    pub policy_backoff: Backoff,
}

impl Context {
    /// Publishes an event; a failure to do so is logged, never fatal.
    pub async fn event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, reference).await {
            tracing::warn!(error = %e, reason, "publishing an event failed");
        }
    }
}
