//! The VaultPolicy controller: a vault policy and its bindings, managed from Kubernetes
//! with the operator's admin token; the finalizer `scaivault.io/policy` removes them
//! from the vault before the object goes away.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::{Api, Resource, ResourceExt};
use scaivault_client::api::policy::{BindingInput, Policy, PolicyInput, PolicyRule as ApiRule};
use serde_json::json;

use crate::conditions::{self, reason};
use crate::context::{Context, FIELD_MANAGER, object_key, reconcile_parsed};
use crate::crd::{ConditionStatus, IdentityType, VaultPolicy, VaultPolicySpec, VaultPolicyStatus};

pub const KIND: &str = "VaultPolicy";
pub const FINALIZER: &str = "scaivault.io/policy";
/// Marks a vault policy as managed by one VaultPolicy object (its uid), so the operator
/// never takes over or deletes a policy someone else made under the same name.
const OWNER_MARKER: &str = "managed by scaivault-operator for VaultPolicy uid=";
const REASON_NO_ADMIN: &str = "NoAdminToken";
const REASON_CONFLICT: &str = "PolicyConflict";
const REASON_NAMESPACE: &str = "NamespaceNotAllowed";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the operator has no admin vault token (--vault-token-file), so it cannot manage policies"
    )]
    NoAdminToken,
    #[error("{0}")]
    AdminToken(String),
    #[error(
        "VaultPolicies are only put into the vault from the namespaces in the operator's \
         --policy-namespaces ({allowed}); {namespace} is not one of them"
    )]
    NamespaceNotAllowed { namespace: String, allowed: String },
    #[error(
        "a vault policy named {name:?} exists and is not managed by this VaultPolicy; pick another spec.name"
    )]
    Conflict { name: String },
    #[error("{what}: {source}")]
    Vault {
        what: String,
        #[source]
        source: scaivault_client::Error,
    },
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("invalid object: {0}")]
    Invalid(String),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NoAdminToken | Error::AdminToken(_) => REASON_NO_ADMIN,
            Error::Conflict { .. } => REASON_CONFLICT,
            Error::NamespaceNotAllowed { .. } => REASON_NAMESPACE,
            Error::Vault { .. } => reason::VAULT_ERROR,
            Error::Kube { .. } => reason::KUBERNETES_ERROR,
            Error::Invalid(_) => reason::INVALID_SPEC,
            Error::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => {
                    inner.reason()
                }
                _ => reason::KUBERNETES_ERROR,
            },
        }
    }
}

fn vault_err(what: impl Into<String>) -> impl FnOnce(scaivault_client::Error) -> Error {
    let what = what.into();
    move |source| Error::Vault { what, source }
}

/// The vault policy name: `spec.name`, or `<namespace>-<metadata.name>`.
pub fn policy_name(namespace: &str, name: &str, spec: &VaultPolicySpec) -> String {
    spec.name
        .clone()
        .unwrap_or_else(|| format!("{namespace}-{name}"))
}

/// The policy document the spec asks for (pure).
pub fn desired_policy(name: String, uid: &str, spec: &VaultPolicySpec) -> PolicyInput {
    PolicyInput {
        name,
        description: Some(format!("{OWNER_MARKER}{uid}")),
        rules: spec
            .rules
            .iter()
            .map(|r| ApiRule {
                path_pattern: r.path_pattern.clone(),
                permissions: r.permissions.clone(),
                effect: r.effect.unwrap_or_default(),
            })
            .collect(),
    }
}

/// Identity ids the policy should be bound to: `bindings` plus `serviceAccounts` as
/// `k8s:<namespace>/<name>` (pure).
pub fn desired_bindings(spec: &VaultPolicySpec) -> BTreeMap<String, IdentityType> {
    spec.bindings
        .iter()
        .map(|b| (b.identity_id.clone(), b.identity_type))
        .chain(spec.service_accounts.iter().map(|sa| {
            (
                format!("k8s:{}/{}", sa.namespace, sa.name),
                IdentityType::Kubernetes,
            )
        }))
        .collect()
}

fn ours(policy: &Policy, uid: &str) -> bool {
    policy.description.as_deref() == Some(&format!("{OWNER_MARKER}{uid}"))
}

/// Finds the policy this object manages: by `status.policyId`, else by name.
async fn find(
    admin: &scaivault_client::Client,
    vp: &VaultPolicy,
    name: &str,
    uid: &str,
) -> Result<Option<Policy>, Error> {
    if let Some(id) = vp.status.as_ref().and_then(|s| s.policy_id.as_deref()) {
        match admin.get_policy(id).await {
            Ok(p) if ours(&p, uid) => return Ok(Some(p)),
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(vault_err(format!("reading policy {id}"))(e)),
        }
    }
    let all = admin
        .list_policies(None)
        .await
        .map_err(vault_err("listing policies"))?;
    match all.policies.into_iter().find(|p| p.name == name) {
        Some(p) if ours(&p, uid) => Ok(Some(p)),
        Some(_) => Err(Error::Conflict {
            name: name.to_owned(),
        }),
        None => Ok(None),
    }
}

struct Applied {
    id: String,
    name: String,
    rules: usize,
    bindings: usize,
}

/// What both apply and cleanup work with: the admin client and the object's identity.
struct Target {
    admin: scaivault_client::Client,
    uid: String,
    /// The vault policy's name.
    name: String,
}

fn target(vp: &VaultPolicy, namespace: &str, ctx: &Context) -> Result<Target, Error> {
    let admin = ctx
        .admin
        .as_ref()
        .ok_or(Error::NoAdminToken)?
        .client()
        .map_err(Error::AdminToken)?;
    let uid = vp
        .metadata
        .uid
        .clone()
        .ok_or_else(|| Error::Invalid("no uid".into()))?;
    let name = policy_name(namespace, &vp.name_any(), &vp.spec);
    Ok(Target { admin, uid, name })
}

fn namespace_of(vp: &VaultPolicy) -> Result<String, Error> {
    vp.namespace()
        .ok_or_else(|| Error::Invalid("not namespaced".into()))
}

async fn apply(vp: &VaultPolicy, ctx: &Context) -> Result<Applied, Error> {
    let namespace = namespace_of(vp)?;
    // Checked before anything reaches the vault: a policy can grant any identity any path.
    if !ctx.policy_namespaces.allows(&namespace) {
        return Err(Error::NamespaceNotAllowed {
            namespace,
            allowed: ctx.policy_namespaces.to_string(),
        });
    }
    let Target { admin, uid, name } = target(vp, &namespace, ctx)?;
    let admin = &admin;
    let input = desired_policy(name.clone(), &uid, &vp.spec);
    let policy = match find(admin, vp, &name, &uid).await? {
        Some(p) if p.name == input.name && p.rules == input.rules => p,
        Some(p) => admin
            .update_policy(&p.id, &input)
            .await
            .map_err(vault_err(format!("updating policy {name}")))?,
        None => admin
            .create_policy(&input)
            .await
            .map_err(vault_err(format!("creating policy {name}")))?,
    };
    let want = desired_bindings(&vp.spec);
    let have: BTreeSet<String> = admin
        .policy_bindings(&policy.id)
        .await
        .map_err(vault_err(format!("listing the bindings of policy {name}")))?
        .bindings
        .into_iter()
        .map(|b| b.identity_id)
        .collect();
    for (id, ty) in &want {
        if !have.contains(id) {
            let input = BindingInput {
                identity_type: *ty,
                identity_id: id.clone(),
            };
            admin
                .bind_policy_with(&policy.id, &input)
                .await
                .map_err(vault_err(format!("binding policy {name} to {id}")))?;
        }
    }
    for id in have.iter().filter(|id| !want.contains_key(*id)) {
        match admin.unbind_policy(&policy.id, id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(vault_err(format!("unbinding policy {name} from {id}"))(e)),
        }
    }
    Ok(Applied {
        id: policy.id,
        name,
        rules: input.rules.len(),
        bindings: want.len(),
    })
}

async fn cleanup(vp: &VaultPolicy, ctx: &Context) -> Result<(), Error> {
    let namespace = namespace_of(vp)?;
    let Target { admin, uid, name } = target(vp, &namespace, ctx)?;
    let admin = &admin;
    // A name taken by someone else's policy is not ours to delete: nothing to clean up.
    let policy = match find(admin, vp, &name, &uid).await {
        Ok(p) => p,
        Err(Error::Conflict { .. }) => None,
        Err(e) => return Err(e),
    };
    if let Some(p) = policy {
        match admin.delete_policy(&p.id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(vault_err(format!("deleting policy {name}"))(e)),
        }
        ctx.event(
            &vp.object_ref(&()),
            EventType::Normal,
            "Deleted",
            "Cleanup",
            format!("deleted vault policy {name} ({}) and its bindings", p.id),
        )
        .await;
    }
    Ok(())
}

async fn patch_status(
    vp: &VaultPolicy,
    ctx: &Context,
    status: &VaultPolicyStatus,
) -> Result<(), Error> {
    let (Some(namespace), Some(name)) = (vp.namespace(), vp.metadata.name.clone()) else {
        return Ok(());
    };
    let api: Api<VaultPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = json!({"apiVersion": VaultPolicy::api_version(&()), "kind": KIND, "status": status});
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| Error::Kube {
        what: format!("writing the status of VaultPolicy {name}"),
        source,
    })?;
    Ok(())
}

async fn apply_and_report(vp: Arc<VaultPolicy>, ctx: &Context) -> Result<Action, Error> {
    let previous = vp.status.clone().unwrap_or_default();
    match apply(&vp, ctx).await {
        Ok(applied) => {
            let message = format!(
                "vault policy {} ({}) has {} rules and {} bindings",
                applied.name, applied.id, applied.rules, applied.bindings
            );
            let status = VaultPolicyStatus {
                policy_id: Some(applied.id),
                conditions: vec![conditions::ready(
                    &previous.conditions,
                    ConditionStatus::True,
                    reason::RECONCILED,
                    message.clone(),
                    vp.metadata.generation,
                )],
            };
            // Written only when it changed: an identical status keeps the object (and
            // the watch) quiet.
            if status != previous {
                patch_status(&vp, ctx, &status).await?;
                ctx.event(
                    &vp.object_ref(&()),
                    EventType::Normal,
                    reason::RECONCILED,
                    "Reconcile",
                    message,
                )
                .await;
            }
            // Re-check now and then: someone may edit the policy in the vault directly.
            Ok(Action::requeue(crate::schedule::jitter(
                std::time::Duration::from_secs(600),
            )))
        }
        Err(e) => {
            let status = VaultPolicyStatus {
                conditions: vec![conditions::ready(
                    &previous.conditions,
                    ConditionStatus::False,
                    e.reason(),
                    e.to_string(),
                    vp.metadata.generation,
                )],
                ..previous.clone()
            };
            if status != previous
                && let Err(se) = patch_status(&vp, ctx, &status).await
            {
                tracing::warn!(error = %se, "writing the failure status failed");
            }
            Err(e)
        }
    }
}

pub async fn reconcile(vp: Arc<VaultPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = object_key(vp.as_ref());
    let namespace = vp.namespace().unwrap_or_default();
    let api: Api<VaultPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let reference = vp.object_ref(&());
    let result = finalizer::finalizer(&api, FINALIZER, vp, |event| async {
        match event {
            Finalizer::Apply(vp) => apply_and_report(vp, &ctx).await,
            Finalizer::Cleanup(vp) => cleanup(&vp, &ctx).await.map(|()| Action::await_change()),
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    match &result {
        Ok(_) => {
            tracing::info!(vaultpolicy = %key, "reconciled");
            ctx.policy_backoff.succeeded(&key);
            ctx.metrics.reconciled(KIND, started.elapsed(), None);
        }
        Err(e) => {
            tracing::warn!(vaultpolicy = %key, reason = e.reason(), error = %e, "reconcile failed");
            ctx.event(
                &reference,
                EventType::Warning,
                e.reason(),
                "Reconcile",
                e.to_string(),
            )
            .await;
            ctx.metrics
                .reconciled(KIND, started.elapsed(), Some(e.reason()));
        }
    }
    result
}

/// Exponential per-object backoff.
pub fn error_policy(
    obj: Arc<DeserializeGuard<VaultPolicy>>,
    _error: &Error,
    ctx: Arc<Context>,
) -> Action {
    Action::requeue(ctx.policy_backoff.failed(&object_key(obj.as_ref())))
}

pub async fn reconcile_guarded(
    obj: Arc<DeserializeGuard<VaultPolicy>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    reconcile_parsed(obj, ctx, KIND, reconcile).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::crd::{Effect, Permission, PolicyBinding, PolicyRule, ServiceAccountRef};

    #[test]
    fn desired_state() {
        let spec = VaultPolicySpec {
            name: None,
            rules: vec![PolicyRule {
                path_pattern: "apps/web/**".into(),
                permissions: vec![Permission::Read, Permission::List],
                effect: Some(Effect::Deny),
            }],
            bindings: vec![PolicyBinding {
                identity_type: IdentityType::User,
                identity_id: "user:alice@example.com".into(),
            }],
            service_accounts: vec![ServiceAccountRef {
                namespace: "web".into(),
                name: "api".into(),
            }],
        };
        assert_eq!(policy_name("web", "readers", &spec), "web-readers");
        let p = desired_policy("web-readers".into(), "u1", &spec);
        assert_eq!(p.rules[0].permissions, [Permission::Read, Permission::List]);
        assert_eq!(p.rules[0].effect, Effect::Deny);
        assert_eq!(
            p.description.as_deref(),
            Some("managed by scaivault-operator for VaultPolicy uid=u1")
        );
        let b: Vec<_> = desired_bindings(&spec).into_keys().collect();
        assert_eq!(b, ["k8s:web/api", "user:alice@example.com"]);
    }
}
