//! Every operation of the API, declared once.
//!
//! An [`Operation`] says what the router, the authorization check, the audit record and
//! the OpenAPI document need to know about it: method, documented path, who may call it
//! on which resource, its audit action, whether it changes state and its operation id.
//! Routes are registered only through [`Routes::serve`], which takes declarations, so a
//! route cannot exist without one; the middleware resolves each request to its operation
//! once ([`resolve`]) and everything further in reads that.
//!
//! Adding an operation: declare it here and list it in [`OPERATIONS`], write its handler
//! (authorising with [`super::authorize::Authorized`]) with a `#[utoipa::path]` giving
//! `path = operations::X.path` and its bodies, serve it from its module's `routes`, and
//! name the handler in `openapi.rs`. The tests below and in `openapi.rs` fail when one of
//! these is missing.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};
use scaivault_api::path::split_action;

use super::SharedState;
use crate::authz::{Permission, resource};

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    Put,
    Post,
    Patch,
    Delete,
}

impl Verb {
    pub fn of(method: &Method) -> Option<Verb> {
        Some(match *method {
            // HEAD is GET without the body (axum answers it with the GET handler).
            Method::GET | Method::HEAD => Verb::Get,
            Method::PUT => Verb::Put,
            Method::POST => Verb::Post,
            Method::PATCH => Verb::Patch,
            Method::DELETE => Verb::Delete,
            _ => return None,
        })
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Put => MethodFilter::PUT,
            Verb::Post => MethodFilter::POST,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }

    /// As utoipa names it in the document.
    pub fn http_method(self) -> utoipa::openapi::HttpMethod {
        use utoipa::openapi::HttpMethod;
        match self {
            Verb::Get => HttpMethod::Get,
            Verb::Put => HttpMethod::Put,
            Verb::Post => HttpMethod::Post,
            Verb::Patch => HttpMethod::Patch,
            Verb::Delete => HttpMethod::Delete,
        }
    }
}

/// What a permission is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// The secret path in the URI (`{path}`), checked before the handler's body runs.
    SecretPath,
    /// One of the vault's own resources (`sys/...`), checked before the handler's body runs.
    Sys(&'static str),
    /// Each secret path in the request body, checked and reported one by one.
    EachPath,
    /// Only the paths the caller may list: authorisation narrows the query itself.
    ListedPaths,
    /// `sys/tokens`, except that any token may act on itself (logout).
    OtherTokens,
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Anyone; not audited (probes, metrics, the API description).
    Public,
    /// No token: the request carries its own credential (a login). Audited.
    Credential(&'static str),
    /// Any valid token.
    Token,
    /// A valid token whose identity holds the permission on the resource.
    Permission(Permission, Resource),
}

/// One operation of the API.
#[derive(Debug, PartialEq, Eq)]
pub struct Operation {
    /// The OpenAPI `operationId`.
    pub id: &'static str,
    pub verb: Verb,
    /// The path as documented, e.g. `/v1/secrets/{path}/metadata`.
    pub path: &'static str,
    pub guard: Guard,
    /// The audit record's `action` (stable: queries and the cookbook use it).
    pub action: &'static str,
    /// `(query flag, action)`: the action when the query sets the flag to `true`.
    pub flag_action: Option<(&'static str, &'static str)>,
    /// A mutation: its request record is durable before the handler runs, and an
    /// `Idempotency-Key` makes a repeat replay the first answer.
    pub mutates: bool,
    /// What the handler authorises beyond the guard, for the document's `x-scope`.
    pub also: Option<&'static str>,
}

/// Path parameters that may hold `/` (secret paths, identity ids like `k8s:ns/sa`). Each
/// is routed as a wildcard; the only thing allowed after it is one action word.
const MULTI_SEGMENT_PARAMS: &[&str] = &["path", "identity", "identity_id"];

impl Operation {
    const fn new(
        id: &'static str,
        verb: Verb,
        path: &'static str,
        guard: Guard,
        action: &'static str,
        mutates: bool,
    ) -> Self {
        Operation {
            id,
            verb,
            path,
            guard,
            action,
            flag_action: None,
            mutates,
            also: None,
        }
    }

    const fn also(mut self, note: &'static str) -> Self {
        self.also = Some(note);
        self
    }

    const fn with_flag_action(mut self, flag: &'static str, action: &'static str) -> Self {
        self.flag_action = Some((flag, action));
        self
    }

    /// The route the router matches: the documented path up to a multi-segment parameter,
    /// which becomes a wildcard (`/v1/secrets/{*path}`).
    pub fn route(&self) -> String {
        let mut route = String::new();
        for segment in self.path.split('/').skip(1) {
            route.push('/');
            match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) if MULTI_SEGMENT_PARAMS.contains(&name) => {
                    route.push_str(&format!("{{*{name}}}"));
                    break;
                }
                _ => route.push_str(segment),
            }
        }
        route
    }

    /// The action word after a wildcard (`metadata` of `/v1/secrets/{path}/metadata`).
    pub fn action_word(&self) -> Option<&'static str> {
        MULTI_SEGMENT_PARAMS.iter().find_map(|name| {
            let (_, rest) = self.path.split_once(&format!("{{{name}}}/"))?;
            Some(rest)
        })
    }

    /// Whether the operation needs a token (and so is rate limited per identity).
    pub fn needs_token(&self) -> bool {
        matches!(self.guard, Guard::Token | Guard::Permission(..))
    }

    /// The permission the operation is about, if any.
    pub fn permission(&self) -> Option<Permission> {
        match self.guard {
            Guard::Permission(p, _) => Some(p),
            _ => None,
        }
    }

    /// The audit action of a request with this query string.
    pub fn action_for(&self, query: Option<&str>) -> &'static str {
        match self.flag_action {
            Some((flag, action))
                if query.is_some_and(|q| {
                    q.split('&')
                        .any(|kv| kv.split_once('=') == Some((flag, "true")))
                }) =>
            {
                action
            }
            _ => self.action,
        }
    }

    /// Who may call it, as the document's `x-scope` says.
    pub fn scope(&self) -> Option<String> {
        let scope = match self.guard {
            Guard::Public => return None,
            Guard::Credential(credential) => format!("none: {credential}"),
            Guard::Token => "any valid token".to_owned(),
            Guard::Permission(p, Resource::SecretPath) => p.scope(),
            Guard::Permission(p, Resource::Sys(r)) => format!("{} on {r}", p.scope()),
            Guard::Permission(p, Resource::EachPath) => format!("{} (per path)", p.scope()),
            Guard::Permission(p, Resource::ListedPaths) => {
                format!("{} (only paths the caller may list)", p.scope())
            }
            Guard::Permission(p, Resource::OtherTokens) => format!(
                "{} on {}, or the token's own accessor",
                p.scope(),
                resource::TOKENS
            ),
        };
        Some(match self.also {
            Some(also) => format!("{scope}, and {also}"),
            None => scope,
        })
    }
}

// The declarations, one line each (kept unformatted so they read as a table):
// id, method, documented path, guard, audit action, mutates.
#[rustfmt::skip]
mod declared {
    use super::{Operation, Guard, Resource, resource};
    use crate::authz::Permission::{Admin, Delete, List, Read, Rotate, Write};
    use Guard::{Credential, Public, Token};
    use Resource::{EachPath, ListedPaths, OtherTokens, SecretPath};
    use super::Verb::{self, Get, Patch, Post, Put};

    const fn on_secret(p: crate::authz::Permission) -> Guard { Guard::Permission(p, SecretPath) }
    const fn on_sys(p: crate::authz::Permission, r: &'static str) -> Guard { Guard::Permission(p, Resource::Sys(r)) }
    const SECRET: &str = "/v1/secrets/{path}";
    const POLICIES: &str = resource::POLICIES;
    const IDENTITIES: &str = resource::IDENTITIES;
    const AUDIT: &str = resource::AUDIT;
    const WEBHOOKS: &str = resource::WEBHOOKS;
    // Secrets.
    pub static READ_SECRET: Operation = Operation::new("read_secret", Get, SECRET, on_secret(Read), "secrets.read", false);
    pub static READ_METADATA: Operation = Operation::new("read_metadata", Get, "/v1/secrets/{path}/metadata", on_secret(List), "secrets.read_metadata", false);
    pub static LIST_VERSIONS: Operation = Operation::new("list_versions", Get, "/v1/secrets/{path}/versions", on_secret(List), "secrets.versions", false);
    pub static WRITE_SECRET: Operation = Operation::new("write_secret", Put, SECRET, on_secret(Write), "secrets.write", true);
    pub static WRITE_SECRET_POST: Operation = Operation::new("write_secret_post", Post, SECRET, on_secret(Write), "secrets.write", true);
    pub static RESTORE_SECRET: Operation = Operation::new("restore_secret", Post, "/v1/secrets/{path}/restore", on_secret(Delete), "secrets.restore", true);
    pub static ROTATE_SECRET: Operation = Operation::new("rotate_secret", Post, "/v1/secrets/{path}/rotate", on_secret(Rotate), "secrets.rotate", true);
    pub static UPDATE_METADATA: Operation = Operation::new("update_metadata", Patch, "/v1/secrets/{path}/metadata", on_secret(Write), "secrets.update_metadata", true);
    pub static DELETE_SECRET: Operation = Operation::new("delete_secret", Verb::Delete, SECRET, on_secret(Delete), "secrets.delete", true).with_flag_action("destroy", "secrets.destroy");
    pub static LIST_SECRETS: Operation = Operation::new("list_secrets", Get, "/v1/secrets", Guard::Permission(List, ListedPaths), "secrets.list", false);
    pub static BATCH_READ: Operation = Operation::new("batch_read", Post, "/v1/batch/read", Guard::Permission(Read, EachPath), "secrets.read", false);

    pub static ROTATION_DUE: Operation = Operation::new("rotation_due", Get, "/v1/rotation/due", Guard::Permission(List, ListedPaths), "rotation.due", false);

    // Events.
    pub static LIST_EVENTS: Operation = Operation::new("list_events", Get, "/v1/events", Guard::Permission(List, ListedPaths), "events.list", false).also("policies:read for policy.changed events");
    pub static STREAM_EVENTS: Operation = Operation::new("stream_events", Get, "/v1/events/stream", Guard::Permission(List, ListedPaths), "events.stream", false).also("policies:read for policy.changed events");

    // Webhooks.
    pub static CREATE_WEBHOOK: Operation = Operation::new("create_webhook", Post, "/v1/webhooks", on_sys(Admin, WEBHOOKS), "webhooks.create", true);
    pub static LIST_WEBHOOKS: Operation = Operation::new("list_webhooks", Get, "/v1/webhooks", on_sys(Read, WEBHOOKS), "webhooks.list", false);
    pub static GET_WEBHOOK: Operation = Operation::new("get_webhook", Get, "/v1/webhooks/{id}", on_sys(Read, WEBHOOKS), "webhooks.read", false);
    pub static UPDATE_WEBHOOK: Operation = Operation::new("update_webhook", Patch, "/v1/webhooks/{id}", on_sys(Admin, WEBHOOKS), "webhooks.update", true);
    pub static DELETE_WEBHOOK: Operation = Operation::new("delete_webhook", Verb::Delete, "/v1/webhooks/{id}", on_sys(Admin, WEBHOOKS), "webhooks.delete", true);
    pub static TEST_WEBHOOK: Operation = Operation::new("test_webhook", Post, "/v1/webhooks/{id}/test", on_sys(Admin, WEBHOOKS), "webhooks.test", true);
    pub static LIST_DELIVERIES: Operation = Operation::new("list_deliveries", Get, "/v1/webhooks/{id}/deliveries", on_sys(Read, WEBHOOKS), "webhooks.deliveries", false);
    pub static RETRY_DELIVERY: Operation = Operation::new("retry_delivery", Post, "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", on_sys(Admin, WEBHOOKS), "webhooks.retry", true);

    // Auth and tokens.
    pub static WHOAMI: Operation = Operation::new("whoami", Get, "/v1/auth/whoami", Token, "auth.whoami", false);
    pub static CREATE_TOKEN: Operation = Operation::new("create_token", Post, "/v1/auth/tokens", on_sys(Admin, resource::TOKENS), "tokens.create", true);
    pub static LIST_TOKENS: Operation = Operation::new("list_tokens", Get, "/v1/auth/tokens", on_sys(Admin, resource::TOKENS), "tokens.list", false);
    pub static REVOKE_TOKEN: Operation = Operation::new("revoke_token", Verb::Delete, "/v1/auth/tokens/{accessor}", Guard::Permission(Admin, OtherTokens), "tokens.revoke", true);
    pub static KUBERNETES_LOGIN: Operation = Operation::new("kubernetes_login", Post, "/v1/auth/kubernetes/login", Credential("the ServiceAccount token is the credential"), "auth.kubernetes_login", true);

    // The keyring.
    pub static ROTATE_KEY: Operation = Operation::new("rotate_key", Post, "/v1/sys/keys/rotate", on_sys(Admin, resource::KEYS), "keys.rotate", true);
    pub static LIST_KEYS: Operation = Operation::new("list_keys", Get, "/v1/sys/keys", on_sys(Admin, resource::KEYS), "keys.list", false);

    // Policies and identities.
    pub static CREATE_POLICY: Operation = Operation::new("create_policy", Post, "/v1/policies", on_sys(Admin, POLICIES), "policies.create", true);
    pub static LIST_POLICIES: Operation = Operation::new("list_policies", Get, "/v1/policies", on_sys(List, POLICIES), "policies.list", false);
    pub static TEST_POLICY: Operation = Operation::new("test_policy", Post, "/v1/policies/test", on_sys(Read, POLICIES), "policies.test", false);
    pub static GET_POLICY: Operation = Operation::new("get_policy", Get, "/v1/policies/{id}", on_sys(Read, POLICIES), "policies.read", false);
    pub static UPDATE_POLICY: Operation = Operation::new("update_policy", Put, "/v1/policies/{id}", on_sys(Admin, POLICIES), "policies.update", true);
    pub static DELETE_POLICY: Operation = Operation::new("delete_policy", Verb::Delete, "/v1/policies/{id}", on_sys(Admin, POLICIES), "policies.delete", true);
    pub static ADD_BINDING: Operation = Operation::new("add_binding", Post, "/v1/policies/{id}/bindings", on_sys(Admin, POLICIES), "policies.bind", true);
    pub static LIST_BINDINGS: Operation = Operation::new("list_bindings", Get, "/v1/policies/{id}/bindings", on_sys(Read, POLICIES), "policies.bindings", false);
    pub static REMOVE_BINDING: Operation = Operation::new("remove_binding", Verb::Delete, "/v1/policies/{id}/bindings/{identity_id}", on_sys(Admin, POLICIES), "policies.unbind", true);
    pub static CREATE_IDENTITY: Operation = Operation::new("create_identity", Post, "/v1/identities", on_sys(Admin, IDENTITIES), "identities.create", true);
    pub static LIST_IDENTITIES: Operation = Operation::new("list_identities", Get, "/v1/identities", on_sys(List, IDENTITIES), "identities.list", false);
    pub static GET_IDENTITY: Operation = Operation::new("get_identity", Get, "/v1/identities/{identity}", on_sys(Read, IDENTITIES), "identities.read", false);

    // Audit.
    pub static AUDIT_LOGS: Operation = Operation::new("audit_logs", Get, "/v1/audit/logs", on_sys(Read, AUDIT), "audit.logs", false);
    pub static AUDIT_FOR_SECRET: Operation = Operation::new("audit_for_secret", Get, "/v1/audit/secrets/{path}", on_sys(Read, AUDIT), "audit.secrets", false);
    pub static AUDIT_FOR_IDENTITY: Operation = Operation::new("audit_for_identity", Get, "/v1/audit/identities/{identity}", on_sys(Read, AUDIT), "audit.identities", false);
    pub static AUDIT_VERIFY: Operation = Operation::new("audit_verify", Get, "/v1/audit/verify", on_sys(Read, AUDIT), "audit.verify", false);
    pub static AUDIT_HMAC: Operation = Operation::new("audit_hmac", Post, "/v1/audit/hmac", on_sys(Read, AUDIT), "audit.hmac", false);
    pub static AUDIT_EXPORT: Operation = Operation::new("audit_export", Post, "/v1/audit/export", on_sys(Admin, AUDIT), "audit.export", true).also("secrets:read on the credentials secret");
    pub static AUDIT_EXPORT_STATUS: Operation = Operation::new("audit_export_status", Get, "/v1/audit/exports/{id}", on_sys(Read, AUDIT), "audit.exports", false);

    // Health, metrics and the API description.
    pub static HEALTH: Operation = Operation::new("health", Get, "/v1/health", Public, "health.live", false);
    pub static READY: Operation = Operation::new("ready", Get, "/v1/health/ready", Public, "health.ready", false);
    pub static HEALTH_DETAILED: Operation = Operation::new("health_detailed", Get, "/v1/health/detailed", on_sys(Read, resource::HEALTH), "health.detailed", false);
    pub static METRICS: Operation = Operation::new("metrics", Get, "/metrics", Public, "metrics", false);
    pub static OPENAPI: Operation = Operation::new("openapi", Get, "/v1/openapi.json", Public, "openapi", false);
}

pub use declared::*;

/// Every operation; the tests check that the router serves exactly these.
pub static OPERATIONS: &[&Operation] = &[
    &READ_SECRET,
    &READ_METADATA,
    &LIST_VERSIONS,
    &WRITE_SECRET,
    &WRITE_SECRET_POST,
    &RESTORE_SECRET,
    &ROTATE_SECRET,
    &UPDATE_METADATA,
    &DELETE_SECRET,
    &LIST_SECRETS,
    &BATCH_READ,
    &ROTATION_DUE,
    &LIST_EVENTS,
    &STREAM_EVENTS,
    &CREATE_WEBHOOK,
    &LIST_WEBHOOKS,
    &GET_WEBHOOK,
    &UPDATE_WEBHOOK,
    &DELETE_WEBHOOK,
    &TEST_WEBHOOK,
    &LIST_DELIVERIES,
    &RETRY_DELIVERY,
    &WHOAMI,
    &CREATE_TOKEN,
    &LIST_TOKENS,
    &REVOKE_TOKEN,
    &KUBERNETES_LOGIN,
    &ROTATE_KEY,
    &LIST_KEYS,
    &CREATE_POLICY,
    &LIST_POLICIES,
    &TEST_POLICY,
    &GET_POLICY,
    &UPDATE_POLICY,
    &DELETE_POLICY,
    &ADD_BINDING,
    &LIST_BINDINGS,
    &REMOVE_BINDING,
    &CREATE_IDENTITY,
    &LIST_IDENTITIES,
    &GET_IDENTITY,
    &AUDIT_LOGS,
    &AUDIT_FOR_SECRET,
    &AUDIT_FOR_IDENTITY,
    &AUDIT_VERIFY,
    &AUDIT_HMAC,
    &AUDIT_EXPORT,
    &AUDIT_EXPORT_STATUS,
    &HEALTH,
    &READY,
    &HEALTH_DETAILED,
    &METRICS,
    &OPENAPI,
];

/// A request's operation, resolved once by the outermost middleware and kept in the
/// request's extensions.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub op: &'static Operation,
    /// What the wildcard matched, without the action word, percent-decoded: the secret
    /// path of `/v1/secrets/{path}/...`.
    pub tail: Option<String>,
}

impl Resolved {
    pub fn is(&self, op: &Operation) -> bool {
        std::ptr::eq(self.op, op)
    }
}

/// Operations by (method, route): a wildcard route serves several, told apart by the
/// action word after the wildcard.
/// The operations of one axum route, with what `resolve` needs of them worked out once
/// (it runs on every request).
struct RouteOps {
    /// By method: each operation with its action word.
    by_verb: HashMap<Verb, Vec<(&'static Operation, Option<&'static str>)>>,
    /// Whether any operation of the route (for any method) has an action word after the
    /// wildcard: only then is one split off.
    has_actions: bool,
}

static BY_ROUTE: LazyLock<HashMap<String, RouteOps>> = LazyLock::new(|| {
    let mut map: HashMap<String, RouteOps> = HashMap::new();
    for op in OPERATIONS {
        let route = map.entry(op.route()).or_insert_with(|| RouteOps {
            by_verb: HashMap::new(),
            has_actions: false,
        });
        let word = op.action_word();
        route.has_actions |= word.is_some();
        route.by_verb.entry(op.verb).or_default().push((op, word));
    }
    map
});

/// The operation a request is, from its method, the route it matched and its URI path.
/// `None` for a request no operation serves (such as an action word sent with a method
/// that has no operation for it).
pub fn resolve(method: &Method, route: &str, uri_path: &str) -> Option<Resolved> {
    let route_ops = BY_ROUTE.get(route)?;
    let candidates = route_ops.by_verb.get(&Verb::of(method)?)?;
    let Some(prefix) = route.split_once("{*").map(|(prefix, _)| prefix) else {
        return candidates
            .first()
            .map(|(op, _)| Resolved { op, tail: None });
    };
    // The wildcard starts after as many segments as its route has before it.
    let before = prefix.matches('/').count();
    let rest = uri_path.splitn(before + 1, '/').nth(before)?;
    // Only a route with actions after its wildcard (for any method) has action words to
    // split off: `PUT /v1/secrets/a/restore` is the restore action with the wrong method.
    let (tail, word) = if route_ops.has_actions {
        split_action(rest)
    } else {
        (rest, None)
    };
    let (op, _) = candidates.iter().find(|(_, action)| *action == word)?;
    // Decoded after the action word is split off: `a%2Fmetadata` is the path
    // `a/metadata` (which the grammar then refuses), never the metadata of `a`. OpenAPI
    // clients encode `/` in a path parameter; the grammar is checked on the decoded path.
    let tail = percent_encoding::percent_decode_str(tail).decode_utf8_lossy();
    Some(Resolved {
        op,
        tail: Some(tail.into_owned()),
    })
}

/// The methods that have an operation for this path of a route, for the `Allow` header
/// of a 405.
pub fn allowed_methods(route: &str, uri_path: &str) -> Vec<&'static str> {
    [
        (Method::GET, "GET"),
        (Method::PUT, "PUT"),
        (Method::POST, "POST"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
    ]
    .into_iter()
    .filter(|(method, _)| resolve(method, route, uri_path).is_some())
    .map(|(_, name)| name)
    .collect()
}

/// Who a router serves: the guard decides which middleware stack an operation gets.
#[derive(Default)]
pub struct Routes {
    /// Operations that need a token: authentication, rate limit, idempotency.
    pub token: Router<SharedState>,
    /// Logins: audited, no token.
    pub credential: Router<SharedState>,
    /// Probes, metrics, the document: outside the concurrency limit, not audited.
    pub public: Router<SharedState>,
    /// Every operation served so far, for the tests.
    pub served: Vec<&'static Operation>,
}

impl Routes {
    /// Serves `ops` with `handler`. They share one method and one route (a wildcard
    /// handler dispatches on the resolved operation); anything else is a programming
    /// error that the tests catch, and the first operation's route wins.
    pub fn serve<H, T>(mut self, ops: &[&'static Operation], handler: H) -> Self
    where
        H: Handler<T, SharedState>,
        T: 'static,
    {
        let Some(first) = ops.first() else {
            return self;
        };
        let router = match first.guard {
            Guard::Public => &mut self.public,
            Guard::Credential(_) => &mut self.credential,
            Guard::Token | Guard::Permission(..) => &mut self.token,
        };
        *router = std::mem::take(router).route(&first.route(), on(first.verb.filter(), handler));
        self.served.extend_from_slice(ops);
        self
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn routes_come_from_documented_paths() {
        assert_eq!(READ_SECRET.route(), "/v1/secrets/{*path}");
        assert_eq!(READ_METADATA.route(), "/v1/secrets/{*path}");
        assert_eq!(READ_METADATA.action_word(), Some("metadata"));
        assert_eq!(READ_SECRET.action_word(), None);
        assert_eq!(GET_POLICY.route(), "/v1/policies/{id}");
        assert_eq!(
            REMOVE_BINDING.route(),
            "/v1/policies/{id}/bindings/{*identity_id}"
        );
        assert_eq!(GET_IDENTITY.route(), "/v1/identities/{*identity}");
    }

    #[test]
    fn declarations_are_complete_and_distinct() {
        let mut ids = HashSet::new();
        let mut endpoints = HashSet::new();
        for op in OPERATIONS {
            assert!(ids.insert(op.id), "operation id {} twice", op.id);
            assert!(
                endpoints.insert((op.verb, op.path)),
                "{:?} {} declared twice",
                op.verb,
                op.path
            );
            assert!(!op.action.is_empty(), "{} has no audit action", op.id);
            assert!(op.path.starts_with('/'), "{}", op.id);
            if op.path.starts_with("/v1/") && op.guard != Guard::Public {
                assert!(
                    op.scope().is_some(),
                    "{} has neither a permission nor a stated credential",
                    op.id
                );
            }
            // After a wildcard only an action word of the path grammar may follow.
            if let Some(word) = op.action_word() {
                assert!(
                    scaivault_api::path::Action::parse(word).is_some(),
                    "{}: `{word}` is not an action word",
                    op.id
                );
            }
            // A GET never changes anything.
            assert!(!(op.verb == Verb::Get && op.mutates), "{}", op.id);
        }
    }

    #[test]
    fn every_declaration_is_served_once_and_nothing_else() {
        let routes = super::super::routes();
        let served: Vec<&str> = routes.served.iter().map(|op| op.id).collect();
        let unique: HashSet<&str> = served.iter().copied().collect();
        assert_eq!(unique.len(), served.len(), "served twice: {served:?}");
        let declared: HashSet<&str> = OPERATIONS.iter().map(|op| op.id).collect();
        assert_eq!(unique, declared);
    }

    #[test]
    fn requests_resolve_to_their_operation() {
        let get = Method::GET;
        let r = |method: &Method, route: &str, path: &str| {
            resolve(method, route, path).map(|r| (r.op.id, r.tail))
        };
        let secrets = "/v1/secrets/{*path}";
        assert_eq!(
            r(&get, secrets, "/v1/secrets/app/db/metadata"),
            Some(("read_metadata", Some("app/db".into())))
        );
        assert_eq!(
            r(&get, secrets, "/v1/secrets/app/restore/x"),
            Some(("read_secret", Some("app/restore/x".into())))
        );
        assert_eq!(r(&get, secrets, "/v1/secrets/app/restore"), None);
        assert_eq!(r(&Method::PATCH, secrets, "/v1/secrets/app"), None);
        assert_eq!(r(&Method::PUT, secrets, "/v1/secrets/app/restore"), None);
        assert_eq!(
            r(
                &Method::DELETE,
                "/v1/policies/{id}/bindings/{*identity_id}",
                "/v1/policies/pol_1/bindings/k8s:ns/sa"
            ),
            Some(("remove_binding", Some("k8s:ns/sa".into())))
        );
        assert_eq!(
            allowed_methods(secrets, "/v1/secrets/a/metadata"),
            ["GET", "PATCH"]
        );
        assert_eq!(
            r(&get, secrets, "/v1/secrets/app%2Fdb%2Fmetadata"),
            Some(("read_secret", Some("app/db/metadata".into())))
        );
        assert_eq!(
            r(&Method::POST, secrets, "/v1/secrets/app/rotate").map(|r| r.0),
            Some("rotate_secret")
        );
        assert_eq!(
            r(&get, "/v1/policies/{id}", "/v1/policies/pol_1").map(|r| r.0),
            Some("get_policy")
        );
        assert_eq!(
            r(&Method::HEAD, "/v1/policies/{id}", "/v1/policies/x").map(|r| r.0),
            Some("get_policy")
        );
        assert_eq!(
            r(&Method::OPTIONS, "/v1/policies/{id}", "/v1/policies/x"),
            None
        );
        assert_eq!(
            r(
                &get,
                "/v1/audit/secrets/{*path}",
                "/v1/audit/secrets/a/metadata"
            ),
            Some(("audit_for_secret", Some("a/metadata".into())))
        );
    }

    #[test]
    fn actions_follow_the_query_flag_and_keep_their_names() {
        assert_eq!(DELETE_SECRET.action_for(None), "secrets.delete");
        assert_eq!(
            DELETE_SECRET.action_for(Some("destroy=true")),
            "secrets.destroy"
        );
        assert_eq!(
            DELETE_SECRET.action_for(Some("x=1&destroy=false")),
            "secrets.delete"
        );
        assert_eq!(AUDIT_FOR_SECRET.action, "audit.secrets");
        assert_eq!(
            REVOKE_TOKEN.scope().as_deref(),
            Some("secrets:admin on sys/tokens, or the token's own accessor")
        );
        assert_eq!(
            AUDIT_EXPORT.scope().as_deref(),
            Some("secrets:admin on sys/audit, and secrets:read on the credentials secret")
        );
    }

    #[test]
    fn reads_are_single_phase() {
        for (op, mutating) in [
            (&READ_SECRET, false),
            (&WRITE_SECRET, true),
            (&DELETE_POLICY, true),
            (&UPDATE_METADATA, true),
            (&BATCH_READ, false),
            (&TEST_POLICY, false),
            (&AUDIT_HMAC, false),
            (&AUDIT_EXPORT, true),
            (&KUBERNETES_LOGIN, true),
        ] {
            assert_eq!(op.mutates, mutating, "{}", op.id);
        }
    }
}
