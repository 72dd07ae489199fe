//! WAL checkpoints off the commit path (the audit database and the data database).
//!
//! With SQLite's automatic checkpoint, the commit that crosses 1,000 WAL pages also copies
//! them into the database file and fsyncs it, and every request waiting on that commit
//! (an audit group commit, or the queue of writes) waits for it: that was the p99 of
//! audited reads. Here the writer connection never checkpoints; this thread does, on its
//! own connection:
//!
//! 1. most frames are copied while the writer keeps committing (a passive checkpoint);
//! 2. the last few are copied with the writer paused between two batches, so the WAL is
//!    fully copied when the writer starts its next transaction and SQLite restarts the WAL
//!    from its beginning. The WAL file is then overwritten in place instead of growing:
//!    an fsync that does not change the file's size does not wait for the filesystem
//!    journal, which is where the long fsync stalls come from on a busy disk.
//!
//! Durability is unchanged: a record is durable once its commit fsynced the WAL, before
//! any checkpoint; checkpoints only move committed pages into the main file.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use rusqlite::Connection;

/// Least time between two checkpoints: each costs an fsync of the database file.
const INTERVAL: Duration = Duration::from_millis(250);

/// For the writer connection: no automatic checkpoints; and a WAL that grew in a burst is
/// truncated back to 64 MiB when it restarts (below that it is reused in place).
pub(crate) const NO_AUTOCHECKPOINT: &str =
    "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;";

/// How long the checkpoint held the writer for the last frames (every commit waiting
/// meanwhile waits that long), per database; registered by `Metrics`.
pub static AUDIT_PAUSE_SECONDS: LazyLock<Histogram> = LazyLock::new(pause_histogram);
pub static DATA_PAUSE_SECONDS: LazyLock<Histogram> = LazyLock::new(pause_histogram);

fn pause_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Wakes the checkpoint thread; dropping it stops the thread.
pub(crate) struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// `conn` is the checkpoint's own read-write connection; `writer` is the connection
    /// the commits use, locked only to pause them for the last frames. `db` names the
    /// database in the thread name and in warnings.
    pub(crate) fn spawn(
        db: &'static str,
        conn: Connection,
        writer: Arc<Mutex<Connection>>,
        pause: &'static Histogram,
    ) -> std::io::Result<Self> {
        let (wake, woken) = sync_channel(1);
        std::thread::Builder::new()
            .name(format!("{db}-checkpoint"))
            .spawn(move || run(db, &conn, &writer, &woken, pause))?;
        Ok(Checkpointer { wake })
    }

    /// After a commit: a checkpoint is due when the thread is idle.
    pub(crate) fn notify(&self) {
        // Full: a checkpoint is already due. Disconnected: the thread could not start a
        // connection; the WAL then only grows, which costs space, never durability.
        let _ = self.wake.try_send(());
    }
}

fn run(
    db: &str,
    conn: &Connection,
    writer: &Mutex<Connection>,
    woken: &Receiver<()>,
    pause: &Histogram,
) {
    while woken.recv().is_ok() {
        if let Err(e) = passive(conn) {
            tracing::warn!(db, error = %e, "WAL checkpoint failed");
        } else {
            let paused = writer.lock().unwrap_or_else(|p| p.into_inner());
            let started = Instant::now();
            if let Err(e) = passive(conn) {
                tracing::warn!(db, error = %e, "WAL checkpoint failed");
            }
            drop(paused);
            pause.observe(started.elapsed().as_secs_f64());
        }
        std::thread::sleep(INTERVAL);
    }
}

/// Copies what it can without waiting for readers or the writer.
fn passive(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}
