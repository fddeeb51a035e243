//! Job payloads and the queue they travel through.
//!
//! A payload is a wire format that the previous release reads too: ids only, never content or
//! tokens, with a version field. The queue is apalis on Redis in production and apalis on the
//! same SQLite file in the embedded default; the handler code is the same for both.

use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use chrono::{DateTime, Utc};
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

/// The name of the publish queue under a key prefix (Redis keys are `{name}:scheduled`, ...).
pub fn publish_queue_name(prefix: &str) -> String {
    format!("{prefix}:publish")
}

/// Where jobs go.
#[derive(Debug, Clone)]
pub enum JobQueue {
    /// Production: apalis-redis.
    Redis(RedisStorage<PublishPost>),
    /// The embedded default: apalis-sqlite in the application's database file.
    Sqlite(SqliteStorage<PublishPost>),
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

impl JobQueue {
    /// Enqueues a publish job due at `run_at`.
    pub async fn enqueue_publish(&self, post_id: &str, run_at: DateTime<Utc>) -> Result<(), QueueError> {
        let task = TaskBuilder::new(PublishPost::new(post_id)).run_at_timestamp(due_second(run_at)).build();
        let push = async {
            match self {
                JobQueue::Redis(storage) => {
                    storage.clone().push_task(task).await.map_err(|e| QueueError(e.to_string()))
                }
                JobQueue::Sqlite(storage) => {
                    storage.clone().push_task(task).await.map_err(|e| QueueError(e.to_string()))
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), push).await.map_err(|_| QueueError("timed out".into()))?
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
