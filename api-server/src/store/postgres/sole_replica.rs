//! One server per database, for now: a session advisory lock held on a connection of
//! its own for the life of the process, the PostgreSQL twin of the data directory's
//! lock file. Until the audit log and the caches follow other replicas (the change feed
//! and the job runner of the storage issue), a second server on the same database would
//! keep a second audit chain whose checkpoints overwrite the first's, and a stale view of
//! policy and token changes; it is refused at start instead.
//!
//! A lock held by a session lives as long as its connection. When the connection breaks
//! (the database restarted) the lock is gone; the holder reconnects and takes it again.
//! If another server took it in between, this one exits: two servers must never both
//! believe they are the only one.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{get, map_err};
use crate::store::{Result, StoreError};

/// Any constant shared by every version; distinct from the migration lock.
const SOLE_REPLICA_LOCK: i64 = 0x5ca1_7a02;
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// A server restarted right after a crash can find its predecessor's session not yet
/// closed by the database; it waits this long before it calls the lock taken.
const STARTUP_PATIENCE: Duration = Duration::from_secs(5);
const STARTUP_RETRY: Duration = Duration::from_millis(200);

/// Releases the lock when dropped: the holder task is aborted, and with it the session
/// it owns.
pub struct SoleReplica {
    holder: JoinHandle<()>,
}

impl Drop for SoleReplica {
    fn drop(&mut self) {
        self.holder.abort();
    }
}

/// A session holding the lock. The connection runs on a task of its own (it must be
/// polled for the client to be answered); dropping the session aborts that task, which
/// closes the connection and so releases the lock (dropping a `JoinHandle` alone would
/// leave the task, and the lock, running).
struct Session {
    client: tokio_postgres::Client,
    connection: JoinHandle<()>,
}

impl Session {
    /// Resolves when the connection ends (the database restarted or went away).
    async fn closed(&mut self) {
        let _ = (&mut self.connection).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

enum Taken {
    Held(Session),
    ByAnother,
}

async fn take(config: &Config, tls: &MakeRustlsConnect) -> Result<Taken> {
    let (client, connection) = config.connect(tls.clone()).await.map_err(map_err)?;
    let session = Session {
        client,
        connection: tokio::spawn(async move {
            let _ = connection.await;
        }),
    };
    let row = session
        .client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&SOLE_REPLICA_LOCK])
        .await
        .map_err(map_err)?;
    // Not taken: `session` is dropped here, and its connection with it.
    Ok(match get::<bool>(&row, 0)? {
        true => Taken::Held(session),
        false => Taken::ByAnother,
    })
}

impl SoleReplica {
    pub(super) async fn claim(config: Config, tls: MakeRustlsConnect) -> Result<Self> {
        let deadline = tokio::time::Instant::now() + STARTUP_PATIENCE;
        let mut session = loop {
            match take(&config, &tls).await? {
                Taken::Held(session) => break session,
                Taken::ByAnother if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(STARTUP_RETRY).await;
                }
                Taken::ByAnother => {
                    return Err(StoreError::Unavailable(
                        "another scaivault-server serves this database: one server per \
                         PostgreSQL database until replicas share the audit log (see \
                         docs/operations.md)"
                            .into(),
                    ));
                }
            }
        };
        let holder = tokio::spawn(async move {
            loop {
                session.closed().await;
                tracing::warn!(
                    "lost the connection that holds the database's server lock; retaking it"
                );
                session = loop {
                    tokio::time::sleep(RECONNECT_EVERY).await;
                    match take(&config, &tls).await {
                        Ok(Taken::Held(session)) => break session,
                        Ok(Taken::ByAnother) => {
                            tracing::error!(
                                "another scaivault-server took this database while the connection was down; exiting"
                            );
                            std::process::exit(1);
                        }
                        Err(e) => tracing::warn!(error = %e, "retaking the database's server lock"),
                    }
                };
                tracing::info!("retook the database's server lock");
            }
        });
        Ok(SoleReplica { holder })
    }
}
