//! `/api/v1/webhooks/*`: endpoints that receive the user's events (DESIGN §14), their
//! deliveries, and the payloads they receive (documented as OpenAPI webhooks).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, Union, Webhook, param::Path, param::Query, payload::Json};
use shared::{
    App,
    db::entities::{webhook_attempt, webhook_delivery, webhook_endpoint, webhook_event},
    webhooks::{self, NewEndpoint, WithSecret},
};

use super::{Tag, posts::Post, social_auth::Connection};
use crate::text::{Text, strings};
use crate::{auth::BearerAuth, error::ApiError};

/// Webhook routes.
#[derive(Debug)]
pub struct WebhooksApi;

/// An endpoint to register.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct WebhookBody {
    /// An `https` URL on a public address (no redirects are followed).
    pub url: Text,
    /// The events it wants: `post.published`, `post.failed`, `post.unknown`, `post.retrying`,
    /// `connection.expired`, `connection.revoked`. All of them when left out or empty.
    #[oai(default)]
    pub events: Vec<Text>,
}

/// A registered endpoint.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookEndpoint {
    /// Endpoint id (`ep_...`).
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The events it receives.
    pub events: Vec<String>,
    /// Whether events are delivered to it.
    pub enabled: bool,
    /// Why it was disabled (410 Gone, or failing for days); re-enable it with `POST .../enable`.
    pub disabled_reason: Option<String>,
    /// When it was disabled.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Since when every delivery to it has failed.
    pub failing_since: Option<DateTime<Utc>>,
    /// Until when the secret before the last rotation still signs (a second signature).
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<webhook_endpoint::Model> for WebhookEndpoint {
    fn from(row: webhook_endpoint::Model) -> Self {
        Self {
            id: row.id,
            url: row.url,
            events: serde_json::from_value(row.events).unwrap_or_default(),
            enabled: row.disabled_at.is_none(),
            disabled_reason: row.disabled_reason,
            disabled_at: row.disabled_at,
            failing_since: row.failing_since,
            previous_secret_until: row.previous_secret_until,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// An endpoint with its signing secret, shown only here.
#[derive(Debug, Object)]
pub struct WebhookWithSecret {
    /// The endpoint.
    pub webhook: WebhookEndpoint,
    /// `whsec_` + base64 of 32 bytes: verify `webhook-signature` with it (Standard Webhooks).
    /// Shown once; store it now.
    pub secret: String,
}

impl From<WithSecret> for WebhookWithSecret {
    fn from(created: WithSecret) -> Self {
        Self { webhook: created.endpoint.into(), secret: created.secret }
    }
}

/// The user's endpoints.
#[derive(Debug, Object)]
pub struct WebhookList {
    /// Oldest first.
    pub webhooks: Vec<WebhookEndpoint>,
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryAttempt {
    /// When it was made.
    pub attempted_at: DateTime<Utc>,
    /// The endpoint's status code, when it answered.
    pub status_code: Option<i32>,
    /// How long it took, in milliseconds.
    pub latency_ms: i64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

impl From<webhook_attempt::Model> for DeliveryAttempt {
    fn from(row: webhook_attempt::Model) -> Self {
        Self {
            attempted_at: row.attempted_at,
            status_code: row.status_code,
            latency_ms: row.latency_ms,
            error: row.error,
        }
    }
}

/// One event to one endpoint.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Delivery {
    /// Delivery id (`msg_...`): the `webhook-id` header of every attempt.
    pub id: String,
    /// The event (`evt_...`).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// `pending`, `succeeded` or `dead`.
    pub status: String,
    /// Attempts made.
    pub attempt_count: i32,
    /// When the next attempt is due, while `pending`.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last attempt's status code.
    pub last_status_code: Option<i32>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// The last attempt's latency in milliseconds.
    pub last_latency_ms: Option<i64>,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    /// Every attempt, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
}

impl Delivery {
    fn of(delivery: webhook_delivery::Model, event_type: &str, attempts: Vec<webhook_attempt::Model>) -> Self {
        Self {
            id: delivery.id,
            event_id: delivery.event_id,
            event_type: event_type.to_owned(),
            status: delivery.status.as_str().to_owned(),
            attempt_count: delivery.attempts,
            next_attempt_at: (delivery.status == shared::domain::DeliveryStatus::Pending)
                .then_some(delivery.due_at)
                .flatten(),
            last_status_code: delivery.last_status_code,
            last_error: delivery.last_error,
            last_latency_ms: delivery.last_latency_ms,
            created_at: delivery.created_at,
            attempts: attempts.into_iter().map(DeliveryAttempt::from).collect(),
        }
    }
}

/// An endpoint's deliveries.
#[derive(Debug, Object)]
pub struct DeliveryList {
    /// Newest first.
    pub deliveries: Vec<Delivery>,
}

/// A delivery that was queued.
#[derive(Debug, Object)]
pub struct QueuedDelivery {
    /// Delivery id (`msg_...`), the `webhook-id` it is sent with.
    pub id: String,
    /// `pending`.
    pub status: String,
}

impl From<webhook_delivery::Model> for QueuedDelivery {
    fn from(row: webhook_delivery::Model) -> Self {
        Self { id: row.id, status: row.status.as_str().to_owned() }
    }
}

/// `201` with the new endpoint.
#[derive(Debug, ApiResponse)]
pub enum CreatedResponse {
    /// Registered; the secret is shown this once.
    #[oai(status = 201)]
    Created(Json<WebhookWithSecret>),
}

/// `202`: queued.
#[derive(Debug, ApiResponse)]
pub enum QueuedResponse {
    /// The delivery is queued.
    #[oai(status = 202)]
    Queued(Json<QueuedDelivery>),
}

/// `204`: done.
#[derive(Debug, ApiResponse)]
pub enum DeletedResponse {
    /// Deleted; its pending deliveries are dropped.
    #[oai(status = 204)]
    Deleted,
}

#[OpenApi(prefix_path = "/api/v1/webhooks", tag = "Tag::Webhooks")]
impl WebhooksApi {
    /// Register an endpoint for some events. The URL must be `https` on a public address; the
    /// answer carries the signing secret, shown only now.
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        body: Json<WebhookBody>,
    ) -> Result<CreatedResponse, ApiError> {
        let new = NewEndpoint { url: body.0.url.into(), events: strings(body.0.events) };
        Ok(CreatedResponse::Created(Json(webhooks::create(&app, &auth.0.id, new).await?.into())))
    }

    /// The user's endpoints.
    #[oai(path = "/", method = "get")]
    async fn list(&self, app: Data<&Arc<App>>, auth: BearerAuth) -> Result<Json<WebhookList>, ApiError> {
        let rows = webhooks::list(&app, &auth.0.id).await?;
        Ok(Json(WebhookList { webhooks: rows.into_iter().map(WebhookEndpoint::from).collect() }))
    }

    /// One endpoint.
    #[oai(path = "/:webhook_id", method = "get")]
    async fn get(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        webhook_id: Path<String>,
    ) -> Result<Json<WebhookEndpoint>, ApiError> {
        Ok(Json(webhooks::get(&app, &auth.0.id, &webhook_id).await?.into()))
    }

    /// Delete an endpoint.
    #[oai(path = "/:webhook_id", method = "delete")]
    async fn delete(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        webhook_id: Path<String>,
    ) -> Result<DeletedResponse, ApiError> {
        webhooks::delete(&app, &auth.0.id, &webhook_id).await?;
        Ok(DeletedResponse::Deleted)
    }

    /// A new signing secret, shown once. For 24 hours the old secret signs too: each delivery
    /// carries two `v1,` signatures in `webhook-signature`, so receivers can switch at leisure.
    #[oai(path = "/:webhook_id/rotate-secret", method = "post")]
    async fn rotate_secret(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        webhook_id: Path<String>,
    ) -> Result<Json<WebhookWithSecret>, ApiError> {
        Ok(Json(webhooks::rotate_secret(&app, &auth.0.id, &webhook_id).await?.into()))
    }

    /// Re-enable a disabled endpoint.
    #[oai(path = "/:webhook_id/enable", method = "post")]
    async fn enable(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        webhook_id: Path<String>,
    ) -> Result<Json<WebhookEndpoint>, ApiError> {
        Ok(Json(webhooks::enable(&app, &auth.0.id, &webhook_id).await?.into()))
    }

    /// Send a `webhook.test` ping to the endpoint (through the queue, like any event).
    #[oai(path = "/:webhook_id/test", method = "post")]
    async fn test(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        webhook_id: Path<String>,
    ) -> Result<QueuedResponse, ApiError> {
        Ok(QueuedResponse::Queued(Json(webhooks::test(&app, &auth.0.id, &webhook_id).await?.into())))
    }

    /// The endpoint's latest deliveries (`limit` 1-100, default 50), newest first, with every
    /// attempt's status code and latency and the next retry.
    #[oai(path = "/:webhook_id/deliveries", method = "get")]
    async fn deliveries(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        webhook_id: Path<String>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u64>>,
    ) -> Result<Json<DeliveryList>, ApiError> {
        let limit = limit.0.unwrap_or(50);
        let rows = webhooks::deliveries(&app, &auth.0.id, &webhook_id, limit).await?;
        let deliveries = rows
            .into_iter()
            .map(|(delivery, event, attempts): (_, webhook_event::Model, _)| {
                Delivery::of(delivery, event.event_type.as_str(), attempts)
            })
            .collect();
        Ok(Json(DeliveryList { deliveries }))
    }

    /// Deliver a finished (succeeded or dead) delivery again, with the same `webhook-id`; 409
    /// while it is still pending.
    #[oai(path = "/:webhook_id/deliveries/:delivery_id/replay", method = "post")]
    async fn replay(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        webhook_id: Path<String>,
        delivery_id: Path<String>,
    ) -> Result<QueuedResponse, ApiError> {
        let replayed = webhooks::replay(&app, &auth.0.id, &webhook_id, &delivery_id).await?;
        Ok(QueuedResponse::Queued(Json(replayed.into())))
    }
}

/// A post event (`post.published`, `post.failed`, `post.unknown`, `post.retrying`) as POSTed to
/// an endpoint, with `webhook-id`, `webhook-timestamp` and `webhook-signature` headers.
#[derive(Debug, Object)]
pub struct PostEvent {
    /// The event type.
    #[oai(rename = "type")]
    pub event_type: String,
    /// When the change happened (RFC 3339, UTC).
    pub timestamp: DateTime<Utc>,
    /// The post as `GET /api/v1/posts/{post_id}` shows it right after the change.
    pub data: Post,
}

/// A connection event (`connection.expired`, `connection.revoked`) as POSTed to an endpoint.
#[derive(Debug, Object)]
pub struct ConnectionEvent {
    /// The event type.
    #[oai(rename = "type")]
    pub event_type: String,
    /// When the change happened (RFC 3339, UTC).
    pub timestamp: DateTime<Utc>,
    /// The connection as `GET /api/v1/auth/social/connections` shows it (never a token).
    pub data: Connection,
}

/// What Herald POSTs to registered endpoints. Each request carries `webhook-id` (the same on
/// every retry), `webhook-timestamp` (Unix seconds) and `webhook-signature` (`v1,` + base64
/// HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed with the base64-decoded secret after
/// `whsec_`; two, space-separated, during a rotation). Answer 2xx within 15 s; anything else is
/// retried for about a day; `410 Gone` disables the endpoint.
#[Webhook]
#[allow(dead_code)]
pub trait Events {
    /// An event: a post was published, failed, became unknown or will be retried; or a
    /// connection expired or was revoked (the user must reconnect the account).
    #[oai(name = "event", method = "post")]
    fn event(&self, body: Json<Event>);
}

/// The body of a delivery, by the kind of thing that changed.
#[derive(Debug, Union)]
#[oai(one_of)]
pub enum Event {
    /// `post.*`.
    Post(PostEvent),
    /// `connection.*`.
    Connection(ConnectionEvent),
}
