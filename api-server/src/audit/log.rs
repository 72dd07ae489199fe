//! The writer: records are chained and committed in batches (group commit), and every
//! request waits until its records are durable.
//!
//! The writer is a thread of its own rather than a task: a group commit is a blocking
//! SQLite transaction, and running it where the batch is built saves two thread hand-offs
//! per commit (to the blocking pool and back), which every waiting request would pay.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::record::{AuditRecord, GENESIS_HASH, seal_with_body};
use crate::store::{AuditRow, AuditStore, StoreError};

/// Most records committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Requests waiting for the writer before new ones wait to enqueue (backpressure).
const QUEUE_DEPTH: usize = 8192;

/// Duration of each group commit (insert and fsync): what every audited request waits
/// for, once or twice. Process-wide, like the writer; registered by `Metrics`.
pub static COMMIT_SECONDS: LazyLock<Histogram> =
    LazyLock::new(|| Histogram::new(exponential_buckets(0.0001, 2.0, 16)));
/// Records per group commit.
pub static BATCH_RECORDS: LazyLock<Histogram> =
    LazyLock::new(|| Histogram::new(exponential_buckets(1.0, 2.0, 12)));

struct Pending {
    records: Vec<AuditRecord>,
    reply: oneshot::Sender<Result<(), String>>,
}

#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Pending>,
}

impl AuditWriter {
    /// Continues the chain from the newest stored record.
    pub async fn start(store: Arc<dyn AuditStore>) -> crate::store::Result<Self> {
        let last = store.last_record().await?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let chain = last.unwrap_or((0, GENESIS_HASH.to_owned()));
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run(store.as_ref(), rx, chain))
            .map_err(|e| StoreError::Unavailable(format!("audit writer thread: {e}")))?;
        Ok(AuditWriter { tx })
    }

    /// Whether the writer thread still takes records (readiness).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Returns once the records are durable, or an error: then the request must fail.
    pub async fn write(&self, records: Vec<AuditRecord>) -> Result<(), String> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Pending { records, reply })
            .await
            .map_err(|_| "audit writer stopped".to_owned())?;
        done.await.map_err(|_| "audit writer stopped".to_owned())?
    }
}

/// Ends when every `AuditWriter` is dropped.
fn run(store: &dyn AuditStore, mut rx: mpsc::Receiver<Pending>, mut last: (u64, String)) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        let mut count = batch[0].records.len();
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => {
                    count += p.records.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let (mut seq, mut prev) = last.clone();
        let mut rows = Vec::with_capacity(count);
        for pending in &mut batch {
            for record in &mut pending.records {
                seq += 1;
                record.seq = seq;
                record.id = format!("aud_{seq:012}");
                record.prev_hash = std::mem::take(&mut prev);
                let body = seal_with_body(record);
                prev = record.hash.clone();
                // The record is not used after this: its columns move into the row.
                rows.push(AuditRow {
                    seq,
                    timestamp: record.timestamp,
                    identity_id: record.identity_id.take(),
                    path: record.path.take(),
                    action: std::mem::take(&mut record.action),
                    outcome: std::mem::take(&mut record.outcome),
                    body,
                    hash: std::mem::take(&mut record.hash),
                });
            }
        }
        let started = Instant::now();
        let result = store.append(rows).map_err(|e| e.to_string());
        COMMIT_SECONDS.observe(started.elapsed().as_secs_f64());
        BATCH_RECORDS.observe(count as f64);
        match &result {
            // Only durable records advance the chain; after a failure the next batch
            // reuses the same sequence numbers.
            Ok(()) => last = (seq, prev),
            Err(e) => {
                tracing::error!(error = %e, records = count, "audit write failed; failing the requests")
            }
        }
        for pending in batch {
            let _ = pending.reply.send(result.clone());
        }
    }
}

/// A record with the fields the writer fills left empty.
pub fn unsealed(now: OffsetDateTime) -> AuditRecord {
    AuditRecord {
        id: String::new(),
        seq: 0,
        timestamp: now,
        request_id: String::new(),
        identity_id: None,
        identity_type: None,
        action: String::new(),
        path: None,
        permission: None,
        outcome: String::new(),
        status: 0,
        source_ip: None,
        user_agent: None,
        accessor_hmac: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}
