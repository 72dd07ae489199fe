//! `scaivault audit ...`

use std::time::{Duration, Instant};

use scaivault_api::audit::{
    AuditLogsResponse, AuditRecord, ExportDestination, ExportJob, ExportRequest,
    IdentityAuditResponse, VerifyResponse,
};
use scaivault_api::duration::parse_duration;
use scaivault_client::{AuditLogOptions, AuditRange, Client, EXPORT_FAILED, EXPORT_RUNNING};

use super::render;
use crate::args::{AuditCommand, ExportArgs, OutputFormat, RangeArgs};
use crate::failure::{EXIT_FAILURE, Failure};
use crate::output::{self, Output, Table, list, opt_text, opt_time, pairs, time};

/// First pause between status polls of `export --wait`; doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(100);
const MAX_POLL: Duration = Duration::from_secs(2);

pub async fn run(
    client: &Client,
    format: OutputFormat,
    command: AuditCommand,
) -> Result<Output, Failure> {
    match command {
        AuditCommand::Logs {
            range,
            identity,
            path,
            action,
            outcome,
            limit,
            cursor,
            all,
        } => {
            let options = AuditLogOptions {
                range: audit_range(range),
                identity,
                path,
                action,
                outcome: outcome.map(|o| o.as_str().to_owned()),
                cursor,
                limit,
            };
            if all {
                let logs = client.audit_logs_all(&options).await?;
                let everything = AuditLogsResponse {
                    logs,
                    next_cursor: None,
                };
                render(format, &everything, |p| render_logs(&p.logs))
            } else {
                let page = client.audit_logs(&options).await?;
                let output = render(format, &page, |p| render_logs(&p.logs))?;
                Ok(match (&page.next_cursor, format) {
                    (Some(cursor), OutputFormat::Table) => {
                        output.with_note(format!("more records: add --cursor {cursor} or --all"))
                    }
                    _ => output,
                })
            }
        }
        AuditCommand::Secret { path, range } => {
            let logs = client.audit_secret(&path, &audit_range(range)).await?;
            let output = render(format, &logs, |p| render_logs(&p.logs))?;
            // The endpoint returns one page and takes no cursor; the general query does.
            Ok(match (&logs.next_cursor, format) {
                (Some(cursor), OutputFormat::Table) => output.with_note(format!(
                    "more records: scaivault audit logs --path {path} --cursor {cursor} (or --all)"
                )),
                _ => output,
            })
        }
        AuditCommand::Identity { id, range } => {
            let report = client.audit_identity(&id, &audit_range(range)).await?;
            let output = render(format, &report, |r| render_identity(&id, r))?;
            let shown = report.logs.len() as u64;
            Ok(match format {
                OutputFormat::Table if shown < report.summary.total => output.with_note(format!(
                    "showing {shown} of {} records: scaivault audit logs --identity {id} --all",
                    report.summary.total
                )),
                _ => output,
            })
        }
        AuditCommand::Verify { range } => {
            let verdict = client.audit_verify(&audit_range(range)).await?;
            let output = render(format, &verdict, render_verify)?;
            if verdict.verified {
                Ok(output)
            } else {
                let message = match &verdict.first_broken {
                    Some(b) => format!(
                        "the audit chain is broken at record {}: {}",
                        b.seq, b.reason
                    ),
                    None => "the audit chain is broken".to_owned(),
                };
                Err(Failure::Verdict {
                    report: output.stdout,
                    message: Some(message),
                    exit: EXIT_FAILURE,
                })
            }
        }
        AuditCommand::Hmac { input } => {
            let hmac = client.audit_hmac(&input).await?;
            match format {
                OutputFormat::Table => Ok(Output::text(hmac + "\n")),
                OutputFormat::Json => output::json(&serde_json::json!({ "hmac": hmac })),
            }
        }
        AuditCommand::Export(args) => export(client, format, args).await,
        AuditCommand::ExportStatus { id } => {
            let job = client.audit_export_status(&id).await?;
            job_output(format, &job)
        }
    }
}

fn audit_range(range: RangeArgs) -> AuditRange {
    AuditRange {
        from: range.from,
        to: range.to,
    }
}

fn export_request(args: &ExportArgs) -> Result<ExportRequest, Failure> {
    let destination = match (&args.file, &args.s3_bucket) {
        (Some(path), None) => ExportDestination::File { path: path.clone() },
        (None, Some(bucket)) => ExportDestination::S3 {
            bucket: bucket.clone(),
            prefix: args.s3_prefix.clone().unwrap_or_default(),
            credentials_path: args
                .credentials_path
                .clone()
                .ok_or_else(|| Failure::Usage("--s3-bucket needs --credentials-path".to_owned()))?,
            region: args.region.clone(),
            endpoint: args.endpoint.clone(),
        },
        _ => {
            return Err(Failure::Usage(
                "give either --file or --s3-bucket".to_owned(),
            ));
        }
    };
    Ok(ExportRequest {
        from: args.from.clone(),
        to: args.to.clone(),
        format: "jsonl".to_owned(),
        destination,
    })
}

async fn export(
    client: &Client,
    format: OutputFormat,
    args: ExportArgs,
) -> Result<Output, Failure> {
    let request = export_request(&args)?;
    let mut job = client.audit_export(&request).await?;
    if !args.wait {
        let output = job_output(format, &job)?;
        return Ok(output.with_note(format!(
            "Follow it with: scaivault audit export-status {}",
            job.id
        )));
    }
    let timeout = parse_duration(&args.wait_timeout)
        .map_err(|e| Failure::Usage(format!("--wait-timeout: {e}")))?;
    let started = Instant::now();
    let mut pause = FIRST_POLL;
    while job.status == EXPORT_RUNNING {
        if started.elapsed() >= timeout {
            return Err(Failure::Local(format!(
                "export {} is still running after {}; it continues on the server \
                 (check with: scaivault audit export-status {})",
                job.id, args.wait_timeout, job.id
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_POLL);
        job = client.audit_export_status(&job.id).await?;
    }
    job_output(format, &job)
}

/// The job document; a failed job is exit code 1 with its error on stderr.
fn job_output(format: OutputFormat, job: &ExportJob) -> Result<Output, Failure> {
    let output = render(format, job, render_job)?;
    if job.status == EXPORT_FAILED {
        return Err(Failure::Verdict {
            report: output.stdout,
            message: Some(format!(
                "export {} failed: {}",
                job.id,
                job.error.as_deref().unwrap_or("no reason given")
            )),
            exit: EXIT_FAILURE,
        });
    }
    Ok(output)
}

fn describe_destination(destination: &ExportDestination) -> String {
    match destination {
        ExportDestination::File { path } => format!("file {path}"),
        ExportDestination::S3 {
            bucket,
            prefix,
            endpoint,
            ..
        } => {
            let mut text = format!("s3://{bucket}/{prefix}");
            if let Some(endpoint) = endpoint {
                text.push_str(&format!(" at {endpoint}"));
            }
            text
        }
    }
}

fn render_job(job: &ExportJob) -> String {
    let header = pairs(&[
        ("id", job.id.clone()),
        ("status", job.status.clone()),
        ("from", time(&job.from)),
        ("to", time(&job.to)),
        ("format", job.format.clone()),
        ("destination", describe_destination(&job.destination)),
        ("records_exported", job.records_exported.to_string()),
        ("error", opt_text(&job.error)),
        ("created_at", time(&job.created_at)),
        ("completed_at", opt_time(&job.completed_at)),
    ]);
    if job.objects.is_empty() {
        return header;
    }
    let mut table = Table::with_header(["LOCATION", "RECORDS", "BYTES"]);
    for object in &job.objects {
        table.row(vec![
            object.location.clone(),
            object.records.to_string(),
            object.bytes.to_string(),
        ]);
    }
    format!("{header}\n{}", table.render())
}

fn render_logs(logs: &[AuditRecord]) -> String {
    let mut table = Table::with_header([
        "SEQ", "TIME", "IDENTITY", "ACTION", "PATH", "OUTCOME", "STATUS", "REQUEST",
    ]);
    for r in logs {
        table.row(vec![
            r.seq.to_string(),
            time(&r.timestamp),
            opt_text(&r.identity_id),
            r.action.clone(),
            opt_text(&r.path),
            r.outcome.clone(),
            r.status.to_string(),
            r.request_id.clone(),
        ]);
    }
    table.render()
}

fn render_identity(id: &str, report: &IdentityAuditResponse) -> String {
    let s = &report.summary;
    let summary = pairs(&[
        ("identity", id.to_owned()),
        ("total", s.total.to_string()),
        ("first_seen", opt_time(&s.first_seen)),
        ("last_seen", opt_time(&s.last_seen)),
        ("resources_accessed", list(&s.resources_accessed)),
    ]);
    let mut actions = Table::with_header(["ACTION", "COUNT"]);
    for (action, count) in &s.by_action {
        actions.row(vec![action.clone(), count.to_string()]);
    }
    format!(
        "{summary}\n{}\n{}",
        actions.render(),
        render_logs(&report.logs)
    )
}

fn render_verify(v: &VerifyResponse) -> String {
    let opt = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".to_owned());
    pairs(&[
        ("verified", if v.verified { "yes" } else { "no" }.to_owned()),
        ("checked", v.checked.to_string()),
        ("first_seq", opt(v.first_seq)),
        ("last_seq", opt(v.last_seq)),
        ("keyed", v.keyed.to_string()),
        ("legacy_unkeyed", v.legacy_unkeyed.to_string()),
        ("checkpoint_seq", opt(v.checkpoint.as_ref().map(|c| c.seq))),
        (
            "first_broken",
            v.first_broken
                .as_ref()
                .map(|b| format!("{}: {}", b.seq, b.reason))
                .unwrap_or_else(|| "-".to_owned()),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn export_args(args: &[&str]) -> Result<ExportArgs, clap::Error> {
        let cli = Cli::try_parse_from(
            [
                "scaivault",
                "audit",
                "export",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-30",
            ]
            .into_iter()
            .chain(args.iter().copied()),
        )?;
        match cli.command {
            Command::Audit(AuditCommand::Export(args)) => Ok(args),
            other => unreachable!("{other:?}"),
        }
    }

    #[test]
    fn export_destinations() {
        let file = export_args(&["--file", "audit/nov.jsonl", "--wait"]).ok();
        let request = file.as_ref().and_then(|a| export_request(a).ok());
        let json = request.and_then(|r| serde_json::to_value(r).ok());
        assert_eq!(
            json,
            Some(serde_json::json!({
                "from": "2026-11-01", "to": "2026-11-30", "format": "jsonl",
                "destination": {"type": "file", "path": "audit/nov.jsonl"}
            }))
        );
        let s3 = export_args(&[
            "--s3-bucket",
            "logs",
            "--s3-prefix",
            "vault/",
            "--credentials-path",
            "infra/s3",
            "--endpoint",
            "http://minio:9000",
        ])
        .ok();
        let request = s3.as_ref().and_then(|a| export_request(a).ok());
        let json = request.and_then(|r| serde_json::to_value(r).ok());
        assert_eq!(
            json.map(|j| j["destination"].clone()),
            Some(serde_json::json!({
                "type": "s3", "bucket": "logs", "prefix": "vault/",
                "credentials_path": "infra/s3", "region": null, "endpoint": "http://minio:9000"
            }))
        );
        let usage = |args: &[&str]| export_args(args).err().map(|e| e.exit_code());
        // Exactly one destination; S3 needs credentials; S3 options need a bucket.
        assert_eq!(usage(&[]), Some(2));
        assert_eq!(
            usage(&["--file", "a", "--s3-bucket", "b", "--credentials-path", "c"]),
            Some(2)
        );
        assert_eq!(usage(&["--s3-bucket", "b"]), Some(2));
        assert_eq!(usage(&["--file", "a", "--region", "eu-west-1"]), Some(2));
        assert_eq!(usage(&["--file", "a", "--wait-timeout", "5m"]), Some(2));
        assert_eq!(
            usage(&["--file", "a", "--wait", "--wait-timeout", "soon"]),
            Some(2)
        );
    }
}
