//! Keeps `caBundle` of every webhook in one MutatingWebhookConfiguration equal to the CA
//! the injector's certificate chains to: patched by server-side apply under the field
//! manager [`FIELD_MANAGER`] (which then owns only that field), checked again every
//! [`RECHECK`] and at once when the CA changes, so a configuration re-applied without it
//! is repaired.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;

pub const FIELD_MANAGER: &str = "scaivault-injector";
/// How often the configuration is compared with the CA even without a change.
pub const RECHECK: Duration = Duration::from_secs(30);
/// Retry delay while the configuration is missing or the apiserver fails.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("MutatingWebhookConfiguration {0} does not exist (yet)")]
    Missing(String),
    #[error("MutatingWebhookConfiguration {name}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Makes every webhook of `name` carry `ca` (PEM); `Ok(true)` when it had to patch.
pub async fn sync(client: &Client, name: &str, ca: &[u8]) -> Result<bool, Error> {
    let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let kube = |source| Error::Kube {
        name: name.to_owned(),
        source,
    };
    let config = api
        .get_opt(name)
        .await
        .map_err(kube)?
        .ok_or_else(|| Error::Missing(name.to_owned()))?;
    let webhooks = config.webhooks.unwrap_or_default();
    if webhooks
        .iter()
        .all(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(ca))
    {
        return Ok(false);
    }
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    let patch = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": webhooks.iter().map(|w| json!({
            "name": w.name,
            "clientConfig": {"caBundle": bundle},
        })).collect::<Vec<_>>(),
    });
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(kube)?;
    Ok(true)
}

/// Runs [`sync`] for as long as the process lives; `synced` turns true after the first
/// success (the injector is ready only then: before, the apiserver cannot trust it).
pub fn keep_current(
    client: Client,
    name: String,
    mut ca: watch::Receiver<Option<Vec<u8>>>,
    synced: Arc<AtomicBool>,
) {
    tokio::spawn(async move {
        loop {
            let bundle = ca.borrow_and_update().clone();
            let wait = match &bundle {
                None => RECHECK,
                Some(bundle) => match sync(&client, &name, bundle).await {
                    Ok(patched) => {
                        if patched {
                            tracing::info!(config = %name, "caBundle updated");
                        }
                        synced.store(true, Ordering::Release);
                        RECHECK
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot update caBundle; retrying");
                        RETRY
                    }
                },
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = ca.changed() => if changed.is_err() { return },
            }
        }
    });
}
