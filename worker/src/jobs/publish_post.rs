//! `PublishPost`: publish one post at its time, exactly once (DESIGN §5).
//!
//! The post row decides everything: a job for a post that is no longer `pending`/`retrying` is
//! acknowledged and dropped (one for a post left `publishing` by a dead worker turns it
//! `unknown` once the claim is stale), a post is claimed with one conditional update before anything is
//! sent, and the outcome is recorded on the row. Retries are Herald's (`retrying` plus a new job
//! at `next_attempt_at`), never apalis's blind re-runs, so the handler acknowledges every job it
//! has decided about and hands apalis an error only when the database could not be read.

use std::{sync::Arc, time::Duration as StdDuration};

use apalis::prelude::{BoxDynError, Data};
use chrono::{Duration, Utc};
use rand::Rng;
use shared::{
    App,
    db::{
        connections,
        entities::post,
        posts::{self, Outcome},
    },
    domain::{ConnectionStatus, ErrorKind, Platform, PostContent, PostStatus},
    jobs::PublishPost,
    platforms::{Account, PlatformError},
    tokens::{self, TokenError},
};
use tracing::Instrument;

/// A job that became due this close to its post's time waits in the handler instead of being
/// re-queued (the queue keeps whole seconds, and hosts' clocks drift a little).
const MAX_EARLY_WAIT: StdDuration = StdDuration::from_secs(5);
/// When a rate-limited platform does not say when to come back.
const DEFAULT_RATE_LIMIT_WAIT_MINUTES: i64 = 15;

/// The apalis handler.
pub async fn handle(job: PublishPost, app: Data<Arc<App>>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("publish_post", post.id = %job.post_id, job.v = job.v);
    run(&app, &job.post_id).instrument(span).await
}

/// Publishes `post_id` if it is due and still publishable.
pub async fn run(app: &App, post_id: &str) -> Result<(), BoxDynError> {
    let Some(post) = posts::find(&app.db, post_id).await? else {
        tracing::info!("post no longer exists; job dropped");
        return Ok(());
    };
    let status = PostStatus::parse(&post.status);
    let due = match status {
        Some(PostStatus::Pending) => post.scheduled_time,
        Some(PostStatus::Retrying) => post.next_attempt_at.unwrap_or(post.scheduled_time),
        Some(PostStatus::Publishing) => return orphaned(app, &post).await,
        _ => {
            tracing::info!(post.status = %post.status, "post is not waiting to be published; job dropped");
            return Ok(());
        }
    };
    if let Ok(early) = (due - Utc::now()).to_std() {
        if early > MAX_EARLY_WAIT {
            // Rescheduled since this job was queued, or a clock far off: queue it for its time.
            app.queue.enqueue_publish(post_id, due).await?;
            tracing::info!(post.due = %due, "job ran early; re-queued for the post's time");
            return Ok(());
        }
        tokio::time::sleep(early).await;
    }
    if !posts::claim(&app.db, post_id).await? {
        tracing::info!("post claimed elsewhere or no longer publishable; job dropped");
        return Ok(());
    }
    let platform = post.platform.clone();
    let outcome = attempt(app, &post).await;
    let label = match &outcome {
        Outcome::Posted { published_at, .. } => {
            let lateness = (*published_at - post.scheduled_time).num_milliseconds().max(0) as f64 / 1000.0;
            app.metrics.publish_lateness.observe(lateness);
            tracing::info!(platform = %platform, lateness_ms = (lateness * 1000.0) as i64, "post published");
            "posted"
        }
        Outcome::Retrying { kind, error, next_attempt_at } => {
            tracing::warn!(platform = %platform, error.kind = %kind, error = %error, retry.at = %next_attempt_at, "publish failed; will retry");
            "retrying"
        }
        Outcome::Failed { kind, error } => {
            tracing::warn!(platform = %platform, error.kind = %kind, error = %error, "publish failed");
            "failed"
        }
        Outcome::Unknown { error } => {
            tracing::error!(platform = %platform, error = %error, "publish outcome unknown; not retried");
            "unknown"
        }
    };
    app.metrics.job(&platform, label);
    let retry_at = match &outcome {
        Outcome::Retrying { next_attempt_at, .. } => Some(*next_attempt_at),
        _ => None,
    };
    posts::record(&app.db, post_id, outcome).await?;
    if let Some(at) = retry_at {
        app.queue.enqueue_publish(post_id, at).await?;
    }
    Ok(())
}

/// A job for a post that is `publishing`: apalis re-delivers the jobs of a worker that died, and
/// the post may have died with it between claim and record. While the claim is recent another
/// worker may still be sending, so the job looks again when the claim is stale; a stale claim
/// becomes `unknown` (the platform may have the post), never a second send.
async fn orphaned(app: &App, post: &post::Model) -> Result<(), BoxDynError> {
    let stale_after = Duration::from_std(app.settings.worker.stale_after).unwrap_or(Duration::minutes(5));
    let stale_at = post.updated_at + stale_after;
    if Utc::now() < stale_at {
        app.queue.enqueue_publish(&post.id, stale_at).await?;
        tracing::info!(recheck.at = %stale_at, "post is being published elsewhere; will look again");
        return Ok(());
    }
    let error = "the worker publishing this post stopped before recording the outcome; check the platform before publishing it again";
    if posts::mark_orphaned(&app.db, &post.id, post.updated_at, error).await? {
        app.metrics.job(&post.platform, "unknown");
        tracing::error!(platform = %post.platform, "post orphaned while publishing; marked unknown, not re-sent");
    }
    Ok(())
}

/// One attempt: a valid token, the platform call, and the classified result.
async fn attempt(app: &App, post: &post::Model) -> Outcome {
    let failed = |kind: ErrorKind, error: String| Outcome::Failed { kind, error };
    let Some(platform) = Platform::parse(&post.platform) else {
        return failed(ErrorKind::Rejected, format!("unknown platform {}", post.platform));
    };
    let Some(connection_id) = post.social_connection_id else {
        return failed(ErrorKind::NotConnected, format!("the {platform} account is not connected"));
    };
    let Some(client) = app.platforms.get(platform) else {
        return failed(ErrorKind::NotConnected, format!("{platform} is not configured on this server"));
    };
    let hashtags: Vec<String> = serde_json::from_value(post.hashtags.clone()).unwrap_or_default();
    let content = PostContent::from_stored(post.post_content.clone(), hashtags);

    let token = match tokens::access_token(app, connection_id, false, None).await {
        Ok(token) => token,
        Err(error) => return token_failure(app, post, error),
    };
    let connection = &token.connection;
    let account = Account {
        platform_user_id: connection.platform_user_id.clone(),
        page_id: connection.page_id.clone(),
        username: connection.platform_username.clone(),
    };
    // Platforms that publish to a Page do so with the Page's own token.
    let page_token = match (client.needs_page(), &connection.page_access_token) {
        (false, _) => None,
        (true, None) => {
            return failed(ErrorKind::NotConnected, format!("choose which {platform} Page to publish to"));
        }
        (true, Some(cipher)) => match app.cipher.decrypt(cipher) {
            Ok(page_token) => Some(page_token),
            Err(error) => return failed(ErrorKind::NotConnected, error.to_string()),
        },
    };
    let mut result = client.publish(page_token.as_deref().unwrap_or(&token.token), &account, &content).await;
    if let Err(PlatformError::Revoked(message)) = &result {
        // Access was withdrawn: no refresh helps.
        let reason = format!("{platform} access was revoked: {message}; reconnect the account");
        if let Err(error) = connections::mark(&app.db, connection_id, ConnectionStatus::Revoked, &reason).await {
            tracing::error!(error = %error, "could not mark the connection revoked");
        }
    }
    if matches!(result, Err(PlatformError::Unauthorized(_))) {
        // The platform refused a token we thought valid: refresh once and try again.
        let fresh = match tokens::access_token(app, connection_id, true, Some(&token.connection.access_token)).await {
            Ok(fresh) => fresh,
            Err(error) => return token_failure(app, post, error),
        };
        result = client.publish(page_token.as_deref().unwrap_or(&fresh.token), &account, &content).await;
        if let Err(PlatformError::Unauthorized(message)) = &result {
            let reason = format!("{platform} refused the token: {message}; reconnect the account");
            if let Err(error) = connections::mark(&app.db, connection_id, ConnectionStatus::Expired, &reason).await {
                tracing::error!(error = %error, "could not mark the connection expired");
            }
        }
    }
    match result {
        Ok(published) => Outcome::Posted { platform_post_id: published.platform_post_id, published_at: Utc::now() },
        Err(PlatformError::RateLimited { message, retry_at }) => Outcome::Retrying {
            kind: ErrorKind::RateLimited,
            error: message,
            next_attempt_at: retry_at
                .filter(|at| *at > Utc::now())
                .unwrap_or_else(|| Utc::now() + Duration::minutes(DEFAULT_RATE_LIMIT_WAIT_MINUTES)),
        },
        Err(PlatformError::Transient(message)) => retry_or_fail(app, post, ErrorKind::Transient, message),
        Err(PlatformError::Unauthorized(message) | PlatformError::Revoked(message)) => {
            failed(ErrorKind::Unauthorized, message)
        }
        Err(PlatformError::Rejected(message)) => failed(ErrorKind::Rejected, message),
        Err(PlatformError::Unknown(message)) => Outcome::Unknown { error: message },
    }
}

fn token_failure(app: &App, post: &post::Model, error: TokenError) -> Outcome {
    match error {
        TokenError::NotConnected(message) => Outcome::Failed { kind: ErrorKind::NotConnected, error: message },
        TokenError::Transient(message) => retry_or_fail(app, post, ErrorKind::Transient, message),
        TokenError::Database(error) => {
            retry_or_fail(app, post, ErrorKind::Transient, format!("database error: {error}"))
        }
    }
}

/// Another attempt with exponential backoff and jitter, or a final failure once the attempts
/// (`PUBLISH_MAX_ATTEMPTS`) are used up.
fn retry_or_fail(app: &App, post: &post::Model, kind: ErrorKind, error: String) -> Outcome {
    let attempts_made = u32::try_from(post.retry_count).unwrap_or(0) + 1;
    let settings = &app.settings.worker;
    if attempts_made >= settings.max_attempts {
        return Outcome::Failed { kind, error: format!("{error} (gave up after {attempts_made} attempts)") };
    }
    Outcome::Retrying { kind, error, next_attempt_at: Utc::now() + backoff(settings.retry_base, attempts_made) }
}

/// `base * 2^(attempt-1)`, plus up to half of that again as jitter, capped at one hour.
fn backoff(base: StdDuration, attempt: u32) -> Duration {
    let base_ms = base.as_millis().min(u128::from(u32::MAX)) as i64;
    let delay = base_ms.saturating_mul(1i64 << attempt.saturating_sub(1).min(20)).min(3_600_000);
    let jitter = if delay > 1 { rand::rng().random_range(0..=delay / 2) } else { 0 };
    Duration::milliseconds(delay + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        for attempt in 1..=4 {
            let delay = backoff(StdDuration::from_secs(30), attempt).num_milliseconds();
            let floor = 30_000 * (1 << (attempt - 1));
            assert!(delay >= floor && delay <= floor + floor / 2, "attempt {attempt}: {delay}");
        }
        assert!(backoff(StdDuration::from_secs(30), 30).num_milliseconds() <= 5_400_000);
    }
}
