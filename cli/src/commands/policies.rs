//! `scaivault policies ...` and `scaivault identities ...`

use scaivault_api::policy::{
    Binding, Identity, Policy, PolicyInput, PolicyRule, PolicyTestRequest, PolicyTestResponse,
};
use scaivault_api::policy::{Effect, IdentityInput};
use scaivault_client::Client;

use super::{done, render};
use crate::args::{
    IdentitiesCommand, OutputFormat, PoliciesCommand, PolicyChange, PolicyDefinition,
};
use crate::failure::{EXIT_DENIED, Failure};
use crate::input::policy_from_file;
use crate::output::{Output, Table, list, opt_text, pairs, time};

pub async fn run(
    client: &Client,
    format: OutputFormat,
    command: PoliciesCommand,
) -> Result<Output, Failure> {
    match command {
        PoliciesCommand::Create(definition) => {
            let input = policy_input(definition)?;
            let policy = client.create_policy(&input).await?;
            render(format, &policy, render_policy)
        }
        PoliciesCommand::List { path } => {
            let policies = client.list_policies(path.as_deref()).await?;
            render(format, &policies, |p| render_policy_list(&p.policies))
        }
        PoliciesCommand::Get { id } => {
            let policy = client.get_policy(&id).await?;
            render(format, &policy, render_policy)
        }
        PoliciesCommand::Update { id, definition } => {
            let input = match &definition.file {
                Some(file) => policy_from_file(file)?,
                None => {
                    // Read-modify-write: PUT replaces everything, and has no check-and-set,
                    // so a concurrent update between the two calls is lost.
                    let current = client.get_policy(&id).await?;
                    apply_change(current, definition)
                }
            };
            let policy = client.update_policy(&id, &input).await?;
            render(format, &policy, render_policy)
        }
        PoliciesCommand::Delete { id } => {
            client.delete_policy(&id).await?;
            Ok(done(
                format,
                format!("Deleted policy {id} and its bindings.\n"),
            ))
        }
        PoliciesCommand::Bind {
            policy_id,
            identity_id,
        } => {
            let binding = client.bind_policy(&policy_id, &identity_id).await?;
            render(format, &binding, |b| {
                pairs(&[
                    ("policy_id", b.policy_id.clone()),
                    ("identity_id", b.identity_id.clone()),
                    ("identity_type", b.identity_type.as_str().to_owned()),
                    ("created_at", time(&b.created_at)),
                ])
            })
        }
        PoliciesCommand::Unbind {
            policy_id,
            identity_id,
        } => {
            client.unbind_policy(&policy_id, &identity_id).await?;
            Ok(done(
                format,
                format!("Unbound policy {policy_id} from {identity_id}.\n"),
            ))
        }
        PoliciesCommand::Bindings { policy_id } => {
            let bindings = client.policy_bindings(&policy_id).await?;
            render(format, &bindings, |b| render_bindings(&b.bindings))
        }
        PoliciesCommand::Test {
            identity,
            path,
            permission,
            policy_file,
        } => {
            let policy = policy_file.as_deref().map(policy_from_file).transpose()?;
            let request = PolicyTestRequest {
                identity_id: identity,
                path,
                permission,
                policy,
            };
            let verdict = client.test_policy(&request).await?;
            let output = render(format, &verdict, render_test)?;
            if verdict.allowed {
                Ok(output)
            } else {
                // Not an error: the answer is "no", and scripts branch on exit code 3.
                Err(Failure::Verdict {
                    report: output.stdout,
                    message: None,
                    exit: EXIT_DENIED,
                })
            }
        }
    }
}

pub async fn identities(
    client: &Client,
    format: OutputFormat,
    command: IdentitiesCommand,
) -> Result<Output, Failure> {
    match command {
        IdentitiesCommand::Create { id, display_name } => {
            let identity = client
                .create_identity(&IdentityInput { id, display_name })
                .await?;
            render(format, &identity, render_identity)
        }
        IdentitiesCommand::List => {
            let identities = client.list_identities().await?;
            render(format, &identities, |list| {
                let mut table =
                    Table::with_header(["ID", "TYPE", "NAME", "CREATED_AT", "POLICIES"]);
                for i in &list.identities {
                    table.row(vec![
                        i.id.clone(),
                        i.identity_type.as_str().to_owned(),
                        opt_text(&i.display_name),
                        time(&i.created_at),
                        crate::output::list(&i.policies),
                    ]);
                }
                table.render()
            })
        }
        IdentitiesCommand::Get { id } => {
            let identity = client.get_identity(&id).await?;
            render(format, &identity, render_identity)
        }
    }
}

/// The policy document of `policies create`: flags or a file (clap enforces one or the other).
fn policy_input(definition: PolicyDefinition) -> Result<PolicyInput, Failure> {
    if let Some(file) = &definition.file {
        return policy_from_file(file);
    }
    let Some(name) = definition.name else {
        return Err(Failure::Usage(
            "give --name and --rule, or --file".to_owned(),
        ));
    };
    if definition.rules.is_empty() {
        return Err(Failure::Usage(
            "a policy needs at least one --rule".to_owned(),
        ));
    }
    Ok(PolicyInput {
        name,
        description: definition.description.filter(|d| !d.is_empty()),
        rules: definition.rules,
    })
}

/// `policies update` without --file: the current policy with the named parts replaced.
fn apply_change(current: Policy, change: PolicyChange) -> PolicyInput {
    PolicyInput {
        name: change.name.unwrap_or(current.name),
        description: match change.description {
            Some(d) if d.is_empty() => None,
            Some(d) => Some(d),
            None => current.description,
        },
        rules: if change.rules.is_empty() {
            current.rules
        } else {
            change.rules
        },
    }
}

/// A rule as `--rule` takes it: `billing/**:read,list`, `x/*:read:deny`.
pub fn rule_text(rule: &PolicyRule) -> String {
    let permissions: Vec<&str> = rule.permissions.iter().map(|p| p.as_str()).collect();
    let mut text = format!("{}:{}", rule.path_pattern, permissions.join(","));
    if rule.effect == Effect::Deny {
        text.push_str(":deny");
    }
    text
}

fn render_rules(rules: &[PolicyRule]) -> String {
    let mut table = Table::with_header(["PATTERN", "PERMISSIONS", "EFFECT"]);
    for rule in rules {
        let permissions: Vec<String> = rule
            .permissions
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        table.row(vec![
            rule.path_pattern.clone(),
            list(&permissions),
            effect_name(rule.effect).to_owned(),
        ]);
    }
    table.render()
}

fn effect_name(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

fn render_policy(policy: &Policy) -> String {
    let header = pairs(&[
        ("id", policy.id.clone()),
        ("name", policy.name.clone()),
        ("description", opt_text(&policy.description)),
        ("created_at", time(&policy.created_at)),
        ("updated_at", time(&policy.updated_at)),
    ]);
    format!("{header}\n{}", render_rules(&policy.rules))
}

fn render_policy_list(policies: &[Policy]) -> String {
    let mut table = Table::with_header(["ID", "NAME", "RULES", "DESCRIPTION"]);
    for policy in policies {
        let rules: Vec<String> = policy.rules.iter().map(rule_text).collect();
        table.row(vec![
            policy.id.clone(),
            policy.name.clone(),
            rules.join(" "),
            opt_text(&policy.description),
        ]);
    }
    table.render()
}

fn render_bindings(bindings: &[Binding]) -> String {
    let mut table = Table::with_header(["IDENTITY", "TYPE", "CREATED_AT"]);
    for b in bindings {
        table.row(vec![
            b.identity_id.clone(),
            b.identity_type.as_str().to_owned(),
            time(&b.created_at),
        ]);
    }
    table.render()
}

fn render_test(verdict: &PolicyTestResponse) -> String {
    let header = pairs(&[
        (
            "allowed",
            if verdict.allowed { "yes" } else { "no" }.to_owned(),
        ),
        ("reason", verdict.reason.clone()),
    ]);
    if verdict.matched.is_empty() {
        return header;
    }
    let mut table = Table::with_header(["POLICY", "NAME", "RULE"]);
    for m in &verdict.matched {
        table.row(vec![
            m.policy_id.clone(),
            m.policy_name.clone(),
            rule_text(&m.rule),
        ]);
    }
    format!("{header}\n{}", table.render())
}

fn render_identity(identity: &Identity) -> String {
    pairs(&[
        ("id", identity.id.clone()),
        ("identity_type", identity.identity_type.as_str().to_owned()),
        ("display_name", opt_text(&identity.display_name)),
        ("created_at", time(&identity.created_at)),
        ("policies", list(&identity.policies)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse_rule;
    use time::OffsetDateTime;

    fn policy() -> Policy {
        Policy {
            id: "pol_1".into(),
            name: "billing".into(),
            description: Some("billing team".into()),
            rules: vec![
                parse_rule("billing/**:read,list").unwrap_or_else(|e| unreachable!("{e}")),
                parse_rule("billing/secret/*:read:deny").unwrap_or_else(|e| unreachable!("{e}")),
            ],
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn rules_print_the_way_they_are_typed() {
        let p = policy();
        let texts: Vec<String> = p.rules.iter().map(rule_text).collect();
        assert_eq!(
            texts,
            ["billing/**:read,list", "billing/secret/*:read:deny"]
        );
        for text in &texts {
            assert_eq!(
                parse_rule(text).as_ref().map(rule_text).ok().as_ref(),
                Some(text)
            );
        }
        let rendered = render_policy(&p);
        assert!(
            rendered.ends_with(
                "PATTERN           PERMISSIONS  EFFECT\n\
                 billing/**        read, list   allow\n\
                 billing/secret/*  read         deny\n"
            ),
            "{rendered}"
        );
    }

    #[test]
    fn updates_replace_only_what_is_named() {
        let change = PolicyChange {
            name: None,
            rules: vec![],
            description: Some(String::new()),
            file: None,
        };
        let input = apply_change(policy(), change);
        assert_eq!(input.name, "billing");
        assert_eq!(input.description, None);
        assert_eq!(input.rules.len(), 2);
        let change = PolicyChange {
            name: Some("billing-v2".into()),
            rules: vec![parse_rule("a/**:admin").unwrap_or_else(|e| unreachable!("{e}"))],
            description: None,
            file: None,
        };
        let input = apply_change(policy(), change);
        assert_eq!(input.name, "billing-v2");
        assert_eq!(input.description.as_deref(), Some("billing team"));
        assert_eq!(
            input.rules.iter().map(rule_text).collect::<Vec<_>>(),
            ["a/**:admin"]
        );
    }
}
