//! Authorization. Until policies exist (their own capability), only the root identity may
//! act: every other token is denied everything but `whoami`, so issuing tokens early can
//! never widen access by accident.

use scaivault_api::ErrorCode;

use crate::auth::Caller;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Read,
    Write,
    List,
    Delete,
    Rotate,
    Admin,
}

impl Permission {
    /// How the permission reads in errors and docs.
    pub fn scope(self) -> &'static str {
        match self {
            Permission::Read => "secrets:read",
            Permission::Write => "secrets:write",
            Permission::List => "secrets:list",
            Permission::Delete => "secrets:delete",
            Permission::Rotate => "secrets:rotate",
            Permission::Admin => "secrets:admin",
        }
    }
}

/// Resource paths of the vault's own endpoints, guarded like secrets.
pub mod resource {
    pub const TOKENS: &str = "sys/tokens";
    pub const KEYS: &str = "sys/keys";
    pub const HEALTH: &str = "sys/health";
}

/// Decides whether `caller` holds `permission` on `path`. The message is identical for
/// paths that exist and paths that do not, so a denial reveals nothing.
pub fn authorize(caller: &Caller, permission: Permission, path: &str) -> Result<()> {
    if caller.is_root() {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::PermissionDenied,
        format!(
            "permission denied: {} on {path} requires {}",
            caller.identity_id,
            permission.scope()
        ),
    ))
}
