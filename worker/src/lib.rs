//! The worker: dispatches due posts into the publish queue, consumes it and publishes each post
//! at its time, and sweeps connections whose tokens expire soon.
//!
//! [`run`] takes the shared [`App`] and a shutdown future, so the `worker` binary, the embedded
//! default (in-process, inside the api) and the tests all run the same code. The queue consumer is
//! supervised: apalis ends a worker on any backend error (Redis blip, a reaped registration), and
//! this loop starts a fresh one under a new name. The process beats into `worker_heartbeats`
//! while it runs, and [`ops`] serves its probes and metrics when `PORT` is set.

pub mod jobs;
pub mod ops;

use std::{future::Future, sync::Arc, time::Duration};

use apalis::prelude::*;
use shared::{App, jobs::JobQueue};

/// First delay before a failed consumer is started again; doubled up to [`RESTART_LAST`] while
/// it keeps failing. Capped low: once Redis is back, publishing resumes within it.
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_LAST: Duration = Duration::from_secs(5);

/// Runs the publish consumer until `shutdown` resolves, then stops taking jobs and lets in-flight
/// attempts finish for at most `WORKER_SHUTDOWN_GRACE_SECS`; what is still running then is cut
/// off (its post is resolved by the stale-claim rules) and queued jobs stay queued.
pub async fn run(app: Arc<App>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signalled = app.clone();
    tokio::spawn(async move {
        shutdown.await;
        signalled.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = stop_tx.send(true);
    });
    let id = uuid::Uuid::new_v4().to_string();
    let heartbeat = tokio::spawn(shared::ops::heartbeat(app.clone(), id.clone(), stop_rx.clone()));
    let grace = app.settings.worker.shutdown_grace;
    let mut stopped = stop_rx.clone();
    let drained = async move {
        let _ = stopped.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = consume(app.clone(), &id, stop_rx) => tracing::info!("publish consumer stopped"),
        () = drained => tracing::warn!(
            grace_secs = grace.as_secs(),
            "attempts still running after the shutdown grace period were cut off; the stale-claim rules resolve their posts"
        ),
    }
    let _ = heartbeat.await;
}

/// The supervised consumer, the dispatcher and the refresh sweep, until `stop_rx` says so and
/// in-flight jobs are done.
async fn consume(app: Arc<App>, id: &str, stop_rx: tokio::sync::watch::Receiver<bool>) {
    let sweeper =
        tokio::spawn(jobs::refresh_tokens::run(app.clone(), app.settings.refresh_sweep_interval, stop_rx.clone()));
    let dispatcher = tokio::spawn(jobs::dispatch_posts::run(app.clone(), stop_rx.clone()));
    let poll = app.settings.worker.poll_interval;
    let concurrency = app.settings.worker.concurrency;
    let mut restart_delay = RESTART_FIRST;
    loop {
        if *stop_rx.borrow() {
            break;
        }
        let started = tokio::time::Instant::now();
        let mut stop = stop_rx.clone();
        let signal = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
            Ok::<(), std::io::Error>(())
        };
        // Names must be unique: a restarted consumer that reused one would be refused by the
        // backend while the old registration is still within its heartbeat window.
        let name = format!("herald-publish-{id}-{}", uuid::Uuid::new_v4().simple());
        tracing::info!(worker.name = %name, "publish consumer starting");
        // The two backends are different types behind the same builder calls.
        macro_rules! consume {
            ($storage:expr) => {
                WorkerBuilder::new(name)
                    .backend($storage.clone().poll_with_interval(poll))
                    .data(app.clone())
                    .concurrency(concurrency)
                    .build(jobs::publish_post::handle)
                    .run_until(signal)
                    .await
            };
        }
        let result = match &app.queue {
            JobQueue::Redis { storage, .. } => consume!(storage),
            JobQueue::Sqlite { storage, .. } => consume!(storage),
        };
        if *stop_rx.borrow() {
            break;
        }
        // Backoff while the backend keeps failing (Redis down); a consumer that ran a while
        // before failing starts again after the first delay.
        if started.elapsed() > RESTART_LAST * 4 {
            restart_delay = RESTART_FIRST;
        }
        let delay_ms = restart_delay.as_millis() as u64;
        match result {
            Ok(()) => tracing::warn!(retry_in_ms = delay_ms, "publish consumer stopped by itself; restarting"),
            Err(error) => {
                tracing::error!(error = %error, retry_in_ms = delay_ms, "publish consumer failed; restarting")
            }
        }
        let mut stop = stop_rx.clone();
        tokio::select! {
            () = tokio::time::sleep(restart_delay) => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        restart_delay = (restart_delay * 2).min(RESTART_LAST);
    }
    let _ = sweeper.await;
    let _ = dispatcher.await;
}
