//! `scaivault rotation ...` and the rotation lines of other commands' output.

use scaivault_api::rotation::{
    Charset, DEFAULT_ROTATION_GRACE_SECS, DueSecret, Generator, RotateOutcome, RotationDueResponse,
    RotationPolicy, RotationState, RotationStatus, RotationStrategy,
};
use scaivault_api::secrets::SecretMetadataResponse;
use scaivault_client::{Client, DueOptions};

use super::render;
use crate::args::{GeneratorCharset, OutputFormat, RotationCommand, RotationSetArgs, Strategy};
use crate::failure::Failure;
use crate::output::{NONE, Output, Table, opt_time, pairs, time};

pub async fn run(
    client: &Client,
    format: OutputFormat,
    command: RotationCommand,
) -> Result<Output, Failure> {
    match command {
        RotationCommand::Set(args) => {
            let path = args.path.clone();
            let metadata = client.set_rotation(&path, Some(policy(args))).await?;
            render(format, &metadata, render_schedule)
        }
        RotationCommand::Clear { path } => {
            let metadata = client.set_rotation(&path, None).await?;
            render(format, &metadata, render_schedule)
        }
        RotationCommand::Due {
            within_hours,
            include_overdue,
            prefix,
            limit,
            cursor,
            all,
        } => {
            let options = DueOptions {
                within_hours,
                include_overdue,
                prefix,
                limit,
                cursor,
            };
            if all {
                let secrets = client.rotation_due_all(&options).await?;
                let everything = RotationDueResponse {
                    secrets,
                    next_cursor: None,
                };
                render(format, &everything, |page| render_due(&page.secrets))
            } else {
                let page = client.rotation_due(&options).await?;
                let output = render(format, &page, |page| render_due(&page.secrets))?;
                Ok(match (&page.next_cursor, format) {
                    (Some(cursor), OutputFormat::Table) => {
                        output.with_note(format!("more secrets: add --cursor {cursor} or --all"))
                    }
                    _ => output,
                })
            }
        }
    }
}

/// The schedule as written from the flags; the generator only when a flag of it is given.
fn policy(args: RotationSetArgs) -> RotationPolicy {
    let generator = Generator {
        fields: (!args.fields.is_empty()).then_some(args.fields),
        length: args.length,
        charset: args.charset.map(charset),
        prefix: args.prefix,
    };
    let has_generator = generator.fields.is_some()
        || generator.length.is_some()
        || generator.charset.is_some()
        || generator.prefix.is_some();
    RotationPolicy {
        interval: args.interval,
        strategy: match args.strategy {
            Strategy::Generate => RotationStrategy::Generate,
            Strategy::External => RotationStrategy::External,
            Strategy::Manual => RotationStrategy::Manual,
        },
        generator: has_generator.then_some(generator),
        grace: args.grace,
        rotate_at: args.rotate_at,
    }
}

fn charset(c: GeneratorCharset) -> Charset {
    match c {
        GeneratorCharset::Alphanumeric => Charset::Alphanumeric,
        GeneratorCharset::Symbols => Charset::Symbols,
        GeneratorCharset::Hex => Charset::Hex,
        GeneratorCharset::Base64url => Charset::Base64url,
    }
}

/// The API's names; the wire types have no `Display` for these.
pub fn state_name(state: RotationState) -> &'static str {
    match state {
        RotationState::NotConfigured => "not_configured",
        RotationState::Scheduled => "scheduled",
        RotationState::Due => "due",
        RotationState::Overdue => "overdue",
    }
}

pub fn outcome_name(outcome: RotateOutcome) -> &'static str {
    match outcome {
        RotateOutcome::Rotated => "rotated",
        RotateOutcome::Requested => "requested",
    }
}

fn charset_name(c: Charset) -> &'static str {
    match c {
        Charset::Alphanumeric => "alphanumeric",
        Charset::Symbols => "symbols",
        Charset::Hex => "hex",
        Charset::Base64url => "base64url",
    }
}

/// `rotation  scheduled` and, when a schedule is set, what it is and where it stands.
pub fn rotation_pairs(r: &RotationStatus) -> Vec<(&'static str, String)> {
    let mut items = vec![("rotation", state_name(r.status).to_owned())];
    if r.status == RotationState::NotConfigured {
        return items;
    }
    let text = |s: Option<&str>| s.unwrap_or(NONE).to_owned();
    items.extend([
        (
            "rotation_strategy",
            text(r.strategy.map(RotationStrategy::as_str)),
        ),
        ("rotation_interval", text(r.interval.as_deref())),
        ("next_rotation_at", opt_time(&r.next_rotation_at)),
        ("last_rotated_at", opt_time(&r.last_rotated_at)),
    ]);
    if let Some(policy) = &r.policy {
        let grace = policy
            .grace
            .clone()
            .unwrap_or_else(|| format!("{}h (default)", DEFAULT_ROTATION_GRACE_SECS / 3600));
        items.push(("rotation_grace", grace));
        items.push(("rotate_at", text(policy.rotate_at.as_deref())));
        if let Some(g) = &policy.generator {
            items.push(("generator", generator_text(g)));
        }
    }
    items
}

/// `fields=password length=32 charset=symbols prefix=sk_`, only what is set.
fn generator_text(g: &Generator) -> String {
    let mut parts = Vec::new();
    if let Some(fields) = &g.fields {
        parts.push(format!("fields={}", fields.join(",")));
    }
    if let Some(length) = g.length {
        parts.push(format!("length={length}"));
    }
    if let Some(c) = g.charset {
        parts.push(format!("charset={}", charset_name(c)));
    }
    if let Some(prefix) = &g.prefix {
        parts.push(format!("prefix={prefix}"));
    }
    if parts.is_empty() {
        "defaults".to_owned()
    } else {
        parts.join(" ")
    }
}

fn render_schedule(m: &SecretMetadataResponse) -> String {
    let mut items = vec![("path", m.path.clone())];
    items.extend(rotation_pairs(&m.rotation));
    pairs(&items)
}

fn render_due(secrets: &[DueSecret]) -> String {
    let mut table = Table::with_header([
        "PATH",
        "NEXT_ROTATION",
        "OVERDUE",
        "STRATEGY",
        "LAST_ROTATED",
    ]);
    for s in secrets {
        table.row(vec![
            s.path.clone(),
            time(&s.next_rotation_at),
            if s.is_overdue { "yes" } else { "no" }.to_owned(),
            s.strategy.as_str().to_owned(),
            opt_time(&s.last_rotated_at),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn set_args(strategy: Strategy) -> RotationSetArgs {
        RotationSetArgs {
            path: "app/db".into(),
            interval: "30d".into(),
            strategy,
            grace: None,
            rotate_at: None,
            fields: vec![],
            length: None,
            charset: None,
            prefix: None,
        }
    }

    #[test]
    fn a_schedule_carries_only_the_flags_given() {
        let plain = serde_json::to_value(policy(set_args(Strategy::External))).ok();
        assert_eq!(
            plain,
            Some(serde_json::json!({"interval": "30d", "strategy": "external"}))
        );
        let mut args = set_args(Strategy::Generate);
        args.grace = Some("12h".into());
        args.rotate_at = Some("03:00".into());
        args.fields = vec!["password".into(), "pin".into()];
        args.length = Some(40);
        args.charset = Some(GeneratorCharset::Base64url);
        args.prefix = Some("sk_".into());
        assert_eq!(
            serde_json::to_value(policy(args)).ok(),
            Some(serde_json::json!({
                "interval": "30d", "strategy": "generate", "grace": "12h", "rotate_at": "03:00",
                "generator": {"fields": ["password", "pin"], "length": 40, "charset": "base64url", "prefix": "sk_"}
            }))
        );
        let mut only_length = set_args(Strategy::Generate);
        only_length.length = Some(16);
        assert_eq!(
            serde_json::to_value(policy(only_length)).ok(),
            Some(
                serde_json::json!({"interval": "30d", "strategy": "generate", "generator": {"length": 16}})
            )
        );
    }

    #[test]
    fn status_lines_say_where_a_secret_stands() {
        assert_eq!(
            rotation_pairs(&RotationStatus::not_configured()),
            vec![("rotation", "not_configured".to_owned())]
        );
        let scheduled = RotationStatus {
            status: RotationState::Overdue,
            strategy: Some(RotationStrategy::Generate),
            interval: Some("30d".into()),
            next_rotation_at: Some(OffsetDateTime::UNIX_EPOCH),
            last_rotated_at: None,
            is_overdue: true,
            policy: Some(RotationPolicy {
                interval: "30d".into(),
                strategy: RotationStrategy::Generate,
                generator: Some(Generator {
                    fields: None,
                    length: Some(24),
                    charset: Some(Charset::Hex),
                    prefix: None,
                }),
                grace: None,
                rotate_at: Some("03:00Z".into()),
            }),
        };
        assert_eq!(
            pairs(&rotation_pairs(&scheduled)),
            "rotation           overdue\n\
             rotation_strategy  generate\n\
             rotation_interval  30d\n\
             next_rotation_at   1970-01-01T00:00:00Z\n\
             last_rotated_at    -\n\
             rotation_grace     24h (default)\n\
             rotate_at          03:00Z\n\
             generator          length=24 charset=hex\n"
        );
    }

    #[test]
    fn due_secrets_render_as_a_table() {
        let due = [
            DueSecret {
                path: "app/db".into(),
                next_rotation_at: OffsetDateTime::UNIX_EPOCH,
                is_overdue: true,
                strategy: RotationStrategy::External,
                last_rotated_at: None,
            },
            DueSecret {
                path: "environments/production/billing/stripe".into(),
                next_rotation_at: OffsetDateTime::UNIX_EPOCH,
                is_overdue: false,
                strategy: RotationStrategy::Generate,
                last_rotated_at: Some(OffsetDateTime::UNIX_EPOCH),
            },
        ];
        assert_eq!(
            render_due(&due),
            "PATH                                    NEXT_ROTATION         OVERDUE  STRATEGY  LAST_ROTATED\n\
             app/db                                  1970-01-01T00:00:00Z  yes      external  -\n\
             environments/production/billing/stripe  1970-01-01T00:00:00Z  no       generate  1970-01-01T00:00:00Z\n"
        );
    }
}
