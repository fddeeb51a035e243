//! `dispatch_posts`: the dispatcher loop every worker runs (DESIGN §11).
//!
//! Each round (at most `DISPATCH_INTERVAL_MS` apart) one worker, holding the dispatch lease,
//! pushes the posts that are due within the lookahead into the queue, up to the queue's cap, and
//! removes finished jobs; the others find the lease taken and wait for the next round. The same
//! round re-pushes waiting posts whose job was lost, so it is also the queue's reconciler.

use std::sync::Arc;

use shared::App;

/// Runs rounds until `stop` says so.
pub async fn run(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(app.settings.worker.dispatch.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        match shared::dispatch::run_round(&app).await {
            Ok(round) if round.pushed > 0 || round.vacuumed > 0 => {
                tracing::debug!(jobs.pushed = round.pushed, jobs.vacuumed = round.vacuumed, "dispatch round");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "dispatch round failed; retrying next round"),
        }
    }
}
