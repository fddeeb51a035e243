//! `Idempotency-Key` for `POST /posts/schedule`: the same key and body within 24 hours returns
//! the first response and creates nothing new.
//!
//! A key is reserved (a row with status 0) before the work starts, so two concurrent requests
//! with one key cannot both schedule: the second sees the reservation and is told to retry. The
//! reservation becomes the stored response on success and is released on failure, so a failed
//! request can be sent again with the same key.

use chrono::{Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set, sea_query::Expr,
};

use crate::{App, Error, crypto::sha256_hex, db::entities::idempotency_key};

/// How long a key is remembered.
const TTL_HOURS: i64 = 24;

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Begin {
    /// First time: do the work, then [`finish`] or [`release`].
    New(Reservation),
    /// Seen before with the same body: answer this.
    Replay {
        /// HTTP status of the first response.
        status: u16,
        /// Its JSON body.
        body: String,
    },
}

/// A reserved key.
#[derive(Debug)]
pub struct Reservation {
    user_id: String,
    key: String,
}

/// Checks a key: 1-255 visible ASCII characters.
pub fn parse_key(key: &str) -> Result<String, Error> {
    let valid = !key.is_empty() && key.len() <= 255 && key.chars().all(|c| c.is_ascii_graphic());
    if valid {
        Ok(key.to_owned())
    } else {
        Err(Error::BadRequest {
            code: "invalid_idempotency_key",
            message: "Idempotency-Key must be 1-255 visible ASCII characters".into(),
        })
    }
}

/// Reserves `key` for this request, or says how to answer a repeat.
pub async fn begin(app: &App, user_id: &str, key: &str, request_body: &str) -> Result<Begin, Error> {
    let key = parse_key(key)?;
    let hash = sha256_hex(request_body);
    let now = Utc::now();
    purge(&app.db, now - Duration::hours(TTL_HOURS)).await?;
    let reserved = idempotency_key::ActiveModel {
        user_id: Set(user_id.to_owned()),
        key: Set(key.clone()),
        request_hash: Set(hash.clone()),
        response_status: Set(0),
        response_body: Set(String::new()),
        created_at: Set(now),
    }
    .insert(&app.db)
    .await;
    if reserved.is_ok() {
        return Ok(Begin::New(Reservation { user_id: user_id.to_owned(), key }));
    }
    // The key exists (or the insert failed for another reason: reading tells which).
    let existing = idempotency_key::Entity::find_by_id((user_id.to_owned(), key.clone())).one(&app.db).await?;
    let Some(existing) = existing else {
        return Err(reserved.err().map(Error::from).unwrap_or(Error::NotFound("idempotency key")));
    };
    if existing.request_hash != hash {
        return Err(Error::Conflict {
            code: "idempotency_key_reused",
            message: "this Idempotency-Key was used with a different request body".into(),
        });
    }
    if existing.response_status == 0 {
        return Err(Error::Conflict {
            code: "request_in_progress",
            message: "a request with this Idempotency-Key is still being processed; retry shortly".into(),
        });
    }
    Ok(Begin::Replay { status: u16::try_from(existing.response_status).unwrap_or(500), body: existing.response_body })
}

/// Stores the response of a reserved key.
pub async fn finish(app: &App, reservation: Reservation, status: u16, body: &str) -> Result<(), Error> {
    idempotency_key::Entity::update_many()
        .col_expr(idempotency_key::Column::ResponseStatus, Expr::value(i32::from(status)))
        .col_expr(idempotency_key::Column::ResponseBody, Expr::value(body))
        .filter(idempotency_key::Column::UserId.eq(reservation.user_id))
        .filter(idempotency_key::Column::Key.eq(reservation.key))
        .exec(&app.db)
        .await?;
    Ok(())
}

/// Releases a reserved key after a failed request, so it can be retried.
pub async fn release(app: &App, reservation: Reservation) -> Result<(), Error> {
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::UserId.eq(reservation.user_id))
        .filter(idempotency_key::Column::Key.eq(reservation.key))
        .exec(&app.db)
        .await?;
    Ok(())
}

async fn purge(db: &DatabaseConnection, before: chrono::DateTime<Utc>) -> Result<(), DbErr> {
    idempotency_key::Entity::delete_many().filter(idempotency_key::Column::CreatedAt.lt(before)).exec(db).await?;
    Ok(())
}
