//! Group commit of units of work: the data writer is a thread of its own that takes every
//! unit waiting for it and commits them in one transaction, each in a savepoint of its
//! own. One fsync then makes many requests' changes durable, where one per unit capped
//! concurrent writes at the disk's sync rate.
//!
//! A unit that fails rolls back to its savepoint alone; the others of the batch commit.
//! If the failure took the whole transaction with it (SQLite rolls back by itself on a
//! full disk or an I/O error), every unit of the batch gets the error: none of them is
//! committed, so none may be acknowledged. A lone unit is committed at once: nothing
//! waits for a batch to fill.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::feed;
use super::{CacheEffects, apply, map_err};
use crate::store::feed::Planned;
use crate::store::read_cache::ReadCache;
use crate::store::unit_of_work::{Committed, Prepared};
use crate::store::wal_checkpoint::Checkpointer;
use crate::store::{Result, StoreError, now_millis};

/// Most units committed in one transaction.
const MAX_BATCH: usize = 256;
/// Units waiting for the writer before new ones wait to enqueue (backpressure).
const QUEUE_DEPTH: usize = 4096;

/// Duration of each group commit (fsync included); process-wide, registered by `Metrics`.
pub static DATA_COMMIT_SECONDS: LazyLock<Histogram> =
    LazyLock::new(|| Histogram::new(exponential_buckets(0.0001, 2.0, 16)));
/// Units per group commit: how much batching the load produces.
pub static DATA_COMMIT_UNITS: LazyLock<Histogram> =
    LazyLock::new(|| Histogram::new(exponential_buckets(1.0, 2.0, 9)));

struct Pending {
    unit: Prepared,
    effects: CacheEffects,
    reply: oneshot::Sender<Result<Committed>>,
}

#[derive(Clone)]
pub(super) struct GroupCommitter {
    tx: mpsc::Sender<Pending>,
}

impl GroupCommitter {
    pub(super) fn start(
        writer: Arc<Mutex<Connection>>,
        cache: Arc<ReadCache>,
        checkpointer: Arc<Checkpointer>,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("data-writer".into())
            .spawn(move || run(&writer, &cache, &checkpointer, rx))
            .map_err(|e| StoreError::Unavailable(format!("data writer thread: {e}")))?;
        Ok(GroupCommitter { tx })
    }

    /// Commits the unit's changes (with the next batch) and returns its results. The unit
    /// is committed, and its cache entries dropped, even if the caller stops waiting.
    pub(super) async fn commit(&self, unit: Prepared, effects: CacheEffects) -> Result<Committed> {
        let (reply, done) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the data writer stopped".into());
        self.tx
            .send(Pending {
                unit,
                effects,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

/// Ends when every [`GroupCommitter`] is dropped (the store is gone).
fn run(
    writer: &Mutex<Connection>,
    cache: &ReadCache,
    checkpointer: &Checkpointer,
    mut rx: mpsc::Receiver<Pending>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let mut units = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for pending in batch {
            units.push(pending.unit);
            replies.push((pending.effects, pending.reply));
        }
        DATA_COMMIT_UNITS.observe(units.len() as f64);
        let started = Instant::now();
        let outcomes = {
            let mut conn = writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            commit_batch(&mut conn, units)
        };
        DATA_COMMIT_SECONDS.observe(started.elapsed().as_secs_f64());
        checkpointer.notify();
        for ((effects, reply), outcome) in replies.into_iter().zip(outcomes) {
            effects.apply(cache, &outcome);
            let _ = reply.send(outcome);
        }
    }
}

/// One unit's changes and their change records, inside the batch's transaction.
fn apply_unit(c: &Connection, unit: Prepared) -> Result<Committed> {
    let mut applied = Vec::with_capacity(unit.changes.len());
    let mut records = Vec::new();
    for change in unit.changes {
        let planned = Planned::of(&change);
        let outcome = apply(c, change)?;
        records.extend(planned.entries(&outcome));
        applied.push(outcome);
    }
    feed::append(c, now_millis(), unit.actor.as_deref(), &records)?;
    Ok(Committed::new(applied))
}

/// The outcome of every unit, in order.
fn commit_batch(conn: &mut Connection, units: Vec<Prepared>) -> Vec<Result<Committed>> {
    let count = units.len();
    let all_fail = |e: &StoreError| (0..count).map(|_| Err(e.clone())).collect();
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return all_fail(&map_err(e)),
    };
    let mut outcomes = Vec::with_capacity(count);
    for unit in units {
        let savepoint = match tx.savepoint() {
            Ok(savepoint) => savepoint,
            Err(e) => return all_fail(&map_err(e)),
        };
        match apply_unit(&savepoint, unit) {
            Ok(committed) => match savepoint.commit() {
                Ok(()) => outcomes.push(Ok(committed)),
                Err(e) => return all_fail(&map_err(e)),
            },
            Err(e) => {
                // Dropping the savepoint rolls this unit back, unless SQLite already rolled
                // back the whole transaction: then no unit of the batch is committed.
                drop(savepoint);
                if tx.is_autocommit() {
                    return all_fail(&e);
                }
                outcomes.push(Err(e));
            }
        }
    }
    match tx.commit() {
        Ok(()) => outcomes,
        Err(e) => all_fail(&map_err(e)),
    }
}
