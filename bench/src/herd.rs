//! The herd: N posts over U users all due in the same second T, plus one post of another user due
//! at the same T, published by W real `worker` processes to the fake X.
//!
//! This is the case DESIGN §6 and §11 are about: apalis-redis promotes every due job with one
//! `unpack`, so a herd of 8,000+ jobs due together stalls a queue that holds every future post;
//! the dispatch design keeps the queue bounded and must publish all 50,000 without a stalled
//! worker, without posting early or twice, and without making another tenant wait behind the
//! herd. One run measures exactly that:
//!
//! - throughput (herd posts received ÷ (last receive − T)), time to the first post, and lateness
//!   p50/p99/max (receive − T, at the fake: what the platform, and so the user, sees);
//! - correctness: posts received before T (early), texts received more than once (duplicates),
//!   herd posts not `posted` at the end (lost);
//! - footprint: peak RSS of the worker processes (`VmRSS` every 200 ms and the kernel's `VmHWM`)
//!   and the peak number of Redis keys under the run's prefix (every 500 ms);
//! - fairness: the other user's post lateness.
//!
//! T is chosen a few seconds after every worker has registered with the queue, so start-up never
//! counts as lateness. By default the posts are inserted with SQL (the dispatcher finds them by
//! `due_at`); `--via-api` schedules them through the API instead, for trees that enqueue only
//! there, with T far enough ahead (from the measured scheduling rate) for all of them to be in.
//! A run ends when every post is final, when nothing moved for `--stall-secs`, or at the timeout.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use chrono::{DateTime, DurationRound, Utc};

use crate::{
    api_rate::IN_FLIGHT,
    database::{Progress, herd_text},
    fake_x::Received,
    harness::{Harness, Stage},
    herald::{self, Process},
    keys,
    schedule::{self, Item},
};

/// How often worker RSS is sampled.
const RSS_EVERY: Duration = Duration::from_millis(200);
/// How often the prefix's keys are counted.
const KEYS_EVERY: Duration = Duration::from_millis(500);
/// How often the database is asked where the posts stand.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often progress is printed.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// How long the workers may take to register with the queue.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Posts per second the SQL insert is assumed to manage, to leave it time before T.
const INSERT_RATE: f64 = 20_000.0;
/// The API rate assumed with `--via-api` when it was not measured.
const DEFAULT_API_RATE: f64 = 300.0;

/// One herd run's size.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Worker processes.
    pub workers: usize,
    /// Herd posts.
    pub posts: u64,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum End {
    /// Every post reached a final status.
    Done,
    /// Nothing moved (no post received, none final) for this long.
    Stalled(Duration),
    /// The timeout passed.
    Timeout,
    /// Every worker process exited.
    WorkersExited,
    /// The run could not apply to this tree.
    Skipped(String),
    /// Setup or measurement failed.
    Failed(String),
}

/// Everything one run measured; the statistics over the received posts are in
/// [`crate::report::Stats`].
#[derive(Debug)]
pub struct Outcome {
    /// The run's size.
    pub spec: Spec,
    /// How it ended.
    pub end: End,
    /// The herd's due time, once chosen.
    pub due: Option<DateTime<Utc>>,
    /// What the fake X received, in arrival order.
    pub received: Vec<Received>,
    /// Peak resident memory of the largest worker, KiB.
    pub rss_peak_kib: u64,
    /// Peak number of keys under the run's prefix.
    pub keys_peak: u64,
    /// Herd posts not `posted` at the end, and their statuses.
    pub lost: Option<(u64, Vec<(String, u64)>)>,
    /// Things worth knowing about this run (late setup, worker errors and their logs).
    pub notes: Vec<String>,
}

/// Runs one herd on a fresh stage and tears it down.
pub async fn run(harness: &Harness, spec: Spec, api_rate: Option<f64>) -> Outcome {
    eprintln!("herd: herd of {} posts, {} workers", spec.posts, spec.workers);
    let mut outcome = Outcome {
        spec,
        end: End::Done,
        due: None,
        received: Vec::new(),
        rss_peak_kib: 0,
        keys_peak: 0,
        lost: None,
        notes: Vec::new(),
    };
    let mut stage = match harness.stage().await {
        Ok(stage) => stage,
        Err(error) => {
            outcome.end = End::Failed(format!("setup: {error:#}"));
            return outcome;
        }
    };
    if let Err(error) = herd(harness, &mut stage, api_rate, &mut outcome).await {
        outcome.end = End::Failed(format!("{error:#}"));
    }
    outcome.received = stage.teardown(harness).await;
    outcome
}

/// Peaks shared with the sampling tasks.
#[derive(Debug, Default)]
struct Peaks {
    rss_kib: AtomicU64,
    keys: AtomicU64,
}

async fn herd(
    harness: &Harness,
    stage: &mut Stage,
    api_rate: Option<f64>,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let options = &harness.options;
    let spec = outcome.spec;
    let schema = stage.db.schema().await?;
    if !options.via_api && !schema.due_at {
        outcome.end = End::Skipped(
            "this tree has no scheduled_posts.due_at, so posts inserted with SQL are never enqueued; \
             run with --via-api"
                .into(),
        );
        return Ok(());
    }
    stage.db.connect_users(options.users, &harness.cipher).await?;
    let peaks = Arc::new(Peaks::default());
    let prefix = stage.deployment.queue_prefix.clone();
    let keys_sampler = tokio::spawn(sample_keys(harness.redis.clone(), prefix.clone(), peaks.clone()));
    let result = async {
        let due = if options.via_api {
            schedule_via_api(harness, stage, spec, api_rate, outcome).await?
        } else {
            start_workers(harness, stage, spec, outcome).await?;
            let due = ms(Utc::now() + options.lead + secs(spec.posts as f64 / INSERT_RATE));
            stage.db.insert_herd(schema, spec.posts, options.users, due).await?;
            stage.db.insert_other(schema, due).await?;
            if Utc::now() > due {
                outcome.notes.push(format!(
                    "the insert ended {:.1} s after the due time; raise --lead-secs",
                    seconds(Utc::now() - due)
                ));
            }
            due
        };
        outcome.due = Some(due);
        watch(harness, stage, due, &peaks, outcome).await
    }
    .await;
    keys_sampler.abort();
    outcome.keys_peak = peaks.keys.load(Ordering::Relaxed);
    result
}

/// Schedules the herd through the API for a due time far enough ahead, then starts the workers.
async fn schedule_via_api(
    harness: &Harness,
    stage: &mut Stage,
    spec: Spec,
    api_rate: Option<f64>,
    outcome: &mut Outcome,
) -> anyhow::Result<DateTime<Utc>> {
    let options = &harness.options;
    let name = format!("{}-api", run_label(stage, spec));
    let client = schedule::start_api(harness, stage, options.users, &name).await?;
    let rate = api_rate.unwrap_or(DEFAULT_API_RATE);
    // Half again the time the scheduling should take, the workers' start-up, and the lead.
    let ahead = secs((spec.posts + 1) as f64 / rate * 1.5) + Duration::from_secs(10) + options.lead;
    let due = ms(Utc::now() + ahead);
    eprintln!(
        "herd:   scheduling through the api for {due} ({:.0} s ahead, at ~{rate:.0} posts/s)",
        ahead.as_secs_f64()
    );
    let mut items: Vec<Item> = (1..=spec.posts)
        .map(|n| Item { user: ((n - 1) % options.users) as usize, content: herd_text(n), at: due })
        .collect();
    // The other user's post goes last: behind the whole herd in any first-come order.
    items.push(Item { user: options.users as usize, content: crate::database::OTHER_TEXT.into(), at: due });
    let scheduled = client.schedule_all(items, IN_FLIGHT).await;
    if scheduled.failed > 0 {
        outcome.notes.push(format!(
            "{} posts were refused by the api; first: {}",
            scheduled.failed,
            scheduled.first_failure.unwrap_or_default()
        ));
    }
    if let Some(mut api) = stage.api.take() {
        api.stop().await;
    }
    if Utc::now() > due {
        outcome.notes.push(format!(
            "scheduling ended {:.1} s after the due time: lateness includes scheduling",
            seconds(Utc::now() - due)
        ));
    }
    start_workers(harness, stage, spec, outcome).await?;
    if Utc::now() > due {
        outcome.notes.push(format!("the workers were ready {:.1} s after the due time", seconds(Utc::now() - due)));
    }
    Ok(due)
}

/// Starts `count` workers and waits until that many have registered with a queue under the
/// prefix (a refactored tree may name its queues differently; the bench only needs `:workers`).
async fn start_workers(harness: &Harness, stage: &mut Stage, spec: Spec, outcome: &mut Outcome) -> anyhow::Result<()> {
    let count = spec.workers;
    for i in 1..=count {
        let name = format!("{}-worker-{i}", run_label(stage, spec));
        stage.workers.push(stage.deployment.spawn_worker(&name)?);
    }
    let mut conn = keys::connect(&harness.redis).await?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        for worker in &mut stage.workers {
            if let Some(status) = worker.exited() {
                bail!(
                    "{} exited ({status}) before it was ready; {}:\n{}",
                    worker.name(),
                    worker.log().display(),
                    worker.log_problems(10).join("\n")
                );
            }
        }
        if keys::registered_workers(&mut conn, &stage.deployment.queue_prefix).await? >= count as u64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            outcome.notes.push(format!(
                "fewer than {count} workers registered under {}:*:workers within {READY_TIMEOUT:?}; started anyway",
                stage.deployment.queue_prefix
            ));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Follows the herd until it is final, stalls, times out or loses its workers; then stops the
/// workers and records what was lost and what their logs say.
async fn watch(
    harness: &Harness,
    stage: &mut Stage,
    due: DateTime<Utc>,
    peaks: &Arc<Peaks>,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let options = &harness.options;
    let pids: Vec<u32> = stage.workers.iter().map(Process::pid).collect();
    let rss_sampler = tokio::spawn(sample_rss(pids.clone(), peaks.clone()));
    let mut last = (Progress { herd: 0, herd_waiting: 0, herd_posted: 0, other_waiting: 0 }, 0usize);
    let mut last_move = Instant::now();
    let mut reported = Instant::now();
    let mut exited: Vec<String> = Vec::new();
    let end = loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let progress = stage.db.progress().await?;
        let received = stage.fake.count();
        let now = Utc::now();
        if progress.all_final() && progress.herd > 0 {
            break End::Done;
        }
        if (progress, received) != last || now < due {
            last = (progress, received);
            last_move = Instant::now();
        }
        for worker in &mut stage.workers {
            if let Some(status) = worker.exited()
                && !exited.iter().any(|name| name == worker.name())
            {
                exited.push(worker.name().to_owned());
                outcome.notes.push(format!(
                    "{} exited by itself ({status}); see {}",
                    worker.name(),
                    worker.log().display()
                ));
            }
        }
        if reported.elapsed() >= REPORT_EVERY {
            reported = Instant::now();
            eprintln!(
                "herd:   T{:+.1}s  received {received}  final {}/{}  posted {}  keys {}  worker RSS {} MiB",
                seconds(now - due),
                progress.herd_final(),
                progress.herd,
                progress.herd_posted,
                peaks.keys.load(Ordering::Relaxed),
                peaks.rss_kib.load(Ordering::Relaxed) / 1024
            );
        }
        if exited.len() == stage.workers.len() {
            break End::WorkersExited;
        }
        if last_move.elapsed() >= options.stall {
            break End::Stalled(options.stall);
        }
        if now > due && (now - due).to_std().is_ok_and(|late| late >= options.timeout) {
            break End::Timeout;
        }
    };
    rss_sampler.abort();
    // The kernel's high-water mark catches a peak between two samples; read it while they live.
    for pid in pids {
        if let Some(hwm) = herald::memory_kib(pid, "VmHWM") {
            peaks.rss_kib.fetch_max(hwm, Ordering::Relaxed);
        }
    }
    outcome.rss_peak_kib = peaks.rss_kib.load(Ordering::Relaxed);
    for worker in &mut stage.workers {
        if !worker.stop().await {
            outcome
                .notes
                .push(format!("{} did not drain within the window after SIGTERM and was killed", worker.name()));
        }
    }
    let final_progress = stage.db.progress().await?;
    let unposted = stage.db.unposted_statuses().await?;
    outcome.lost = Some((final_progress.herd - final_progress.herd_posted, unposted));
    note_worker_logs(stage, outcome);
    outcome.end = end;
    Ok(())
}

/// Adds a note per worker whose log has errors: how many, how many are apalis's `unpack`
/// refusal, the last one, and where the log is.
fn note_worker_logs(stage: &Stage, outcome: &mut Outcome) {
    for worker in &stage.workers {
        let errors = herald::count_lines(worker.log(), "ERROR");
        if errors == 0 {
            continue;
        }
        let unpack = herald::count_lines(worker.log(), "too many results to unpack");
        let last = worker.log_problems(1).pop().unwrap_or_default();
        let last: String = last.chars().take(240).collect();
        outcome.notes.push(format!(
            "{}: {errors} ERROR lines; {unpack} lines say `too many results to unpack`; last: {last} [{}]",
            worker.name(),
            worker.log().display()
        ));
    }
}

async fn sample_rss(pids: Vec<u32>, peaks: Arc<Peaks>) {
    let mut every = tokio::time::interval(RSS_EVERY);
    loop {
        every.tick().await;
        for pid in &pids {
            if let Some(rss) = herald::memory_kib(*pid, "VmRSS") {
                peaks.rss_kib.fetch_max(rss, Ordering::Relaxed);
            }
        }
    }
}

async fn sample_keys(client: redis::Client, prefix: String, peaks: Arc<Peaks>) {
    let Ok(mut conn) = keys::connect(&client).await else {
        eprintln!("herd: cannot connect to Redis to count keys; the key peak stays 0");
        return;
    };
    let mut every = tokio::time::interval(KEYS_EVERY);
    // A scan of a large keyspace can outlast the interval; the next one starts when it ends.
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Ok(count) = keys::count(&mut conn, &prefix).await {
            peaks.keys.fetch_max(count, Ordering::Relaxed);
        }
    }
}

/// A name for this run's log files: size and the start of its database's uuid.
fn run_label(stage: &Stage, spec: Spec) -> String {
    let id: String = stage.db.name.trim_start_matches("herald_bench_").chars().take(8).collect();
    format!("herd-{}w-{}p-{id}", spec.workers, spec.posts)
}

/// `at` rounded up to the next whole millisecond (the precision of `due_at`).
fn ms(at: DateTime<Utc>) -> DateTime<Utc> {
    let down = at.duration_trunc(chrono::Duration::milliseconds(1)).unwrap_or(at);
    if down < at { down + chrono::Duration::milliseconds(1) } else { down }
}

fn secs(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds.max(0.0))
}

/// A signed chrono duration in seconds.
pub fn seconds(duration: chrono::Duration) -> f64 {
    duration.num_microseconds().map_or(f64::INFINITY, |us| us as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_are_whole_milliseconds_not_earlier() {
        let at = DateTime::parse_from_rfc3339("2030-01-01T00:00:00.123456Z").expect("valid").with_timezone(&Utc);
        assert_eq!(ms(at).to_rfc3339(), "2030-01-01T00:00:00.124+00:00");
        let whole = DateTime::parse_from_rfc3339("2030-01-01T00:00:00.123Z").expect("valid").with_timezone(&Utc);
        assert_eq!(ms(whole), whole);
    }
}
