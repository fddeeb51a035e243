//! Logging and metrics.
//!
//! Logs go through tracing-subscriber, as text or as one JSON object per line (`LOG_FORMAT=json`,
//! for Cloud Run). Fields are dotted with units (`post.id`, `duration_ms`). No token, code or
//! secret is ever a field or part of a message. Metrics are Prometheus counters, gauges and
//! histograms, rendered by the api's and each worker's `/metrics` (the gauges read from the
//! database at each scrape by [`crate::ops::metrics_text`]).

use std::sync::{Mutex, atomic::AtomicU64};

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
    /// The route's template (`/api/v1/posts/{post_id}`), or `other` for a path no route serves:
    /// never the raw path, whose ids would make a series per post.
    pub route: String,
    /// The method.
    pub method: String,
    /// The status code.
    pub status: u16,
}

/// Labels of an HTTP latency metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route's template, as in [`HttpLabels`].
    pub route: String,
}

/// Labels of a count by state (posts by status, queue jobs by state).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// The state.
    pub state: String,
}

type Latency = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
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
    /// HTTP requests by route, method and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP request latency in seconds, by route.
    pub http_latency: Latency,
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
    /// Dispatcher pushes (one batch of jobs each).
    pub dispatch_batches: Counter,
    /// Worker processes whose heartbeat is recent.
    pub live_workers: Gauge,
    /// Posts whose time passed more than 30 s ago without a worker taking them.
    pub overdue_posts: Gauge,
    /// Seconds since the oldest overdue post was due.
    pub oldest_overdue_seconds: Gauge<f64, AtomicU64>,
    /// Posts by status (waiting, publishing, unknown).
    pub posts: Family<StateLabels, Gauge>,
    /// Queue jobs by state.
    pub queue_jobs: Family<StateLabels, Gauge>,
    /// Whether the last scrape could read the database (1) or not (0).
    pub database_up: Gauge,
    /// Webhook delivery attempts by outcome (`succeeded`, `retrying`, `dead`, `disabled`).
    pub webhook_deliveries: Family<StateLabels, Counter>,
    /// Webhook deliveries still pending, as of the last scrape.
    pub webhook_pending: Gauge,
    /// Seconds since the oldest pending webhook delivery was created.
    pub webhook_oldest_pending_seconds: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency: Latency = Family::new_with_constructor(latency_histogram);
        let jobs = Family::<OutcomeLabels, Counter>::default();
        let publish_lateness = Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]);
        let token_refreshes = Family::<OutcomeLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route, method and status", http_requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency by route", http_latency.clone());
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
        let dispatch_batches = Counter::default();
        let live_workers = Gauge::default();
        let overdue_posts = Gauge::default();
        let oldest_overdue_seconds = Gauge::<f64, AtomicU64>::default();
        let posts = Family::<StateLabels, Gauge>::default();
        let queue_jobs = Family::<StateLabels, Gauge>::default();
        let database_up = Gauge::default();
        registry.register("dispatch_batches", "Batches of jobs the dispatcher pushed", dispatch_batches.clone());
        registry.register("live_workers", "Worker processes whose heartbeat is recent", live_workers.clone());
        registry.register(
            "overdue_posts",
            "Posts whose time passed more than 30 s ago without a worker taking them",
            overdue_posts.clone(),
        );
        registry.register(
            "oldest_overdue_post_age_seconds",
            "Seconds since the oldest overdue post was due",
            oldest_overdue_seconds.clone(),
        );
        registry.register("posts", "Posts by status (waiting, publishing, unknown)", posts.clone());
        registry.register("queue_jobs", "Publish queue jobs by state", queue_jobs.clone());
        registry.register("database_up", "Whether the last scrape could read the database", database_up.clone());
        let webhook_deliveries = Family::<StateLabels, Counter>::default();
        let webhook_pending = Gauge::default();
        let webhook_oldest_pending_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "webhook_delivery_attempts",
            "Webhook delivery attempts by outcome",
            webhook_deliveries.clone(),
        );
        registry.register("webhook_pending_deliveries", "Webhook deliveries still pending", webhook_pending.clone());
        registry.register(
            "webhook_oldest_pending_age_seconds",
            "Seconds since the oldest pending webhook delivery was created",
            webhook_oldest_pending_seconds.clone(),
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
            dispatch_batches,
            live_workers,
            overdue_posts,
            oldest_overdue_seconds,
            posts,
            queue_jobs,
            database_up,
            webhook_deliveries,
            webhook_pending,
            webhook_oldest_pending_seconds,
        }
    }
}

impl Metrics {
    /// Counts a job outcome.
    pub fn job(&self, platform: &str, outcome: &str) {
        self.jobs.get_or_create(&OutcomeLabels { platform: platform.into(), outcome: outcome.into() }).inc();
    }

    /// Counts a webhook delivery attempt's outcome.
    pub fn webhook(&self, outcome: &str) {
        self.webhook_deliveries.get_or_create(&StateLabels { state: outcome.into() }).inc();
    }

    /// Counts a refresh outcome.
    pub fn refresh(&self, platform: &str, outcome: &str) {
        self.token_refreshes.get_or_create(&OutcomeLabels { platform: platform.into(), outcome: outcome.into() }).inc();
    }

    /// Counts and times one HTTP request.
    pub fn http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let labels = HttpLabels { route: route.into(), method: method.into(), status };
        self.http_requests.get_or_create(&labels).inc();
        self.http_latency.get_or_create(&RouteLabels { route: route.into() }).observe(seconds);
    }

    /// Sets the gauges from a snapshot (`None`: the database did not answer).
    pub fn observe(&self, snapshot: Option<&crate::ops::Snapshot>, now: chrono::DateTime<chrono::Utc>) {
        let Some(snapshot) = snapshot else {
            self.database_up.set(0);
            return;
        };
        self.database_up.set(1);
        self.live_workers.set(snapshot.live_workers as i64);
        self.overdue_posts.set(snapshot.overdue as i64);
        self.oldest_overdue_seconds.set(snapshot.oldest_overdue_secs(now));
        self.webhook_pending.set(snapshot.webhooks_pending as i64);
        let oldest_webhook =
            snapshot.oldest_webhook.map_or(0.0, |at| (now - at).num_milliseconds().max(0) as f64 / 1000.0);
        self.webhook_oldest_pending_seconds.set(oldest_webhook);
        // Every watched status is always present, at 0 when no post has it.
        for status in ["pending", "retrying", "publishing", "unknown"] {
            let n = snapshot.posts.iter().find(|(s, _)| s.as_str() == status).map_or(0, |(_, n)| *n);
            self.posts.get_or_create(&StateLabels { state: status.into() }).set(n as i64);
        }
        if let Some(queue) = &snapshot.queue {
            // States come and go (the SQLite queue reports only those it holds).
            self.queue_jobs.clear();
            for (state, n) in queue {
                self.queue_jobs.get_or_create(&StateLabels { state: state.clone() }).set(*n as i64);
            }
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry is never poisoned");
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        prometheus_text(&out)
    }
}

/// prometheus-client writes OpenMetrics text: a counter's `# HELP` and `# TYPE` name the family
/// (`herald_publish_jobs`) while its samples are `herald_publish_jobs_total`, and it ends with
/// `# EOF`. Prometheus's text format, which `/metrics` serves and `promtool check metrics`
/// checks, wants the sample name in both comments and no `# EOF`. Rewrites just those lines.
fn prometheus_text(open_metrics: &str) -> String {
    let lines: Vec<&str> = open_metrics.lines().collect();
    let counters: std::collections::HashSet<&str> =
        lines.iter().filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in lines {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_and_there_is_no_eof() {
        let metrics = Metrics::default();
        metrics.job("twitter", "posted");
        metrics.queue_depth.set(3);
        let text = metrics.render();
        assert!(text.contains("# HELP herald_publish_jobs_total Publish jobs by platform and outcome.\n"), "{text}");
        assert!(text.contains("# TYPE herald_publish_jobs_total counter\n"), "{text}");
        assert!(text.contains("herald_publish_jobs_total{platform=\"twitter\",outcome=\"posted\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE herald_queue_depth gauge\nherald_queue_depth 3\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }
}
