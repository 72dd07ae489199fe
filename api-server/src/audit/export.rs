//! Export jobs: a range of the log as JSONL, to S3 or to a file under the export directory.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use scaivault_api::ErrorCode;
use scaivault_api::audit::{ExportDestination, ExportJob, ExportRequest, ExportedObject};
use secrecy::SecretString;
use time::OffsetDateTime;

use super::s3::{S3Client, S3Credentials, S3Target, validate_bucket_name, validate_key};
use super::service::parse_time;
use crate::crypto::token::{hex, random_bytes};
use crate::error::{Error, Result};
use crate::jobs::leadership::Leadership;
use crate::store::{AuditQuery, AuditStore};

/// Records per exported object (`part-NNNNN.jsonl`).
pub const RECORDS_PER_OBJECT: usize = 10_000;

/// How often the job runner looks for export jobs to start or resume.
const RESUME_EVERY: Duration = Duration::from_secs(1);

/// Export jobs are durable: each is a row (`running` until it finishes) that the job
/// runner ([`Leadership`]) owns. A job submitted to the runner starts at once; one
/// submitted to another replica, or left unfinished by a runner that stopped, is started
/// by the runner's resumer within [`RESUME_EVERY`], from the beginning of its range (its
/// objects are overwritten, never duplicated). A runner that loses its term abandons its
/// jobs at the next object, leaving them to the next runner.
pub struct Exporter {
    store: Arc<dyn AuditStore>,
    export_dir: Option<PathBuf>,
    leadership: Leadership,
    /// Reads the S3 credentials secret of a job resumed without its submitter.
    credentials: Arc<dyn CredentialsSource>,
    /// Jobs this process runs now.
    running: Arc<Mutex<HashSet<String>>>,
}

/// Reads a secret's data on the vault's own authority: the submitter was authorised to
/// read the credentials when the job was accepted.
#[async_trait]
pub trait CredentialsSource: Send + Sync {
    async fn secret_data(&self, path: &str) -> Result<serde_json::Map<String, serde_json::Value>>;
}

#[async_trait]
impl CredentialsSource for crate::vault::Vault {
    async fn secret_data(&self, path: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
        Ok(self.secrets.read(path, None).await?.data)
    }
}

/// A job as stored: what the API shows, and the runner term that runs it.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredJob {
    #[serde(flatten)]
    job: ExportJob,
    /// `None`: queued on a replica that does not run jobs.
    #[serde(default)]
    runner_term: Option<u64>,
}

/// Why a job stopped without finishing: its runner lost its term.
const ABANDONED: &str = "the job runner changed";

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
    pub fn new(
        store: Arc<dyn AuditStore>,
        export_dir: Option<PathBuf>,
        leadership: Leadership,
        credentials: Arc<dyn CredentialsSource>,
    ) -> Self {
        Exporter {
            store,
            export_dir,
            leadership,
            credentials,
            running: Arc::default(),
        }
    }

    /// Validates the request, resolves the destination and stores the job; the job
    /// runner runs it (at once, when this replica is the runner). `credentials` holds
    /// the S3 credentials secret's data, when needed.
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
        let sink = self.sink(&request.destination, credentials)?;
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
            attempts: 0,
        };
        match self.leadership.term() {
            Some(term) => self.run_under(job.clone(), term, sink).await?,
            None => {
                self.save(&StoredJob {
                    job: job.clone(),
                    runner_term: None,
                })
                .await?
            }
        }
        Ok(job)
    }

    /// Where a job writes, with its credentials resolved.
    fn sink(
        &self,
        destination: &ExportDestination,
        credentials: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<Sink> {
        Ok(match destination {
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
        })
    }

    /// Claims the job for `term` (one more attempt) and runs it in the background.
    async fn run_under(&self, mut job: ExportJob, term: u64, sink: Sink) -> Result<()> {
        job.status = "running".into();
        job.attempts += 1;
        // In the set before the claim is stored: the resumer never takes a job this
        // process runs.
        lock(&self.running).insert(job.id.clone());
        let claimed = StoredJob {
            job: job.clone(),
            runner_term: Some(term),
        };
        if let Err(e) = self.save(&claimed).await {
            lock(&self.running).remove(&job.id);
            return Err(e);
        }
        let store = Arc::clone(&self.store);
        let jobs = Arc::clone(&self.running);
        let leadership = self.leadership.clone();
        tokio::spawn(async move {
            let still_runner = || leadership.term() == Some(term);
            match run(&store, &mut job, sink, &still_runner).await {
                Err(e) if e == ABANDONED => {
                    tracing::warn!(job = %job.id, "audit export left to the next job runner");
                    lock(&jobs).remove(&job.id);
                    return;
                }
                Err(e) => {
                    job.status = "failed".into();
                    job.error = Some(e);
                }
                Ok(()) => job.status = "completed".into(),
            }
            job.completed_at = Some(OffsetDateTime::now_utc());
            let finished = StoredJob {
                job,
                runner_term: Some(term),
            };
            if let Err(e) = save_in(store.as_ref(), &finished).await {
                tracing::error!(job = %finished.job.id, error = %e, "could not record export status");
            }
            lock(&jobs).remove(&finished.job.id);
            tracing::info!(job = %finished.job.id, status = %finished.job.status, records = finished.job.records_exported, "audit export finished");
        });
        Ok(())
    }

    async fn save(&self, stored: &StoredJob) -> Result<()> {
        save_in(self.store.as_ref(), stored).await
    }

    pub async fn get(&self, id: &str) -> Result<ExportJob> {
        let body = self
            .store
            .get_export(id)
            .await?
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no export job {id}")))?;
        let stored: StoredJob = serde_json::from_str(&body).map_err(Error::internal)?;
        Ok(stored.job)
    }

    /// While this replica runs the jobs, starts every stored job still to finish that
    /// it does not run already: queued on another replica, or cut off with the runner
    /// that ran it. Ends with `shutdown`.
    pub fn spawn_resumer(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Some(term) = self.leadership.term()
                    && let Err(e) = self.resume(term).await
                {
                    tracing::warn!(error = %e, "looking for audit exports to resume");
                }
                tokio::select! {
                    _ = tokio::time::sleep(RESUME_EVERY) => {}
                    _ = shutdown.changed() => return,
                }
            }
        })
    }

    async fn resume(&self, term: u64) -> Result<()> {
        for body in self.store.running_exports().await? {
            let Ok(stored) = serde_json::from_str::<StoredJob>(&body) else {
                tracing::error!("an export job's stored state does not decode; skipping it");
                continue;
            };
            let mut job = stored.job;
            if lock(&self.running).contains(&job.id) {
                continue;
            }
            let credentials = match &job.destination {
                ExportDestination::S3 {
                    credentials_path, ..
                } => match self.credentials.secret_data(credentials_path).await {
                    Ok(data) => Some(data),
                    Err(e) => {
                        self.fail(job, term, format!("reading the credentials secret: {e}"))
                            .await?;
                        continue;
                    }
                },
                ExportDestination::File { .. } => None,
            };
            match self.sink(&job.destination, credentials) {
                Ok(sink) => {
                    if stored.runner_term.is_some() {
                        tracing::info!(job = %job.id, attempt = job.attempts + 1, "resuming an audit export its runner left unfinished");
                    }
                    job.records_exported = 0;
                    job.objects.clear();
                    self.run_under(job, term, sink).await?;
                }
                Err(e) => self.fail(job, term, e.to_string()).await?,
            }
        }
        Ok(())
    }

    async fn fail(&self, mut job: ExportJob, term: u64, error: String) -> Result<()> {
        job.status = "failed".into();
        job.error = Some(error);
        job.completed_at = Some(OffsetDateTime::now_utc());
        self.save(&StoredJob {
            job,
            runner_term: Some(term),
        })
        .await
    }
}

async fn save_in(store: &dyn AuditStore, stored: &StoredJob) -> Result<()> {
    let body = serde_json::to_string(stored).map_err(Error::internal)?;
    let running = stored.job.status == "running";
    store
        .save_export(&stored.job.id, body, running)
        .await
        .map_err(Error::from)
}

/// Streams the range page by page; each page of up to `RECORDS_PER_OBJECT` records becomes
/// one object (S3) or is appended to the file.
async fn run(
    store: &Arc<dyn AuditStore>,
    job: &mut ExportJob,
    sink: Sink,
    still_runner: &(dyn Fn() -> bool + Sync),
) -> Result<(), String> {
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
        if !still_runner() {
            return Err(ABANDONED.into());
        }
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
