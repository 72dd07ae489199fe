//! Authorization's rows: policies (rules as their JSON wire form), the bindings of
//! policies to identities, and registered identities.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Result;
use super::Slot;
use super::unit_of_work::aggregate_writes;

/// A policy as stored: rules kept as their JSON wire form, compiled by the authz engine.
#[derive(Debug, Clone)]
pub struct PolicyRow {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub rules_json: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct BindingRow {
    pub policy_id: String,
    pub identity_type: String,
    pub identity_id: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct IdentityRow {
    pub id: String,
    pub identity_type: String,
    pub display_name: Option<String>,
    pub created_at: OffsetDateTime,
}

#[async_trait]
pub trait PolicyReads: Send + Sync + 'static {
    async fn get_policy(&self, id: &str) -> Result<Option<PolicyRow>>;
    /// Every policy, by name.
    async fn list_policies(&self) -> Result<Vec<PolicyRow>>;
    /// Every binding, or those of one policy, by policy then identity.
    async fn list_bindings(&self, policy_id: Option<&str>) -> Result<Vec<BindingRow>>;
    /// Every identity, by id.
    async fn list_identities(&self) -> Result<Vec<IdentityRow>>;
    async fn get_identity(&self, id: &str) -> Result<Option<IdentityRow>>;
}

/// Writes to policies, bindings and identities; build them with [`super::UnitOfWork::policies`].
#[derive(Debug)]
pub enum PolicyChange {
    CreatePolicy(PolicyRow),
    UpdatePolicy(PolicyRow),
    DeletePolicy {
        id: String,
    },
    AddBinding(BindingRow),
    DeleteBinding {
        policy_id: String,
        identity_id: String,
    },
    CreateIdentity(IdentityRow),
}

aggregate_writes!(PolicyWrites, policies, Policy(PolicyChange));

impl PolicyWrites<'_> {
    /// Fails the unit with `Conflict` when the name (or id) is taken.
    pub fn create_policy(self, policy: PolicyRow) -> Slot<()> {
        self.push(PolicyChange::CreatePolicy(policy))
    }

    /// Replaces name, description and rules. Yields false when the id is unknown; fails
    /// with `Conflict` when the new name is another policy's.
    pub fn update_policy(self, policy: PolicyRow) -> Slot<bool> {
        self.push(PolicyChange::UpdatePolicy(policy))
    }

    /// Deletes the policy and its bindings. Yields false when the id is unknown.
    pub fn delete_policy(self, id: &str) -> Slot<bool> {
        self.push(PolicyChange::DeletePolicy { id: id.to_owned() })
    }

    /// Fails with `NotFound` when the policy does not exist; binding twice is a no-op.
    pub fn add_binding(self, binding: BindingRow) -> Slot<()> {
        self.push(PolicyChange::AddBinding(binding))
    }

    /// Yields false when that identity was not bound to that policy.
    pub fn delete_binding(self, policy_id: &str, identity_id: &str) -> Slot<bool> {
        self.push(PolicyChange::DeleteBinding {
            policy_id: policy_id.to_owned(),
            identity_id: identity_id.to_owned(),
        })
    }

    /// Fails with `Conflict` when the identity exists.
    pub fn create_identity(self, identity: IdentityRow) -> Slot<()> {
        self.push(PolicyChange::CreateIdentity(identity))
    }
}
