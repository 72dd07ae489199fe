//! Policies, bindings and identities: validation, storage, and keeping the engine's index
//! in step with every change.

use std::sync::Arc;

use scaivault_api::ErrorCode;
use scaivault_api::auth::{IdentityType, identity_type_of};
use scaivault_api::limits::{MAX_DESCRIPTION_CHARS, MAX_DISPLAY_NAME_CHARS, MAX_POLICY_NAME_CHARS};
use scaivault_api::policy::{
    Binding, BindingInput, Identity, IdentityInput, MatchedRule, Policy, PolicyInput, PolicyRule,
    PolicyTestRequest, PolicyTestResponse,
};

use super::engine::{CompiledPolicy, Engine, validate_rules};
use crate::crypto::token::{hex, random_bytes};
use crate::error::{Error, Result};
use crate::store::{BindingRow, IdentityRow, PolicyRow, Store, now_millis};

pub struct PolicyService {
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    /// One reload at a time: two overlapping reloads could publish in the opposite order
    /// of their reads, leaving an index from before the later change (a revoked binding
    /// still granting access) until the next change.
    reload_lock: tokio::sync::Mutex<()>,
}

fn policy_not_found(id: &str) -> Error {
    Error::new(ErrorCode::NotFound, format!("no policy with id {id}"))
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_POLICY_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "name must be 1..={MAX_POLICY_NAME_CHARS} characters of [A-Za-z0-9._:-]"
        )))
    }
}

/// A secret path or one of the vault's `sys/...` resource paths.
fn check_resource_path(path: &str) -> Result<()> {
    match scaivault_api::path::validate_secret_path(path) {
        Ok(()) => Ok(()),
        Err(e) if e.is_reserved() => Ok(()),
        Err(e) => Err(Error::new(ErrorCode::InvalidPath, e.to_string())),
    }
}

fn check_input(input: &PolicyInput) -> Result<()> {
    check_name(&input.name)?;
    if input
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(Error::invalid(format!(
            "description is longer than {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    validate_rules(&input.rules).map(|_| ())
}

fn policy_of(row: PolicyRow) -> Result<Policy> {
    let rules: Vec<PolicyRule> = serde_json::from_str(&row.rules_json).map_err(Error::internal)?;
    Ok(Policy {
        id: row.id,
        name: row.name,
        description: row.description,
        rules,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn binding_of(row: BindingRow) -> Option<Binding> {
    Some(Binding {
        policy_id: row.policy_id,
        identity_type: IdentityType::parse(&row.identity_type)?,
        identity_id: row.identity_id,
        created_at: row.created_at,
    })
}

fn conflict_as(name: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| {
        if e.code == ErrorCode::Conflict {
            Error::new(
                ErrorCode::Conflict,
                format!("a policy named {name} already exists"),
            )
        } else {
            e
        }
    }
}

impl PolicyService {
    pub fn new(store: Arc<dyn Store>, engine: Arc<Engine>) -> Self {
        PolicyService {
            store,
            engine,
            reload_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Reloads every policy and binding into the engine's index.
    pub async fn reload(&self) -> Result<()> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let policies = self.store.list_policies().await?;
        let bindings = self.store.list_bindings(None).await?;
        self.engine.rebuild(&policies, &bindings);
        Ok(())
    }

    pub async fn create(&self, input: PolicyInput) -> Result<Policy> {
        check_input(&input)?;
        let now = now_millis();
        let id = format!(
            "pol_{}",
            hex(random_bytes::<8>().map_err(Error::internal)?.as_ref())
        );
        let row = PolicyRow {
            id,
            name: input.name.clone(),
            description: input.description,
            rules_json: serde_json::to_string(&input.rules).map_err(Error::internal)?,
            created_at: now,
            updated_at: now,
        };
        self.store
            .apply(|u| u.policies().create_policy(row.clone()))
            .await
            .map_err(Error::from)
            .map_err(conflict_as(&input.name))?;
        self.reload().await?;
        policy_of(row)
    }

    pub async fn get(&self, id: &str) -> Result<Policy> {
        policy_of(
            self.store
                .get_policy(id)
                .await?
                .ok_or_else(|| policy_not_found(id))?,
        )
    }

    pub async fn list(&self) -> Result<Vec<Policy>> {
        self.store
            .list_policies()
            .await?
            .into_iter()
            .map(policy_of)
            .collect()
    }

    /// Policies with at least one rule whose pattern matches `path`.
    pub async fn list_for_path(&self, path: &str) -> Result<Vec<Policy>> {
        check_resource_path(path)?;
        let mut out = Vec::new();
        for policy in self.list().await? {
            let compiled = CompiledPolicy::compile(&policy.id, &policy.name, &policy.rules)?;
            if compiled.applies_to(path) {
                out.push(policy);
            }
        }
        Ok(out)
    }

    pub async fn update(&self, id: &str, input: PolicyInput) -> Result<Policy> {
        check_input(&input)?;
        let existing = self
            .store
            .get_policy(id)
            .await?
            .ok_or_else(|| policy_not_found(id))?;
        let row = PolicyRow {
            id: id.to_owned(),
            name: input.name.clone(),
            description: input.description,
            rules_json: serde_json::to_string(&input.rules).map_err(Error::internal)?,
            created_at: existing.created_at,
            updated_at: now_millis(),
        };
        let updated = self
            .store
            .apply(|u| u.policies().update_policy(row.clone()))
            .await
            .map_err(Error::from)
            .map_err(conflict_as(&input.name))?;
        if !updated {
            return Err(policy_not_found(id));
        }
        self.reload().await?;
        policy_of(row)
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        if !self.store.apply(|u| u.policies().delete_policy(id)).await? {
            return Err(policy_not_found(id));
        }
        self.reload().await
    }

    pub async fn bind(&self, policy_id: &str, input: BindingInput) -> Result<Binding> {
        let actual =
            identity_type_of(&input.identity_id).map_err(|e| Error::invalid(e.to_string()))?;
        if actual != input.identity_type {
            return Err(Error::invalid(format!(
                "identity_type {} does not match identity_id {} (which is a {})",
                input.identity_type.as_str(),
                input.identity_id,
                actual.as_str()
            )));
        }
        let row = BindingRow {
            policy_id: policy_id.to_owned(),
            identity_type: actual.as_str().to_owned(),
            identity_id: input.identity_id,
            created_at: now_millis(),
        };
        self.store
            .apply(|u| u.policies().add_binding(row.clone()))
            .await
            .map_err(|e| match e {
                crate::store::StoreError::NotFound => policy_not_found(policy_id),
                other => other.into(),
            })?;
        self.reload().await?;
        // Binding twice is a no-op: answer with the binding as stored.
        let stored = self
            .store
            .list_bindings(Some(policy_id))
            .await?
            .into_iter()
            .find(|b| b.identity_id == row.identity_id)
            .unwrap_or(row);
        binding_of(stored).ok_or_else(|| Error::internal("binding type"))
    }

    pub async fn bindings(&self, policy_id: &str) -> Result<Vec<Binding>> {
        self.store
            .get_policy(policy_id)
            .await?
            .ok_or_else(|| policy_not_found(policy_id))?;
        Ok(self
            .store
            .list_bindings(Some(policy_id))
            .await?
            .into_iter()
            .filter_map(binding_of)
            .collect())
    }

    pub async fn unbind(&self, policy_id: &str, identity_id: &str) -> Result<()> {
        if !self
            .store
            .apply(|u| u.policies().delete_binding(policy_id, identity_id))
            .await?
        {
            return Err(Error::new(
                ErrorCode::NotFound,
                format!("{identity_id} is not bound to policy {policy_id}"),
            ));
        }
        self.reload().await
    }

    /// What-if: would `identity_id` (with an optional draft policy) hold `permission` on `path`?
    pub async fn test(&self, request: PolicyTestRequest) -> Result<PolicyTestResponse> {
        if request.identity_id.is_none() && request.policy.is_none() {
            return Err(Error::invalid("give identity_id, a draft policy, or both"));
        }
        if let Some(id) = &request.identity_id {
            identity_type_of(id).map_err(|e| Error::invalid(e.to_string()))?;
        }
        check_resource_path(&request.path)?;
        let draft = match &request.policy {
            Some(input) => {
                check_input(input)?;
                Some(CompiledPolicy::compile("draft", &input.name, &input.rules)?)
            }
            None => None,
        };
        let decision = self.engine.decide(
            request.identity_id.as_deref(),
            draft.as_ref(),
            request.permission,
            &request.path,
        );
        Ok(PolicyTestResponse {
            allowed: decision.allowed,
            matched: decision
                .matched
                .into_iter()
                .map(|m| MatchedRule {
                    policy_id: m.policy_id,
                    policy_name: m.policy_name,
                    rule: m.rule,
                })
                .collect(),
            reason: decision.reason,
        })
    }

    pub async fn create_identity(&self, input: IdentityInput) -> Result<Identity> {
        let identity_type =
            identity_type_of(&input.id).map_err(|e| Error::invalid(e.to_string()))?;
        if input
            .display_name
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DISPLAY_NAME_CHARS)
        {
            return Err(Error::invalid(format!(
                "display_name is longer than {MAX_DISPLAY_NAME_CHARS} characters"
            )));
        }
        let row = IdentityRow {
            id: input.id.clone(),
            identity_type: identity_type.as_str().to_owned(),
            display_name: input.display_name,
            created_at: now_millis(),
        };
        self.store
            .apply(|u| u.policies().create_identity(row.clone()))
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict => Error::new(
                    ErrorCode::Conflict,
                    format!("identity {} already exists", input.id),
                ),
                other => other.into(),
            })?;
        Ok(self.identity_of(row, identity_type))
    }

    fn identity_of(&self, row: IdentityRow, identity_type: IdentityType) -> Identity {
        Identity {
            policies: self.engine.policy_names(&row.id),
            id: row.id,
            identity_type,
            display_name: row.display_name,
            created_at: row.created_at,
        }
    }

    pub async fn identities(&self) -> Result<Vec<Identity>> {
        Ok(self
            .store
            .list_identities()
            .await?
            .into_iter()
            .filter_map(|row| {
                IdentityType::parse(&row.identity_type).map(|t| self.identity_of(row, t))
            })
            .collect())
    }

    pub async fn identity(&self, id: &str) -> Result<Identity> {
        let row = self
            .store
            .get_identity(id)
            .await?
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no identity {id}")))?;
        let t = IdentityType::parse(&row.identity_type)
            .ok_or_else(|| Error::internal("identity type"))?;
        Ok(self.identity_of(row, t))
    }
}
