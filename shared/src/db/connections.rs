//! Connected platform accounts. Token columns are written only as ciphertext made by
//! [`TokenCipher`](crate::crypto::TokenCipher); this module never sees plaintext.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set, TransactionTrait,
};

use super::entities::connection::{ActiveModel, Column, Entity, Model};
use crate::domain::{ConnectionStatus, Platform};

/// A connection as the callback stores it (token fields already encrypted).
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub user_id: String,
    pub platform: Platform,
    pub platform_user_id: String,
    pub platform_username: Option<String>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    /// The Pages the login returned (platforms that publish to a Page), token fields encrypted.
    pub pages: Option<Vec<StoredPage>>,
}

/// A Page with its encrypted token.
#[derive(Debug, Clone)]
pub struct StoredPage {
    pub id: String,
    pub name: String,
    pub token: String,
}

/// The Page a connection publishes to: the one selected before if the login still returned it,
/// else the only one when there is exactly one.
fn choose_page(pages: &[StoredPage], previous: Option<&str>) -> Option<StoredPage> {
    previous
        .and_then(|id| pages.iter().find(|p| p.id == id))
        .or(if pages.len() == 1 { pages.first() } else { None })
        .cloned()
}

/// What storing a connection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// The user had no connection of this platform.
    Created,
    /// The same platform account was connected again; its row was updated.
    Reconnected,
    /// A different account of the platform replaced the previous one.
    Replaced,
}

/// Stores a connection: one row per user and platform. Reconnecting the same account keeps a
/// stored refresh token when the platform sent none this time.
pub async fn upsert(db: &DatabaseConnection, new: NewConnection) -> Result<(Model, Upserted), DbErr> {
    let txn = db.begin().await?;
    let existing = find(&txn, &new.user_id, new.platform).await?;
    let now = Utc::now();
    let scopes = serde_json::Value::from(new.scopes);
    let previous_page =
        existing.as_ref().filter(|r| r.platform_user_id == new.platform_user_id).and_then(|r| r.page_id.clone());
    let page = new.pages.as_deref().and_then(|pages| choose_page(pages, previous_page.as_deref()));
    let result = match existing {
        None => {
            let row = ActiveModel {
                user_id: Set(new.user_id),
                platform: Set(new.platform),
                platform_user_id: Set(new.platform_user_id),
                platform_username: Set(new.platform_username),
                access_token: Set(new.access_token),
                refresh_token: Set(new.refresh_token),
                token_expires_at: Set(new.token_expires_at),
                refresh_expires_at: Set(new.refresh_expires_at),
                scopes: Set(scopes),
                connection_status: Set(ConnectionStatus::Active),
                last_error: Set(None),
                page_id: Set(page.as_ref().map(|p| p.id.clone())),
                page_name: Set(page.as_ref().map(|p| p.name.clone())),
                page_access_token: Set(page.as_ref().map(|p| p.token.clone())),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
            (row, Upserted::Created)
        }
        Some(row) => {
            let same_account = row.platform_user_id == new.platform_user_id;
            let (refresh_token, refresh_expires_at) = match (new.refresh_token, same_account) {
                (Some(token), _) => (Some(token), new.refresh_expires_at),
                (None, true) => (row.refresh_token.clone(), row.refresh_expires_at),
                (None, false) => (None, None),
            };
            let mut active: ActiveModel = row.into();
            active.platform_user_id = Set(new.platform_user_id);
            active.platform_username = Set(new.platform_username);
            active.access_token = Set(new.access_token);
            active.refresh_token = Set(refresh_token);
            active.token_expires_at = Set(new.token_expires_at);
            active.refresh_expires_at = Set(refresh_expires_at);
            active.scopes = Set(scopes);
            active.connection_status = Set(ConnectionStatus::Active);
            active.last_error = Set(None);
            active.page_id = Set(page.as_ref().map(|p| p.id.clone()));
            active.page_name = Set(page.as_ref().map(|p| p.name.clone()));
            active.page_access_token = Set(page.as_ref().map(|p| p.token.clone()));
            active.updated_at = Set(now);
            let row = active.update(&txn).await?;
            (row, if same_account { Upserted::Reconnected } else { Upserted::Replaced })
        }
    };
    txn.commit().await?;
    Ok(result)
}

/// The user's connection of a platform.
pub async fn find<C: ConnectionTrait>(db: &C, user_id: &str, platform: Platform) -> Result<Option<Model>, DbErr> {
    Entity::find().filter(Column::UserId.eq(user_id)).filter(Column::Platform.eq(platform)).one(db).await
}

/// A connection by id (worker use: the post row carries the id).
pub async fn find_by_id<C: ConnectionTrait>(db: &C, id: i64) -> Result<Option<Model>, DbErr> {
    Entity::find_by_id(id).one(db).await
}

/// The connection a post publishes through, read by the post's id (one statement; the worker's
/// read before it claims the post).
pub async fn of_post<C: ConnectionTrait>(db: &C, post_id: &str) -> Result<Option<Model>, DbErr> {
    use super::entities::post;
    use sea_orm::sea_query::Query;
    let connection_of_post = Query::select()
        .column(post::Column::SocialConnectionId)
        .from(post::Entity)
        .and_where(post::Column::Id.eq(post_id))
        .to_owned();
    Entity::find().filter(Column::Id.in_subquery(connection_of_post)).one(db).await
}

/// All connections of a user.
pub async fn list_for_user(db: &DatabaseConnection, user_id: &str) -> Result<Vec<Model>, DbErr> {
    Entity::find().filter(Column::UserId.eq(user_id)).order_by_asc(Column::Platform).all(db).await
}

/// Stores refreshed tokens. The new refresh token (platforms that rotate them make the old one
/// useless) is written in the same statement as the access token.
pub async fn store_refreshed<C: ConnectionTrait>(
    db: &C,
    row: Model,
    access_token: String,
    refresh_token: Option<String>,
    token_expires_at: Option<DateTime<Utc>>,
    refresh_expires_at: Option<DateTime<Utc>>,
) -> Result<Model, DbErr> {
    let keep_refresh = refresh_token.is_none();
    let mut active: ActiveModel = row.into();
    active.access_token = Set(access_token);
    if !keep_refresh {
        active.refresh_token = Set(refresh_token);
        active.refresh_expires_at = Set(refresh_expires_at);
    }
    active.token_expires_at = Set(token_expires_at);
    active.connection_status = Set(ConnectionStatus::Active);
    active.last_error = Set(None);
    active.updated_at = Set(Utc::now());
    active.update(db).await
}

/// Marks a connection unusable with the platform's reason. A connection that moves into
/// `expired` or `revoked` reports it (`connection.expired`, `connection.revoked`) in the same
/// transaction; one already in that status is only given the new reason, and reports nothing.
pub async fn mark(db: &DatabaseConnection, id: i64, status: ConnectionStatus, error: &str) -> Result<(), DbErr> {
    use sea_orm::sea_query::Expr;
    let update = || {
        Entity::update_many()
            .col_expr(Column::ConnectionStatus, Expr::value(status))
            .col_expr(Column::LastError, Expr::value(error))
            .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(Column::Id.eq(id))
    };
    let txn = db.begin().await?;
    // Only the statement that moves the status reports it, so a repeated mark reports nothing.
    let moved = update().filter(Column::ConnectionStatus.ne(status)).exec_with_returning(&txn).await?;
    match (moved.first(), crate::domain::WebhookEvent::of_connection(status)) {
        (Some(row), Some(event)) => {
            let payload = super::webhooks::connection_payload(row);
            super::webhooks::record_events(&txn, [(row.user_id.clone(), event, payload)]).await?;
        }
        (Some(_), None) => {}
        (None, _) => {
            update().exec(&txn).await?;
        }
    }
    txn.commit().await
}

/// Deletes a connection (its tokens with it); posts keep their history with no connection.
pub async fn delete<C: ConnectionTrait>(db: &C, id: i64) -> Result<(), DbErr> {
    Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

/// Sets the Page a connection publishes to.
pub async fn set_page(db: &DatabaseConnection, row: Model, page: StoredPage) -> Result<Model, DbErr> {
    let mut active: ActiveModel = row.into();
    active.page_id = Set(Some(page.id));
    active.page_name = Set(Some(page.name));
    active.page_access_token = Set(Some(page.token));
    active.updated_at = Set(Utc::now());
    active.update(db).await
}

/// Active connections whose access token expires before `before`, soonest first.
pub async fn expiring_before(db: &DatabaseConnection, before: DateTime<Utc>, limit: u64) -> Result<Vec<Model>, DbErr> {
    use sea_orm::QuerySelect;
    Entity::find()
        .filter(Column::ConnectionStatus.eq(ConnectionStatus::Active))
        .filter(Column::TokenExpiresAt.lt(before))
        .order_by_asc(Column::TokenExpiresAt)
        .limit(limit)
        .all(db)
        .await
}
