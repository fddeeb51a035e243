//! Webhooks (DESIGN §14, issue 11): registering endpoints and delivering events to them.
//!
//! Events are written to the outbox by the change they report ([`crate::db::webhooks`]). Each
//! dispatcher round turns new events into deliveries, one per endpoint that wants the event, and
//! pushes the due deliveries into the job queue next to the publish jobs; a worker's job runs
//! [`deliver`]: one signed POST under the Standard Webhooks conventions (`webhook-id` is the
//! delivery's id, the same on every attempt), recorded as an attempt, then success, a retry on
//! the schedule, or death. Nothing here runs inside a publish attempt.
//!
//! The endpoint's URL obeys the media address rules twice: [`crate::media::check_url`] when it is
//! registered and before every attempt, and the guarded resolver on the connection itself, so a
//! name that resolves to a private address is refused when it is used. Redirects are not followed.

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use rand::Rng;

use crate::{
    App, Error,
    crypto::{new_webhook_secret, webhook_signature},
    db::{
        DbErr,
        entities::{webhook_attempt, webhook_delivery, webhook_endpoint, webhook_event},
        webhooks::{self as store, AttemptResult, Next},
    },
    domain::{DeliveryStatus, ValidationError, WebhookEvent},
};

/// The delays before each retry of a failed delivery, about a day in all (scaled by
/// `WEBHOOK_RETRY_SCALE`); after the last one the delivery is dead.
pub const RETRY_SCHEDULE: [StdDuration; 7] = [
    StdDuration::from_secs(5),
    StdDuration::from_secs(5 * 60),
    StdDuration::from_secs(30 * 60),
    StdDuration::from_secs(2 * 3600),
    StdDuration::from_secs(5 * 3600),
    StdDuration::from_secs(10 * 3600),
    StdDuration::from_secs(10 * 3600),
];

/// Job ids of deliveries start with this; post ids are UUIDs, so the two never meet.
pub const DELIVERY_PREFIX: &str = "msg_";

/// Events fanned out and deliveries pushed per dispatcher round, at most.
const BATCH: u64 = 500;

/// Whether a queue job names a delivery rather than a post.
pub fn is_delivery(job_id: &str) -> bool {
    job_id.starts_with(DELIVERY_PREFIX)
}

/// The HTTP client of deliveries: the media client's address rules, no redirects.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    /// A sender; `allow_private` is `MEDIA_ALLOW_PRIVATE`, `timeout` `WEBHOOK_TIMEOUT_SECS`.
    pub fn new(allow_private: bool, timeout: StdDuration) -> Self {
        Self { client: crate::media::guarded_client(allow_private, timeout, reqwest::redirect::Policy::none()) }
    }
}

/// A new endpoint's settings, as the api parsed them.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// Its URL.
    pub url: String,
    /// The event names it wants (none: all of them).
    pub events: Vec<String>,
}

/// An endpoint as created or rotated, with the one moment its secret is shown.
#[derive(Debug, Clone)]
pub struct WithSecret {
    /// The endpoint.
    pub endpoint: webhook_endpoint::Model,
    /// The signing secret (`whsec_...`), shown once.
    pub secret: String,
}

fn parse_events(names: &[String]) -> Result<Vec<WebhookEvent>, Error> {
    if names.is_empty() {
        return Ok(WebhookEvent::SUBSCRIBABLE.to_vec());
    }
    let mut events = Vec::new();
    for name in names {
        let event = WebhookEvent::parse(name.trim())
            .filter(|event| WebhookEvent::SUBSCRIBABLE.contains(event))
            .ok_or_else(|| {
                let known: Vec<&str> = WebhookEvent::SUBSCRIBABLE.iter().map(|e| e.as_str()).collect();
                ValidationError::new("events", format!("unknown event `{name}`; known: {}", known.join(", ")))
            })?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    Ok(events)
}

/// Registers an endpoint for the user: the URL under the media address rules, the events known.
pub async fn create(app: &App, user_id: &str, new: NewEndpoint) -> Result<WithSecret, Error> {
    let url = url::Url::parse(new.url.trim()).map_err(|_| ValidationError::new("url", "is not a URL".to_owned()))?;
    crate::media::check_url(&url, app.settings.media.allow_private)
        .map_err(|reason| ValidationError::new("url", reason.replace("media must", "endpoints must")))?;
    let events = parse_events(&new.events)?;
    let secret = new_webhook_secret();
    let now = Utc::now();
    let endpoint = webhook_endpoint::Model {
        id: store::new_id("ep_"),
        user_id: user_id.to_owned(),
        url: url.to_string(),
        events: serde_json::Value::from(events.iter().map(|e| e.as_str()).collect::<Vec<_>>()),
        secret: app.cipher.encrypt(&secret),
        previous_secret: None,
        previous_secret_until: None,
        disabled_at: None,
        disabled_reason: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    store::insert_endpoint(&app.db, endpoint.clone()).await?;
    tracing::info!(webhook.id = %endpoint.id, "webhook endpoint registered");
    Ok(WithSecret { endpoint, secret })
}

/// The user's endpoints.
pub async fn list(app: &App, user_id: &str) -> Result<Vec<webhook_endpoint::Model>, Error> {
    Ok(store::list_endpoints(&app.db, user_id).await?)
}

/// An endpoint of the user.
pub async fn get(app: &App, user_id: &str, id: &str) -> Result<webhook_endpoint::Model, Error> {
    if !crate::db::is_id(id) {
        return Err(Error::NotFound("webhook"));
    }
    store::find_endpoint(&app.db, user_id, id).await?.ok_or(Error::NotFound("webhook"))
}

/// Deletes an endpoint of the user; its pending deliveries die.
pub async fn delete(app: &App, user_id: &str, id: &str) -> Result<(), Error> {
    if crate::db::is_id(id) && store::delete_endpoint(&app.db, user_id, id).await? {
        Ok(())
    } else {
        Err(Error::NotFound("webhook"))
    }
}

/// A new signing secret; the current one keeps signing (a second signature) for
/// `WEBHOOK_ROTATION_OVERLAP_SECS`, so receivers can switch without losing a delivery.
pub async fn rotate_secret(app: &App, user_id: &str, id: &str) -> Result<WithSecret, Error> {
    let mut endpoint = get(app, user_id, id).await?;
    let secret = new_webhook_secret();
    let now = Utc::now();
    let overlap = Duration::from_std(app.settings.webhooks.rotation_overlap).unwrap_or(Duration::hours(24));
    endpoint.previous_secret = Some(std::mem::replace(&mut endpoint.secret, app.cipher.encrypt(&secret)));
    endpoint.previous_secret_until = Some(now + overlap);
    endpoint.updated_at = now;
    store::update_endpoint(&app.db, endpoint.clone()).await?;
    tracing::info!(webhook.id = %endpoint.id, "webhook secret rotated");
    Ok(WithSecret { endpoint, secret })
}

/// Re-enables a disabled endpoint (its failure clock restarts).
pub async fn enable(app: &App, user_id: &str, id: &str) -> Result<webhook_endpoint::Model, Error> {
    let mut endpoint = get(app, user_id, id).await?;
    endpoint.disabled_at = None;
    endpoint.disabled_reason = None;
    endpoint.failing_since = None;
    endpoint.updated_at = Utc::now();
    store::update_endpoint(&app.db, endpoint.clone()).await?;
    Ok(endpoint)
}

/// Sends a `webhook.test` ping to one endpoint of the user, through the queue like any event.
pub async fn test(app: &App, user_id: &str, id: &str) -> Result<webhook_delivery::Model, Error> {
    let endpoint = get(app, user_id, id).await?;
    if let Some(reason) = &endpoint.disabled_reason {
        return Err(Error::Conflict {
            code: "webhook_disabled",
            message: format!("the endpoint is disabled: {reason}"),
        });
    }
    let payload = serde_json::json!({ "webhook_id": endpoint.id, "message": "a test event from Herald" });
    let delivery = store::insert_ping(&app.db, &endpoint, payload).await?;
    push_soon(app, &delivery).await;
    Ok(delivery)
}

/// An endpoint's deliveries, newest first, each with its event and attempts.
pub async fn deliveries(
    app: &App,
    user_id: &str,
    id: &str,
    limit: u64,
) -> Result<Vec<(webhook_delivery::Model, webhook_event::Model, Vec<webhook_attempt::Model>)>, Error> {
    let endpoint = get(app, user_id, id).await?;
    Ok(store::list_deliveries(&app.db, &endpoint.id, limit).await?)
}

/// Delivers a finished (succeeded or dead) delivery again, under the same `webhook-id`.
pub async fn replay(app: &App, user_id: &str, id: &str, delivery_id: &str) -> Result<webhook_delivery::Model, Error> {
    let endpoint = get(app, user_id, id).await?;
    if let Some(reason) = &endpoint.disabled_reason {
        return Err(Error::Conflict {
            code: "webhook_disabled",
            message: format!("the endpoint is disabled: {reason}"),
        });
    }
    if !crate::db::is_id(delivery_id) {
        return Err(Error::NotFound("delivery"));
    }
    let delivery = store::find_delivery(&app.db, user_id, id, delivery_id).await?.ok_or(Error::NotFound("delivery"))?;
    let Some(replayed) = store::requeue(&app.db, &delivery, Utc::now()).await? else {
        return Err(Error::Conflict {
            code: "delivery_pending",
            message: "the delivery is still pending; it will be attempted on its schedule".into(),
        });
    };
    push_soon(app, &replayed).await;
    Ok(replayed)
}

/// Pushes a delivery due now; when the queue is away the dispatcher pushes it on its next round.
async fn push_soon(app: &App, delivery: &webhook_delivery::Model) {
    let Some(due) = delivery.due_at else { return };
    let now = Utc::now();
    if !matches!(store::stamp_one(&app.db, &delivery.id, now).await, Ok(true)) {
        return;
    }
    if let Err(error) = app.queue.push(&[(delivery.id.clone(), due)]).await {
        tracing::warn!(error = %error, "could not push the delivery; the dispatcher will");
        let _ = store::unstamp(&app.db, std::slice::from_ref(&delivery.id), now).await;
    }
}

/// Deletes the history past `WEBHOOK_RETENTION_DAYS` (finished deliveries, their attempts and
/// events), a batch at a time; the refresh sweep calls it. Returns the deliveries deleted.
pub async fn prune(app: &App) -> Result<u64, DbErr> {
    let retention = Duration::from_std(app.settings.webhooks.retention).unwrap_or(Duration::days(30));
    store::prune(&app.db, Utc::now() - retention, BATCH).await
}

/// One dispatcher round's share of webhooks: new events fanned out into deliveries, then due
/// deliveries pushed into the queue, up to `room` jobs. Returns how many were pushed.
pub async fn dispatch(app: &App, room: u64) -> Result<usize, Error> {
    let events = store::unfanned(&app.db, BATCH).await?;
    if !events.is_empty() {
        store::fan_out(&app.db, &events).await?;
    }
    let room = room.min(BATCH);
    if room == 0 {
        return Ok(0);
    }
    let settings = &app.settings.worker.dispatch;
    let now = crate::db::posts::millis(Utc::now());
    let due = store::stamp_due(&app.db, now, now + settings.lookahead, now - settings.redispatch_after, room).await?;
    if due.is_empty() {
        return Ok(0);
    }
    if let Err(error) = app.queue.push(&due).await {
        let ids: Vec<String> = due.into_iter().map(|(id, _)| id).collect();
        store::unstamp(&app.db, &ids, now).await?;
        return Err(error.into());
    }
    Ok(due.len())
}

/// The body of a delivery: `{type, timestamp, data}`.
pub fn body(event: &webhook_event::Model) -> String {
    serde_json::json!({
        "type": event.event_type.as_str(),
        "timestamp": event.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": event.payload,
    })
    .to_string()
}

/// What one attempt sends: the delivery's id, the attempt's time (Unix seconds) and the body.
struct Message<'a> {
    id: &'a str,
    timestamp: i64,
    body: &'a str,
}

/// The `webhook-signature` header: one `v1,` signature per secret that signs now (two during a
/// rotation's overlap), space-separated.
fn signatures(
    app: &App,
    endpoint: &webhook_endpoint::Model,
    message: &Message<'_>,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    let mut secrets = vec![app.cipher.decrypt(&endpoint.secret)?];
    if let (Some(previous), Some(until)) = (&endpoint.previous_secret, endpoint.previous_secret_until)
        && until > now
    {
        secrets.push(app.cipher.decrypt(previous)?);
    }
    let signed: Vec<String> =
        secrets.iter().filter_map(|s| webhook_signature(s, message.id, message.timestamp, message.body)).collect();
    Ok(signed.join(" "))
}

/// The delay before retry number `attempt` (1-based) of the schedule, scaled, with up to 10 %
/// jitter; `None` once the schedule is used up.
pub fn retry_delay(scale: f64, attempt: u32) -> Option<Duration> {
    let base = RETRY_SCHEDULE.get(attempt.checked_sub(1)? as usize)?;
    let millis = (base.as_millis() as f64 * scale).round() as i64;
    let jitter = if millis > 10 { rand::rng().random_range(0..=millis / 10) } else { 0 };
    Some(Duration::milliseconds(millis + jitter))
}

/// Attempts one delivery (the queue job of `delivery_id`): claims it if it is due and pending,
/// POSTs the signed event, records the attempt and what follows. A delivery that is not due,
/// already final, or claimed by another worker is left alone. Errors only when the database
/// could not be read or written.
pub async fn deliver(app: &App, delivery_id: &str) -> Result<(), DbErr> {
    let Some((delivery, event, endpoint)) = store::load_delivery(&app.db, delivery_id).await? else {
        tracing::info!("delivery no longer exists; job dropped");
        return Ok(());
    };
    if delivery.status != DeliveryStatus::Pending {
        return Ok(());
    }
    let settings = &app.settings.webhooks;
    let now = Utc::now();
    // A worker that dies mid-attempt leaves the delivery due again once the attempt could no
    // longer be running; the next attempt carries the same `webhook-id`.
    let stale_at = now + Duration::from_std(settings.timeout).unwrap_or(Duration::seconds(15)) + Duration::seconds(5);
    let Some(claimed) = store::claim_delivery(&app.db, &delivery, now, stale_at).await? else {
        return Ok(());
    };
    let body = body(&event);
    let timestamp = now.timestamp();
    let started = Instant::now();
    let message = Message { id: &claimed.id, timestamp, body: &body };
    let sent = send(app, &endpoint, &message, now).await;
    let latency_ms = started.elapsed().as_millis() as i64;
    let (result, gone) = match sent {
        Ok(status) if (200..300).contains(&status) => {
            (AttemptResult { status_code: Some(i32::from(status)), latency_ms, error: None }, false)
        }
        Ok(status) => {
            let error = format!("the endpoint answered {status}");
            (AttemptResult { status_code: Some(i32::from(status)), latency_ms, error: Some(error) }, status == 410)
        }
        Err(error) => (AttemptResult { status_code: None, latency_ms, error: Some(error) }, false),
    };
    let failing_for = endpoint.failing_since.map(|since| now - since);
    let disable_after = Duration::from_std(settings.disable_after).unwrap_or(Duration::days(5));
    let (next, disable) = if result.error.is_none() {
        (Next::Succeeded, None)
    } else if gone {
        (Next::Dead, Some("the endpoint answered 410 Gone".to_owned()))
    } else if failing_for.is_some_and(|failing| failing >= disable_after) {
        let hours = failing_for.map_or(0, |f| f.num_hours());
        (Next::Dead, Some(format!("every delivery failed for {hours} hours")))
    } else {
        match retry_delay(settings.retry_scale, u32::try_from(claimed.attempts).unwrap_or(u32::MAX)) {
            Some(delay) => (Next::Retry(Utc::now() + delay), None),
            None => (Next::Dead, None),
        }
    };
    let outcome = match (&next, &disable) {
        (_, Some(_)) => "disabled",
        (Next::Succeeded, _) => "succeeded",
        (Next::Retry(_), _) => "retrying",
        (Next::Dead, _) => "dead",
    };
    app.metrics.webhook(outcome);
    tracing::info!(
        webhook.id = %endpoint.id, delivery.id = %claimed.id, delivery.attempt = claimed.attempts,
        status_code = ?result.status_code, duration_ms = latency_ms, error = ?result.error, outcome,
        "webhook delivery attempted"
    );
    if !store::record_attempt(&app.db, &claimed, &result, next, disable.as_deref()).await? {
        tracing::error!(delivery.id = %claimed.id, "webhook attempt not recorded: the delivery changed meanwhile");
    }
    Ok(())
}

/// One signed POST; the status code, or why there was none.
async fn send(
    app: &App,
    endpoint: &webhook_endpoint::Model,
    message: &Message<'_>,
    now: DateTime<Utc>,
) -> Result<u16, String> {
    let url = url::Url::parse(&endpoint.url).map_err(|_| "the endpoint URL does not parse".to_owned())?;
    crate::media::check_url(&url, app.settings.media.allow_private).map_err(|reason| format!("the URL {reason}"))?;
    let signature = signatures(app, endpoint, message, now).map_err(|e| e.to_string())?;
    let response = app
        .webhooks
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", message.id)
        .header("webhook-timestamp", message.timestamp.to_string())
        .header("webhook-signature", signature)
        .body(message.body.to_owned())
        .send()
        .await
        .map_err(|error| describe(&error))?;
    Ok(response.status().as_u16())
}

fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text = format!("{text}: {inner}");
        source = inner.source();
    }
    if error.is_timeout() { format!("timed out: {text}") } else { text }
}
