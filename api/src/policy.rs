//! Policies, bindings, identities and the what-if test.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::auth::IdentityType;

/// What a rule grants or denies. `admin` implies every other permission.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Read,
    Write,
    List,
    Delete,
    Rotate,
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::Read,
        Permission::Write,
        Permission::List,
        Permission::Delete,
        Permission::Rotate,
        Permission::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::List => "list",
            Permission::Delete => "delete",
            Permission::Rotate => "rotate",
            Permission::Admin => "admin",
        }
    }

    /// How the permission reads in errors and docs: `secrets:read`, ...
    pub fn scope(self) -> String {
        format!("secrets:{}", self.as_str())
    }

    pub fn parse(s: &str) -> Option<Permission> {
        let s = s.strip_prefix("secrets:").unwrap_or(s);
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Whether a rule grants or denies; a matching deny beats every allow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    #[default]
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// Exact segments, `*` inside one segment, `**` across segments.
    pub path_pattern: String,
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub effect: Effect,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub rules: Vec<PolicyRule>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Body of `POST /v1/policies` and `PUT /v1/policies/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListPoliciesResponse {
    pub policies: Vec<Policy>,
    /// Opaque: pass it as `cursor` to get the next page; absent on the last page.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingInput {
    pub identity_type: IdentityType,
    pub identity_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Binding {
    pub policy_id: String,
    pub identity_type: IdentityType,
    pub identity_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListBindingsResponse {
    pub bindings: Vec<Binding>,
    /// Opaque: pass it as `cursor` to get the next page; absent on the last page.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// Body of `POST /v1/policies/test`: an existing identity's access, or a draft policy's.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyTestRequest {
    /// The identity whose bound policies are evaluated (optional with `policy`).
    #[serde(default)]
    pub identity_id: Option<String>,
    pub path: String,
    pub permission: Permission,
    /// A draft policy evaluated as if bound too (what-if, before saving it).
    #[serde(default)]
    pub policy: Option<PolicyInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MatchedRule {
    /// `draft` for an inline policy.
    pub policy_id: String,
    pub policy_name: String,
    pub rule: PolicyRule,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyTestResponse {
    pub allowed: bool,
    pub matched: Vec<MatchedRule>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Identity {
    pub id: String,
    pub identity_type: IdentityType,
    pub display_name: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Names of the policies bound to this identity (as `whoami` shows them).
    #[serde(default)]
    pub policies: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityInput {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListIdentitiesResponse {
    pub identities: Vec<Identity>,
    /// Opaque: pass it as `cursor` to get the next page; absent on the last page.
    #[serde(default)]
    pub next_cursor: Option<String>,
}
