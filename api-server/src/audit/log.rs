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
use tokio::sync::{mpsc, oneshot, watch};

use super::record::{AuditRecord, ChainKey, GENESIS_HASH, seal_with_body};
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

/// The newest durable record: (seq, hash).
pub type Tail = (u64, String);

struct Pending {
    records: Vec<AuditRecord>,
    /// The `seq` of the first record, once durable.
    reply: oneshot::Sender<Result<u64, String>>,
}

#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Pending>,
}

/// The newest stored record, else the last one retention removed, else the genesis of
/// an empty log.
pub async fn stored_tail(store: &dyn AuditStore) -> crate::store::Result<Tail> {
    if let Some(last) = store.last_record().await? {
        return Ok(last);
    }
    Ok(store
        .checkpoint()
        .await?
        .unwrap_or((0, GENESIS_HASH.to_owned())))
}

impl AuditWriter {
    /// Appends to the stored chain, keyed by `key`; every commit publishes the new tail on
    /// the returned channel (checkpoints follow it), which starts at `tail` (the newest
    /// stored record when the server started).
    pub fn start(
        store: Arc<dyn AuditStore>,
        key: ChainKey,
        tail: Tail,
    ) -> crate::store::Result<(Self, watch::Receiver<Tail>)> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (tail_tx, tail_rx) = watch::channel(tail.clone());
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run(store.as_ref(), &key, rx, tail, &tail_tx))
            .map_err(|e| StoreError::Unavailable(format!("audit writer thread: {e}")))?;
        Ok((AuditWriter { tx }, tail_rx))
    }

    /// Whether the writer thread still takes records (readiness).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Returns the first record's `seq` once the records are durable, or an error: then the
    /// request must fail.
    pub async fn write(&self, records: Vec<AuditRecord>) -> Result<u64, String> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Pending { records, reply })
            .await
            .map_err(|_| "audit writer stopped".to_owned())?;
        done.await.map_err(|_| "audit writer stopped".to_owned())?
    }
}

/// Ends when every `AuditWriter` is dropped.
fn run(
    store: &dyn AuditStore,
    key: &ChainKey,
    mut rx: mpsc::Receiver<Pending>,
    mut last: Tail,
    tail: &watch::Sender<Tail>,
) {
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
        let mut firsts = Vec::with_capacity(batch.len());
        // The store reads the stored tail under its append lock and the records are
        // sealed then. A tail past this writer's last record is another replica's, and
        // the batch continues it; otherwise the batch continues what this writer itself
        // wrote, as it remembers it: an edited or truncated tail in the database is not
        // taken up into the chain, and verify keeps reporting it.
        let mut seal = |stored: &Tail| {
            firsts.clear();
            let (seq, prev) = if stored.0 > last.0 { stored } else { &last };
            chain(&mut batch, key, *seq, prev.clone(), &mut firsts, count)
        };
        let started = Instant::now();
        let result = store.append(&mut seal).map_err(|e| e.to_string());
        COMMIT_SECONDS.observe(started.elapsed().as_secs_f64());
        BATCH_RECORDS.observe(count as f64);
        match &result {
            Ok(new) => {
                last = new.clone();
                tail.send_replace(new.clone());
            }
            Err(e) => {
                tracing::error!(error = %e, records = count, "audit write failed; failing the requests")
            }
        }
        for (pending, first) in batch.into_iter().zip(firsts) {
            let _ = pending.reply.send(result.clone().map(|_| first));
        }
    }
}

/// Numbers and seals the batch's records after `(seq, prev)`, noting each request's first
/// `seq` in `firsts`; the records' columns move into the rows.
fn chain(
    batch: &mut [Pending],
    key: &ChainKey,
    mut seq: u64,
    mut prev: String,
    firsts: &mut Vec<u64>,
    count: usize,
) -> Vec<AuditRow> {
    let mut rows = Vec::with_capacity(count);
    for pending in batch {
        firsts.push(seq + 1);
        for record in &mut pending.records {
            seq += 1;
            record.seq = seq;
            record.id = format!("aud_{seq:012}");
            record.prev_hash = std::mem::take(&mut prev);
            let body = seal_with_body(record, key);
            prev = record.hash.clone();
            rows.push(AuditRow {
                seq,
                timestamp: record.timestamp,
                identity_id: record.identity_id.take(),
                path: record.path.take(),
                action: std::mem::take(&mut record.action),
                outcome: std::mem::take(&mut record.outcome),
                phase: record.phase.map(|p| p.as_str().to_owned()),
                request_seq: record.request_seq,
                body,
                hash: std::mem::take(&mut record.hash),
            });
        }
    }
    rows
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
        phase: None,
        request_seq: None,
        reason: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}
