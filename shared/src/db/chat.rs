//! Campaign chat history: append and read, always scoped to the user.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::entities::chat_message::{ActiveModel, Column, Entity, Model};
use crate::domain::ChatRole;

/// Appends a message to the user's chat of a campaign.
pub async fn append(
    db: &DatabaseConnection,
    user_id: &str,
    campaign_id: &str,
    role: ChatRole,
    message: &str,
    at: DateTime<Utc>,
) -> Result<Model, DbErr> {
    ActiveModel {
        campaign_id: Set(campaign_id.to_owned()),
        user_id: Set(user_id.to_owned()),
        role: Set(role),
        message: Set(message.to_owned()),
        created_at: Set(at),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// Up to `limit` messages of the user's chat of a campaign after message `after`, oldest first.
pub async fn list(
    db: &DatabaseConnection,
    user_id: &str,
    campaign_id: &str,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<Model>, DbErr> {
    let mut query = Entity::find().filter(Column::UserId.eq(user_id)).filter(Column::CampaignId.eq(campaign_id));
    if let Some(after) = after {
        query = query.filter(Column::Id.gt(after));
    }
    query.order_by_asc(Column::Id).limit(limit).all(db).await
}
