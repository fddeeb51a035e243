//! Direct row and queue access for tests that need more posts than the API would make quickly
//! (herds, backlogs) or that act as an outage would (a flushed Redis). Production code never
//! writes rows this way; the tests use it to prepare situations, then watch Herald through its
//! API, its rows and the fakes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement, Value};

use crate::TestApp;

impl TestApp {
    /// Runs one SQL statement on the test's database.
    pub async fn exec(&self, sql: &str) {
        self.db.execute_raw(Statement::from_string(self.db.get_database_backend(), sql.to_owned())).await.expect(sql);
    }

    /// The rows a query returns.
    pub async fn query(&self, sql: &str) -> Vec<sea_orm::QueryResult> {
        self.db.query_all_raw(Statement::from_string(self.db.get_database_backend(), sql.to_owned())).await.expect(sql)
    }

    /// Inserts `count` pending X posts spread round-robin over every user with an X connection,
    /// as the API stores them: the first due at `first`, the others `step_ms` apart, with texts
    /// `"{tag} {n}"` and ids `"{tag}-{n}"` (n from 1). PostgreSQL only.
    pub async fn insert_x_posts(&self, tag: &str, count: u32, first: DateTime<Utc>, step_ms: i64) {
        let sql = "INSERT INTO scheduled_posts (id, group_id, campaign_id, user_id, social_connection_id, platform, \
                   post_content, media_urls, hashtags, scheduled_time, status, retry_count, created_at, updated_at, due_at) \
                   SELECT $1 || '-' || g, $1, 'herd', c.user_id, c.id, 'twitter', $1 || ' ' || g, '[]', '[]', \
                     $2 + g * $3 * interval '1 millisecond', 'pending', 0, now(), now(), \
                     $2 + g * $3 * interval '1 millisecond' \
                   FROM generate_series(1, $4) AS g \
                   JOIN (SELECT id, user_id, row_number() OVER (ORDER BY id) - 1 AS k FROM social_media_connections \
                         WHERE platform = 'twitter') AS c \
                     ON c.k = g % (SELECT count(*) FROM social_media_connections WHERE platform = 'twitter')";
        // The first post is number 1: shift the start so that it is due at `first`.
        let start = first - chrono::Duration::milliseconds(step_ms);
        let values: Vec<Value> = vec![tag.into(), start.into(), step_ms.into(), i64::from(count).into()];
        self.db
            .execute_raw(Statement::from_sql_and_values(self.db.get_database_backend(), sql, values))
            .await
            .expect("insert posts");
    }

    /// How many posts of the test are in each status.
    pub async fn posts_by_status(&self) -> HashMap<String, i64> {
        let rows = self.query("SELECT status, COUNT(*) AS n FROM scheduled_posts GROUP BY status").await;
        rows.iter()
            .map(|r| (r.try_get::<String>("", "status").expect("status"), r.try_get::<i64>("", "n").expect("n")))
            .collect()
    }

    /// The apalis queue's name (the prefix of its Redis keys), in production mode.
    pub fn queue_name(&self) -> String {
        match &self.settings.storage {
            shared::config::Storage::External { queue_prefix, .. } => shared::jobs::publish_queue_name(queue_prefix),
            shared::config::Storage::Embedded { .. } => panic!("the embedded default has no Redis queue"),
        }
    }

    /// A Redis connection (production mode).
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(crate::redis_url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to Redis")
    }

    /// Every Redis key of this test (its prefix), found with `SCAN`.
    pub async fn redis_keys(&self) -> Vec<String> {
        let shared::config::Storage::External { queue_prefix, .. } = &self.settings.storage else {
            return Vec::new();
        };
        let mut conn = self.redis().await;
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{queue_prefix}:*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .expect("SCAN");
            keys.extend(batch);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }

    /// Deletes every Redis key of this test, as a flush or a restart without persistence would.
    pub async fn flush_redis(&self) {
        let keys = self.redis_keys().await;
        let mut conn = self.redis().await;
        for chunk in keys.chunks(500) {
            let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await.expect("DEL");
        }
    }
}

impl TestApp {
    /// Schedules a media post of `user` to `platform`, due now, with `options` (`null`: none);
    /// returns the answer's status and body.
    pub async fn schedule_media(
        &self,
        user: &str,
        platform: &str,
        content: &str,
        media: Vec<String>,
        options: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut body = serde_json::json!({"campaign_id": format!("media-{platform}"), "platforms": [platform],
            "content": content, "media_urls": media, "scheduled_time": chrono::Utc::now().to_rfc3339()});
        if !options.is_null() {
            body["options"] = options;
        }
        self.post(user, "/api/v1/posts/schedule", &body).await
    }

    /// [`TestApp::schedule_media`], which must succeed; returns the post once final (90 s at most:
    /// a media post waits on the platform a few times).
    pub async fn publish_media(
        &self,
        user: &str,
        platform: &str,
        content: &str,
        media: Vec<String>,
        options: serde_json::Value,
    ) -> serde_json::Value {
        let (status, body) = self.schedule_media(user, platform, content, media, options).await;
        assert_eq!(status, 201, "{body}");
        let id = body["posts"][0]["id"].as_str().expect("id").to_owned();
        self.wait_for_post(user, &id, &["posted", "failed", "unknown"], std::time::Duration::from_secs(90)).await
    }
}

/// The message of an answer in the one error shape.
pub fn error_message(body: &serde_json::Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// A post's `posting_error`.
pub fn posting_error(post: &serde_json::Value) -> &str {
    post["posting_error"].as_str().unwrap_or_default()
}
