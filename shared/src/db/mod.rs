//! The database: connecting, migrating, and the only place queries are written.
//!
//! Every query that serves a request takes the user id and filters on it, so a row of another
//! user is indistinguishable from a missing one.

pub mod chat;
pub mod connections;
pub mod entities;
pub mod oauth_states;
pub mod posts;
pub mod webhooks;
pub mod workers;

use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
pub use sea_orm::DbErr;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

/// Connects to `url` (PostgreSQL or SQLite) with a pool of at most `max_connections`.
///
/// `timeout` bounds both the wait for a free connection and the opening of a new one: while the
/// database is down, a query fails after it (and the request answers 503) instead of hanging for
/// Whether `text` can be an id Herald gave (a UUID, or a prefixed ULID such as `ep_01h...`).
/// Anything else names nothing, so lookups answer "not found" without a query: a path
/// parameter of 100 KB or with a NUL (which PostgreSQL refuses in text) never reaches the
/// database.
pub fn is_id(text: &str) -> bool {
    (1..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// sqlx's default 30 s.
pub async fn connect(url: &str, max_connections: u32, timeout: Duration) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.max_connections(max_connections).acquire_timeout(timeout).connect_timeout(timeout).sqlx_logging(false);
    Database::connect(options).await
}

/// Applies pending migrations.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Names of migrations the database has not applied yet.
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    Ok(Migrator::get_pending_migrations(db).await?.iter().map(|m| m.name().to_owned()).collect())
}
