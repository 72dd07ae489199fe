//! The caller, allowed what the request's declared operation needs.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::SharedState;
use super::operations::{Guard, Operation, Resolved, Resource};
use crate::auth::Caller;
use crate::authz::{Permission, Scope, resource};
use crate::error::{Error, Result};

/// An authenticated caller and the operation of the request. Extracting it checks the
/// declared permission on a declared resource (the secret path of the URI or a `sys/...`
/// resource) before the handler runs; resources only the handler can name (the paths of
/// a batch, the listed paths, another token) are checked with the methods below, always
/// with the declared permission.
pub struct Authorized {
    pub caller: Arc<Caller>,
    pub op: &'static Operation,
    resolved: Resolved,
}

impl Authorized {
    /// The secret path of the URI (operations on `{path}`); empty for others.
    pub fn path(&self) -> &str {
        self.resolved.tail.as_deref().unwrap_or_default()
    }

    /// The request is the declared operation `op` (for handlers that serve several).
    pub fn is(&self, op: &Operation) -> bool {
        self.resolved.is(op)
    }

    fn permission(&self) -> Result<Permission> {
        self.op
            .permission()
            .ok_or_else(|| Error::internal(format!("{} declares no permission", self.op.id)))
    }

    /// One of the secret paths the request names (a batch item).
    pub fn authorize_item(&self, state: &SharedState, path: &str) -> Result<()> {
        state.authorize(&self.caller, self.permission()?, path)
    }

    /// The secret paths the caller may list, to narrow a listing query.
    pub fn scope(&self, state: &SharedState) -> Result<Scope> {
        Ok(state.vault.authz.scope(&self.caller, self.permission()?))
    }

    /// A token by accessor: any token may act on itself, others need the permission.
    pub fn authorize_token(&self, state: &SharedState, accessor: &str) -> Result<()> {
        if accessor == self.caller.accessor {
            return Ok(());
        }
        state.authorize(&self.caller, self.permission()?, resource::TOKENS)
    }
}

impl FromRequestParts<SharedState> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Response> {
        // A wildcard route reached with an action word its method does not have.
        let Some(resolved) = parts.extensions.get::<Resolved>().cloned() else {
            return Err(method_not_allowed(parts));
        };
        Self::check(parts, state, resolved).map_err(IntoResponse::into_response)
    }
}

fn method_not_allowed(parts: &Parts) -> Response {
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    super::error::method_not_allowed_at(route.unwrap_or_default(), parts.uri.path())
}

impl Authorized {
    fn check(parts: &Parts, state: &SharedState, resolved: Resolved) -> Result<Self> {
        let caller = parts
            .extensions
            .get::<Arc<Caller>>()
            .cloned()
            .ok_or_else(|| Error::internal("a handler ran without an authenticated caller"))?;
        let op = resolved.op;
        match op.guard {
            Guard::Permission(p, Resource::SecretPath) => {
                state.authorize(&caller, p, resolved.tail.as_deref().unwrap_or_default())?;
            }
            Guard::Permission(p, Resource::Sys(r)) => state.authorize(&caller, p, r)?,
            // Checked by the handler, which alone knows the resources.
            Guard::Permission(
                _,
                Resource::EachPath | Resource::ListedPaths | Resource::OtherTokens,
            ) => {}
            Guard::Token => {}
            Guard::Public | Guard::Credential(_) => {
                return Err(Error::internal(format!(
                    "{} needs no token but its handler asks for one",
                    op.id
                )));
            }
        }
        Ok(Authorized {
            caller,
            op,
            resolved,
        })
    }
}
