//! Keeping rendered secrets current, shared by `run` (sidecar: files) and `exec` (a
//! child's environment): log in, open the event stream, render every path once, then
//! follow the stream (resuming from its position), poll while it is down, retry failed
//! reads, log in again before the vault token expires, and stop on SIGTERM/SIGINT.
//!
//! What a mode does with a secret is its [`Target`]: it renders a path and says whether
//! that changed anything; changes are acted on once per burst ([`ON_CHANGE_SETTLE`]), so
//! several paths written together (or read together by a poll) cause one action.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use scaivault_client::api::events::EventType;
use scaivault_client::{Client, EventStream, StreamItem, StreamOptions};
use scaivault_kube_api::agent::AgentConfig;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use crate::error::{Error, Result};
use crate::http::{self, State};
use crate::metrics::Metrics;
use crate::session::Session;
use crate::sync::Files;

/// Polling interval while the stream is down (jittered by ±10 %).
pub const POLL_INTERVAL: Duration = Duration::from_secs(30);
/// Changes within this time of the first one are acted on together, once.
pub const ON_CHANGE_SETTLE: Duration = Duration::from_millis(250);
/// Reconnect and re-login backoff: doubling from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The signal that asked the agent to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Term,
    Int,
}

/// What a mode does with the secrets (`async fn` in a crate-private trait: the loop is
/// generic over it, nothing is boxed).
pub(crate) trait Target {
    /// Reads `path` and puts its rendering in place (files, the child's next
    /// environment): whether anything changed.
    async fn refresh(&mut self, session: &Session, metrics: &Metrics, path: &str) -> Result<bool>;
    /// After the first render of every path; `changed` if it changed anything (a
    /// restarted agent may find its files outdated).
    async fn start(&mut self, state: &State, changed: bool) -> Result<()>;
    /// Once per burst of changes.
    async fn changed(&mut self, metrics: &Metrics) -> Result<()>;
    /// Resolves with an exit code when the target ends by itself (exec: the child
    /// exited); never for files. Must be cancel-safe: it is raced against the stream.
    async fn ended(&mut self) -> u8;
    /// The agent was asked to stop: the exit code.
    async fn stop(&mut self, signal: Stop) -> u8;
}

pub fn base_client(config: &AgentConfig) -> Result<Client> {
    let mut builder = Client::builder(config.vault_addr.clone());
    if let Some(ca) = std::env::var_os(scaivault_client::ENV_CA_CERT).filter(|v| !v.is_empty()) {
        builder = builder.ca_cert_file(ca);
    }
    builder
        .build()
        .map_err(|e| Error::Config(format!("vaultAddr {:?}: {e}", config.vault_addr)))
}

/// Listens on `0.0.0.0:<port>` for `/ready` and `/metrics`.
pub async fn serve(port: u16, state: Arc<State>) -> Result<JoinHandle<()>> {
    let addr = format!("0.0.0.0:{port}");
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| Error::Listen {
            addr: addr.clone(),
            source,
        })?;
    tracing::info!(%addr, "serving /ready and /metrics");
    Ok(tokio::spawn(http::serve(listener, state)))
}

/// Doubling delays with full jitter on the upper half, reset after a success.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }

    fn next(&mut self) -> Duration {
        let delay = self.next.mul_f64(0.5 + fastrand::f64() * 0.5);
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }
}

/// Paths whose last read failed, read again with backoff (the stream would not bring
/// them back: it has delivered their event already).
struct Retry {
    paths: BTreeSet<String>,
    at: Option<Instant>,
    backoff: Backoff,
}

impl Retry {
    fn new() -> Retry {
        Retry {
            paths: BTreeSet::new(),
            at: None,
            backoff: Backoff::new(),
        }
    }

    fn schedule(&mut self, failed_now: bool) {
        if self.paths.is_empty() {
            self.at = None;
            self.backoff.reset();
        } else if failed_now || self.at.is_none() {
            self.at = Some(Instant::now() + self.backoff.next());
        }
    }
}

fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + fastrand::f64() * 0.2)
}

/// The loop's state between events.
struct Agent<'a, T> {
    config: &'a AgentConfig,
    base: Client,
    files: &'a Files,
    state: Arc<State>,
    session: Session,
    target: T,
    retry: Retry,
    relogin_at: Instant,
    /// When to act on the changes seen since the last action.
    act_at: Option<Instant>,
}

impl<T: Target> Agent<'_, T> {
    async fn open_stream(
        &self,
        after: Option<u64>,
    ) -> Result<EventStream, scaivault_client::Error> {
        self.session
            .client
            .event_stream(&StreamOptions {
                types: EventType::VALUE_CHANGES.to_vec(),
                path_prefix: self.files.common_prefix(),
                after,
            })
            .await
    }

    /// Re-reads `paths` (every path when `None`). A failure is logged and counted, the
    /// target keeps its last rendering, and the path is read again later ([`Retry`]); a
    /// refused vault token asks for a login now. A change schedules an action.
    async fn refresh(&mut self, paths: Option<Vec<String>>) {
        let paths = paths.unwrap_or_else(|| self.files.by_path.keys().cloned().collect());
        let mut failed = false;
        for path in paths {
            match self
                .target
                .refresh(&self.session, &self.state.metrics, &path)
                .await
            {
                Ok(changed) => {
                    self.retry.paths.remove(&path);
                    if changed && self.act_at.is_none() {
                        self.act_at = Some(Instant::now() + ON_CHANGE_SETTLE);
                    }
                }
                Err(e) => {
                    self.state.metrics.errors.inc();
                    if matches!(e, Error::NotFound { .. }) {
                        tracing::warn!(error = %e, "keeping the last content");
                    } else {
                        tracing::error!(error = %e, "refresh failed; keeping the last content");
                    }
                    if matches!(e, Error::Unauthenticated { .. }) {
                        self.relogin_at = Instant::now();
                    }
                    self.retry.paths.insert(path);
                    failed = true;
                }
            }
        }
        self.retry.schedule(failed);
    }

    /// A new session; the old token is revoked once it is replaced.
    async fn relogin(&mut self) -> Result<()> {
        let session = Session::login(&self.base, &self.config.token_path).await?;
        self.state.metrics.logins.inc();
        let old = std::mem::replace(&mut self.session, session);
        old.revoke().await;
        Ok(())
    }

    /// The paths whose events this identity cannot see (`list` is what the stream
    /// checks, and `read` does not include it): they are polled even while the stream is
    /// up, and the log says so once.
    async fn unlisted_paths(&self) -> Vec<String> {
        let mut unlisted = Vec::new();
        for path in self.files.by_path.keys() {
            if let Err(e) = self.session.client.metadata(path).await
                && e.status() == Some(403)
            {
                tracing::warn!(
                    path = %path,
                    identity = %self.session.identity,
                    "no `list` permission on this path: the event stream does not show its changes, so it is refreshed by polling every 30 s (grant `list` as well as `read` to have them pushed)"
                );
                unlisted.push(path.clone());
            }
        }
        unlisted
    }
}

/// Logs in, renders every path into `target` (any failure ends it), starts the target,
/// then keeps it current until SIGTERM/SIGINT or the target ends; the exit code.
pub(crate) async fn watch<T: Target>(
    config: &AgentConfig,
    files: &Files,
    state: Arc<State>,
    mut target: T,
) -> Result<u8> {
    let base = base_client(config)?;
    let session = Session::login(&base, &config.token_path).await?;
    state.metrics.logins.inc();
    let far = || Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let relogin_at = session
        .renew_after()
        .map_or_else(far, |d| Instant::now() + d);
    // The stream opens before the first render, so a write made in between is an event.
    let first_stream = session
        .client
        .event_stream(&StreamOptions {
            types: EventType::VALUE_CHANGES.to_vec(),
            path_prefix: files.common_prefix(),
            after: None,
        })
        .await;
    let mut stream = match first_stream {
        Ok(stream) => {
            state.metrics.stream_connected.set(1);
            tracing::info!("event stream open");
            Some(stream)
        }
        Err(e) => {
            tracing::warn!(error = %e, "event stream not available; polling until it is");
            None
        }
    };
    let mut changed = false;
    for path in files.by_path.keys() {
        match target.refresh(&session, &state.metrics, path).await {
            Ok(c) => changed |= c,
            Err(e) => {
                session.revoke().await;
                return Err(e);
            }
        }
    }
    // From here on SIGTERM revokes the token first (before, it ends the process at once).
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| Error::Runtime(e.to_string()))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| Error::Runtime(e.to_string()))?;
    if let Err(e) = target.start(&state, changed).await {
        session.revoke().await;
        return Err(e);
    }
    let mut agent = Agent {
        config,
        base,
        files,
        state,
        session,
        target,
        retry: Retry::new(),
        relogin_at,
        act_at: None,
    };
    let unlisted = agent.unlisted_paths().await;

    let mut position: Option<u64> = None;
    let mut stream_backoff = Backoff::new();
    let mut login_backoff = Backoff::new();
    let mut reconnect_at = Instant::now() + stream_backoff.next();
    let mut poll_at = Instant::now() + jittered(POLL_INTERVAL);
    let mut poll_unlisted_at = Instant::now() + jittered(POLL_INTERVAL);

    let code = loop {
        tokio::select! {
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM");
                break agent.target.stop(Stop::Term).await;
            }
            _ = sigint.recv() => {
                tracing::info!("SIGINT");
                break agent.target.stop(Stop::Int).await;
            }
            code = agent.target.ended() => break code,
            () = sleep_until(agent.act_at.unwrap_or_else(far)), if agent.act_at.is_some() => {
                agent.act_at = None;
                if let Err(e) = agent.target.changed(&agent.state.metrics).await {
                    drop(stream);
                    agent.session.revoke().await;
                    return Err(e);
                }
            }
            () = sleep_until(agent.relogin_at) => {
                match agent.relogin().await {
                    Ok(()) => {
                        login_backoff.reset();
                        if !agent.retry.paths.is_empty() {
                            agent.retry.at = Some(Instant::now());
                        }
                        agent.relogin_at = agent.session.renew_after().map_or_else(far, |d| Instant::now() + d);
                        // The stream runs on the old token: open it again on the new one.
                        if let Some(s) = stream.take() {
                            position = s.resume_after().or(position);
                            agent.state.metrics.stream_connected.set(0);
                            reconnect_at = Instant::now();
                        }
                    }
                    Err(e) => {
                        agent.state.metrics.errors.inc();
                        tracing::error!(error = %e, "login failed; keeping the last content");
                        agent.relogin_at = Instant::now() + login_backoff.next();
                    }
                }
            }
            item = next_item(&mut stream) => {
                let mut ended = None;
                match item {
                    Ok(Some(StreamItem::Event(event))) => {
                        stream_backoff.reset();
                        position = Some(event.seq);
                        if let Some(path) = event.path.as_deref()
                            && agent.files.by_path.contains_key(path)
                        {
                            agent.state.metrics.stream_events.inc();
                            tracing::debug!(%path, event = %event.event_type, seq = event.seq, "event");
                            agent.refresh(Some(vec![path.to_owned()])).await;
                        }
                    }
                    Ok(Some(StreamItem::Lagged { resume_after } | StreamItem::Unavailable { resume_after })) => {
                        position = Some(resume_after);
                        ended = Some("the server ended it (lagged or storage unavailable)".to_owned());
                    }
                    Ok(None) => ended = Some("the server closed it".to_owned()),
                    Err(e) => ended = Some(e.to_string()),
                }
                if let Some(why) = ended {
                    if let Some(s) = stream.take() {
                        position = s.resume_after().or(position);
                    }
                    agent.state.metrics.stream_connected.set(0);
                    let delay = stream_backoff.next();
                    tracing::warn!(reason = %why, retry_in = ?delay, "event stream lost; polling until it is back");
                    reconnect_at = Instant::now() + delay;
                    poll_at = Instant::now() + jittered(POLL_INTERVAL);
                }
            }
            () = sleep_until(reconnect_at), if stream.is_none() => {
                match agent.open_stream(position).await {
                    Ok(s) => {
                        agent.state.metrics.stream_connected.set(1);
                        agent.state.metrics.stream_reconnects.inc();
                        tracing::info!(after = ?position, "event stream open again");
                        stream = Some(s);
                        if position.is_none() {
                            // Nothing to resume from: changes made meanwhile are read now.
                            agent.state.metrics.polls.inc();
                            agent.refresh(None).await;
                        }
                    }
                    Err(e) => {
                        if e.status() == Some(401) {
                            agent.relogin_at = Instant::now();
                        }
                        let delay = stream_backoff.next();
                        tracing::debug!(error = %e, retry_in = ?delay, "event stream still down");
                        reconnect_at = Instant::now() + delay;
                    }
                }
            }
            () = sleep_until(agent.retry.at.unwrap_or_else(far)), if agent.retry.at.is_some() => {
                agent.retry.at = None;
                let paths: Vec<String> = agent.retry.paths.iter().cloned().collect();
                agent.refresh(Some(paths)).await;
            }
            () = sleep_until(poll_unlisted_at), if stream.is_some() && !unlisted.is_empty() => {
                agent.state.metrics.polls.inc();
                agent.refresh(Some(unlisted.clone())).await;
                poll_unlisted_at = Instant::now() + jittered(POLL_INTERVAL);
            }
            () = sleep_until(poll_at), if stream.is_none() => {
                agent.state.metrics.polls.inc();
                agent.refresh(None).await;
                poll_at = Instant::now() + jittered(POLL_INTERVAL);
            }
        }
    };
    drop(stream);
    agent.session.revoke().await;
    tracing::info!(code, "stopped");
    Ok(code)
}

/// The stream's next item, or never when there is none.
async fn next_item(
    stream: &mut Option<EventStream>,
) -> Result<Option<StreamItem>, scaivault_client::Error> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}
