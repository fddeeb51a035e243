//! `refresh_tokens`: the periodic sweep that keeps connections usable when nothing is posted.
//!
//! Every `REFRESH_SWEEP_INTERVAL_SECS` each worker looks at the active connections whose access
//! token expires within the longest platform margin and asks `tokens::access_token` for each,
//! which refreshes only inside that platform's own margin, under the connection's refresh lock
//! (so several workers sweeping at once refresh each connection once). A refusal marks the
//! connection `expired` with the platform's message; a network failure or outage leaves it as it
//! was for the next sweep. A connection that cannot be refreshed (no refresh token) is marked
//! `expired` once its token has expired.

use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use shared::{App, db::connections, tokens};

/// Looks this far ahead: the longest refresh margin of any platform (Instagram's 10 days).
const HORIZON_DAYS: i64 = 14;
/// Connections handled per sweep; the rest wait for the next one.
const BATCH: u64 = 500;

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Connections looked at.
    pub checked: usize,
    /// Connections that are no longer usable.
    pub unusable: usize,
    /// Connections whose refresh failed for a reason that may pass.
    pub deferred: usize,
}

/// Runs one sweep.
pub async fn sweep(app: &App) -> Result<Sweep, shared::db::DbErr> {
    let candidates = connections::expiring_before(&app.db, Utc::now() + Duration::days(HORIZON_DAYS), BATCH).await?;
    let mut result = Sweep { checked: candidates.len(), ..Sweep::default() };
    for row in candidates {
        match tokens::access_token(app, row.id, false, None).await {
            Ok(_) => {}
            Err(tokens::TokenError::NotConnected(reason)) => {
                result.unusable += 1;
                tracing::info!(connection.id = row.id, platform = %row.platform, reason = %reason, "connection unusable");
            }
            Err(error) => {
                result.deferred += 1;
                tracing::warn!(connection.id = row.id, platform = %row.platform, error = %error, "refresh deferred");
            }
        }
    }
    Ok(result)
}

/// Sweeps every `interval`, and prunes webhook history, until `stop` says so.
pub async fn run(app: std::sync::Arc<App>, interval: StdDuration, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        match sweep(&app).await {
            Ok(sweep) if sweep.checked > 0 => tracing::info!(
                checked = sweep.checked,
                unusable = sweep.unusable,
                deferred = sweep.deferred,
                "refresh sweep"
            ),
            Ok(_) => {}
            Err(error) => tracing::error!(error = %error, "refresh sweep failed"),
        }
        // Housekeeping on the same clock: webhook history past its retention.
        match shared::webhooks::prune(&app).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "webhook history pruned"),
            Err(error) => tracing::error!(error = %error, "webhook pruning failed"),
        }
    }
}
