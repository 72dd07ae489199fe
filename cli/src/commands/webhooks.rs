//! `scaivault webhooks ...`

use std::path::Path;

use scaivault_api::webhooks::{
    DeliveriesResponse, Delivery, DeliveryAttempt, DeliveryStatus, Webhook, WebhookFilters,
    WebhookTestResponse, WebhooksResponse,
};
use scaivault_client::{
    Client, DeliveriesOptions, NewWebhook, SecretString, WebhookUpdate, generate_webhook_secret,
};
use secrecy::ExposeSecret;

use super::{done, render};
use crate::args::{
    DeliveryState, OutputFormat, WebhookCreateArgs, WebhookUpdateArgs, WebhooksCommand,
};
use crate::failure::{EXIT_FAILURE, Failure};
use crate::output::{NONE, Output, Table, opt_text, opt_time, pairs, time};

pub async fn run(
    client: &Client,
    format: OutputFormat,
    command: WebhooksCommand,
) -> Result<Output, Failure> {
    match command {
        WebhooksCommand::Create(args) => {
            let webhook = client.create_webhook(&new_webhook(args)?).await?;
            render(format, &webhook, render_webhook)
        }
        WebhooksCommand::List => {
            let webhooks = client.list_webhooks().await?;
            render(format, &webhooks, render_webhooks)
        }
        WebhooksCommand::Get { id } => {
            let webhook = client.webhook(&id).await?;
            render(format, &webhook, render_webhook)
        }
        WebhooksCommand::Update(args) => {
            let id = args.id.clone();
            let webhook = client.update_webhook(&id, &update(args)?).await?;
            render(format, &webhook, render_webhook)
        }
        WebhooksCommand::Delete { id } => {
            client.delete_webhook(&id).await?;
            Ok(done(format, format!("Deleted webhook {id}\n")))
        }
        WebhooksCommand::Test { id } => {
            let result = client.test_webhook(&id).await?;
            let output = render(format, &result, render_test)?;
            if result.delivered {
                Ok(output)
            } else {
                Err(Failure::Verdict {
                    report: output.stdout,
                    message: Some(format!(
                        "the endpoint did not accept the test event: {}",
                        outcome(&result.attempt)
                    )),
                    exit: EXIT_FAILURE,
                })
            }
        }
        WebhooksCommand::Deliveries {
            id,
            status,
            limit,
            before,
            all,
        } => {
            let options = DeliveriesOptions {
                status: status.map(delivery_status),
                before,
                limit,
            };
            let page = if all {
                DeliveriesResponse {
                    deliveries: client.webhook_deliveries_all(&id, &options).await?,
                    next_before: None,
                }
            } else {
                client.webhook_deliveries(&id, &options).await?
            };
            let output = render(format, &page, |p| render_deliveries(&p.deliveries))?;
            Ok(match (page.next_before, format) {
                (Some(next), OutputFormat::Table) => {
                    output.with_note(format!("more deliveries: add --before {next} or --all"))
                }
                _ => output,
            })
        }
        WebhooksCommand::Retry { id, delivery_id } => {
            let delivery = client.retry_delivery(&id, &delivery_id).await?;
            render(format, &delivery, |d| {
                render_deliveries(std::slice::from_ref(d))
            })
        }
        WebhooksCommand::NewSecret => {
            let secret = generate_webhook_secret()?;
            // The one command that prints a secret: it is what it is for.
            Ok(Output::text(format!("{}\n", secret.expose_secret())))
        }
    }
}

fn delivery_status(state: DeliveryState) -> DeliveryStatus {
    match state {
        DeliveryState::Pending => DeliveryStatus::Pending,
        DeliveryState::Succeeded => DeliveryStatus::Succeeded,
        DeliveryState::Failed => DeliveryStatus::Failed,
    }
}

fn new_webhook(args: WebhookCreateArgs) -> Result<NewWebhook, Failure> {
    let secret = secret_of(args.secret.secret, args.secret.secret_file.as_deref())?
        .ok_or_else(|| Failure::Usage("a signing secret is needed: --secret-file FILE, or --secret / SCAIVAULT_WEBHOOK_SECRET".to_owned()))?;
    Ok(NewWebhook {
        name: args.name,
        url: args.url,
        secret,
        events: args.events,
        filters: WebhookFilters {
            path_prefix: args.path_prefix,
        },
        enabled: args.disabled.then_some(false),
    })
}

fn update(args: WebhookUpdateArgs) -> Result<WebhookUpdate, Failure> {
    let filters = if args.no_path_prefix {
        Some(WebhookFilters { path_prefix: None })
    } else {
        args.path_prefix.map(|prefix| WebhookFilters {
            path_prefix: Some(prefix),
        })
    };
    let enabled = match (args.enable, args.disable) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    Ok(WebhookUpdate {
        name: args.name,
        url: args.url,
        secret: secret_of(args.secret, args.secret_file.as_deref())?,
        events: args.events,
        filters,
        enabled,
    })
}

/// The secret from the file (trimmed), else from the flag or its variable. Never
/// echoed: the errors name the file, not what is in it.
fn secret_of(
    flag: Option<SecretString>,
    file: Option<&Path>,
) -> Result<Option<SecretString>, Failure> {
    let Some(path) = file else {
        return Ok(flag);
    };
    let bytes = crate::input::read_source(path)?;
    // Held as a secret from here on, so the buffer is wiped when dropped.
    let text = String::from_utf8(bytes)
        .map(SecretString::from)
        .map_err(|_| Failure::Local(format!("{} is not UTF-8 text", path.display())))?;
    let secret = text.expose_secret().trim();
    if secret.is_empty() {
        return Err(Failure::Local(format!(
            "{} holds no signing secret",
            path.display()
        )));
    }
    Ok(Some(SecretString::from(secret.to_owned())))
}

fn events_text(webhook: &Webhook) -> String {
    let names: Vec<&str> = webhook.events.iter().map(|e| e.as_str()).collect();
    names.join(",")
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn render_webhook(w: &Webhook) -> String {
    pairs(&[
        ("id", w.id.clone()),
        ("name", w.name.clone()),
        ("url", w.url.clone()),
        ("events", events_text(w)),
        ("path_prefix", opt_text(&w.filters.path_prefix)),
        ("enabled", yes_no(w.enabled)),
        ("disabled_reason", opt_text(&w.disabled_reason)),
        ("failing_since", opt_time(&w.failing_since)),
        ("created_by", w.created_by.clone()),
        ("created_at", time(&w.created_at)),
        ("updated_at", time(&w.updated_at)),
        ("secret_set_at", time(&w.secret_set_at)),
    ])
}

fn render_webhooks(list: &WebhooksResponse) -> String {
    let mut table = Table::with_header(["ID", "NAME", "ENABLED", "EVENTS", "PATH_PREFIX", "URL"]);
    for w in &list.webhooks {
        table.row(vec![
            w.id.clone(),
            w.name.clone(),
            yes_no(w.enabled),
            events_text(w),
            opt_text(&w.filters.path_prefix),
            w.url.clone(),
        ]);
    }
    table.render()
}

/// `200 in 12 ms`, or why there was no answer.
fn outcome(a: &DeliveryAttempt) -> String {
    match (a.status_code, &a.error) {
        (Some(code), _) => format!("HTTP {code} in {} ms", a.duration_ms),
        (None, Some(error)) => error.clone(),
        (None, None) => "no answer".to_owned(),
    }
}

fn render_test(t: &WebhookTestResponse) -> String {
    pairs(&[
        ("delivered", yes_no(t.delivered)),
        ("at", time(&t.attempt.at)),
        (
            "status_code",
            t.attempt
                .status_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| NONE.to_owned()),
        ),
        ("error", opt_text(&t.attempt.error)),
        ("duration_ms", t.attempt.duration_ms.to_string()),
    ])
}

fn render_deliveries(deliveries: &[Delivery]) -> String {
    let mut table = Table::with_header([
        "ID",
        "EVENT",
        "PATH",
        "STATUS",
        "ATTEMPTS",
        "LAST_ATTEMPT",
        "NEXT_ATTEMPT_AT",
    ]);
    for d in deliveries {
        table.row(vec![
            d.id.clone(),
            d.event.event_type.to_string(),
            d.event
                .path
                .clone()
                .or_else(|| d.event.policy_id.clone())
                .or_else(|| d.event.webhook_id.clone())
                .unwrap_or_else(|| NONE.to_owned()),
            d.status.as_str().to_owned(),
            d.attempts.to_string(),
            d.attempt_log
                .last()
                .map(outcome)
                .unwrap_or_else(|| NONE.to_owned()),
            opt_time(&d.next_attempt_at),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use scaivault_api::events::{Event, EventType};
    use time::OffsetDateTime;

    fn webhook() -> Webhook {
        Webhook {
            id: "wh_1".into(),
            name: "prod-rotations".into(),
            url: "https://ops.acme.example/hook".into(),
            events: vec![EventType::RotationDue, EventType::RotationOverdue],
            filters: WebhookFilters {
                path_prefix: Some("environments/production/".into()),
            },
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            created_by: "root".into(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            secret_set_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn webhooks_render_as_a_table_and_one_as_pairs() {
        let list = WebhooksResponse {
            webhooks: vec![webhook()],
        };
        assert_eq!(
            render_webhooks(&list),
            "ID    NAME            ENABLED  EVENTS                         PATH_PREFIX               URL\n\
             wh_1  prod-rotations  yes      rotation.due,rotation.overdue  environments/production/  https://ops.acme.example/hook\n"
        );
        let one = render_webhook(&webhook());
        assert!(one.contains("enabled          yes\n"), "{one}");
        assert!(one.contains("failing_since    -\n"), "{one}");
    }

    #[test]
    fn deliveries_show_their_last_attempt() {
        let delivery = Delivery {
            id: "msg_1_7".into(),
            webhook_id: "wh_1".into(),
            event: Event {
                id: "evt_7".into(),
                event_type: EventType::RotationDue,
                time: OffsetDateTime::UNIX_EPOCH,
                path: Some("environments/production/db".into()),
                policy_id: None,
                webhook_id: None,
                version: Some(1),
                actor: "system".into(),
                reason: None,
                seq: 7,
            },
            status: DeliveryStatus::Pending,
            attempts: 2,
            next_attempt_at: Some(OffsetDateTime::UNIX_EPOCH),
            attempt_log: vec![
                DeliveryAttempt {
                    at: OffsetDateTime::UNIX_EPOCH,
                    status_code: Some(500),
                    error: None,
                    duration_ms: 12,
                },
                DeliveryAttempt {
                    at: OffsetDateTime::UNIX_EPOCH,
                    status_code: None,
                    error: Some("could not connect".into()),
                    duration_ms: 3,
                },
            ],
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(
            render_deliveries(&[delivery]),
            "ID       EVENT         PATH                        STATUS   ATTEMPTS  LAST_ATTEMPT       NEXT_ATTEMPT_AT\n\
             msg_1_7  rotation.due  environments/production/db  pending  2         could not connect  1970-01-01T00:00:00Z\n"
        );
    }

    #[test]
    fn a_secret_file_is_read_trimmed_and_never_quoted() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else {
            unreachable!("a temp dir")
        };
        let file = dir.path().join("whsec");
        let _ = std::fs::write(&file, "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\n");
        let secret = secret_of(None, Some(&file)).ok().flatten();
        assert_eq!(
            secret.as_ref().map(|s| s.expose_secret().to_owned()),
            Some("whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0".to_owned())
        );
        let empty = dir.path().join("empty");
        let _ = std::fs::write(&empty, "\n");
        let err = secret_of(None, Some(&empty))
            .err()
            .and_then(|f| f.message());
        assert!(err.is_some_and(|m| m.contains("holds no signing secret")));
        assert!(secret_of(None, None).ok().flatten().is_none());
    }
}
