//! The two ways the agent runs: `init-only` (render once, exit) and `sidecar` (render,
//! become ready, keep the files current until SIGTERM).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use scaivault_client::api::events::EventType;
use scaivault_client::{Client, EventStream, StreamItem, StreamOptions};
use scaivault_kube_api::agent::{AgentConfig, OnChange};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, sleep_until};

use crate::error::{Error, Result};
use crate::files::remove_stale_temps;
use crate::http::{self, State};
use crate::session::Session;
use crate::sync::Files;

/// Polling interval while the stream is down (jittered by ±10 %).
pub const POLL_INTERVAL: Duration = Duration::from_secs(30);
/// Reconnect and re-login backoff: doubling from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

fn base_client(config: &AgentConfig) -> Result<Client> {
    let mut builder = Client::builder(config.vault_addr.clone());
    if let Some(ca) = std::env::var_os(scaivault_client::ENV_CA_CERT).filter(|v| !v.is_empty()) {
        builder = builder.ca_cert_file(ca);
    }
    builder
        .build()
        .map_err(|e| Error::Config(format!("vaultAddr {:?}: {e}", config.vault_addr)))
}

/// `mode: init-only`: log in, render every file, revoke the token, exit.
pub async fn init_only(config: AgentConfig) -> Result<()> {
    let base = base_client(&config)?;
    let files = Files::new(&config);
    remove_stale_temps(&files.dir);
    let state = State::new();
    let session = Session::login(&base, &config.token_path).await?;
    let rendered = files.refresh_all(&session, &state.metrics).await;
    session.revoke().await;
    let written = rendered?;
    tracing::info!(
        files = config.files.len(),
        written,
        "rendered; exiting (init-only)"
    );
    Ok(())
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

/// The sidecar's state between events.
struct Agent {
    config: AgentConfig,
    base: Client,
    files: Files,
    state: Arc<State>,
    session: Session,
}

impl Agent {
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

    /// Re-reads `paths` (every path when `None`). A failure is logged and counted, its
    /// files keep their last content, and the path is read again later ([`Retry`]); a
    /// refused vault token asks for a login now.
    async fn refresh(
        &self,
        paths: Option<Vec<String>>,
        retry: &mut Retry,
        relogin_at: &mut Instant,
    ) {
        let paths = paths.unwrap_or_else(|| self.files.by_path.keys().cloned().collect());
        let mut failed = false;
        for path in paths {
            match self
                .files
                .refresh(&self.session, &self.state.metrics, &path)
                .await
            {
                Ok(_) => {
                    retry.paths.remove(&path);
                }
                Err(e) => {
                    self.state.metrics.errors.inc();
                    if matches!(e, Error::NotFound { .. }) {
                        tracing::warn!(error = %e, "the files keep their last content");
                    } else {
                        tracing::error!(error = %e, "refresh failed; the files keep their last content");
                    }
                    if matches!(e, Error::Unauthenticated { .. }) {
                        *relogin_at = Instant::now();
                    }
                    retry.paths.insert(path);
                    failed = true;
                }
            }
        }
        retry.schedule(failed);
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
                    "no `list` permission on this path: the event stream does not show its changes, so its files are refreshed by polling every 30 s (grant `list` as well as `read` to have them pushed)"
                );
                unlisted.push(path.clone());
            }
        }
        unlisted
    }
}

/// `mode: sidecar`.
pub async fn sidecar(config: AgentConfig) -> Result<()> {
    let base = base_client(&config)?;
    let files = Files::new(&config);
    remove_stale_temps(&files.dir);
    if config.on_change != OnChange::None {
        tracing::warn!(
            on_change = ?config.on_change,
            "this agent does not act on on-change yet: the files are kept current, the app is not signalled or restarted"
        );
    }
    let state = State::new();
    let addr = format!("0.0.0.0:{}", config.ready_port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| Error::Listen {
            addr: addr.clone(),
            source,
        })?;
    tracing::info!(%addr, "serving /ready and /metrics");
    let server = tokio::spawn(http::serve(listener, state.clone()));

    let session = Session::login(&base, &config.token_path).await?;
    state.metrics.logins.inc();
    let mut agent = Agent {
        config,
        base,
        files,
        state,
        session,
    };
    // The stream opens before the first render, so a write made in between is an event.
    let mut stream = match agent.open_stream(None).await {
        Ok(stream) => {
            agent.state.metrics.stream_connected.set(1);
            tracing::info!("event stream open");
            Some(stream)
        }
        Err(e) => {
            tracing::warn!(error = %e, "event stream not available; polling until it is");
            None
        }
    };
    agent
        .files
        .refresh_all(&agent.session, &agent.state.metrics)
        .await?;
    // From here on SIGTERM revokes the token first (before, it ends the process at once).
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| Error::Runtime(e.to_string()))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| Error::Runtime(e.to_string()))?;
    agent.state.set_ready();
    tracing::info!(files = agent.config.files.len(), "ready");
    let unlisted = agent.unlisted_paths().await;

    let mut position: Option<u64> = None;
    let mut stream_backoff = Backoff::new();
    let mut login_backoff = Backoff::new();
    let mut retry = Retry::new();
    let far = || Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let mut relogin_at = agent
        .session
        .renew_after()
        .map_or_else(far, |d| Instant::now() + d);
    let mut reconnect_at = Instant::now() + stream_backoff.next();
    let mut poll_at = Instant::now() + jittered(POLL_INTERVAL);
    let mut poll_unlisted_at = Instant::now() + jittered(POLL_INTERVAL);

    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT"); break; }
            () = sleep_until(relogin_at) => {
                match agent.relogin().await {
                    Ok(()) => {
                        login_backoff.reset();
                        if !retry.paths.is_empty() {
                            retry.at = Some(Instant::now());
                        }
                        relogin_at = agent.session.renew_after().map_or_else(far, |d| Instant::now() + d);
                        // The stream runs on the old token: open it again on the new one.
                        if let Some(s) = stream.take() {
                            position = s.resume_after().or(position);
                            agent.state.metrics.stream_connected.set(0);
                            reconnect_at = Instant::now();
                        }
                    }
                    Err(e) => {
                        agent.state.metrics.errors.inc();
                        tracing::error!(error = %e, "login failed; the files keep their content");
                        relogin_at = Instant::now() + login_backoff.next();
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
                            agent.refresh(Some(vec![path.to_owned()]), &mut retry, &mut relogin_at).await;
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
                            agent.refresh(None, &mut retry, &mut relogin_at).await;
                        }
                    }
                    Err(e) => {
                        if e.status() == Some(401) {
                            relogin_at = Instant::now();
                        }
                        let delay = stream_backoff.next();
                        tracing::debug!(error = %e, retry_in = ?delay, "event stream still down");
                        reconnect_at = Instant::now() + delay;
                    }
                }
            }
            () = sleep_until(retry.at.unwrap_or_else(far)), if retry.at.is_some() => {
                retry.at = None;
                let paths: Vec<String> = retry.paths.iter().cloned().collect();
                agent.refresh(Some(paths), &mut retry, &mut relogin_at).await;
            }
            () = sleep_until(poll_unlisted_at), if stream.is_some() && !unlisted.is_empty() => {
                agent.state.metrics.polls.inc();
                agent.refresh(Some(unlisted.clone()), &mut retry, &mut relogin_at).await;
                poll_unlisted_at = Instant::now() + jittered(POLL_INTERVAL);
            }
            () = sleep_until(poll_at), if stream.is_none() => {
                agent.state.metrics.polls.inc();
                agent.refresh(None, &mut retry, &mut relogin_at).await;
                poll_at = Instant::now() + jittered(POLL_INTERVAL);
            }
        }
    }
    drop(stream);
    agent.session.revoke().await;
    server.abort();
    tracing::info!("stopped");
    Ok(())
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
