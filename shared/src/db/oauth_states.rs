//! Pending OAuth authorizations: stored at initiate, consumed once at the callback.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set};

use super::entities::oauth_state::{ActiveModel, Column, Entity, Model};

/// Stores a pending authorization.
pub async fn insert(db: &DatabaseConnection, state: Model) -> Result<(), DbErr> {
    ActiveModel {
        state_hash: Set(state.state_hash),
        user_id: Set(state.user_id),
        platform: Set(state.platform),
        pkce_verifier: Set(state.pkce_verifier),
        redirect_uri: Set(state.redirect_uri),
        created_at: Set(state.created_at),
        expires_at: Set(state.expires_at),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Takes the authorization with this hash out of the table. Of two callbacks racing with the same
/// state only one gets it: the row is returned only to the caller whose delete removed it.
pub async fn consume(db: &DatabaseConnection, state_hash: &str) -> Result<Option<Model>, DbErr> {
    let Some(state) = Entity::find_by_id(state_hash.to_owned()).one(db).await? else {
        return Ok(None);
    };
    let deleted = Entity::delete_many().filter(Column::StateHash.eq(state_hash)).exec(db).await?;
    Ok((deleted.rows_affected == 1).then_some(state))
}

/// Removes authorizations that expired before `now`.
pub async fn purge_expired(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<u64, DbErr> {
    Ok(Entity::delete_many().filter(Column::ExpiresAt.lt(now)).exec(db).await?.rows_affected)
}
