//! Worker heartbeats: each worker process upserts its row every few seconds and deletes it when it
//! stops cleanly; a worker that died leaves a row that stops moving.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, Set,
    sea_query::OnConflict,
};

use super::entities::worker_heartbeat::{ActiveModel, Column, Entity};

/// Records that worker `id` is alive at `now`.
pub async fn beat(
    db: &DatabaseConnection,
    id: &str,
    host: &str,
    started_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row =
        ActiveModel { id: Set(id.into()), host: Set(host.into()), started_at: Set(started_at), seen_at: Set(now) };
    let upsert = OnConflict::column(Column::Id).update_column(Column::SeenAt).to_owned();
    Entity::insert(row).on_conflict(upsert).exec_without_returning(db).await?;
    Ok(())
}

/// Removes worker `id` (it stopped cleanly).
pub async fn forget(db: &DatabaseConnection, id: &str) -> Result<(), DbErr> {
    Entity::delete_by_id(id.to_owned()).exec(db).await?;
    Ok(())
}

/// Removes rows of workers not seen since `before` (dead long ago).
pub async fn prune(db: &DatabaseConnection, before: DateTime<Utc>) -> Result<u64, DbErr> {
    Ok(Entity::delete_many().filter(Column::SeenAt.lt(before)).exec(db).await?.rows_affected)
}

/// Workers seen since `since`, and the last time any worker was seen.
pub async fn seen_since(db: &DatabaseConnection, since: DateTime<Utc>) -> Result<(u64, Option<DateTime<Utc>>), DbErr> {
    let live = Entity::find().filter(Column::SeenAt.gte(since)).count(db).await?;
    let last: Option<Option<DateTime<Utc>>> =
        Entity::find().select_only().column_as(Column::SeenAt.max(), "last").into_tuple().one(db).await?;
    Ok((live, last.flatten()))
}
