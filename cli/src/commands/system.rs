//! `scaivault whoami`, `health`, `keys ...`

use scaivault_api::health::{DetailedHealthResponse, HealthStatus};
use scaivault_client::Client;

use super::render;
use crate::args::{KeysCommand, OutputFormat};
use crate::failure::Failure;
use crate::output::{Output, Table, list, opt_text, opt_time, pairs, time};

pub async fn whoami(client: &Client, format: OutputFormat) -> Result<Output, Failure> {
    let me = client.whoami().await?;
    render(format, &me, |me| {
        pairs(&[
            ("identity_id", me.identity_id.clone()),
            ("identity_type", me.identity_type.as_str().to_owned()),
            ("accessor", me.accessor.clone()),
            ("policies", list(&me.policies)),
            ("issued_at", time(&me.issued_at)),
            ("expires_at", opt_time(&me.expires_at)),
            ("display_name", opt_text(&me.display_name)),
        ])
    })
}

/// Prints the health document; exits 1 when the status is not `ok`, so scripts can gate on it.
pub async fn health(
    client: &Client,
    format: OutputFormat,
    detailed: bool,
    ready: bool,
) -> Result<Output, Failure> {
    let (status, output) = if detailed {
        let health = client.health_detailed().await?;
        (health.status, render(format, &health, render_detailed)?)
    } else {
        let health = if ready {
            client.ready().await?
        } else {
            client.health().await?
        };
        let output = render(format, &health, |h| {
            pairs(&[
                ("status", status_name(h.status).to_owned()),
                ("version", h.version.clone()),
                ("storage", h.storage.clone()),
            ])
        })?;
        (health.status, output)
    };
    match status {
        HealthStatus::Ok => Ok(output),
        other => Err(Failure::Unhealthy {
            status: status_name(other).to_owned(),
            report: output.stdout,
        }),
    }
}

fn render_detailed(health: &DetailedHealthResponse) -> String {
    let header = pairs(&[
        ("status", status_name(health.status).to_owned()),
        ("version", health.version.clone()),
    ]);
    let mut table = Table::with_header(["COMPONENT", "STATUS", "LATENCY_MS", "MESSAGE"]);
    for (name, component) in &health.components {
        table.row(vec![
            name.clone(),
            status_name(component.status).to_owned(),
            format!("{:.1}", component.latency_ms),
            opt_text(&component.message),
        ]);
    }
    format!("{header}\n{}", table.render())
}

fn status_name(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Ok => "ok",
        HealthStatus::Degraded => "degraded",
        HealthStatus::Down => "down",
    }
}

pub async fn keys(
    client: &Client,
    format: OutputFormat,
    command: KeysCommand,
) -> Result<Output, Failure> {
    match command {
        KeysCommand::Rotate => {
            let key = client.rotate_keys().await?;
            render(format, &key, |k| {
                pairs(&[
                    ("key_id", k.key_id.to_string()),
                    ("created_at", time(&k.created_at)),
                ])
            })
        }
        KeysCommand::List => {
            let keys = client.keys().await?;
            render(format, &keys, |k| {
                let mut table = Table::with_header(["KEY_ID", "CREATED_AT", "ACTIVE"]);
                for key in &k.keys {
                    let active = if key.key_id == k.active_key_id {
                        "yes"
                    } else {
                        ""
                    };
                    table.row(vec![
                        key.key_id.to_string(),
                        time(&key.created_at),
                        active.to_owned(),
                    ]);
                }
                table.render()
            })
        }
    }
}
