//! The bench's SQL: fresh databases, the fixture rows, and the probes that follow a herd.
//!
//! Each run gets its own PostgreSQL database `herald_bench_<uuid>`, created from the admin URL
//! and dropped `WITH (FORCE)` at the end. Fixture rows are written straight into Herald's tables
//! (columns as in `migrations/src/m20261125_000001_create_tables.rs`), so a herd of 50,000 posts
//! takes one `INSERT ... SELECT generate_series` instead of 50,000 API calls. The columns the
//! dispatch refactor adds (DESIGN §11) are detected, not assumed: [`Schema`] says whether
//! `due_at` and `claim_token` exist, and the posts get `due_at = scheduled_time` when it does.
//! Every other new column is assumed nullable or defaulted (`dispatched_at` NULL means "no live
//! job", which is what a fresh post is).

use anyhow::Context;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value};

/// User ids are `bench-user-000001`, ...; the SQL below builds the same text with `lpad`.
const USER_ID_DIGITS: usize = 6;
/// Post ids are `bench-0000001`, ...; pgbench scripts address a post by that number.
pub const POST_ID_DIGITS: usize = 7;
/// The user of the one post that is not part of the herd (a tenant next to the herd's tenants).
pub const OTHER_USER: &str = "bench-other";
/// The text of that post, as X receives it.
pub const OTHER_TEXT: &str = "herd other";
/// The campaign of every bench post.
pub const CAMPAIGN: &str = "bench";

/// The id of the `n`th user (1-based).
pub fn user_id(n: u64) -> String {
    format!("bench-user-{n:0USER_ID_DIGITS$}")
}

/// The text X receives for the `n`th herd post (1-based); unique per post.
pub fn herd_text(n: u64) -> String {
    format!("herd bench-{n:0POST_ID_DIGITS$}")
}

/// Whether a received text belongs to the herd.
pub fn is_herd_text(text: &str) -> bool {
    text.starts_with("herd bench-")
}

/// The admin connection, from which bench databases are created and dropped.
#[derive(Debug)]
pub struct Admin {
    url: reqwest::Url,
    conn: DatabaseConnection,
}

/// One bench database.
#[derive(Debug)]
pub struct BenchDb {
    /// Its name, `herald_bench_<uuid>`.
    pub name: String,
    /// Its URL (`DATABASE_URL` of the Herald processes).
    pub url: String,
    /// The bench's own connection to it.
    pub conn: DatabaseConnection,
}

/// The columns of `scheduled_posts` that differ between the landed tree and the dispatch refactor.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// `due_at` exists: posts inserted with SQL are dispatched by the workers.
    pub due_at: bool,
    /// `claim_token` and `claimed_at` exist: the built-in pgbench script can run.
    pub claim_token: bool,
}

impl Admin {
    /// Connects to the admin database.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("--admin-url {url} is not a URL"))?;
        let conn = connect(url, 2).await.context("cannot connect to the admin database")?;
        Ok(Self { url: parsed, conn })
    }

    /// Creates a fresh, empty database and connects to it.
    pub async fn create(&self) -> anyhow::Result<BenchDb> {
        let name = format!("herald_bench_{}", uuid::Uuid::new_v4().simple());
        self.conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.context("CREATE DATABASE")?;
        let mut url = self.url.clone();
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        let conn = connect(&url, 4).await.with_context(|| format!("cannot connect to {name}"))?;
        Ok(BenchDb { name, url, conn })
    }

    /// Drops a bench database, disconnecting whoever is still on it.
    pub async fn drop_db(&self, db: BenchDb) -> anyhow::Result<()> {
        let _ = db.conn.close().await;
        self.drop_named(&db.name).await
    }

    async fn drop_named(&self, name: &str) -> anyhow::Result<()> {
        self.conn
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .with_context(|| format!("DROP DATABASE {name}"))?;
        Ok(())
    }

    /// Drops every `herald_bench_*` database (leftovers of interrupted runs); returns their names.
    pub async fn drop_leftovers(&self) -> anyhow::Result<Vec<String>> {
        let rows = self
            .conn
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT datname FROM pg_database WHERE datname LIKE 'herald\\_bench\\_%'",
            ))
            .await?;
        let mut names = Vec::new();
        for row in rows {
            let name: String = row.try_get_by_index(0)?;
            self.drop_named(&name).await?;
            names.push(name);
        }
        Ok(names)
    }
}

async fn connect(url: &str, max: u32) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut options = ConnectOptions::new(url);
    options.max_connections(max).min_connections(1).sqlx_logging(false);
    Database::connect(options).await
}

impl BenchDb {
    /// Which of the refactor's columns exist (run after `api migrate`).
    pub async fn schema(&self) -> anyhow::Result<Schema> {
        let rows = self
            .conn
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'scheduled_posts'",
            ))
            .await?;
        let columns: Vec<String> = rows.iter().map(|row| row.try_get_by_index(0)).collect::<Result<_, _>>()?;
        let has = |name: &str| columns.iter().any(|c| c == name);
        Ok(Schema { due_at: has("due_at"), claim_token: has("claim_token") && has("claimed_at") })
    }

    /// Connects `users` users to X (`bench-user-000001` ...), plus [`OTHER_USER`]. Each access
    /// token is a Fernet ciphertext under the run's key, valid for a year, so no worker refreshes.
    pub async fn connect_users(&self, users: u64, cipher: &fernet::Fernet) -> anyhow::Result<()> {
        self.connect_platform(users, "twitter", cipher).await
    }

    /// Connects `platform` for bench users `1..=users` and [`OTHER_USER`] (a Facebook connection
    /// with its Page chosen), tokens encrypted with `cipher`.
    pub async fn connect_platform(&self, users: u64, platform: &str, cipher: &fernet::Fernet) -> anyhow::Result<()> {
        let mut ids: Vec<String> = (1..=users).map(user_id).collect();
        ids.push(OTHER_USER.to_owned());
        const ROWS_PER_STATEMENT: usize = 500;
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut sql = String::from(
                "INSERT INTO social_media_connections (user_id, platform, platform_user_id, platform_username, \
                 access_token, refresh_token, token_expires_at, scopes, connection_status, page_id, page_access_token, \
                 created_at, updated_at) VALUES ",
            );
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 7);
            for (i, id) in chunk.iter().enumerate() {
                let p = i * 7;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, NULL, now() + interval '365 days', '[]', 'active', ${}, ${}, now(), now())",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7
                ));
                let page = platform == "facebook";
                values.push(id.clone().into());
                values.push(platform.to_owned().into());
                values.push(format!("{platform}-{id}").into());
                values.push(id.replace('-', "_").into());
                values.push(cipher.encrypt(format!("access-{platform}-{id}").as_bytes()).into());
                values.push(page.then(|| format!("page-{id}")).into());
                values.push(page.then(|| cipher.encrypt(format!("page-token-{id}").as_bytes())).into());
            }
            self.conn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
        }
        Ok(())
    }

    /// Inserts `posts` pending X posts due at `at`, round-robin over `users` users, in one
    /// statement. Post `n` has id `bench-000000n` and text [`herd_text`]`(n)`.
    pub async fn insert_herd(&self, schema: Schema, posts: u64, users: u64, at: DateTime<Utc>) -> anyhow::Result<()> {
        let (due_col, due_val) = if schema.due_at { (", due_at", ", $1") } else { ("", "") };
        let sql = format!(
            "INSERT INTO scheduled_posts (id, group_id, campaign_id, user_id, social_connection_id, platform, \
             post_content, media_urls, hashtags, scheduled_time, status, retry_count, created_at, updated_at{due_col}) \
             SELECT 'bench-' || lpad(g::text, {POST_ID_DIGITS}, '0'), 'bench-group-' || lpad(g::text, {POST_ID_DIGITS}, '0'), \
             '{CAMPAIGN}', c.user_id, c.id, 'twitter', 'herd bench-' || lpad(g::text, {POST_ID_DIGITS}, '0'), \
             '[]'::json, '[]'::json, $1, 'pending', 0, now(), now(){due_val} \
             FROM generate_series(1::bigint, $2) AS g \
             JOIN social_media_connections c \
               ON c.platform = 'twitter' \
              AND c.user_id = 'bench-user-' || lpad((((g - 1) % $3) + 1)::text, {USER_ID_DIGITS}, '0')"
        );
        let values: Vec<Value> = vec![at.into(), (posts as i64).into(), (users as i64).into()];
        let inserted = self.conn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
        anyhow::ensure!(
            inserted.rows_affected() == posts,
            "inserted {} posts instead of {posts}: are the users connected?",
            inserted.rows_affected()
        );
        Ok(())
    }

    /// Inserts [`OTHER_USER`]'s one post, due at `at` like the herd.
    pub async fn insert_other(&self, schema: Schema, at: DateTime<Utc>) -> anyhow::Result<()> {
        let (due_col, due_val) = if schema.due_at { (", due_at", ", $1") } else { ("", "") };
        let sql = format!(
            "INSERT INTO scheduled_posts (id, group_id, campaign_id, user_id, social_connection_id, platform, \
             post_content, media_urls, hashtags, scheduled_time, status, retry_count, created_at, updated_at{due_col}) \
             SELECT 'bench-other', 'bench-group-other', '{CAMPAIGN}', c.user_id, c.id, 'twitter', $2, \
             '[]'::json, '[]'::json, $1, 'pending', 0, now(), now(){due_val} \
             FROM social_media_connections c WHERE c.user_id = $3 AND c.platform = 'twitter'"
        );
        let values: Vec<Value> = vec![at.into(), OTHER_TEXT.into(), OTHER_USER.into()];
        self.conn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
        Ok(())
    }

    /// Refreshes the planner's statistics after a bulk insert.
    pub async fn analyze(&self) -> anyhow::Result<()> {
        self.conn.execute_unprepared("VACUUM ANALYZE scheduled_posts").await?;
        Ok(())
    }

    /// Where the posts stand: the herd's (every user but [`OTHER_USER`]) and the other user's.
    pub async fn progress(&self) -> anyhow::Result<Progress> {
        let row = self
            .conn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT \
                   count(*) FILTER (WHERE user_id <> $1), \
                   count(*) FILTER (WHERE user_id <> $1 AND status IN ('pending', 'retrying', 'publishing')), \
                   count(*) FILTER (WHERE user_id <> $1 AND status = 'posted'), \
                   count(*) FILTER (WHERE user_id = $1 AND status IN ('pending', 'retrying', 'publishing')) \
                 FROM scheduled_posts",
                [OTHER_USER.into()],
            ))
            .await?
            .context("a count returned no row")?;
        let get = |i: usize| row.try_get_by_index::<i64>(i).map(|n| n.max(0) as u64);
        Ok(Progress { herd: get(0)?, herd_waiting: get(1)?, herd_posted: get(2)?, other_waiting: get(3)? })
    }

    /// The herd's statuses other than `posted`, with counts (what "lost" consists of).
    pub async fn unposted_statuses(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let rows = self
            .conn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT status, count(*) FROM scheduled_posts WHERE user_id <> $1 AND status <> 'posted' \
                 GROUP BY status ORDER BY 2 DESC",
                [OTHER_USER.into()],
            ))
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get_by_index::<String>(0)?, row.try_get_by_index::<i64>(1)?.max(0) as u64)))
            .collect()
    }
}

/// Counts of one progress probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Herd posts in the table.
    pub herd: u64,
    /// Herd posts not final yet (`pending`, `retrying`, `publishing`).
    pub herd_waiting: u64,
    /// Herd posts `posted`.
    pub herd_posted: u64,
    /// 1 while the other user's post is not final.
    pub other_waiting: u64,
}

impl Progress {
    /// Herd posts that reached a final status.
    pub fn herd_final(&self) -> u64 {
        self.herd - self.herd_waiting
    }

    /// Every post, herd and other, is final.
    pub fn all_final(&self) -> bool {
        self.herd_waiting == 0 && self.other_waiting == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_texts_match_what_the_sql_builds() {
        // The SQL pads with lpad(n, USER_ID_DIGITS / POST_ID_DIGITS, '0').
        assert_eq!(user_id(7), "bench-user-000007");
        assert_eq!(herd_text(42), "herd bench-0000042");
        assert!(is_herd_text(&herd_text(1)) && !is_herd_text(OTHER_TEXT));
    }
}
