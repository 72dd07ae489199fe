//! `scaivault secrets ...`

use scaivault_api::rotation::RotateResponse;
use scaivault_api::secrets::{
    ListSecretsResponse, SecretListItem, SecretMetadataInput, SecretMetadataResponse,
    SecretResponse, VersionInfo, WriteOptions, WriteSecretRequest, WriteSecretResponse,
};
use scaivault_client::{Client, ListOptions};

use super::rotation::{outcome_name, rotation_pairs};
use super::{done, render};
use crate::args::{OutputFormat, SecretsCommand, WriteArgs};
use crate::failure::Failure;
use crate::input::{apply_tag_changes, data_from_json_file, data_from_pairs};
use crate::output::{self, Output, Table, list, opt_text, opt_time, pairs, time};

pub async fn run(
    client: &Client,
    format: OutputFormat,
    command: SecretsCommand,
) -> Result<Output, Failure> {
    match command {
        SecretsCommand::Read {
            path,
            version,
            field,
        } => {
            let secret = match version {
                Some(version) => client.read_version(&path, version).await?,
                None => client.read(&path).await?,
            };
            match field {
                Some(field) => read_field(format, &secret, &field),
                None => render(format, &secret, render_secret),
            }
        }
        SecretsCommand::Write(args) => {
            let path = args.path.clone();
            let request = write_request(args)?;
            let written = client.write(&path, &request).await?;
            render(format, &written, render_written)
        }
        SecretsCommand::List {
            prefix,
            limit,
            cursor,
            all,
            include_deleted,
        } => {
            let options = ListOptions {
                prefix,
                limit,
                cursor,
                include_metadata: false,
                include_deleted,
            };
            if all {
                let secrets = client.list_all(&options).await?;
                let everything = ListSecretsResponse {
                    secrets,
                    next_cursor: None,
                };
                render(format, &everything, |page| render_list(&page.secrets))
            } else {
                let page = client.list(&options).await?;
                let output = render(format, &page, |page| render_list(&page.secrets))?;
                Ok(match (&page.next_cursor, format) {
                    (Some(cursor), OutputFormat::Table) => {
                        output.with_note(format!("more secrets: add --cursor {cursor} or --all"))
                    }
                    _ => output,
                })
            }
        }
        SecretsCommand::Delete { path, destroy } => {
            if destroy {
                client.destroy(&path).await?;
                Ok(done(
                    format,
                    format!("Destroyed {path}: every version is erased.\n"),
                ))
            } else {
                client.delete(&path).await?;
                Ok(done(
                    format,
                    format!("Deleted {path} (undo with: scaivault secrets restore {path})\n"),
                ))
            }
        }
        SecretsCommand::Restore { path } => {
            let metadata = client.restore(&path).await?;
            render(format, &metadata, render_metadata)
        }
        SecretsCommand::Metadata { path } => {
            let metadata = client.metadata(&path).await?;
            render(format, &metadata, render_metadata)
        }
        SecretsCommand::Tag { path, add, remove } => {
            // Read-modify-write: PATCH replaces the whole tag list. The metadata endpoint
            // has no check-and-set, so a concurrent tag change between the two calls is lost.
            let current = client.metadata(&path).await?;
            let tags = apply_tag_changes(&current.tags, &add, &remove)?;
            let update = SecretMetadataInput {
                tags: Some(tags),
                ..SecretMetadataInput::default()
            };
            let metadata = client.update_metadata(&path, &update).await?;
            render(format, &metadata, |m| {
                pairs(&[("path", m.path.clone()), ("tags", list(&m.tags))])
            })
        }
        SecretsCommand::Versions { path } => {
            let versions = client.versions(&path).await?;
            render(format, &versions, |v| render_versions(&v.versions))
        }
        SecretsCommand::Rotate { path, reason } => {
            let rotated = client.rotate(&path, reason.as_deref()).await?;
            render(format, &rotated, render_rotated)
        }
    }
}

fn write_request(args: WriteArgs) -> Result<WriteSecretRequest, Failure> {
    let data = match &args.value.json_file {
        Some(path) => data_from_json_file(path)?,
        None => data_from_pairs(&args.value.data, &args.value.data_file)?,
    };
    let metadata =
        (!args.tags.is_empty() || args.description.is_some()).then(|| SecretMetadataInput {
            tags: (!args.tags.is_empty()).then_some(args.tags),
            description: args.description,
            rotation: None,
        });
    let options = WriteOptions {
        expires_in: args.expires_in,
        cas: args.cas,
        max_versions: args.max_versions,
    };
    Ok(WriteSecretRequest {
        data,
        secret_type: args.secret_type,
        metadata,
        options: (options != WriteOptions::default()).then_some(options),
    })
}

/// `--field`: the bare value for scripts (`$(scaivault secrets read x --field url)`).
fn read_field(
    format: OutputFormat,
    secret: &SecretResponse,
    field: &str,
) -> Result<Output, Failure> {
    let Some(value) = secret.data.get(field) else {
        let fields: Vec<String> = secret.data.keys().cloned().collect();
        return Err(Failure::Local(format!(
            "{} has no field {field:?} (fields: {})",
            secret.path,
            list(&fields)
        )));
    };
    match format {
        OutputFormat::Json => output::json(value),
        OutputFormat::Table => Ok(Output::text(output::value(value) + "\n")),
    }
}

fn render_secret(secret: &SecretResponse) -> String {
    let header = pairs(&[
        ("path", secret.path.clone()),
        ("version", secret.version.to_string()),
        ("type", secret.secret_type.to_string()),
        ("created_at", time(&secret.created_at)),
        ("created_by", secret.created_by.clone()),
        ("expires_at", opt_time(&secret.expires_at)),
        ("tags", list(&secret.metadata.tags)),
        ("description", opt_text(&secret.metadata.description)),
    ]);
    let mut data = Table::with_header(["KEY", "VALUE"]);
    for (key, value) in &secret.data {
        data.row(vec![key.clone(), output::value(value)]);
    }
    format!("{header}\n{}", data.render())
}

fn render_written(written: &WriteSecretResponse) -> String {
    pairs(&[
        ("path", written.path.clone()),
        ("version", written.version.to_string()),
        ("created_at", time(&written.created_at)),
        ("expires_at", opt_time(&written.expires_at)),
    ])
}

fn render_list(items: &[SecretListItem]) -> String {
    let mut table = Table::with_header(["PATH", "TYPE", "VERSION", "UPDATED", "TAGS"]);
    for item in items {
        table.row(vec![
            item.path.clone(),
            item.secret_type.to_string(),
            item.current_version.to_string(),
            time(&item.updated_at),
            list(&item.tags),
        ]);
    }
    table.render()
}

fn render_metadata(m: &SecretMetadataResponse) -> String {
    let mut items = vec![
        ("path", m.path.clone()),
        ("type", m.secret_type.to_string()),
        ("current_version", m.current_version.to_string()),
        ("version_count", m.version_count.to_string()),
        ("max_versions", m.max_versions.to_string()),
        ("tags", list(&m.tags)),
        ("description", opt_text(&m.description)),
    ];
    items.extend(rotation_pairs(&m.rotation));
    items.extend([
        ("created_at", time(&m.created_at)),
        ("updated_at", time(&m.updated_at)),
        ("deleted_at", opt_time(&m.deleted_at)),
        ("expires_at", opt_time(&m.expires_at)),
        ("access_count_30d", m.access_count_30d.to_string()),
    ]);
    format!("{}\n{}", pairs(&items), render_versions(&m.versions))
}

fn render_rotated(r: &RotateResponse) -> String {
    let mut items = vec![
        ("path", r.path.clone()),
        ("outcome", outcome_name(r.outcome).to_owned()),
        ("version", r.version.to_string()),
    ];
    items.extend(rotation_pairs(&r.rotation));
    pairs(&items)
}

fn render_versions(versions: &[VersionInfo]) -> String {
    let mut table = Table::with_header(["VERSION", "CREATED_AT", "CREATED_BY", "EXPIRES_AT"]);
    for v in versions {
        table.row(vec![
            v.version.to_string(),
            time(&v.created_at),
            v.created_by.clone(),
            opt_time(&v.expires_at),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use scaivault_api::secrets::{SecretMetadataView, SecretType};
    use serde_json::Value;
    use std::path::PathBuf;
    use time::OffsetDateTime;

    fn secret() -> SecretResponse {
        let data = serde_json::json!({"url": "postgres://h/db", "port": 5432});
        SecretResponse {
            path: "app/db".into(),
            version: 2,
            data: match data {
                Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
            secret_type: SecretType::Database,
            created_at: OffsetDateTime::UNIX_EPOCH,
            created_by: "root".into(),
            expires_at: None,
            metadata: SecretMetadataView {
                tags: vec!["billing".into()],
                description: None,
            },
        }
    }

    #[test]
    fn a_secret_renders_as_header_and_data_table() {
        let text = render_secret(&secret());
        assert!(
            text.starts_with("path         app/db\nversion      2\ntype         database\n"),
            "{text}"
        );
        assert!(
            text.ends_with("KEY   VALUE\nport  5432\nurl   postgres://h/db\n"),
            "{text}"
        );
    }

    #[test]
    fn fields_print_bare_or_fail_naming_the_fields() {
        let out = read_field(OutputFormat::Table, &secret(), "url").ok();
        assert_eq!(out.map(|o| o.stdout).as_deref(), Some("postgres://h/db\n"));
        let out = read_field(OutputFormat::Json, &secret(), "url").ok();
        assert_eq!(
            out.map(|o| o.stdout).as_deref(),
            Some("\"postgres://h/db\"\n")
        );
        let Err(Failure::Local(msg)) = read_field(OutputFormat::Table, &secret(), "nope") else {
            unreachable!("missing field must fail")
        };
        assert!(
            msg.contains("port, url") && !msg.contains("postgres"),
            "{msg}"
        );
    }

    #[test]
    fn write_requests_only_carry_what_was_given() {
        let args = WriteArgs {
            path: "a/b".into(),
            secret_type: None,
            value: crate::args::ValueSource {
                json_file: None,
                data: vec![("k".into(), "v".into())],
                data_file: Vec::<(String, PathBuf)>::new(),
            },
            tags: vec![],
            description: None,
            expires_in: None,
            cas: None,
            max_versions: None,
        };
        let request = write_request(args)
            .ok()
            .map(|r| serde_json::to_value(&r).ok());
        assert_eq!(
            request.flatten(),
            Some(serde_json::json!({"data": {"k": "v"}, "secret_type": null}))
        );
    }
}
