//! The process context shared by the api and the worker: settings, database, queue, keys,
//! platform clients, locks and metrics, built once at start.

use std::sync::Arc;

use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use sea_orm::DatabaseConnection;

use crate::{
    config::{Settings, Storage},
    crypto::{JwtKeys, StateSigner, TokenCipher},
    db,
    jobs::{JobQueue, PublishPost, publish_queue_name},
    locks::RefreshLocks,
    platforms::Platforms,
    ratelimit::RateLimiter,
    telemetry::Metrics,
};

/// Why the context could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database is unreachable or failed.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// The schema is behind the code.
    #[error("the database schema is behind ({0} pending); run `api migrate` first")]
    SchemaBehind(String),
    /// Redis is unreachable.
    #[error("redis: {0}")]
    Redis(String),
    /// The SQLite queue could not be set up.
    #[error("sqlite queue: {0}")]
    Queue(String),
    /// A configured key is unusable.
    #[error("{0}")]
    Key(String),
}

/// Shared process state.
#[derive(Debug)]
pub struct App {
    /// Settings read at start.
    pub settings: Settings,
    /// The database.
    pub db: DatabaseConnection,
    /// The job queue.
    pub queue: JobQueue,
    /// Encrypts stored tokens.
    pub cipher: TokenCipher,
    /// Signs OAuth state.
    pub states: StateSigner,
    /// Bearer tokens.
    pub jwt: JwtKeys,
    /// Configured platform clients.
    pub platforms: Platforms,
    /// Refresh locks.
    pub locks: RefreshLocks,
    /// The API's rate-limit buckets.
    pub rate_limits: RateLimiter,
    /// Metrics.
    pub metrics: Metrics,
    /// Writes the `posted` outcomes of this process's publish attempts in batches.
    pub posted: crate::publish::PostedWriter,
    /// Fetches users' media under the address rules.
    pub media: crate::media::MediaFetcher,
    /// Sends webhook deliveries under the same address rules, following no redirect.
    pub webhooks: crate::webhooks::Sender,
    /// Set once a shutdown signal arrived: the worker's `/readyz` then answers 503 while it drains.
    pub draining: std::sync::atomic::AtomicBool,
}

/// How strict start-up is about the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Apply pending migrations (the embedded default and `api migrate`).
    Migrate,
    /// Refuse to start when migrations are pending (production api and worker).
    RequireCurrent,
}

impl App {
    /// Connects everything the settings name.
    pub async fn start(settings: Settings, schema: Schema) -> Result<Arc<Self>, StartError> {
        let (db, queue, locks, rate_limits) = match &settings.storage {
            Storage::External { database_url, redis_url, queue_prefix, max_connections, timeout } => {
                let db = db::connect(database_url.expose(), *max_connections, *timeout).await?;
                check_schema(&db, schema).await?;
                let conn =
                    apalis_redis::connect(redis_url.expose()).await.map_err(|e| StartError::Redis(e.to_string()))?;
                // A worker that dies is declared orphaned after `heartbeat * missed` and its jobs
                // are re-enqueued by the others: 30 s instead of apalis's default 300 s.
                // No pub/sub events: nothing subscribes, and they cost Redis a PUBLISH per job.
                let config = apalis_redis::Config::default()
                    .queue(publish_queue_name(queue_prefix))
                    .heartbeat_interval(std::time::Duration::from_secs(5))
                    .missed_heartbeats(6)
                    .emit_events(false);
                let name = publish_queue_name(queue_prefix);
                let storage = RedisStorage::<PublishPost>::new(conn.clone()).with_config(config);
                let locks = RefreshLocks::Redis { conn: conn.clone(), prefix: queue_prefix.clone() };
                let rate_limits = RateLimiter::redis(conn.clone(), queue_prefix.clone());
                (db, JobQueue::Redis { storage, conn, name, timeout: *timeout }, locks, rate_limits)
            }
            Storage::Embedded { path } => {
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let db = db::connect(&url, 4, std::time::Duration::from_secs(30)).await?;
                check_schema(&db, schema).await?;
                let pool = db.get_sqlite_connection_pool().clone();
                SqliteStorage::setup(&pool).await.map_err(|e| StartError::Queue(e.to_string()))?;
                let name = publish_queue_name("herald");
                let config = apalis_sqlite::Config::default().queue(name.clone());
                let storage = SqliteStorage::<PublishPost>::new(&pool).with_config(config);
                (db.clone(), JobQueue::Sqlite { storage, db, name }, RefreshLocks::local(), RateLimiter::local())
            }
        };
        let cipher = TokenCipher::new(&settings.token_encryption_keys).map_err(StartError::Key)?;
        Ok(Arc::new(Self {
            states: StateSigner::new(&settings.oauth_state_secret),
            jwt: JwtKeys::new(&settings),
            platforms: Platforms::from_settings(&settings),
            cipher,
            db,
            queue,
            locks,
            rate_limits,
            metrics: Metrics::default(),
            posted: crate::publish::PostedWriter::default(),
            media: crate::media::MediaFetcher::new(settings.media.allow_private, settings.media.fetch_timeout),
            webhooks: crate::webhooks::Sender::new(settings.media.allow_private, settings.webhooks.timeout),
            draining: std::sync::atomic::AtomicBool::new(false),
            settings,
        }))
    }
}

async fn check_schema(db: &DatabaseConnection, schema: Schema) -> Result<(), StartError> {
    match schema {
        Schema::Migrate => db::migrate(db).await?,
        Schema::RequireCurrent => {
            let pending = db::pending_migrations(db).await?;
            if !pending.is_empty() {
                return Err(StartError::SchemaBehind(pending.join(", ")));
            }
        }
    }
    Ok(())
}

/// Resolves on SIGTERM (what Cloud Run sends) or Ctrl-C; the `api` and `worker` binaries then
/// drain.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutdown signal received; draining");
}
