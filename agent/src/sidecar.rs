//! `scaivault-agent run`: `init-only` (render once, exit) and `sidecar` (render, become
//! ready, keep the files current until SIGTERM, and act on `on-change`).

use scaivault_kube_api::agent::{AgentConfig, OnChange, Signal};

use crate::app;
use crate::error::Result;
use crate::files::remove_stale_temps;
use crate::http::State;
use crate::metrics::Metrics;
use crate::session::Session;
use crate::sync::Files;
use crate::watch::{self, Stop, Target, base_client};

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

/// The sidecar's target: the files, and the app containers to tell about changes.
struct FileTarget<'a> {
    files: &'a Files,
    on_change: OnChange,
    containers: &'a [String],
}

impl FileTarget<'_> {
    /// `on-change`: the signal to the app containers' main processes (`restart`: SIGTERM,
    /// and the kubelet starts the container again). `quiet`: finding none is no warning.
    fn act(&self, metrics: &Metrics, quiet: bool) {
        let (signal, why) = match self.on_change {
            OnChange::None => return,
            OnChange::Signal(signal) => (signal, "signalled after a change"),
            OnChange::Restart => (Signal::Term, "terminated after a change, to be restarted"),
        };
        app::signal_containers(self.containers, signal, why, quiet, metrics);
    }
}

impl Target for FileTarget<'_> {
    async fn refresh(&mut self, session: &Session, metrics: &Metrics, path: &str) -> Result<bool> {
        Ok(self.files.refresh(session, metrics, path).await? > 0)
    }

    async fn start(&mut self, state: &State, changed: bool) -> Result<()> {
        state.set_ready();
        tracing::info!(files = self.files.by_path.len(), "ready");
        // In a new pod the app starts after this; a restarted agent may have found the
        // files outdated while the app runs: tell it (no process found is then expected).
        if changed {
            self.act(&state.metrics, true);
        }
        Ok(())
    }

    async fn changed(&mut self, metrics: &Metrics) -> Result<()> {
        self.act(metrics, false);
        Ok(())
    }

    async fn ended(&mut self) -> u8 {
        std::future::pending().await
    }

    async fn stop(&mut self, _signal: Stop) -> u8 {
        0
    }
}

/// `mode: sidecar`.
pub async fn sidecar(config: AgentConfig) -> Result<()> {
    let files = Files::new(&config);
    remove_stale_temps(&files.dir);
    let state = State::new();
    let server = watch::serve(config.ready_port, state.clone()).await?;
    let target = FileTarget {
        files: &files,
        on_change: config.on_change,
        containers: &config.containers,
    };
    let result = watch::watch(&config, &files, state, target).await;
    server.abort();
    result.map(|_| ())
}
