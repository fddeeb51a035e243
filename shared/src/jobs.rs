//! Job payloads and the queue they travel through.
//!
//! A payload is a wire format that the previous release reads too: ids only, never content or
//! tokens, with a version field. The queue is apalis on Redis in production and apalis on the
//! same SQLite file in the embedded default; the handler code is the same for both.

use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::{Deserialize, Serialize};

/// Publish one post. Version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishPost {
    /// Payload version; readers accept any version they know.
    #[serde(default = "PublishPost::version")]
    pub v: u16,
    /// The post to publish.
    pub post_id: String,
}

impl PublishPost {
    fn version() -> u16 {
        1
    }

    /// A payload for `post_id`.
    pub fn new(post_id: impl Into<String>) -> Self {
        Self { v: Self::version(), post_id: post_id.into() }
    }
}

/// The queue could not take a job.
#[derive(Debug, thiserror::Error)]
#[error("the job queue is unavailable: {0}")]
pub struct QueueError(String);

impl QueueError {
    pub(crate) fn new(error: impl std::fmt::Display) -> Self {
        Self(error.to_string())
    }
}

/// How long one call to the embedded SQLite queue may take before it counts as failed.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the publish queue under a key prefix (Redis keys are `{name}:scheduled`, ...).
pub fn publish_queue_name(prefix: &str) -> String {
    format!("{prefix}:publish")
}

/// Where jobs go.
#[derive(Clone)]
pub enum JobQueue {
    /// Production: apalis-redis, plus a connection of Herald's own for what apalis does not offer
    /// (the queue's depth, removing finished jobs).
    Redis {
        /// apalis's storage.
        storage: RedisStorage<PublishPost>,
        /// A connection to the same Redis.
        conn: ConnectionManager,
        /// The queue name (`{prefix}:publish`), the prefix of its keys.
        name: String,
        /// Bound on each of Herald's queue calls (`DATABASE_TIMEOUT_SECS`): while Redis is
        /// down, the redis crate's reconnect attempts would otherwise hold a request for seconds.
        timeout: Duration,
    },
    /// The embedded default: apalis-sqlite in the application's database file.
    Sqlite {
        /// apalis's storage.
        storage: SqliteStorage<PublishPost>,
        /// The same file, for Herald's own queries on apalis's `Jobs` table.
        db: DatabaseConnection,
        /// The queue name (apalis's `job_type`).
        name: String,
    },
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobQueue::Redis { name, .. } => f.debug_struct("Redis").field("name", name).finish_non_exhaustive(),
            JobQueue::Sqlite { name, .. } => f.debug_struct("Sqlite").field("name", name).finish_non_exhaustive(),
        }
    }
}

/// The first whole second at or after `at`.
///
/// Both apalis backends keep run times in whole seconds and make a job due once the second has
/// started, so a job pushed for 12:00:00.900 would run at 12:00:00.000. Rounding up means a job
/// is never due before its time (the worker still checks, for clock drift between hosts).
pub fn due_second(at: DateTime<Utc>) -> u64 {
    let secs = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
    u64::try_from(secs).unwrap_or(0)
}

/// Removes finished jobs from apalis-redis: pops up to `ARGV[1]` ids from the `done` set and
/// deletes each one's payload (`{q}:data`) and metadata (`{q}:meta:<id>`). Only ids in `done`
/// are touched: a job that is scheduled for a retry, queued, running or dead is never in it.
const VACUUM_SCRIPT: &str = r"
local ids = redis.call('SPOP', KEYS[1], ARGV[1])
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[2], id)
  redis.call('DEL', KEYS[3] .. ':' .. id)
end
return #ids
";

impl JobQueue {
    fn limit(&self) -> Duration {
        match self {
            JobQueue::Redis { timeout, .. } => *timeout,
            JobQueue::Sqlite { .. } => QUEUE_TIMEOUT,
        }
    }

    /// Pushes one publish job per `(post id, due time)`, each due at its time. Jobs due in the
    /// same second run in the order given: both backends order them by job id, and the ids are
    /// monotonic ULIDs (apalis's own are random within a millisecond).
    pub async fn push(&self, jobs: &[(String, DateTime<Utc>)]) -> Result<(), QueueError> {
        let mut ids = ulid::Generator::new();
        let tasks: Vec<_> = jobs
            .iter()
            .map(|(post_id, at)| {
                let id = ids.generate().unwrap_or_else(|_| ulid::Ulid::generate());
                TaskBuilder::new(PublishPost::new(post_id))
                    .task_id(TaskId::from_string(id.to_string()))
                    .run_at_timestamp(due_second(*at))
                    .build()
            })
            .collect();
        let tasks = || futures::stream::iter(tasks.clone());
        let push = async {
            match self {
                JobQueue::Redis { storage, .. } => storage.clone().push_all(tasks()).await.map_err(QueueError::new),
                JobQueue::Sqlite { storage, .. } => storage.clone().push_all(tasks()).await.map_err(QueueError::new),
            }
        };
        tokio::time::timeout(self.limit(), push).await.map_err(|_| QueueError("timed out".into()))?
    }

    /// Jobs waiting in the queue: scheduled for later or due and not yet taken by a worker. This
    /// is what the dispatcher keeps under its cap (apalis-redis moves every due scheduled job in
    /// one `unpack`, which Redis refuses beyond about 8,000 values).
    pub async fn depth(&self) -> Result<u64, QueueError> {
        let count = async {
            match self {
                JobQueue::Redis { conn, name, .. } => {
                    let mut conn = conn.clone();
                    let (scheduled, active): (u64, u64) = redis::pipe()
                        .zcard(format!("{name}:scheduled"))
                        .llen(format!("{name}:active"))
                        .query_async(&mut conn)
                        .await
                        .map_err(QueueError::new)?;
                    Ok(scheduled + active)
                }
                JobQueue::Sqlite { db, name, .. } => {
                    let row = db
                        .query_one_raw(Statement::from_sql_and_values(
                            DbBackend::Sqlite,
                            "SELECT COUNT(*) AS n FROM Jobs WHERE job_type = $1 AND status IN ('Pending', 'Queued')",
                            [name.clone().into()],
                        ))
                        .await
                        .map_err(QueueError::new)?;
                    let n: i64 = row.map(|r| r.try_get("", "n")).transpose().map_err(QueueError::new)?.unwrap_or(0);
                    Ok(n.max(0) as u64)
                }
            }
        };
        tokio::time::timeout(self.limit(), count).await.map_err(|_| QueueError("timed out".into()))?
    }

    /// Jobs by state, for the metrics: `scheduled` (waiting for their second), `active` (due,
    /// waiting for a worker), `running`, `done` (finished, not yet vacuumed) and `dead` (apalis gave
    /// up). apalis-redis keeps one in-flight set per registered worker, so `running` sums those.
    pub async fn states(&self) -> Result<Vec<(String, u64)>, QueueError> {
        let states = async {
            match self {
                JobQueue::Redis { conn, name, .. } => {
                    let mut conn = conn.clone();
                    let (scheduled, active, done, dead, workers): (u64, u64, u64, u64, Vec<String>) = redis::pipe()
                        .zcard(format!("{name}:scheduled"))
                        .llen(format!("{name}:active"))
                        .scard(format!("{name}:done"))
                        .scard(format!("{name}:dead"))
                        .zrange(format!("{name}:workers"), 0, -1)
                        .query_async(&mut conn)
                        .await
                        .map_err(QueueError::new)?;
                    let mut pipe = redis::pipe();
                    for worker in &workers {
                        pipe.scard(format!("{name}:inflight:{worker}"));
                    }
                    let running: Vec<u64> = if workers.is_empty() {
                        Vec::new()
                    } else {
                        pipe.query_async(&mut conn).await.map_err(QueueError::new)?
                    };
                    let running = running.iter().sum();
                    Ok([
                        ("scheduled", scheduled),
                        ("active", active),
                        ("running", running),
                        ("done", done),
                        ("dead", dead),
                    ]
                    .map(|(state, n)| (state.to_owned(), n))
                    .to_vec())
                }
                JobQueue::Sqlite { db, name, .. } => {
                    let rows = db
                        .query_all_raw(Statement::from_sql_and_values(
                            DbBackend::Sqlite,
                            "SELECT status, COUNT(*) AS n FROM Jobs WHERE job_type = $1 GROUP BY status",
                            [name.clone().into()],
                        ))
                        .await
                        .map_err(QueueError::new)?;
                    rows.iter()
                        .map(|row| {
                            let status: String = row.try_get("", "status").map_err(QueueError::new)?;
                            let n: i64 = row.try_get("", "n").map_err(QueueError::new)?;
                            Ok((status.to_lowercase(), n.max(0) as u64))
                        })
                        .collect()
                }
            }
        };
        tokio::time::timeout(self.limit(), states).await.map_err(|_| QueueError("timed out".into()))?
    }

    /// Removes up to `limit` finished jobs (apalis keeps every finished job's payload and
    /// metadata forever); returns how many. Never a job that is still due, queued, running, dead
    /// or waiting for a retry, and never a scan over the whole queue.
    pub async fn vacuum(&self, limit: usize) -> Result<u64, QueueError> {
        let removed = async {
            match self {
                JobQueue::Redis { conn, name, .. } => {
                    let mut conn = conn.clone();
                    redis::Script::new(VACUUM_SCRIPT)
                        .key(format!("{name}:done"))
                        .key(format!("{name}:data"))
                        .key(format!("{name}:meta"))
                        .arg(limit)
                        .invoke_async(&mut conn)
                        .await
                        .map_err(QueueError::new)
                }
                JobQueue::Sqlite { db, name, .. } => {
                    let result = db
                        .execute_raw(Statement::from_sql_and_values(
                            DbBackend::Sqlite,
                            "DELETE FROM Jobs WHERE rowid IN \
                             (SELECT rowid FROM Jobs WHERE job_type = $1 AND status = 'Done' LIMIT $2)",
                            [name.clone().into(), (limit as i64).into()],
                        ))
                        .await
                        .map_err(QueueError::new)?;
                    Ok(result.rows_affected())
                }
            }
        };
        tokio::time::timeout(self.limit(), removed).await.map_err(|_| QueueError("timed out".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_second_rounds_up() {
        let exact = DateTime::parse_from_rfc3339("2030-01-01T12:00:00Z").expect("time").to_utc();
        let late = DateTime::parse_from_rfc3339("2030-01-01T12:00:00.900Z").expect("time").to_utc();
        assert_eq!(due_second(exact), exact.timestamp() as u64);
        assert_eq!(due_second(late), exact.timestamp() as u64 + 1);
    }

    #[test]
    fn payload_is_ids_only_and_versioned() {
        let json = serde_json::to_value(PublishPost::new("p1")).expect("json");
        assert_eq!(json, serde_json::json!({"v": 1, "post_id": "p1"}));
        let old: PublishPost = serde_json::from_str(r#"{"post_id":"p2"}"#).expect("parse");
        assert_eq!(old.v, 1);
    }
}
