//! Export jobs: a range of the log as JSONL, to S3 or to a file under the export directory.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use scaivault_api::ErrorCode;
use scaivault_api::audit::{ExportDestination, ExportJob, ExportRequest, ExportedObject};
use secrecy::SecretString;
use time::OffsetDateTime;

use super::s3::{S3Client, S3Credentials, S3Target, validate_bucket_name, validate_key};
use super::service::parse_time;
use crate::crypto::token::{hex, random_bytes};
use crate::error::{Error, Result};
use crate::store::{AuditQuery, AuditStore};

/// Records per exported object (`part-NNNNN.jsonl`).
pub const RECORDS_PER_OBJECT: usize = 10_000;

pub struct Exporter {
    store: Arc<dyn AuditStore>,
    export_dir: Option<PathBuf>,
    /// Jobs this process runs. A job stored as `running` that is not here was cut off by
    /// a stop or a crash: it is reported (and recorded) as failed, never `running` forever.
    running: Arc<Mutex<HashSet<String>>>,
}

/// Why a job stored as running is not: its server stopped before it finished.
const INTERRUPTED: &str =
    "interrupted: the server stopped before the export finished; start it again";

fn lock(running: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    running
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where a running job writes, with credentials resolved at submission.
enum Sink {
    S3 {
        // Boxed: the client's options are far larger than the file variant.
        client: Box<S3Client>,
        target: S3Target,
        prefix: String,
    },
    File {
        path: PathBuf,
    },
}

fn field(data: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<String> {
    data.get(name).and_then(|v| v.as_str()).map(str::to_owned)
}

/// Builds S3 credentials from a secret's fields; names missing fields, never values.
/// A secret with neither key field means the server's own AWS credential chain
/// (environment, web identity / IRSA, pod identity, instance metadata).
pub fn credentials_from_secret(
    data: &serde_json::Map<String, serde_json::Value>,
) -> Result<(Option<S3Credentials>, Option<String>, Option<String>)> {
    let credentials = match (
        field(data, "access_key_id"),
        field(data, "secret_access_key"),
    ) {
        (Some(key_id), Some(secret)) => {
            let mut c = S3Credentials::new(key_id, SecretString::from(secret));
            if let Some(token) = field(data, "session_token") {
                c = c.with_session_token(SecretString::from(token));
            }
            Some(c)
        }
        (None, None) if field(data, "session_token").is_none() => None,
        _ => {
            return Err(Error::invalid(
                "the credentials secret needs both fields access_key_id and secret_access_key \
                 (or neither, for the server's own AWS credentials)",
            ));
        }
    };
    Ok((credentials, field(data, "endpoint"), field(data, "region")))
}

/// `<prefix>part-NNNNN.jsonl`.
fn object_key(prefix: &str, part: usize) -> String {
    format!("{prefix}part-{part:05}.jsonl")
}

/// A relative path without `..`, so an export can never write outside its directory.
fn safe_relative(path: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && path.len() <= 512
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p.to_path_buf())
    } else {
        Err(Error::invalid(
            "destination.path must be a relative path without '..'",
        ))
    }
}

impl Exporter {
    pub fn new(store: Arc<dyn AuditStore>, export_dir: Option<PathBuf>) -> Self {
        Exporter {
            store,
            export_dir,
            running: Arc::default(),
        }
    }

    /// Validates the request, resolves the destination and starts the job in the
    /// background. `credentials` holds the S3 credentials secret's data, when needed.
    pub async fn start(
        &self,
        request: ExportRequest,
        credentials: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<ExportJob> {
        if request.format != "jsonl" {
            return Err(Error::invalid("format must be \"jsonl\""));
        }
        let from = parse_time(&request.from, false)?;
        let to = parse_time(&request.to, true)?;
        if from > to {
            return Err(Error::invalid("from must not be after to"));
        }
        let sink = match &request.destination {
            ExportDestination::S3 {
                bucket,
                prefix,
                region,
                endpoint,
                ..
            } => {
                validate_bucket_name(bucket).map_err(|e| Error::invalid(e.to_string()))?;
                // The longest key the job will write, checked before it starts.
                validate_key(&object_key(prefix, 99_999))
                    .map_err(|e| Error::invalid(format!("prefix: {e}")))?;
                let data =
                    credentials.ok_or_else(|| Error::invalid("credentials_path is required"))?;
                let (creds, secret_endpoint, secret_region) = credentials_from_secret(&data)?;
                let mut target = S3Target::ambient(bucket.clone());
                target.credentials = creds;
                if let Some(region) = region.clone().or(secret_region) {
                    target = target.with_region(region);
                }
                if let Some(endpoint) = endpoint.clone().or(secret_endpoint) {
                    target = target.with_endpoint(endpoint);
                }
                let client = Box::new(S3Client::new().map_err(Error::internal)?);
                Sink::S3 {
                    client,
                    target,
                    prefix: prefix.clone(),
                }
            }
            ExportDestination::File { path } => {
                let dir = self.export_dir.as_ref().ok_or_else(|| {
                    Error::new(
                        ErrorCode::InvalidRequest,
                        "file exports are disabled: start the server with --audit-export-dir",
                    )
                })?;
                Sink::File {
                    path: dir.join(safe_relative(path)?),
                }
            }
        };
        let id = format!(
            "exp_{}",
            hex(random_bytes::<8>().map_err(Error::internal)?.as_ref())
        );
        let job = ExportJob {
            id,
            status: "running".into(),
            from,
            to,
            format: request.format,
            destination: request.destination,
            records_exported: 0,
            objects: Vec::new(),
            error: None,
            created_at: OffsetDateTime::now_utc(),
            completed_at: None,
        };
        lock(&self.running).insert(job.id.clone());
        if let Err(e) = self.save(&job).await {
            lock(&self.running).remove(&job.id);
            return Err(e);
        }
        let store = Arc::clone(&self.store);
        let running = job.clone();
        let jobs = Arc::clone(&self.running);
        tokio::spawn(async move {
            let mut job = running;
            if let Err(e) = run(&store, &mut job, sink).await {
                job.status = "failed".into();
                job.error = Some(e);
            } else {
                job.status = "completed".into();
            }
            job.completed_at = Some(OffsetDateTime::now_utc());
            if let Ok(body) = serde_json::to_string(&job)
                && let Err(e) = store.save_export(&job.id, body).await
            {
                tracing::error!(job = %job.id, error = %e, "could not record export status");
            }
            lock(&jobs).remove(&job.id);
            tracing::info!(job = %job.id, status = %job.status, records = job.records_exported, "audit export finished");
        });
        Ok(job)
    }

    async fn save(&self, job: &ExportJob) -> Result<()> {
        let body = serde_json::to_string(job).map_err(Error::internal)?;
        self.store
            .save_export(&job.id, body)
            .await
            .map_err(Error::from)
    }

    pub async fn get(&self, id: &str) -> Result<ExportJob> {
        // Asked before the row is read: a job removes itself from the set only after its
        // final row is saved, and adds itself before its first, so a row that still says
        // `running` while the job was not in the set belongs to no live job.
        let live_here = lock(&self.running).contains(id);
        let body = self
            .store
            .get_export(id)
            .await?
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no export job {id}")))?;
        let mut job: ExportJob = serde_json::from_str(&body).map_err(Error::internal)?;
        if job.status == "running" && !live_here {
            job.status = "failed".into();
            job.error = Some(INTERRUPTED.into());
            job.completed_at = Some(OffsetDateTime::now_utc());
            self.save(&job).await?;
        }
        Ok(job)
    }
}

/// Streams the range page by page; each page of up to `RECORDS_PER_OBJECT` records becomes
/// one object (S3) or is appended to the file.
async fn run(store: &Arc<dyn AuditStore>, job: &mut ExportJob, sink: Sink) -> Result<(), String> {
    let mut after_seq = None;
    let mut part = 0usize;
    let mut file = match &sink {
        Sink::File { path } => {
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            Some(
                tokio::fs::File::create(path)
                    .await
                    .map_err(|e| format!("creating {}: {e}", path.display()))?,
            )
        }
        Sink::S3 { .. } => None,
    };
    loop {
        let rows = store
            .query(AuditQuery {
                from: Some(job.from),
                to: Some(job.to),
                after_seq,
                limit: RECORDS_PER_OBJECT,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = rows.last() else { break };
        after_seq = Some(last.seq);
        let mut body = Vec::with_capacity(rows.iter().map(|r| r.body.len() + 1).sum());
        for row in &rows {
            body.extend_from_slice(row.body.as_bytes());
            body.push(b'\n');
        }
        let bytes = body.len() as u64;
        let location = match (&sink, file.as_mut()) {
            (
                Sink::S3 {
                    client,
                    target,
                    prefix,
                },
                _,
            ) => {
                let key = object_key(prefix, part);
                client
                    .put_object(target, &key, body, "application/x-ndjson")
                    .await
                    .map_err(|e| format!("uploading {key}: {e}"))?;
                key
            }
            (Sink::File { path }, Some(f)) => {
                use tokio::io::AsyncWriteExt;
                f.write_all(&body)
                    .await
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
                path.display().to_string()
            }
            (Sink::File { .. }, None) => return Err("export file not open".into()),
        };
        job.records_exported += rows.len() as u64;
        match job.objects.last_mut() {
            Some(o) if o.location == location => {
                o.records += rows.len() as u64;
                o.bytes += bytes;
            }
            _ => job.objects.push(ExportedObject {
                location,
                records: rows.len() as u64,
                bytes,
            }),
        }
        part += 1;
        if rows.len() < RECORDS_PER_OBJECT {
            break;
        }
    }
    if let Some(mut f) = file {
        use tokio::io::AsyncWriteExt;
        f.flush().await.map_err(|e| e.to_string())?;
        f.sync_all().await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_paths_stay_inside_the_directory() {
        assert!(safe_relative("2026-04/audit.jsonl").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./x"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }
}
