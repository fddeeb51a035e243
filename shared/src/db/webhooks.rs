//! Webhooks (DESIGN §14): endpoints, the outbox of events and their deliveries.
//!
//! An event is written by [`record_event`] inside the transaction of the change it reports, so
//! a change that commits always has its event and one that rolls back never does. The payload
//! is the post or connection as the API shows it at that moment, never a token column. A
//! dispatcher round turns unfanned events into one delivery per matching endpoint
//! ([`fan_out`]); a delivery keeps its id (the `webhook-id` header) across attempts.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};
use serde_json::{Value as Json, json};

use super::entities::{connection, post, webhook_attempt, webhook_delivery, webhook_endpoint, webhook_event};
use crate::domain::{DeliveryStatus, WebhookEvent};

/// A fresh id with a prefix saying what it names (`evt_`, `msg_`, `ep_`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", ulid::Ulid::generate().to_string().to_ascii_lowercase())
}

/// A post as `GET /api/v1/posts/{id}` shows it (the fields of the api's `Post`).
pub fn post_payload(row: &post::Model) -> Json {
    json!({
        "id": row.id,
        "group_id": row.group_id,
        "campaign_id": row.campaign_id,
        "platform": row.platform.as_str(),
        "content": row.post_content,
        "hashtags": row.hashtags,
        "media_urls": row.media_urls,
        "scheduled_time": row.scheduled_time,
        "status": row.status.as_str(),
        "options": row.publish_options,
        "platform_post_id": row.platform_post_id,
        "posting_error": row.posting_error,
        "error_kind": row.error_kind.map(|kind| kind.as_str()),
        "retry_count": row.retry_count,
        "next_attempt_at": row.next_attempt_at,
        "published_at": row.published_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

/// A connection as `GET /api/v1/auth/social/connections` shows it: no token column.
pub fn connection_payload(row: &connection::Model) -> Json {
    json!({
        "id": row.id,
        "platform": row.platform.as_str(),
        "platform_user_id": row.platform_user_id,
        "platform_username": row.platform_username,
        "connection_status": row.connection_status.as_str(),
        "scopes": row.scopes,
        "token_expires_at": row.token_expires_at,
        "last_error": row.last_error,
        "page_id": row.page_id,
        "page_name": row.page_name,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

/// Writes events into the outbox, on the caller's transaction.
pub async fn record_events<C: ConnectionTrait>(
    db: &C,
    events: impl IntoIterator<Item = (String, WebhookEvent, Json)>,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let rows: Vec<webhook_event::ActiveModel> = events
        .into_iter()
        .map(|(user_id, event_type, payload)| webhook_event::ActiveModel {
            id: Set(new_id("evt_")),
            user_id: Set(user_id),
            event_type: Set(event_type),
            payload: Set(payload),
            created_at: Set(now),
            fanned_out_at: Set(None),
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    webhook_event::Entity::insert_many(rows).exec_without_returning(db).await?;
    Ok(())
}

/// The events of posts that have just changed status (those whose new status reports one).
pub async fn record_post_events<C: ConnectionTrait>(db: &C, rows: &[post::Model]) -> Result<(), DbErr> {
    let events = rows.iter().filter_map(|row| {
        WebhookEvent::of_post(row.status).map(|event| (row.user_id.clone(), event, post_payload(row)))
    });
    record_events(db, events).await
}

/// Events not yet turned into deliveries, oldest first.
pub async fn unfanned(db: &DatabaseConnection, limit: u64) -> Result<Vec<webhook_event::Model>, DbErr> {
    webhook_event::Entity::find()
        .filter(webhook_event::Column::FannedOutAt.is_null())
        .order_by_asc(webhook_event::Column::CreatedAt)
        .order_by_asc(webhook_event::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Whether an endpoint wants an event.
pub fn wants(endpoint: &webhook_endpoint::Model, event: WebhookEvent) -> bool {
    endpoint.events.as_array().is_some_and(|events| events.iter().any(|name| name.as_str() == Some(event.as_str())))
}

/// Turns events into one pending delivery per enabled endpoint of their user that wants them,
/// due now, and marks the events fanned out, in one transaction. An event whose `fanned_out_at`
/// another dispatcher set first is skipped (the conditional `UPDATE` decides). Returns how many
/// deliveries it created.
pub async fn fan_out(db: &DatabaseConnection, events: &[webhook_event::Model]) -> Result<usize, DbErr> {
    let now = Utc::now();
    let mut created = 0;
    let txn = db.begin().await?;
    for event in events {
        let taken = webhook_event::Entity::update_many()
            .col_expr(webhook_event::Column::FannedOutAt, Expr::value(now))
            .filter(webhook_event::Column::Id.eq(event.id.as_str()))
            .filter(webhook_event::Column::FannedOutAt.is_null())
            .exec(&txn)
            .await?;
        if taken.rows_affected == 0 {
            continue;
        }
        let endpoints = webhook_endpoint::Entity::find()
            .filter(webhook_endpoint::Column::UserId.eq(event.user_id.as_str()))
            .filter(webhook_endpoint::Column::DisabledAt.is_null())
            .all(&txn)
            .await?;
        for endpoint in endpoints.iter().filter(|endpoint| wants(endpoint, event.event_type)) {
            insert_delivery(&txn, &endpoint.id, &event.id, &event.user_id, now).await?;
            created += 1;
        }
    }
    txn.commit().await?;
    Ok(created)
}

/// A new pending delivery, due at `now`.
pub async fn insert_delivery<C: ConnectionTrait>(
    db: &C,
    endpoint_id: &str,
    event_id: &str,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<webhook_delivery::Model, DbErr> {
    webhook_delivery::ActiveModel {
        id: Set(new_id("msg_")),
        endpoint_id: Set(endpoint_id.into()),
        event_id: Set(event_id.into()),
        user_id: Set(user_id.into()),
        status: Set(DeliveryStatus::Pending),
        attempts: Set(0),
        due_at: Set(Some(super::posts::millis(now))),
        dispatched_at: Set(None),
        last_status_code: Set(None),
        last_error: Set(None),
        last_latency_ms: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
}

/// Stamps up to `limit` pending deliveries due by `horizon` and not pushed since
/// `redispatch_before` (`dispatched_at = now`) and returns their ids and due times. The outer
/// condition is repeated so two dispatchers never stamp one row.
pub async fn stamp_due(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    horizon: DateTime<Utc>,
    redispatch_before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<(String, DateTime<Utc>)>, DbErr> {
    use webhook_delivery::{Column, Entity};
    let wanted = || {
        sea_orm::Condition::all()
            .add(Column::Status.eq(DeliveryStatus::Pending))
            .add(Column::DueAt.lte(horizon))
            .add(Column::DispatchedAt.is_null().or(Column::DispatchedAt.lt(redispatch_before)))
    };
    let ids: Vec<String> = Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(wanted())
        .order_by_asc(Column::DueAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = Entity::update_many()
        .col_expr(Column::DispatchedAt, Expr::value(now))
        .filter(Column::Id.is_in(ids))
        .filter(wanted())
        .exec_with_returning(db)
        .await?;
    Ok(rows.into_iter().filter_map(|row| row.due_at.map(|due| (row.id, due))).collect())
}

/// Hands deliveries back to the dispatcher (their jobs could not be pushed): those stamped at
/// `stamped_at`.
pub async fn unstamp(db: &DatabaseConnection, ids: &[String], stamped_at: DateTime<Utc>) -> Result<(), DbErr> {
    use webhook_delivery::{Column, Entity};
    Entity::update_many()
        .col_expr(Column::DispatchedAt, Expr::value(Option::<DateTime<Utc>>::None))
        .filter(Column::Id.is_in(ids.iter().cloned()))
        .filter(Column::DispatchedAt.eq(super::posts::millis(stamped_at)))
        .exec(db)
        .await?;
    Ok(())
}

/// A delivery with its event and endpoint, for an attempt.
pub async fn load_delivery(
    db: &DatabaseConnection,
    delivery_id: &str,
) -> Result<Option<(webhook_delivery::Model, webhook_event::Model, webhook_endpoint::Model)>, DbErr> {
    let Some(delivery) = webhook_delivery::Entity::find_by_id(delivery_id.to_owned()).one(db).await? else {
        return Ok(None);
    };
    let Some(event) = webhook_event::Entity::find_by_id(delivery.event_id.clone()).one(db).await? else {
        return Ok(None);
    };
    let Some(endpoint) = webhook_endpoint::Entity::find_by_id(delivery.endpoint_id.clone()).one(db).await? else {
        return Ok(None);
    };
    Ok(Some((delivery, event, endpoint)))
}

/// Claims a due pending delivery for one attempt: moves its `due_at` to `stale_at` (when another
/// worker may take it, its attempt presumed dead) and counts the attempt. Conditional on the
/// `due_at` as read, so of several jobs for the row exactly one attempts it.
pub async fn claim_delivery(
    db: &DatabaseConnection,
    delivery: &webhook_delivery::Model,
    now: DateTime<Utc>,
    stale_at: DateTime<Utc>,
) -> Result<Option<webhook_delivery::Model>, DbErr> {
    use webhook_delivery::{Column, Entity};
    let Some(due_at) = delivery.due_at else { return Ok(None) };
    if due_at > now {
        return Ok(None);
    }
    let mut rows = Entity::update_many()
        .col_expr(Column::DueAt, Expr::value(super::posts::millis(stale_at)))
        .col_expr(Column::DispatchedAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(delivery.id.as_str()))
        .filter(Column::Status.eq(DeliveryStatus::Pending))
        .filter(Column::DueAt.eq(due_at))
        .exec_with_returning(db)
        .await?;
    Ok(rows.pop())
}

/// What one attempt of a delivery found.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    /// The endpoint's status code, when it answered.
    pub status_code: Option<i32>,
    /// How long the attempt took.
    pub latency_ms: i64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// How a delivery goes on after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Delivered.
    Succeeded,
    /// Another attempt at this time.
    Retry(DateTime<Utc>),
    /// No more attempts.
    Dead,
}

/// Records an attempt and what follows: the attempt row, the delivery's new state, and the
/// endpoint's failure clock (cleared by a success, started by the first failure), in one
/// transaction. `disable` disables the endpoint with that reason (and ends its other pending
/// deliveries). Conditional on the attempt still holding the delivery (`attempts` as claimed).
pub async fn record_attempt(
    db: &DatabaseConnection,
    claimed: &webhook_delivery::Model,
    result: &AttemptResult,
    next: Next,
    disable: Option<&str>,
) -> Result<bool, DbErr> {
    use webhook_delivery::{Column, Entity};
    let now = Utc::now();
    let txn = db.begin().await?;
    webhook_attempt::ActiveModel {
        delivery_id: Set(claimed.id.clone()),
        attempted_at: Set(now),
        status_code: Set(result.status_code),
        latency_ms: Set(result.latency_ms),
        error: Set(result.error.clone()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let (status, due_at) = match next {
        Next::Succeeded => (DeliveryStatus::Succeeded, None),
        Next::Retry(at) => (DeliveryStatus::Pending, Some(super::posts::millis(at))),
        Next::Dead => (DeliveryStatus::Dead, None),
    };
    let changed = Entity::update_many()
        .col_expr(Column::Status, Expr::value(status))
        .col_expr(Column::DueAt, Expr::value(due_at))
        .col_expr(Column::DispatchedAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(Column::LastStatusCode, Expr::value(result.status_code))
        .col_expr(Column::LastError, Expr::value(result.error.clone()))
        .col_expr(Column::LastLatencyMs, Expr::value(result.latency_ms))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(claimed.id.as_str()))
        .filter(Column::Status.eq(DeliveryStatus::Pending))
        .filter(Column::Attempts.eq(claimed.attempts))
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    let failing_since = match next {
        Next::Succeeded => Expr::value(Option::<DateTime<Utc>>::None),
        _ => Expr::cust_with_values("COALESCE(failing_since, $1)", [now]),
    };
    let mut endpoint = webhook_endpoint::Entity::update_many()
        .col_expr(webhook_endpoint::Column::FailingSince, failing_since)
        .filter(webhook_endpoint::Column::Id.eq(claimed.endpoint_id.as_str()));
    if let Some(reason) = disable {
        endpoint = endpoint
            .col_expr(webhook_endpoint::Column::DisabledAt, Expr::value(now))
            .col_expr(webhook_endpoint::Column::DisabledReason, Expr::value(reason))
            .col_expr(webhook_endpoint::Column::UpdatedAt, Expr::value(now))
            .filter(webhook_endpoint::Column::DisabledAt.is_null());
    }
    let disabled = endpoint.exec(&txn).await?.rows_affected == 1 && disable.is_some();
    if disabled {
        let ended = format!("the endpoint was disabled: {}", disable.unwrap_or_default());
        Entity::update_many()
            .col_expr(Column::Status, Expr::value(DeliveryStatus::Dead))
            .col_expr(Column::DueAt, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(Column::LastError, Expr::value(ended))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::EndpointId.eq(claimed.endpoint_id.as_str()))
            .filter(Column::Status.eq(DeliveryStatus::Pending))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(changed)
}

/// Creates an endpoint.
pub async fn insert_endpoint(db: &DatabaseConnection, row: webhook_endpoint::Model) -> Result<(), DbErr> {
    webhook_endpoint::ActiveModel::from(row).reset_all().insert(db).await?;
    Ok(())
}

/// An endpoint of the user.
pub async fn find_endpoint(
    db: &DatabaseConnection,
    user_id: &str,
    id: &str,
) -> Result<Option<webhook_endpoint::Model>, DbErr> {
    webhook_endpoint::Entity::find_by_id(id.to_owned())
        .filter(webhook_endpoint::Column::UserId.eq(user_id))
        .one(db)
        .await
}

/// The user's endpoints, oldest first.
pub async fn list_endpoints(db: &DatabaseConnection, user_id: &str) -> Result<Vec<webhook_endpoint::Model>, DbErr> {
    webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::UserId.eq(user_id))
        .order_by_asc(webhook_endpoint::Column::CreatedAt)
        .order_by_asc(webhook_endpoint::Column::Id)
        .all(db)
        .await
}

/// Deletes an endpoint of the user and its pending deliveries (they die); false when none.
pub async fn delete_endpoint(db: &DatabaseConnection, user_id: &str, id: &str) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let deleted = webhook_endpoint::Entity::delete_many()
        .filter(webhook_endpoint::Column::Id.eq(id))
        .filter(webhook_endpoint::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    if deleted {
        webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::Status, Expr::value(DeliveryStatus::Dead))
            .col_expr(webhook_delivery::Column::DueAt, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(webhook_delivery::Column::LastError, Expr::value("the endpoint was deleted"))
            .filter(webhook_delivery::Column::EndpointId.eq(id))
            .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(deleted)
}

/// Saves an endpoint of the user as changed (rotation, re-enabling).
pub async fn update_endpoint(db: &DatabaseConnection, row: webhook_endpoint::Model) -> Result<(), DbErr> {
    webhook_endpoint::ActiveModel::from(row).reset_all().update(db).await?;
    Ok(())
}

/// A delivery of one of the user's endpoints.
pub async fn find_delivery(
    db: &DatabaseConnection,
    user_id: &str,
    endpoint_id: &str,
    delivery_id: &str,
) -> Result<Option<webhook_delivery::Model>, DbErr> {
    webhook_delivery::Entity::find_by_id(delivery_id.to_owned())
        .filter(webhook_delivery::Column::UserId.eq(user_id))
        .filter(webhook_delivery::Column::EndpointId.eq(endpoint_id))
        .one(db)
        .await
}

/// An endpoint's latest deliveries, newest first, with their attempts.
pub async fn list_deliveries(
    db: &DatabaseConnection,
    endpoint_id: &str,
    limit: u64,
) -> Result<Vec<(webhook_delivery::Model, webhook_event::Model, Vec<webhook_attempt::Model>)>, DbErr> {
    let deliveries = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::EndpointId.eq(endpoint_id))
        .order_by_desc(webhook_delivery::Column::CreatedAt)
        .order_by_desc(webhook_delivery::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    let mut listed = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let Some(event) = webhook_event::Entity::find_by_id(delivery.event_id.clone()).one(db).await? else {
            continue;
        };
        let attempts = webhook_attempt::Entity::find()
            .filter(webhook_attempt::Column::DeliveryId.eq(delivery.id.as_str()))
            .order_by_asc(webhook_attempt::Column::Id)
            .all(db)
            .await?;
        listed.push((delivery, event, attempts));
    }
    Ok(listed)
}

/// Pending deliveries: how many, and the oldest one's creation time.
pub async fn pending(db: &DatabaseConnection) -> Result<(u64, Option<DateTime<Utc>>), DbErr> {
    use webhook_delivery::{Column, Entity};
    let count = Entity::find().filter(Column::Status.eq(DeliveryStatus::Pending)).count(db).await?;
    let oldest: Option<Option<DateTime<Utc>>> = Entity::find()
        .select_only()
        .column_as(Column::CreatedAt.min(), "oldest")
        .filter(Column::Status.eq(DeliveryStatus::Pending))
        .into_tuple()
        .one(db)
        .await?;
    Ok((count, oldest.flatten()))
}

/// A `webhook.test` event for one endpoint and its delivery, due now, in one transaction (the
/// event is born fanned out: it goes to this endpoint only).
pub async fn insert_ping(
    db: &DatabaseConnection,
    endpoint: &webhook_endpoint::Model,
    payload: Json,
) -> Result<webhook_delivery::Model, DbErr> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let event = webhook_event::ActiveModel {
        id: Set(new_id("evt_")),
        user_id: Set(endpoint.user_id.clone()),
        event_type: Set(WebhookEvent::Test),
        payload: Set(payload),
        created_at: Set(now),
        fanned_out_at: Set(Some(now)),
    }
    .insert(&txn)
    .await?;
    let delivery = insert_delivery(&txn, &endpoint.id, &event.id, &endpoint.user_id, now).await?;
    txn.commit().await?;
    Ok(delivery)
}

/// Makes a finished delivery pending again, due now, keeping its id; `None` while it is pending.
pub async fn requeue(
    db: &DatabaseConnection,
    delivery: &webhook_delivery::Model,
    now: DateTime<Utc>,
) -> Result<Option<webhook_delivery::Model>, DbErr> {
    use webhook_delivery::{Column, Entity};
    let mut rows = Entity::update_many()
        .col_expr(Column::Status, Expr::value(DeliveryStatus::Pending))
        .col_expr(Column::Attempts, Expr::value(0))
        .col_expr(Column::DueAt, Expr::value(super::posts::millis(now)))
        .col_expr(Column::DispatchedAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(delivery.id.as_str()))
        .filter(Column::Status.ne(DeliveryStatus::Pending))
        .exec_with_returning(db)
        .await?;
    Ok(rows.pop())
}

/// Stamps one pending delivery as pushed (the api pushing what it just made due); false when a
/// dispatcher stamped it first.
pub async fn stamp_one(db: &DatabaseConnection, id: &str, now: DateTime<Utc>) -> Result<bool, DbErr> {
    use webhook_delivery::{Column, Entity};
    let result = Entity::update_many()
        .col_expr(Column::DispatchedAt, Expr::value(super::posts::millis(now)))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(DeliveryStatus::Pending))
        .filter(Column::DispatchedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Deletes up to `limit` finished (succeeded or dead) deliveries last changed before `cutoff`
/// with their attempts, then the events fanned out before `cutoff` that no delivery refers to.
/// Returns the deliveries deleted. Pending and retrying deliveries are never touched.
pub async fn prune(db: &DatabaseConnection, cutoff: DateTime<Utc>, limit: u64) -> Result<u64, DbErr> {
    use webhook_delivery::Column as D;
    let finished = [DeliveryStatus::Succeeded, DeliveryStatus::Dead];
    let ids: Vec<String> = webhook_delivery::Entity::find()
        .select_only()
        .column(D::Id)
        .filter(D::Status.is_in(finished))
        .filter(D::UpdatedAt.lt(cutoff))
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    let mut deleted = 0;
    if !ids.is_empty() {
        let txn = db.begin().await?;
        webhook_attempt::Entity::delete_many()
            .filter(webhook_attempt::Column::DeliveryId.is_in(ids.clone()))
            .exec(&txn)
            .await?;
        // Still finished and old: a replay since the read made it pending again.
        deleted = webhook_delivery::Entity::delete_many()
            .filter(D::Id.is_in(ids))
            .filter(D::Status.is_in(finished))
            .filter(D::UpdatedAt.lt(cutoff))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
    }
    let referenced = sea_orm::sea_query::Query::select().column(D::EventId).from(webhook_delivery::Entity).to_owned();
    webhook_event::Entity::delete_many()
        .filter(webhook_event::Column::FannedOutAt.lt(cutoff))
        .filter(webhook_event::Column::Id.not_in_subquery(referenced))
        .exec(db)
        .await?;
    Ok(deleted)
}
