//! The compiled policy index and its evaluation.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use scaivault_api::ErrorCode;
use scaivault_api::limits::MAX_POLICY_RULES;
use scaivault_api::pattern::PathPattern;
use scaivault_api::policy::{Effect, Permission, PolicyRule};

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::store::{BindingRow, PolicyRow};

struct CompiledRule {
    pattern: PathPattern,
    rule: PolicyRule,
}

impl CompiledRule {
    fn grants(&self, permission: Permission) -> bool {
        self.rule.permissions.contains(&permission)
            || self.rule.permissions.contains(&Permission::Admin)
    }
}

pub struct CompiledPolicy {
    pub id: String,
    pub name: String,
    rules: Vec<CompiledRule>,
}

/// A rule that applied to a decision.
#[derive(Debug, Clone)]
pub struct Matched {
    pub policy_id: String,
    pub policy_name: String,
    pub rule: PolicyRule,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub allowed: bool,
    pub matched: Vec<Matched>,
    pub reason: String,
}

/// Compiles and checks the rules of a policy; errors name the offending rule.
pub fn validate_rules(rules: &[PolicyRule]) -> Result<Vec<(PathPattern, PolicyRule)>> {
    if rules.is_empty() {
        return Err(Error::invalid("a policy needs at least one rule"));
    }
    if rules.len() > MAX_POLICY_RULES {
        return Err(Error::invalid(format!(
            "a policy may hold at most {MAX_POLICY_RULES} rules"
        )));
    }
    rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            if rule.permissions.is_empty() {
                return Err(Error::invalid(format!(
                    "rules[{i}]: permissions must not be empty"
                )));
            }
            let pattern = PathPattern::compile(&rule.path_pattern).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidRequest,
                    format!("rules[{i}].path_pattern: {e}"),
                )
            })?;
            Ok((pattern, rule.clone()))
        })
        .collect()
}

impl CompiledPolicy {
    pub fn compile(id: &str, name: &str, rules: &[PolicyRule]) -> Result<Self> {
        let rules = validate_rules(rules)?
            .into_iter()
            .map(|(pattern, rule)| CompiledRule { pattern, rule })
            .collect();
        Ok(CompiledPolicy {
            id: id.to_owned(),
            name: name.to_owned(),
            rules,
        })
    }

    fn from_row(row: &PolicyRow) -> Option<Self> {
        let rules: Vec<PolicyRule> = serde_json::from_str(&row.rules_json).ok()?;
        Self::compile(&row.id, &row.name, &rules).ok()
    }

    /// Whether any rule of this policy mentions a path matching `path`.
    pub fn applies_to(&self, path: &str) -> bool {
        self.rules.iter().any(|r| r.pattern.matches(path))
    }
}

/// One caller's reach for one permission (see [`Engine::scope`]).
pub struct Scope {
    everything: bool,
    permission: Permission,
    policies: Vec<Arc<CompiledPolicy>>,
}

impl Scope {
    /// Prefixes outside which no path is allowed: the literal prefix of every allow rule
    /// that grants the permission (`[""]` = anywhere, empty = nowhere). Deny rules never
    /// widen it; [`Scope::allows`] applies them per path.
    pub fn prefixes(&self) -> Vec<String> {
        if self.everything {
            return vec![String::new()];
        }
        self.policies
            .iter()
            .flat_map(|p| p.rules.iter())
            .filter(|r| r.rule.effect == Effect::Allow && r.grants(self.permission))
            .map(|r| r.pattern.literal_prefix().to_owned())
            .collect()
    }

    /// The exact decision of [`Engine::allows`] for one path (deny beats allow).
    pub fn allows(&self, path: &str) -> bool {
        self.everything || permits(&self.policies, self.permission, path)
    }
}

#[derive(Default)]
struct Index {
    by_identity: HashMap<String, Vec<Arc<CompiledPolicy>>>,
}

pub struct Engine {
    index: ArcSwap<Index>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            index: ArcSwap::from_pointee(Index::default()),
        }
    }
}

/// `evaluate(..).allowed`: a matching deny wins, otherwise any matching allow grants.
fn permits(policies: &[Arc<CompiledPolicy>], permission: Permission, path: &str) -> bool {
    let mut allowed = false;
    for rule in policies
        .iter()
        .flat_map(|p| p.rules.iter())
        .filter(|r| r.grants(permission) && r.pattern.matches(path))
    {
        match rule.rule.effect {
            Effect::Deny => return false,
            Effect::Allow => allowed = true,
        }
    }
    allowed
}

/// Evaluates `policies` for one permission on one path.
pub fn evaluate<'a>(
    policies: impl IntoIterator<Item = &'a CompiledPolicy>,
    permission: Permission,
    path: &str,
) -> Decision {
    let mut allows = Vec::new();
    let mut denies = Vec::new();
    for policy in policies {
        for rule in policy
            .rules
            .iter()
            .filter(|r| r.grants(permission) && r.pattern.matches(path))
        {
            let matched = Matched {
                policy_id: policy.id.clone(),
                policy_name: policy.name.clone(),
                rule: rule.rule.clone(),
            };
            match rule.rule.effect {
                Effect::Allow => allows.push(matched),
                Effect::Deny => denies.push(matched),
            }
        }
    }
    if let Some(first) = denies.first() {
        let reason = format!(
            "denied by rule {:?} of policy {} (deny beats allow)",
            first.rule.path_pattern, first.policy_name
        );
        denies.extend(allows);
        return Decision {
            allowed: false,
            matched: denies,
            reason,
        };
    }
    if let Some(first) = allows.first() {
        let reason = format!(
            "allowed by rule {:?} of policy {}",
            first.rule.path_pattern, first.policy_name
        );
        return Decision {
            allowed: true,
            matched: allows,
            reason,
        };
    }
    Decision {
        allowed: false,
        matched: Vec::new(),
        reason: format!("no policy grants {} on {path}", permission.scope()),
    }
}

impl Engine {
    /// Rebuilds the index from storage rows. Rows that fail to compile are skipped (they
    /// were validated on the way in; a corrupt row must not open access).
    pub fn rebuild(&self, policies: &[PolicyRow], bindings: &[BindingRow]) {
        let compiled: HashMap<&str, Arc<CompiledPolicy>> = policies
            .iter()
            .filter_map(|row| match CompiledPolicy::from_row(row) {
                Some(p) => Some((row.id.as_str(), Arc::new(p))),
                None => {
                    tracing::error!(policy = %row.id, "stored policy does not compile; ignored");
                    None
                }
            })
            .collect();
        let mut by_identity: HashMap<String, Vec<Arc<CompiledPolicy>>> = HashMap::new();
        for binding in bindings {
            if let Some(policy) = compiled.get(binding.policy_id.as_str()) {
                by_identity
                    .entry(binding.identity_id.clone())
                    .or_default()
                    .push(Arc::clone(policy));
            }
        }
        self.index.store(Arc::new(Index { by_identity }));
    }

    /// Names of the policies bound to an identity.
    pub fn policy_names(&self, identity_id: &str) -> Vec<String> {
        self.index
            .load()
            .by_identity
            .get(identity_id)
            .map(|ps| ps.iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Full decision for an identity, optionally with a draft policy bound as well.
    pub fn decide(
        &self,
        identity_id: Option<&str>,
        draft: Option<&CompiledPolicy>,
        permission: Permission,
        path: &str,
    ) -> Decision {
        let index = self.index.load();
        let bound = identity_id.and_then(|id| index.by_identity.get(id));
        let policies = bound.into_iter().flatten().map(Arc::as_ref).chain(draft);
        evaluate(policies, permission, path)
    }

    /// What `decide` concludes, without building its explanation: this runs on every
    /// request, and for every item of a list page.
    pub fn allows(&self, caller: &Caller, permission: Permission, path: &str) -> bool {
        caller.is_root()
            || self
                .index
                .load()
                .by_identity
                .get(&caller.identity_id)
                .is_some_and(|policies| permits(policies, permission, path))
    }

    /// What the caller may hold `permission` on, from one snapshot of the index: lists
    /// narrow their query with it before paging, then check each row against it.
    pub fn scope(&self, caller: &Caller, permission: Permission) -> Scope {
        Scope {
            everything: caller.is_root(),
            permission,
            policies: self
                .index
                .load()
                .by_identity
                .get(&caller.identity_id)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// `Ok` when allowed; otherwise `permission_denied`. The message is the same for paths
    /// that exist and paths that do not, so a denial reveals nothing.
    pub fn authorize(&self, caller: &Caller, permission: Permission, path: &str) -> Result<()> {
        let allowed = self.allows(caller, permission, path);
        crate::audit::context::note_check(permission, path, allowed);
        if allowed {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, permissions: &[Permission], effect: Effect) -> PolicyRule {
        PolicyRule {
            path_pattern: pattern.into(),
            permissions: permissions.to_vec(),
            effect,
        }
    }

    fn policy(id: &str, rules: Vec<PolicyRule>) -> CompiledPolicy {
        CompiledPolicy::compile(id, id, &rules).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn decisions() {
        use Permission::*;
        let read_prod = policy(
            "p1",
            vec![rule(
                "environments/production/**",
                &[Read, List],
                Effect::Allow,
            )],
        );
        let deny_stripe = policy(
            "p2",
            vec![rule(
                "environments/production/billing/stripe",
                &[Read],
                Effect::Deny,
            )],
        );
        let admin_app = policy("p3", vec![rule("app/**", &[Admin], Effect::Allow)]);
        let cases: &[(&[&CompiledPolicy], Permission, &str, bool)] = &[
            (
                &[&read_prod],
                Read,
                "environments/production/billing/db",
                true,
            ),
            (
                &[&read_prod],
                Write,
                "environments/production/billing/db",
                false,
            ),
            (
                &[&read_prod],
                Read,
                "environments/staging/billing/db",
                false,
            ),
            (
                &[&read_prod, &deny_stripe],
                Read,
                "environments/production/billing/stripe",
                false,
            ),
            (
                &[&read_prod, &deny_stripe],
                List,
                "environments/production/billing/stripe",
                true,
            ),
            (&[&admin_app], Delete, "app/x", true),
            (&[&admin_app], Rotate, "app/x/y", true),
            (&[], Read, "app/x", false),
        ];
        for (policies, permission, path, want) in cases {
            let d = evaluate(policies.iter().copied(), *permission, path);
            assert_eq!(d.allowed, *want, "{permission:?} {path}: {}", d.reason);
        }
        let d = evaluate(
            [&read_prod, &deny_stripe],
            Read,
            "environments/production/billing/stripe",
        );
        assert!(d.reason.contains("deny beats allow"), "{}", d.reason);
        assert_eq!(d.matched.len(), 2);
    }

    #[test]
    fn admin_deny_denies_everything() {
        let p = policy(
            "p",
            vec![
                rule("**", &[Permission::Read], Effect::Allow),
                rule("secret/**", &[Permission::Admin], Effect::Deny),
            ],
        );
        assert!(!evaluate([&p], Permission::Read, "secret/x").allowed);
        assert!(evaluate([&p], Permission::Read, "public/x").allowed);
    }

    #[test]
    fn rules_are_validated() {
        assert!(validate_rules(&[]).is_err());
        assert!(validate_rules(&[rule("a**", &[Permission::Read], Effect::Allow)]).is_err());
        assert!(validate_rules(&[rule("a/b", &[], Effect::Allow)]).is_err());
        assert!(validate_rules(&[rule("a/*", &[Permission::Read], Effect::Allow)]).is_ok());
    }
}
