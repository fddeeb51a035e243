//! Logging and metrics.
//!
//! Logs go through tracing-subscriber, as text or as one JSON object per line (`LOG_FORMAT=json`,
//! for Cloud Run). Fields are dotted with units (`post.id`, `duration_ms`). No token, code or
//! secret is ever a field or part of a message. Metrics are Prometheus counters and histograms
//! rendered by the api's `/metrics`.

use std::sync::Mutex;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` filter.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true).with_current_span(true)).try_init(),
        // Colours only on a terminal: a log file or collector gets plain text.
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
            registry.with(fmt::layer().with_ansi(ansi)).try_init()
        }
    };
    // A second init (tests start several apps in one process) keeps the first subscriber.
    drop(result);
}

/// Labels of an HTTP request metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The method.
    pub method: String,
    /// The status code.
    pub status: u16,
}

/// Labels of a job or refresh outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The platform.
    pub platform: String,
    /// What happened (`posted`, `retrying`, `failed`, `unknown`, `skipped`, `refreshed`, ...).
    pub outcome: String,
}

/// Herald's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// HTTP requests by method and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP request latency in seconds.
    pub http_latency: Histogram,
    /// Publish jobs by platform and outcome.
    pub jobs: Family<OutcomeLabels, Counter>,
    /// Seconds between a post's scheduled time and its publication.
    pub publish_lateness: Histogram,
    /// Token refreshes by platform and outcome.
    pub token_refreshes: Family<OutcomeLabels, Counter>,
    /// Jobs the dispatcher (or the api) pushed into the queue.
    pub dispatched: Counter,
    /// Jobs waiting in the queue (scheduled or due), as last measured by this process.
    pub queue_depth: Gauge,
    /// Writes of a publish attempt that changed no row: the attempt had lost its claim.
    pub lost_claims: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
        let jobs = Family::<OutcomeLabels, Counter>::default();
        let publish_lateness = Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]);
        let token_refreshes = Family::<OutcomeLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by method and status", http_requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency", http_latency.clone());
        registry.register("publish_jobs", "Publish jobs by platform and outcome", jobs.clone());
        registry.register(
            "publish_lateness_seconds",
            "Seconds from scheduled time to publication",
            publish_lateness.clone(),
        );
        registry.register("token_refreshes", "Token refreshes by platform and outcome", token_refreshes.clone());
        let dispatched = Counter::default();
        let queue_depth = Gauge::default();
        let lost_claims = Counter::default();
        registry.register("dispatched_jobs", "Publish jobs pushed into the queue", dispatched.clone());
        registry.register("queue_depth", "Publish jobs waiting in the queue, scheduled or due", queue_depth.clone());
        registry.register(
            "lost_claims",
            "Writes of a publish attempt that changed no row because the attempt no longer held the post",
            lost_claims.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            http_requests,
            http_latency,
            jobs,
            publish_lateness,
            token_refreshes,
            dispatched,
            queue_depth,
            lost_claims,
        }
    }
}

impl Metrics {
    /// Counts a job outcome.
    pub fn job(&self, platform: &str, outcome: &str) {
        self.jobs.get_or_create(&OutcomeLabels { platform: platform.into(), outcome: outcome.into() }).inc();
    }

    /// Counts a refresh outcome.
    pub fn refresh(&self, platform: &str, outcome: &str) {
        self.token_refreshes.get_or_create(&OutcomeLabels { platform: platform.into(), outcome: outcome.into() }).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry is never poisoned");
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}
