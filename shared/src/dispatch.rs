//! Dispatch (DESIGN §11): the database decides what is due; the queue only spreads it over
//! workers.
//!
//! Posts are never pushed into the queue at schedule time for later: a herd, a backlog after an
//! outage or a flushed Redis would otherwise break the queue or lose jobs. Instead [`dispatch`]
//! takes waiting rows whose `due_at` falls within the lookahead and that have no live job, stamps
//! them, and pushes one job each, due at its time, while the queue holds fewer jobs than its cap
//! (apalis-redis moves every due scheduled job in one Lua `unpack`, which Redis refuses beyond
//! about 8,000 values, so an uncapped queue stalls for good). Rows are taken round-robin across
//! users. A waiting row stamped long ago whose job never ran (Redis lost it) is pushed again: a
//! duplicate job is harmless, since the claim decides who publishes.
//!
//! Every worker runs [`run_round`] in a loop under a lease, so one dispatcher feeds the queue at
//! a time; the api calls [`dispatch`] for what it has just made due. One code path, two callers.

use std::time::Duration;

use chrono::Utc;

use crate::{App, Error, db::posts, jobs::QueueError};

/// Rows stamped per statement.
const BATCH: u64 = 1000;
/// Finished jobs removed per round.
const VACUUM_BATCH: usize = 5000;
/// The lease outlives a slow round, and frees itself if its holder dies.
const LEASE_TTL: Duration = Duration::from_secs(10);

/// Pushes due posts into the queue, as many as its cap leaves room for: every due post, or only
/// those in `only`. Returns how many jobs were pushed.
pub async fn dispatch(app: &App, only: Option<&[String]>) -> Result<usize, Error> {
    let settings = &app.settings.worker.dispatch;
    let depth = app.queue.depth().await?;
    app.metrics.queue_depth.set(depth as i64);
    let mut room = settings.queue_cap.saturating_sub(depth);
    let mut pushed = 0;
    while room > 0 {
        let now = Utc::now();
        let horizon = now + settings.lookahead;
        let redispatch_before = now - settings.redispatch_after;
        let limit = room.min(BATCH);
        let due = posts::stamp_due(&app.db, posts::millis(now), horizon, redispatch_before, limit, only).await?;
        if due.is_empty() {
            break;
        }
        let jobs: Vec<(String, chrono::DateTime<Utc>)> = due.iter().map(|d| (d.id.clone(), d.due_at)).collect();
        if let Err(error) = app.queue.push(&jobs).await {
            // Hand the rows back at once rather than after the redispatch delay.
            let ids: Vec<String> = due.into_iter().map(|d| d.id).collect();
            posts::unstamp(&app.db, &ids, posts::millis(now)).await?;
            return Err(error.into());
        }
        pushed += jobs.len();
        app.metrics.dispatched.inc_by(jobs.len() as u64);
        app.metrics.dispatch_batches.inc();
        room -= jobs.len() as u64;
        if (jobs.len() as u64) < limit {
            break;
        }
    }
    Ok(pushed)
}

/// What one round of the dispatcher did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Whether this process held the lease (another dispatcher ran the round otherwise).
    pub leader: bool,
    /// Jobs pushed.
    pub pushed: usize,
    /// Finished jobs removed from the queue.
    pub vacuumed: u64,
}

/// One round of a worker's dispatcher: under the dispatch lease, push what is due and remove
/// finished jobs from the queue.
pub async fn run_round(app: &App) -> Result<Round, Error> {
    let Some(lease) = app.locks.try_lock("dispatch", LEASE_TTL).await.map_err(QueueError::new)? else {
        return Ok(Round::default());
    };
    let result = async {
        let mut pushed = dispatch(app, None).await?;
        // Webhook deliveries share the queue and its cap, after the posts.
        let depth = app.queue.depth().await?;
        pushed += crate::webhooks::dispatch(app, app.settings.worker.dispatch.queue_cap.saturating_sub(depth)).await?;
        let vacuumed = app.queue.vacuum(VACUUM_BATCH).await?;
        Ok(Round { leader: true, pushed, vacuumed })
    }
    .await;
    lease.release().await;
    result
}
