//! Prometheus metrics, one registry with a sub-registry per subsystem.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job: String,
    pub outcome: String,
}

/// How a webhook delivery attempt ended: `success`, `failure` (retried) or `exhausted`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub webhook_attempts: Family<AttemptLabels, Counter>,
    /// From a change's commit to its delivery's success, per delivery.
    pub webhook_delivery_lag: Histogram,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram>,
    pub job_runs: Family<JobLabels, Counter>,
    pub rate_limited: Counter,
    /// Requests refused at the concurrency limit.
    pub shed: Counter,
    /// Requests whose client stopped waiting at the request timeout.
    pub timed_out: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("scaivault");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        let job_runs = Family::<JobLabels, Counter>::default();
        let webhook_attempts = Family::<AttemptLabels, Counter>::default();
        let webhook_delivery_lag = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let rate_limited = Counter::default();
        let shed = Counter::default();
        let timed_out = Counter::default();
        {
            let http = registry.sub_registry_with_prefix("http");
            http.register(
                "requests",
                "HTTP requests by method, route and status",
                requests.clone(),
            );
            http.register(
                "request_duration_seconds",
                "HTTP request latency by route",
                request_duration.clone(),
            );
            http.register(
                "rate_limited",
                "Requests refused by the rate limiter",
                rate_limited.clone(),
            );
            http.register(
                "shed",
                "Requests refused with 503 overloaded at the concurrency limit",
                shed.clone(),
            );
            http.register(
                "timed_out",
                "Requests answered 504 request_timeout",
                timed_out.clone(),
            );
        }
        {
            let audit = registry.sub_registry_with_prefix("audit");
            audit.register(
                "commit_seconds",
                "Duration of each audit group commit, fsync included",
                crate::audit::COMMIT_SECONDS.clone(),
            );
            audit.register(
                "commit_records",
                "Audit records per group commit",
                crate::audit::BATCH_RECORDS.clone(),
            );
            audit.register(
                "checkpoint_pause_seconds",
                "Time audit commits were held while a WAL checkpoint copied its last frames",
                crate::store::AUDIT_PAUSE_SECONDS.clone(),
            );
        }
        {
            let storage = registry.sub_registry_with_prefix("storage");
            storage.register(
                "checkpoint_pause_seconds",
                "Time writes were held while a WAL checkpoint copied its last frames",
                crate::store::DATA_PAUSE_SECONDS.clone(),
            );
            storage.register(
                "commit_seconds",
                "Duration of each SQLite group commit of units of work, fsync included",
                crate::store::DATA_COMMIT_SECONDS.clone(),
            );
            storage.register(
                "commit_units",
                "Units of work (requests' changes) per SQLite group commit",
                crate::store::DATA_COMMIT_UNITS.clone(),
            );
        }
        registry.sub_registry_with_prefix("jobs").register(
            "runs",
            "Background job runs by outcome",
            job_runs.clone(),
        );
        {
            let webhooks = registry.sub_registry_with_prefix("webhook");
            webhooks.register(
                "attempts",
                "Webhook delivery attempts by outcome",
                webhook_attempts.clone(),
            );
            webhooks.register(
                "delivery_lag_seconds",
                "Time from an event's commit to its webhook delivery's success",
                webhook_delivery_lag.clone(),
            );
        }
        Metrics {
            registry,
            webhook_attempts,
            webhook_delivery_lag,
            requests,
            request_duration,
            job_runs,
            rate_limited,
            shed,
            timed_out,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
