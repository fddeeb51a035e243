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
    domain::{ConnectionStatus, ErrorKind, PostContent, PostOptions, PostStatus, PublishPhase},
    platforms::{Account, MediaPost, PlatformClient, PlatformError, Published, Recovery, Step},
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
/// The first look at a platform's processing when it does not say when; doubled per look.
const FIRST_POLL: StdDuration = StdDuration::from_secs(1);
/// The longest gap between two looks at a platform's processing.
const MAX_POLL: StdDuration = StdDuration::from_secs(60);

/// How an attempt ended.
enum Ended {
    /// With an outcome to record.
    Outcome(Outcome),
    /// It lost its claim before sending anything: nothing to record.
    Lost,
    /// It saved a step and waits on the platform; a later job resumes the post.
    Waiting,
    /// A per-account budget held it back; it is rescheduled.
    Deferred,
}

/// Publishes `post_id` if it is due and still waiting, or resumes a media post whose wait is over
/// or whose attempt died. Errors only when the database could not be read or written; every
/// decision about the post is recorded on its row.
pub async fn run(app: &App, post_id: &str) -> Result<(), DbErr> {
    let claim_token = uuid::Uuid::new_v4().to_string();
    let stale_after = stale_after(app);
    // The connection, never the post, is read before the claim: the claim is the post's read.
    let ready = connections::of_post(&app.db, post_id).await?.and_then(|row| tokens::without_refresh(app, &row));
    let mut waited = false;
    let (post, resumed) = loop {
        let now = Utc::now();
        if let Some(post) =
            posts::claim(&app.db, post_id, &claim_token, now, now + stale_after, ready.is_some()).await?
        {
            break (post, false);
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
            PostStatus::Publishing => match resolve_due(app, &row, &claim_token).await? {
                Some(post) => break (post, true),
                None => return Ok(()),
            },
            status => {
                tracing::info!(post.status = %status, "post is not waiting to be published; job dropped");
                return Ok(());
            }
        }
    };
    let outcome = match attempt(app, &post, &claim_token, ready, resumed).await? {
        Ended::Outcome(outcome) => outcome,
        Ended::Waiting | Ended::Deferred => return Ok(()),
        Ended::Lost => {
            app.metrics.lost_claims.inc();
            tracing::error!(platform = %post.platform, "post not sent: this attempt no longer holds it (its claim went stale)");
            return Ok(());
        }
    };
    observe(app, &post, &outcome);
    let recorded = persist_outcome(stale_after, || async {
        match &outcome {
            Outcome::Posted { platform_post_id, published_at } => {
                let record = posts::PostedRecord {
                    post_id: post.id.clone(),
                    claim_token: claim_token.clone(),
                    platform_post_id: platform_post_id.clone(),
                    published_at: *published_at,
                };
                app.posted.record(&app.db, record).await
            }
            _ => posts::record(&app.db, &post.id, &claim_token, outcome.clone()).await,
        }
    })
    .await?;
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

/// Writes an outcome the platform has already given, retrying while the database is away: a
/// published post whose `posted` write failed would otherwise become `unknown` when its claim goes
/// stale. Retries with backoff (250 ms doubling to 5 s) for up to half the claim's lifetime, so the
/// write still lands while this attempt holds the post.
async fn persist_outcome<F, Fut>(stale_after: Duration, write: F) -> Result<bool, DbErr>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool, DbErr>>,
{
    let give_up = tokio::time::Instant::now() + stale_after.to_std().unwrap_or_default() / 2;
    let mut delay = StdDuration::from_millis(250);
    loop {
        match write().await {
            Ok(recorded) => return Ok(recorded),
            Err(error) if tokio::time::Instant::now() + delay < give_up => {
                tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "writing the outcome failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(StdDuration::from_secs(5));
            }
            Err(error) => return Err(error),
        }
    }
}

fn stale_after(app: &App) -> Duration {
    Duration::from_std(app.settings.worker.stale_after).unwrap_or(Duration::minutes(5))
}

fn media_of(post: &post::Model) -> Vec<String> {
    serde_json::from_value(post.media_urls.clone()).unwrap_or_default()
}

/// A job for a post that is `publishing`. Until its `due_at` (the claim's staleness, or the next
/// look at the platform) another attempt may be working on it, or nothing is to be done yet: the
/// job is dropped, and the dispatcher pushes one at `due_at`. Once due: a text post whose attempt
/// never started sending goes back to waiting, and one that may have reached the platform becomes
/// `unknown`, never a second send; a media post is taken over by this attempt, which resumes it
/// from its last saved step (returned).
async fn resolve_due(app: &App, post: &post::Model, claim_token: &str) -> Result<Option<post::Model>, DbErr> {
    let now = Utc::now();
    if post.due_at.is_none_or(|due| now < due) {
        tracing::info!("post is being published by another attempt; job dropped");
        return Ok(None);
    }
    let token = post.claim_token.as_deref();
    if posts::release_unsent(&app.db, &post.id, token, now).await? {
        tracing::warn!(platform = %post.platform, "post orphaned before it was sent; back to waiting");
        return Ok(None);
    }
    if !media_of(post).is_empty() {
        let taken = posts::take_over(&app.db, post, claim_token, now, now + stale_after(app)).await?;
        if taken.is_none() {
            tracing::info!("post was resumed by another attempt; job dropped");
        }
        return Ok(taken);
    }
    if posts::mark_orphaned(&app.db, &post.id, token, ORPHANED).await? {
        app.metrics.job(post.platform.as_str(), "unknown");
        tracing::error!(platform = %post.platform, "post orphaned while publishing; marked unknown, not re-sent");
    }
    Ok(None)
}

const ORPHANED: &str = "the worker publishing this post stopped before recording the outcome; check the platform before publishing it again";

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

/// What an attempt publishes with.
struct Credentials {
    client: std::sync::Arc<dyn PlatformClient>,
    connection_id: i64,
    /// The user's token.
    token: tokens::AccessToken,
    /// The Page token, for platforms that publish to a Page.
    page_token: Option<String>,
    account: Account,
}

/// The client, a usable token and the account of a claimed post, or the outcome that says why
/// there are none.
async fn credentials(
    app: &App,
    post: &post::Model,
    ready: Option<tokens::AccessToken>,
) -> Result<Result<Credentials, Outcome>, DbErr> {
    let failed = |kind: ErrorKind, error: String| Ok(Err(Outcome::Failed { kind, error }));
    let platform = post.platform;
    let Some(connection_id) = post.social_connection_id else {
        return failed(ErrorKind::NotConnected, format!("the {platform} account is not connected"));
    };
    let Some(client) = app.platforms.get(platform) else {
        return failed(ErrorKind::NotConnected, format!("{platform} is not configured on this server"));
    };
    let token = match ready.filter(|token| token.connection.id == connection_id) {
        Some(token) => token,
        None => match tokens::access_token(app, connection_id, false, None).await {
            Ok(token) => token,
            Err(error) => return Ok(Err(token_failure(app, post, error))),
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
    Ok(Ok(Credentials { client: client.clone(), connection_id, token, page_token, account }))
}

/// Per-account budgets kept before calling (DESIGN §5; PLATFORMS.md §2.4, §5.4), shared by every
/// worker process: X takes 100 posts per user per 15 minutes, TikTok 6 post inits per user per
/// minute. Instagram's daily limit is read from the platform by its flow.
fn budget(app: &App, platform: crate::domain::Platform) -> Option<(u32, StdDuration)> {
    let media = &app.settings.media;
    let (limit, window) = match platform {
        crate::domain::Platform::Twitter => (media.x_posts_per_15_min, StdDuration::from_secs(15 * 60)),
        crate::domain::Platform::Tiktok => (media.tiktok_inits_per_min, StdDuration::from_secs(60)),
        _ => return None,
    };
    (limit > 0).then_some((limit, window))
}

/// Takes a slot of the post's account budget; when the budget is spent, holds the post back until
/// a slot frees (rescheduled, not failed) and says so.
async fn within_budget(app: &App, post: &post::Model, connection_id: i64, claim_token: &str) -> Result<bool, DbErr> {
    let Some((limit, window)) = budget(app, post.platform) else { return Ok(true) };
    let name = format!("{}:{connection_id}", post.platform);
    let wait = match app.locks.take_slot(&name, limit, window).await {
        Ok(None) => return Ok(true),
        Ok(Some(wait)) => wait,
        Err(error) => {
            // The platform's own limit answers if Herald's count is unavailable.
            tracing::warn!(error = %error, "account budget unavailable; publishing without it");
            return Ok(true);
        }
    };
    let until = Utc::now() + Duration::from_std(wait).unwrap_or(Duration::minutes(1)) + Duration::milliseconds(50);
    let every = match window.as_secs() / 60 {
        1 => "minute".to_owned(),
        minutes => format!("{minutes} minutes"),
    };
    let reason = format!(
        "held back until {}: {} takes {limit} posts per account every {every}, and this account's are used",
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        post.platform,
    );
    if posts::defer(&app.db, &post.id, claim_token, until, &reason).await? {
        tracing::info!(platform = %post.platform, until = %until, "post held back by the account's budget");
    }
    Ok(false)
}

/// One attempt at the claimed row: a usable token, the platform calls, the classified result.
/// `ready` is the token read before the claim, which then saved the `sending` phase of a text
/// post. `resumed`: the row was taken over from an attempt that waited or died.
async fn attempt(
    app: &App,
    post: &post::Model,
    claim_token: &str,
    ready: Option<tokens::AccessToken>,
    resumed: bool,
) -> Result<Ended, DbErr> {
    let text_phase_saved = ready.is_some() && post.publish_phase == Some(PublishPhase::Sending);
    let credentials = match credentials(app, post, ready).await? {
        Ok(credentials) => credentials,
        Err(outcome) => return Ok(Ended::Outcome(outcome)),
    };
    if !resumed && !within_budget(app, post, credentials.connection_id, claim_token).await? {
        return Ok(Ended::Deferred);
    }
    let hashtags: Vec<String> = serde_json::from_value(post.hashtags.clone()).unwrap_or_default();
    let content = PostContent::from_stored(post.post_content.clone(), hashtags);
    let media = media_of(post);
    if !media.is_empty() {
        return steps(app, post, claim_token, credentials, &content, &media, resumed).await;
    }
    // The point of no return: the row says so before the platform is called, so a crash from
    // here on leaves the post `unknown` rather than sends it twice.
    if !text_phase_saved && !posts::save_phase(&app.db, &post.id, claim_token, PublishPhase::Sending).await? {
        return Ok(Ended::Lost);
    }
    let Credentials { client, connection_id, token, page_token, account } = credentials;
    let result = match page_token {
        Some(page_token) => {
            let result = client.publish(&page_token, &account, &content).await;
            page_refused(app, post, connection_id, &result).await;
            result
        }
        None => match publish_refreshing_once(app, client.as_ref(), connection_id, &token, &account, &content).await {
            Ok(result) => result,
            Err(error) => return Ok(Ended::Outcome(token_failure(app, post, error))),
        },
    };
    Ok(Ended::Outcome(outcome_of(app, post, connection_id, result).await))
}

/// The saved steps of a media post, as kept in `publish_state`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    /// The platform module's handles.
    #[serde(default)]
    step: serde_json::Value,
    /// When the current wait on the platform began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    waiting_since: Option<chrono::DateTime<Utc>>,
    /// Looks at the platform in the current wait.
    #[serde(default)]
    polls: u32,
}

impl Saved {
    fn of(post: &post::Model) -> Self {
        match (&post.publish_phase, &post.publish_state) {
            (Some(_), Some(state)) => serde_json::from_value(state.clone()).unwrap_or_default(),
            _ => Saved::default(),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The steps of a media post (DESIGN §12), from the last saved one: each saved before the next is
/// taken; a wait on the platform saved with the time of the next look and the job ended; the step
/// that makes the post public saved as `sending` before it is taken. A post resumed at `sending`
/// (its attempt died there) is not sent again: the platform is asked what became of it, where it
/// can answer, and otherwise it is `unknown`.
async fn steps(
    app: &App,
    post: &post::Model,
    claim_token: &str,
    credentials: Credentials,
    content: &PostContent,
    media: &[String],
    resumed: bool,
) -> Result<Ended, DbErr> {
    let platform = post.platform;
    let Credentials { client, connection_id, token, page_token, account } = credentials;
    let options: PostOptions =
        post.publish_options.clone().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let mut phase = post.publish_phase;
    let mut saved = Saved::of(post);
    let mut user_token = token.token.clone();
    let mut refreshed = false;
    let stale_after = stale_after(app);
    let max_wait = Duration::from_std(app.settings.media.max_wait).unwrap_or(Duration::hours(1));
    // An attempt that died at the point of no return: ask the platform, once, before anything.
    let mut recover_first = resumed && phase == Some(PublishPhase::Sending);
    loop {
        let call_token = page_token.as_deref().unwrap_or(&user_token);
        let media_post =
            MediaPost { token: call_token, account: &account, content, media, options: &options, fetcher: &app.media };
        let result = if std::mem::take(&mut recover_first) {
            match client.recover(&media_post, &saved.step).await {
                Ok(Recovery::Published(published)) => Ok(Step::Done(published)),
                Ok(Recovery::NotSent { state }) => {
                    tracing::warn!(platform = %platform, "the platform never published the post; sending it again");
                    Ok(Step::Next { phase: PublishPhase::Uploading, state })
                }
                Ok(Recovery::Pending { state }) => Ok(Step::Next { phase: PublishPhase::Confirming, state }),
                Ok(Recovery::Unknown) => return Ok(Ended::Outcome(Outcome::Unknown { error: ORPHANED.into() })),
                Err(PlatformError::Transient(message)) => Ok(Step::Wait {
                    phase: PublishPhase::Sending,
                    state: saved.step.clone(),
                    after: None,
                    status: format!("asking {platform} what became of the post failed: {message}"),
                }),
                Err(error) => {
                    let error = format!("{ORPHANED} ({platform} could not say: {})", error.message());
                    return Ok(Ended::Outcome(Outcome::Unknown { error }));
                }
            }
        } else {
            with_heartbeat(app, &post.id, claim_token, client.step(&media_post, phase, &saved.step)).await
        };
        let now = Utc::now();
        // Past the point of no return the platform has the post: a failure to look at it is a
        // reason to look again (bounded by the wait), never to start over.
        let result = match result {
            Err(PlatformError::Transient(message) | PlatformError::RateLimited { message, .. })
                if phase == Some(PublishPhase::Confirming) =>
            {
                Ok(Step::Wait {
                    phase: PublishPhase::Confirming,
                    state: saved.step.clone(),
                    after: None,
                    status: format!("looking at the post failed: {message}"),
                })
            }
            Err(error) if phase == Some(PublishPhase::Confirming) && !matches!(error, PlatformError::Rejected(_)) => {
                let error = format!("{platform} has the post but could not say how it ended: {}", error.message());
                return Ok(Ended::Outcome(Outcome::Unknown { error }));
            }
            result => result,
        };
        match result {
            Ok(Step::Next { phase: next, state }) => {
                saved = Saved { step: state, waiting_since: None, polls: 0 };
                if !posts::save_step(&app.db, &post.id, claim_token, next, &saved.json(), now + stale_after).await? {
                    return Ok(Ended::Lost);
                }
                phase = Some(next);
            }
            Ok(Step::Wait { phase: next, state, after, status }) => {
                let since = saved.waiting_since.unwrap_or(now);
                if now - since > max_wait {
                    let minutes = (now - since).num_minutes();
                    let error = format!("{platform} was still processing after {minutes} minutes: {status}");
                    return Ok(Ended::Outcome(if next == PublishPhase::Processing {
                        Outcome::Failed { kind: ErrorKind::Rejected, error }
                    } else {
                        Outcome::Unknown { error }
                    }));
                }
                let delay = after.unwrap_or_else(|| poll_delay(saved.polls));
                let next_look = now + Duration::from_std(delay).unwrap_or(Duration::seconds(1));
                saved = Saved { step: state, waiting_since: Some(since), polls: saved.polls + 1 };
                if !posts::save_step(&app.db, &post.id, claim_token, next, &saved.json(), next_look).await? {
                    return Ok(Ended::Lost);
                }
                tracing::info!(platform = %platform, phase = %next, next_look = %next_look, status = %status, "waiting on the platform");
                return Ok(Ended::Waiting);
            }
            Ok(Step::Done(published)) => return Ok(Ended::Outcome(posted(published))),
            Err(PlatformError::Unauthorized(_))
                if page_token.is_none() && !refreshed && phase != Some(PublishPhase::Sending) =>
            {
                // Refused a token Herald thought valid: refresh once and take the step again.
                refreshed = true;
                match tokens::access_token(app, connection_id, true, Some(&token.connection.access_token)).await {
                    Ok(fresh) => user_token = fresh.token,
                    Err(error) => return Ok(Ended::Outcome(token_failure(app, post, error))),
                }
            }
            Err(error) => {
                // Nothing is public before the point of no return: an upload or a container that
                // may have been made is harmless, so an ambiguous failure there is worth a retry.
                let before_sending = !matches!(phase, Some(PublishPhase::Sending | PublishPhase::Confirming));
                let error = match error {
                    PlatformError::Unknown(message) if before_sending => PlatformError::Transient(message),
                    error => error,
                };
                if page_token.is_some() {
                    page_refused(app, post, connection_id, &Err(error.clone())).await;
                } else if refreshed && let PlatformError::Unauthorized(message) = &error {
                    let reason = format!("{platform} refused the token: {message}; reconnect the account");
                    mark_connection(app, connection_id, ConnectionStatus::Expired, &reason).await;
                }
                return Ok(Ended::Outcome(outcome_of(app, post, connection_id, Err(error)).await));
            }
        }
    }
}

/// Runs a step, pushing the claim's staleness forward while it runs (a large upload may take longer
/// than `PUBLISH_STALE_AFTER_SECS`): only a dead attempt's claim goes stale.
async fn with_heartbeat<T>(
    app: &App,
    post_id: &str,
    claim_token: &str,
    step: impl std::future::Future<Output = T>,
) -> T {
    let stale_after = stale_after(app);
    let period = (stale_after / 3).to_std().unwrap_or(StdDuration::from_secs(60)).max(StdDuration::from_millis(500));
    let mut step = std::pin::pin!(step);
    loop {
        tokio::select! {
            done = &mut step => return done,
            () = tokio::time::sleep(period) => {
                if let Err(error) = posts::extend_claim(&app.db, post_id, claim_token, Utc::now() + stale_after).await {
                    tracing::warn!(error = %error, "could not extend the claim of a long step");
                }
            }
        }
    }
}

/// `base * 2^polls`, at most [`MAX_POLL`].
fn poll_delay(polls: u32) -> StdDuration {
    FIRST_POLL.saturating_mul(1 << polls.min(10)).min(MAX_POLL)
}

fn posted(published: Published) -> Outcome {
    Outcome::Posted { platform_post_id: published.platform_post_id, published_at: Utc::now() }
}

/// A Page token the platform refused expires the connection: no refresh renews it.
async fn page_refused(app: &App, post: &post::Model, connection_id: i64, result: &Result<Published, PlatformError>) {
    if let Err(PlatformError::Unauthorized(message)) = result {
        let reason = format!("{} refused the Page token: {message}; reconnect the account", post.platform);
        mark_connection(app, connection_id, ConnectionStatus::Expired, &reason).await;
    }
}

/// The outcome of a platform answer (DESIGN §5).
async fn outcome_of(
    app: &App,
    post: &post::Model,
    connection_id: i64,
    result: Result<Published, PlatformError>,
) -> Outcome {
    if let Err(PlatformError::Revoked(message)) = &result {
        let reason = format!("{} access was revoked: {message}; reconnect the account", post.platform);
        mark_connection(app, connection_id, ConnectionStatus::Revoked, &reason).await;
    }
    match result {
        Ok(published) => posted(published),
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
    }
}

/// Publishes a text post with the user's token; when the platform refuses a token Herald thought
/// valid, refreshes it once (unless another process already did) and sends again. A second
/// refusal marks the connection expired; a refresh that fails is the attempt's outcome.
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
