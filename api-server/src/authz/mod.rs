//! Authorization: policies of `{path_pattern, permissions, effect}` rules bound to
//! identities. Deny beats allow; `admin` implies every permission; the root identity may
//! do everything.
//!
//! Everything is a path: secrets at their own path, the vault's own resources under
//! reserved `sys/...` paths ([`resource`]), so one engine guards all of it.
//!
//! Patterns are compiled once into an index keyed by identity, rebuilt whenever a policy
//! or binding changes; a request evaluates only the policies bound to its caller.

mod engine;
mod policies;

pub use engine::{Decision, Engine, Matched, Scope, validate_rules};
pub use policies::PolicyService;
pub use scaivault_api::policy::Permission;

/// Resource paths of the vault's own endpoints, guarded like secrets.
pub mod resource {
    pub const POLICIES: &str = "sys/policies";
    pub const IDENTITIES: &str = "sys/identities";
    pub const TOKENS: &str = "sys/tokens";
    pub const KEYS: &str = "sys/keys";
    pub const HEALTH: &str = "sys/health";
    pub const AUDIT: &str = "sys/audit";
    pub const WEBHOOKS: &str = "sys/webhooks";
}
