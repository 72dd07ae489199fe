//! Connections of their own, outside the pool, for what lives as long as a session: the
//! job runner's lock (a session advisory lock) and the change feed's `LISTEN`.
//!
//! A connection must be polled for its client to be answered, so it runs on a task; a
//! [`Session`] owns that task and aborts it when dropped, which closes the connection and
//! releases whatever the session held (dropping a `JoinHandle` alone would leave the
//! task, and the lock, running).

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::locks::RUNNER_LOCK;
use super::{get, map_err};
use crate::jobs::leadership::{HeldLock, RunnerLock};
use crate::store::Result;

/// The channel every commit that recorded changes notifies (see `store::feed`).
pub(super) const CHANGES_CHANNEL: &str = "scaivault_changes";

struct Session {
    client: tokio_postgres::Client,
    connection: JoinHandle<()>,
}

impl Session {
    /// `on_notification` runs for each `NOTIFY` the session receives.
    async fn open(
        config: &Config,
        tls: &MakeRustlsConnect,
        on_notification: impl Fn() + Send + 'static,
    ) -> Result<Session> {
        let (client, mut connection) = config.connect(tls.clone()).await.map_err(map_err)?;
        let connection = tokio::spawn(async move {
            while let Some(Ok(message)) =
                std::future::poll_fn(|cx| connection.poll_message(cx)).await
            {
                if let AsyncMessage::Notification(_) = message {
                    on_notification();
                }
            }
        });
        Ok(Session { client, connection })
    }

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

/// The job runner's lock: a session advisory lock, held on a connection of its own for as
/// long as this replica leads. It is released by the database the moment that
/// connection ends, a killed process's included, so another replica can take over.
pub(super) struct SessionRunnerLock {
    pub(super) config: Config,
    pub(super) tls: MakeRustlsConnect,
}

struct HeldSession(Session);

#[async_trait]
impl HeldLock for HeldSession {
    async fn lost(&mut self) {
        self.0.closed().await;
    }
}

#[async_trait]
impl RunnerLock for SessionRunnerLock {
    async fn try_take(&self) -> Result<Option<Box<dyn HeldLock>>> {
        let session = Session::open(&self.config, &self.tls, || {}).await?;
        let row = session
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&RUNNER_LOCK])
            .await
            .map_err(map_err)?;
        // Not taken: `session` is dropped here, and its connection with it.
        Ok(get::<bool>(&row, 0)?.then(|| Box::new(HeldSession(session)) as Box<dyn HeldLock>))
    }
}

/// Listens for the commits of every replica: `notify` is woken on each, and once when
/// the listening starts (what was committed before it is found by the catch-up read).
/// Ends when the connection does; the caller listens again.
pub(super) async fn listen_for_changes(
    config: &Config,
    tls: &MakeRustlsConnect,
    notify: std::sync::Arc<Notify>,
) -> Result<()> {
    let woken = std::sync::Arc::clone(&notify);
    let mut session = Session::open(config, tls, move || woken.notify_one()).await?;
    session
        .client
        .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
        .await
        .map_err(map_err)?;
    notify.notify_one();
    session.closed().await;
    Ok(())
}
