//! Scheduled posts and their status machine (DESIGN §2). Every transition is one conditional
//! `UPDATE`, so two workers can never both move a post forward.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
    sea_query::{Expr, ExprTrait, SimpleExpr},
};

use super::entities::post::{ActiveModel, Column, Entity, Model};
use crate::domain::{ErrorKind, PostStatus};

/// Stores new posts in one transaction: all rows of a request, or none.
pub async fn insert_all(db: &DatabaseConnection, rows: Vec<Model>) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    for row in rows {
        // A model converts to an all-`Unchanged` active model; `reset_all` marks every column set.
        ActiveModel::from(row).reset_all().insert(&txn).await?;
    }
    txn.commit().await
}

/// A post of the user.
pub async fn find_for_user(db: &DatabaseConnection, user_id: &str, post_id: &str) -> Result<Option<Model>, DbErr> {
    Entity::find_by_id(post_id.to_owned()).filter(Column::UserId.eq(user_id)).one(db).await
}

/// A post by id (worker use).
pub async fn find(db: &DatabaseConnection, post_id: &str) -> Result<Option<Model>, DbErr> {
    Entity::find_by_id(post_id.to_owned()).one(db).await
}

/// The user's posts of a campaign, by scheduled time.
pub async fn list_for_campaign(db: &DatabaseConnection, user_id: &str, campaign_id: &str) -> Result<Vec<Model>, DbErr> {
    Entity::find()
        .filter(Column::UserId.eq(user_id))
        .filter(Column::CampaignId.eq(campaign_id))
        .order_by_asc(Column::ScheduledTime)
        .order_by_asc(Column::Id)
        .all(db)
        .await
}

fn status_in(statuses: &[PostStatus]) -> SimpleExpr {
    Column::Status.is_in(statuses.iter().map(|s| s.as_str()))
}

/// Claims a post for publishing: `pending`/`retrying` → `publishing`. Returns false when another
/// worker claimed it first or it is no longer publishable (cancelled, posted).
pub async fn claim(db: &DatabaseConnection, post_id: &str) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::Status, Expr::value(PostStatus::Publishing.as_str()))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(post_id))
        .filter(status_in(&[PostStatus::Pending, PostStatus::Retrying]))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// What a publish attempt ended in.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// On the platform.
    Posted { platform_post_id: String, published_at: DateTime<Utc> },
    /// Another attempt at `next_attempt_at`.
    Retrying { kind: ErrorKind, error: String, next_attempt_at: DateTime<Utc> },
    /// Failed for good.
    Failed { kind: ErrorKind, error: String },
    /// The platform may have it; never re-sent automatically.
    Unknown { error: String },
}

/// Records the outcome of the attempt that claimed the post (status `publishing`).
pub async fn record(db: &DatabaseConnection, post_id: &str, outcome: Outcome) -> Result<(), DbErr> {
    let mut update = Entity::update_many()
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(post_id))
        .filter(Column::Status.eq(PostStatus::Publishing.as_str()));
    update = match outcome {
        Outcome::Posted { platform_post_id, published_at } => update
            .col_expr(Column::Status, Expr::value(PostStatus::Posted.as_str()))
            .col_expr(Column::PlatformPostId, Expr::value(platform_post_id))
            .col_expr(Column::PublishedAt, Expr::value(published_at))
            .col_expr(Column::PostingError, Expr::value(Option::<String>::None))
            .col_expr(Column::ErrorKind, Expr::value(Option::<String>::None))
            .col_expr(Column::NextAttemptAt, Expr::value(Option::<DateTime<Utc>>::None)),
        Outcome::Retrying { kind, error, next_attempt_at } => update
            .col_expr(Column::Status, Expr::value(PostStatus::Retrying.as_str()))
            .col_expr(Column::ErrorKind, Expr::value(kind.as_str()))
            .col_expr(Column::PostingError, Expr::value(error))
            .col_expr(Column::NextAttemptAt, Expr::value(next_attempt_at))
            .col_expr(Column::RetryCount, Expr::col(Column::RetryCount).add(1)),
        Outcome::Failed { kind, error } => update
            .col_expr(Column::Status, Expr::value(PostStatus::Failed.as_str()))
            .col_expr(Column::ErrorKind, Expr::value(kind.as_str()))
            .col_expr(Column::PostingError, Expr::value(error))
            .col_expr(Column::NextAttemptAt, Expr::value(Option::<DateTime<Utc>>::None)),
        Outcome::Unknown { error } => update
            .col_expr(Column::Status, Expr::value(PostStatus::Unknown.as_str()))
            .col_expr(Column::ErrorKind, Expr::value(ErrorKind::Unknown.as_str()))
            .col_expr(Column::PostingError, Expr::value(error))
            .col_expr(Column::NextAttemptAt, Expr::value(Option::<DateTime<Utc>>::None)),
    };
    update.exec(db).await?;
    Ok(())
}

/// Deletes the posts of one scheduling request (used when it could not be enqueued).
pub async fn delete_group(db: &DatabaseConnection, user_id: &str, group_id: &str) -> Result<(), DbErr> {
    Entity::delete_many().filter(Column::UserId.eq(user_id)).filter(Column::GroupId.eq(group_id)).exec(db).await?;
    Ok(())
}

/// Fails the posts of a connection that are still waiting (`pending`/`retrying`) with a
/// `not_connected` error; returns how many.
pub async fn fail_waiting_for_connection<C: sea_orm::ConnectionTrait>(
    db: &C,
    connection_id: i64,
    error: &str,
) -> Result<u64, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::Status, Expr::value(PostStatus::Failed.as_str()))
        .col_expr(Column::ErrorKind, Expr::value(ErrorKind::NotConnected.as_str()))
        .col_expr(Column::PostingError, Expr::value(error))
        .col_expr(Column::NextAttemptAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::SocialConnectionId.eq(connection_id))
        .filter(status_in(&[PostStatus::Pending, PostStatus::Retrying]))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Marks a post `unknown` if it is still `publishing` exactly as it was read (same `updated_at`):
/// its worker stopped between claiming it and recording the outcome, so whether the platform has
/// it cannot be known. Returns whether it changed.
pub async fn mark_orphaned(
    db: &DatabaseConnection,
    post_id: &str,
    read_at: DateTime<Utc>,
    error: &str,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::Status, Expr::value(PostStatus::Unknown.as_str()))
        .col_expr(Column::ErrorKind, Expr::value(ErrorKind::Unknown.as_str()))
        .col_expr(Column::PostingError, Expr::value(error))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(post_id))
        .filter(Column::Status.eq(PostStatus::Publishing.as_str()))
        .filter(Column::UpdatedAt.eq(read_at))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Cancels a post of the user that is still waiting (`pending`/`retrying`); false otherwise.
pub async fn cancel(db: &DatabaseConnection, user_id: &str, post_id: &str) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::Status, Expr::value(PostStatus::Cancelled.as_str()))
        .col_expr(Column::NextAttemptAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(post_id))
        .filter(Column::UserId.eq(user_id))
        .filter(status_in(&[PostStatus::Pending, PostStatus::Retrying]))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Makes a waiting post of the user due at `now`; false when it is not waiting.
pub async fn make_due(
    db: &DatabaseConnection,
    user_id: &str,
    post_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let pending = Entity::update_many()
        .col_expr(Column::ScheduledTime, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(post_id))
        .filter(Column::UserId.eq(user_id))
        .filter(Column::Status.eq(PostStatus::Pending.as_str()))
        .exec(db)
        .await?;
    if pending.rows_affected == 1 {
        return Ok(true);
    }
    let retrying = Entity::update_many()
        .col_expr(Column::NextAttemptAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(post_id))
        .filter(Column::UserId.eq(user_id))
        .filter(Column::Status.eq(PostStatus::Retrying.as_str()))
        .exec(db)
        .await?;
    Ok(retrying.rows_affected == 1)
}

/// The user's posts counted by status, optionally within one campaign.
pub async fn count_by_status(
    db: &DatabaseConnection,
    user_id: &str,
    campaign_id: Option<&str>,
) -> Result<Vec<(String, i64)>, DbErr> {
    use sea_orm::QuerySelect;
    let mut query = Entity::find()
        .select_only()
        .column(Column::Status)
        .column_as(Column::Id.count(), "count")
        .filter(Column::UserId.eq(user_id))
        .group_by(Column::Status);
    if let Some(campaign_id) = campaign_id {
        query = query.filter(Column::CampaignId.eq(campaign_id));
    }
    query.into_tuple::<(String, i64)>().all(db).await
}
