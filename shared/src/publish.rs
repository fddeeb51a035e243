//! The publishing service: the one owner of a publish attempt (DESIGN §5, §11, §12).
//!
//! An attempt claims the post with one conditional `UPDATE ... RETURNING` and publishes exactly
//! the row the claim returned; it gets a usable token (refreshed under the connection's lock, the
//! Page token for platforms that post to a Page), calls the platform, classifies the answer and
//! records the outcome with a write conditional on its claim token. A write that changes nothing
//! means the attempt lost the post; it is logged and counted. Nothing else in Herald builds a
//! platform request for a post or reads token columns for one; the worker's job only calls
//! [`run`].
//!
//! Steps (DESIGN §12): the `sending` phase is saved before the platform call, its point of no
//! return, so a post left `publishing` by a dead worker after that becomes `unknown`, never
//! re-sent; one left before it goes back to waiting. When the connection's token needs no
//! refresh (it was read, by the post's id, before the claim), the claim itself saves `sending`:
//! one statement less per post, and nothing but building the request between claim and send.
//! The multi-step media flows save their phase and the platform's handles on the row
//! (`publish_phase`, `publish_state`) before each next step, through the same claim token.

use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use rand::Rng;

use crate::{
    App,
    db::{
        DbErr, connections,
        entities::post,
        posts::{self, Outcome},
    },
    domain::{ConnectionStatus, ErrorKind, PostContent, PostStatus, PublishPhase},
    platforms::{Account, PlatformClient, PlatformError, Published},
    tokens::{self, TokenError},
};

/// `posted` outcomes written in one statement at most.
const MAX_POSTED_BATCH: usize = 64;

/// Writes `posted` outcomes in batches (DESIGN §11 allows batched results; the herd benchmark
/// needs them): one task per process takes every outcome waiting when it is free and writes them
/// with one statement ([`posts::record_posted`]). No timer: an outcome that finds the writer idle
/// is written at once, and outcomes that arrive while a statement runs share the next one. The
/// attempt waits for its own row's answer, so a lost claim is still logged and counted by it.
#[derive(Debug, Default)]
pub struct PostedWriter {
    queue: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<PendingPosted>>,
}

type PendingPosted = (posts::PostedRecord, tokio::sync::oneshot::Sender<Result<bool, String>>);

impl PostedWriter {
    /// Writes one outcome with whatever others are waiting; whether its row changed.
    async fn record(&self, db: &sea_orm::DatabaseConnection, record: posts::PostedRecord) -> Result<bool, DbErr> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(write_posted(db.clone(), receiver));
            sender
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        if queue.send((record.clone(), reply)).is_err() {
            // The writer task is gone (its runtime shut down): write this one alone.
            return Ok(!posts::record_posted(db, &[record]).await?.is_empty());
        }
        match answer.await {
            Ok(result) => result.map_err(DbErr::Custom),
            Err(_) => Ok(!posts::record_posted(db, &[record]).await?.is_empty()),
        }
    }
}

async fn write_posted(
    db: sea_orm::DatabaseConnection,
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<PendingPosted>,
) {
    let mut batch: Vec<PendingPosted> = Vec::with_capacity(MAX_POSTED_BATCH);
    while receiver.recv_many(&mut batch, MAX_POSTED_BATCH).await > 0 {
        let records: Vec<posts::PostedRecord> = batch.iter().map(|(record, _)| record.clone()).collect();
        let result = posts::record_posted(&db, &records).await;
        for (record, reply) in batch.drain(..) {
            let answer = match &result {
                Ok(changed) => Ok(changed.contains(&record.post_id)),
                Err(error) => Err(error.to_string()),
            };
            let _ = reply.send(answer);
        }
    }
}

/// A job that became due this close to its post's time waits for it instead of being dropped
/// (the queue keeps whole seconds, and hosts' clocks drift a little).
const MAX_EARLY_WAIT: StdDuration = StdDuration::from_secs(5);
/// When a rate-limited platform does not say when to come back.
const DEFAULT_RATE_LIMIT_WAIT_MINUTES: i64 = 15;

/// Publishes `post_id` if it is due and still waiting. Errors only when the database could not be
/// read or written; every decision about the post is recorded on its row.
pub async fn run(app: &App, post_id: &str) -> Result<(), DbErr> {
    let claim_token = uuid::Uuid::new_v4().to_string();
    let stale_after = Duration::from_std(app.settings.worker.stale_after).unwrap_or(Duration::minutes(5));
    // The connection, never the post, is read before the claim: the claim is the post's read.
    let ready = connections::of_post(&app.db, post_id).await?.and_then(|row| tokens::without_refresh(app, &row));
    let phase = ready.as_ref().map(|_| PublishPhase::Sending);
    let mut waited = false;
    let post = loop {
        let now = Utc::now();
        if let Some(post) = posts::claim(&app.db, post_id, &claim_token, now, now + stale_after, phase).await? {
            break post;
        }
        let Some(row) = posts::find(&app.db, post_id).await? else {
            tracing::info!("post no longer exists; job dropped");
            return Ok(());
        };
        match row.status {
            PostStatus::Pending | PostStatus::Retrying => {
                let early = row.due_at.and_then(|at| (at - Utc::now()).to_std().ok());
                match early {
                    Some(early) if !waited && early <= MAX_EARLY_WAIT => {
                        tokio::time::sleep(early).await;
                        waited = true;
                    }
                    _ => {
                        // Rescheduled since the job was pushed: the dispatcher pushes a new one.
                        tracing::info!(post.due = ?row.due_at, "post is not due; job dropped");
                        return Ok(());
                    }
                }
            }
            PostStatus::Publishing => return resolve_stale(app, &row, stale_after).await,
            status => {
                tracing::info!(post.status = %status, "post is not waiting to be published; job dropped");
                return Ok(());
            }
        }
    };
    let Some(outcome) = attempt(app, &post, &claim_token, ready).await? else {
        app.metrics.lost_claims.inc();
        tracing::error!(platform = %post.platform, "post not sent: this attempt no longer holds it (its claim went stale)");
        return Ok(());
    };
    observe(app, &post, &outcome);
    let recorded = match &outcome {
        Outcome::Posted { platform_post_id, published_at } => {
            let record = posts::PostedRecord {
                post_id: post.id.clone(),
                claim_token: claim_token.clone(),
                platform_post_id: platform_post_id.clone(),
                published_at: *published_at,
            };
            app.posted.record(&app.db, record).await?
        }
        _ => posts::record(&app.db, &post.id, &claim_token, outcome.clone()).await?,
    };
    if !recorded {
        app.metrics.lost_claims.inc();
        tracing::error!(
            platform = %post.platform,
            post.outcome = %outcome.status(),
            "publish outcome not recorded: this attempt no longer holds the post (its claim went stale)"
        );
    }
    Ok(())
}

/// A job for a post that is `publishing`. While its claim is recent, another attempt may still be
/// sending: the job is dropped (the row is due again when the claim goes stale, and the
/// dispatcher pushes a job then). A stale claim whose attempt never started sending goes back to
/// waiting and is sent; one that may have reached the platform becomes `unknown`, never a second
/// send.
async fn resolve_stale(app: &App, post: &post::Model, stale_after: Duration) -> Result<(), DbErr> {
    let claimed_at = post.claimed_at.unwrap_or(post.updated_at);
    let now = Utc::now();
    if now < claimed_at + stale_after {
        tracing::info!("post is being published by another attempt; job dropped");
        return Ok(());
    }
    let token = post.claim_token.as_deref();
    if posts::release_unsent(&app.db, &post.id, token, now).await? {
        tracing::warn!(platform = %post.platform, "post orphaned before it was sent; back to waiting");
        return Ok(());
    }
    let error = "the worker publishing this post stopped before recording the outcome; check the platform before publishing it again";
    if posts::mark_orphaned(&app.db, &post.id, token, error).await? {
        app.metrics.job(post.platform.as_str(), "unknown");
        tracing::error!(platform = %post.platform, "post orphaned while publishing; marked unknown, not re-sent");
    }
    Ok(())
}

/// Counts and logs an outcome.
fn observe(app: &App, post: &post::Model, outcome: &Outcome) {
    let platform = post.platform;
    match outcome {
        Outcome::Posted { published_at, .. } => {
            let lateness = (*published_at - post.scheduled_time).num_milliseconds().max(0) as f64 / 1000.0;
            app.metrics.publish_lateness.observe(lateness);
            tracing::info!(platform = %platform, lateness_ms = (lateness * 1000.0) as i64, "post published");
        }
        Outcome::Retrying { kind, error, next_attempt_at } => {
            tracing::warn!(platform = %platform, error.kind = %kind, error = %error, retry.at = %next_attempt_at, "publish failed; will retry");
        }
        Outcome::Failed { kind, error } => {
            tracing::warn!(platform = %platform, error.kind = %kind, error = %error, "publish failed");
        }
        Outcome::Unknown { error } => {
            tracing::error!(platform = %platform, error = %error, "publish outcome unknown; not retried");
        }
    }
    app.metrics.job(platform.as_str(), outcome.status().as_str());
}

/// One attempt at the claimed row: a usable token, the platform call, the classified result.
/// `ready` is the token read before the claim, which then saved the `sending` phase. `None` when
/// the attempt lost its claim before it sent anything.
async fn attempt(
    app: &App,
    post: &post::Model,
    claim_token: &str,
    ready: Option<tokens::AccessToken>,
) -> Result<Option<Outcome>, DbErr> {
    let failed = |kind: ErrorKind, error: String| Ok(Some(Outcome::Failed { kind, error }));
    let platform = post.platform;
    let Some(connection_id) = post.social_connection_id else {
        return failed(ErrorKind::NotConnected, format!("the {platform} account is not connected"));
    };
    let Some(client) = app.platforms.get(platform) else {
        return failed(ErrorKind::NotConnected, format!("{platform} is not configured on this server"));
    };
    let hashtags: Vec<String> = serde_json::from_value(post.hashtags.clone()).unwrap_or_default();
    let content = PostContent::from_stored(post.post_content.clone(), hashtags);

    let phase_saved = ready.is_some();
    let token = match ready.filter(|token| token.connection.id == connection_id) {
        Some(token) => token,
        None => match tokens::access_token(app, connection_id, false, None).await {
            Ok(token) => token,
            Err(error) => return Ok(Some(token_failure(app, post, error))),
        },
    };
    let connection = &token.connection;
    let account = Account {
        platform_user_id: connection.platform_user_id.clone(),
        page_id: connection.page_id.clone(),
        username: connection.platform_username.clone(),
    };
    // A Page is published to with its own token, which no refresh of the user's token renews.
    let page_token = match (client.needs_page(), &connection.page_access_token) {
        (false, _) => None,
        (true, None) => return failed(ErrorKind::NotConnected, format!("choose which {platform} Page to publish to")),
        (true, Some(cipher)) => match app.cipher.decrypt(cipher) {
            Ok(page_token) => Some(page_token),
            Err(error) => return failed(ErrorKind::NotConnected, error.to_string()),
        },
    };
    // The point of no return: the row says so before the platform is called, so a crash from
    // here on leaves the post `unknown` rather than sends it twice.
    if !phase_saved && !posts::save_phase(&app.db, &post.id, claim_token, PublishPhase::Sending).await? {
        return Ok(None);
    }
    let result = match page_token {
        Some(page_token) => {
            let result = client.publish(&page_token, &account, &content).await;
            if let Err(PlatformError::Unauthorized(message)) = &result {
                let reason = format!("{platform} refused the Page token: {message}; reconnect the account");
                mark_connection(app, connection_id, ConnectionStatus::Expired, &reason).await;
            }
            result
        }
        None => match publish_refreshing_once(app, client.as_ref(), connection_id, &token, &account, &content).await {
            Ok(result) => result,
            Err(error) => return Ok(Some(token_failure(app, post, error))),
        },
    };
    if let Err(PlatformError::Revoked(message)) = &result {
        let reason = format!("{platform} access was revoked: {message}; reconnect the account");
        mark_connection(app, connection_id, ConnectionStatus::Revoked, &reason).await;
    }
    let outcome = match result {
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
            Outcome::Failed { kind: ErrorKind::Unauthorized, error: message }
        }
        Err(PlatformError::Rejected(message)) => Outcome::Failed { kind: ErrorKind::Rejected, error: message },
        Err(PlatformError::Unknown(message)) => Outcome::Unknown { error: message },
    };
    Ok(Some(outcome))
}

/// Publishes with the user's token; when the platform refuses a token Herald thought valid,
/// refreshes it once (unless another process already did) and sends again. A second refusal marks
/// the connection expired; a refresh that fails is the attempt's outcome.
async fn publish_refreshing_once(
    app: &App,
    client: &dyn PlatformClient,
    connection_id: i64,
    token: &tokens::AccessToken,
    account: &Account,
    content: &PostContent,
) -> Result<Result<Published, PlatformError>, TokenError> {
    let result = client.publish(&token.token, account, content).await;
    let Err(PlatformError::Unauthorized(_)) = &result else { return Ok(result) };
    let fresh = tokens::access_token(app, connection_id, true, Some(&token.connection.access_token)).await?;
    let result = client.publish(&fresh.token, account, content).await;
    if let Err(PlatformError::Unauthorized(message)) = &result {
        let reason = format!("{} refused the token: {message}; reconnect the account", client.id());
        mark_connection(app, connection_id, ConnectionStatus::Expired, &reason).await;
    }
    Ok(result)
}

async fn mark_connection(app: &App, connection_id: i64, status: ConnectionStatus, reason: &str) {
    if let Err(error) = connections::mark(&app.db, connection_id, status, reason).await {
        tracing::error!(connection.id = connection_id, error = %error, "could not mark the connection {status}");
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
