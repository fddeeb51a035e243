//! What an operator watches: live workers, overdue posts, the queue by state (issue 10).
//!
//! Every worker process beats into `worker_heartbeats` ([`heartbeat`]); the api's `/readyz` and
//! every `/metrics` read the same numbers from the database ([`Snapshot::take`]), so a fleet whose
//! workers all stopped is visible from the api, whatever the queue backend. The probes bound each
//! dependency check by [`PROBE_TIMEOUT`]: a probe that hangs is as bad as one that lies.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::{
    App,
    db::{posts, workers},
    domain::PostStatus,
};

/// How often a worker beats.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// A worker is live while its last beat is this recent (three beats).
pub const LIVE_WITHIN: Duration = Duration::from_secs(15);
/// A post is overdue once its `due_at` is this far past: a healthy fleet takes a post within a
/// second of its time, so this leaves room for a busy minute without paging anyone.
pub const OVERDUE_AFTER: Duration = Duration::from_secs(30);
/// Each dependency check of a probe gives up after this long.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Rows of workers silent this long are removed.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The numbers behind `/readyz` and the operational metrics, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Workers whose last beat is within [`LIVE_WITHIN`].
    pub live_workers: u64,
    /// The last beat of any worker.
    pub last_beat: Option<DateTime<Utc>>,
    /// Posts whose `due_at` passed more than [`OVERDUE_AFTER`] ago.
    pub overdue: u64,
    /// The earliest `due_at` among them.
    pub oldest_overdue: Option<DateTime<Utc>>,
    /// Posts by status, for the statuses that do not only grow.
    pub posts: Vec<(PostStatus, u64)>,
    /// Queue jobs by state (`None`: the queue did not answer).
    pub queue: Option<Vec<(String, u64)>>,
    /// Webhook deliveries still pending.
    pub webhooks_pending: u64,
    /// When the oldest of them was created.
    pub oldest_webhook: Option<DateTime<Utc>>,
}

impl Snapshot {
    /// Reads the snapshot: the database part must answer, the queue part may fail (and is then
    /// left out).
    pub async fn take(app: &App) -> Result<Self, String> {
        let now = Utc::now();
        let database = async {
            let (live_workers, last_beat) = workers::seen_since(&app.db, now - LIVE_WITHIN).await?;
            let (overdue, oldest_overdue) = posts::overdue(&app.db, now - OVERDUE_AFTER).await?;
            let posts = posts::count_open(&app.db).await?;
            let webhooks = crate::db::webhooks::pending(&app.db).await?;
            Ok::<_, sea_orm::DbErr>((live_workers, last_beat, overdue, oldest_overdue, posts, webhooks))
        };
        let (live_workers, last_beat, overdue, oldest_overdue, posts, (webhooks_pending, oldest_webhook)) =
            bounded("database", database).await?;
        let queue = app.queue.states().await.ok();
        Ok(Self {
            live_workers,
            last_beat,
            overdue: overdue.max(0) as u64,
            oldest_overdue,
            posts: posts.into_iter().map(|(status, n)| (status, n.max(0) as u64)).collect(),
            queue,
            webhooks_pending,
            oldest_webhook,
        })
    }

    /// Seconds since the oldest overdue post was due (0 when none is).
    pub fn oldest_overdue_secs(&self, now: DateTime<Utc>) -> f64 {
        self.oldest_overdue.map_or(0.0, |due| (now - due).num_milliseconds().max(0) as f64 / 1000.0)
    }

    /// Why the fleet is not publishing, if it is not: no worker has beaten for `no_worker_after`
    /// while posts are overdue. Overdue posts with live workers are a backlog, not an outage, and
    /// no worker with nothing overdue is an idle fleet scaled to zero.
    pub fn stalled(&self, now: DateTime<Utc>, no_worker_after: Duration) -> Option<String> {
        if self.overdue == 0 || self.live_workers > 0 {
            return None;
        }
        let silent_for = self.last_beat.map(|beat| (now - beat).to_std().unwrap_or_default());
        if silent_for.is_some_and(|silent| silent < no_worker_after) {
            return None;
        }
        let since = match silent_for {
            Some(silent) => format!("for {} s", silent.as_secs()),
            None => "ever".into(),
        };
        Some(format!(
            "no worker has been alive {since} and {} posts are overdue (the oldest by {:.0} s)",
            self.overdue,
            self.oldest_overdue_secs(now)
        ))
    }
}

/// The Prometheus text of this process, with the fleet's gauges read from the database now.
pub async fn metrics_text(app: &App) -> String {
    let snapshot = Snapshot::take(app).await;
    if let Err(error) = &snapshot {
        tracing::warn!(error = %error, "metrics: the database did not answer");
    }
    app.metrics.observe(snapshot.as_ref().ok(), Utc::now());
    app.metrics.render()
}

/// Whether the database and (with Redis) the queue answer, each within [`PROBE_TIMEOUT`].
pub async fn dependencies(app: &App) -> Result<(), String> {
    bounded("database", app.db.ping()).await?;
    if let crate::locks::RefreshLocks::Redis { conn, .. } = &app.locks {
        let mut conn = conn.clone();
        // redis's ConnectionManager keeps the error of its last failed reconnect and hands it to
        // the next command, which only then starts a new reconnect: the first PING after Redis
        // came back fails although Redis answers. So a failed PING is asked once more, after the
        // reconnect it triggered had time to finish.
        let ping = async move {
            match redis::cmd("PING").query_async::<String>(&mut conn).await {
                Ok(pong) => Ok(pong),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    redis::cmd("PING").query_async::<String>(&mut conn).await
                }
            }
        };
        bounded("redis", ping).await?;
    }
    Ok(())
}

async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    check: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(format!("{what}: {error}")),
        Err(_) => Err(format!("{what}: no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// Beats for worker `id` every [`HEARTBEAT_INTERVAL`] until `stop`, then removes its row. A beat
/// that fails (database down) is logged and retried at the next interval.
pub async fn heartbeat(app: std::sync::Arc<App>, id: String, mut stop: watch::Receiver<bool>) {
    let host = hostname();
    let started_at = Utc::now();
    let mut ticker = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beats: u64 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        let now = Utc::now();
        if let Err(error) = workers::beat(&app.db, &id, &host, started_at, now).await {
            tracing::warn!(error = %error, "worker heartbeat failed; retrying");
            continue;
        }
        // Once in a while, clear rows of workers that died long ago.
        if beats.is_multiple_of(720)
            && let Err(error) = workers::prune(&app.db, now - FORGET_AFTER).await
        {
            tracing::warn!(error = %error, "pruning old worker heartbeats failed");
        }
        beats += 1;
    }
    if let Err(error) = workers::forget(&app.db, &id).await {
        tracing::warn!(error = %error, "removing the worker heartbeat failed; it will age out");
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + secs, 0).expect("time")
    }

    #[test]
    fn stalled_only_without_workers_and_with_overdue_posts() {
        let limit = Duration::from_secs(120);
        let now = at(1000);
        let overdue = Snapshot { overdue: 3, oldest_overdue: Some(at(700)), ..Snapshot::default() };
        let reason = overdue.stalled(now, limit).expect("no worker ever, posts overdue");
        assert!(reason.contains("3 posts are overdue") && reason.contains("300 s"), "{reason}");
        let recent = Snapshot { last_beat: Some(at(950)), ..overdue.clone() };
        assert_eq!(recent.stalled(now, limit), None, "last beat 50 s ago is within the limit");
        let silent = Snapshot { last_beat: Some(at(800)), ..overdue.clone() };
        assert!(silent.stalled(now, limit).expect("silent 200 s").contains("for 200 s"));
        let live = Snapshot { live_workers: 1, ..silent.clone() };
        assert_eq!(live.stalled(now, limit), None, "a live worker with a backlog is not an outage");
        let idle = Snapshot { overdue: 0, oldest_overdue: None, ..silent };
        assert_eq!(idle.stalled(now, limit), None, "nothing overdue");
    }
}
