//! The agent's metrics, Prometheus text on `GET /metrics`, under the prefix
//! `scaivault_agent`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    /// Files rendered from a secret read (whether or not their content changed).
    pub renders: Counter,
    /// Files written because their content or mode changed.
    pub writes: Counter,
    /// Failed logins, reads, renders and writes.
    pub errors: Counter,
    pub logins: Counter,
    /// 1 while the event stream is open.
    pub stream_connected: Gauge,
    pub stream_events: Counter,
    pub stream_reconnects: Counter,
    /// Refreshes by polling (every path while the stream is down, paths without `list`
    /// always) or after a reconnect that could not resume from a known position.
    pub polls: Counter,
    /// Signals `on-change` sent to app processes (a restart's SIGTERM included; in
    /// `exec`, to the child).
    pub app_signals: Counter,
    /// `on-change` actions that found no app process to signal.
    pub app_signal_misses: Counter,
    /// `exec`: children restarted because their environment changed.
    pub child_restarts: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("scaivault_agent");
        let metrics = Metrics {
            renders: Counter::default(),
            writes: Counter::default(),
            errors: Counter::default(),
            logins: Counter::default(),
            stream_connected: Gauge::default(),
            stream_events: Counter::default(),
            stream_reconnects: Counter::default(),
            polls: Counter::default(),
            app_signals: Counter::default(),
            app_signal_misses: Counter::default(),
            child_restarts: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "renders",
            "Files rendered from a secret read",
            metrics.renders.clone(),
        );
        registry.register(
            "file_writes",
            "Files written because their content or mode changed",
            metrics.writes.clone(),
        );
        registry.register(
            "errors",
            "Failed logins, reads, renders and file writes",
            metrics.errors.clone(),
        );
        registry.register("logins", "Kubernetes logins", metrics.logins.clone());
        registry.register(
            "event_stream_connected",
            "1 while the event stream is open",
            metrics.stream_connected.clone(),
        );
        registry.register(
            "event_stream_events",
            "Events received about the configured paths",
            metrics.stream_events.clone(),
        );
        registry.register(
            "event_stream_reconnects",
            "Event streams opened again after one ended",
            metrics.stream_reconnects.clone(),
        );
        registry.register(
            "polls",
            "Refreshes by polling, not pushed by the stream",
            metrics.polls.clone(),
        );
        registry.register(
            "app_signals",
            "Signals sent to the app's processes on a change",
            metrics.app_signals.clone(),
        );
        registry.register(
            "app_signal_misses",
            "Changes to act on when no app process was found",
            metrics.app_signal_misses.clone(),
        );
        registry.register(
            "child_restarts",
            "exec: children restarted with a changed environment",
            metrics.child_restarts.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
