//! Outages survived (issue 10), with two real `worker` processes under load: the test's own Redis
//! stopped for 10 s and started again, the test's own PostgreSQL cluster stopped for 8 s and
//! started again (never the machine's shared services). While a dependency is down the api
//! answers 503, in the one error shape for requests, within a few seconds (never a hang, never a
//! 500); the workers reconnect by themselves; afterwards every post is published exactly once.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tests::{
    Fake, TestApp, WorkerProcess,
    outage::{OwnPostgres, OwnRedis},
    wait_until,
};

const BIN: &str = env!("CARGO_BIN_EXE_worker");
const USERS: usize = 5;
/// Longest an answer may take while a dependency is down (the database wait is 2 s here).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

async fn timed<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let answer = tokio::time::timeout(ANSWER_WITHIN * 2, request).await.unwrap_or_else(|_| panic!("{what} hung"));
    let took = started.elapsed();
    assert!(took < ANSWER_WITHIN, "{what} took {took:?}");
    answer
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let response = app.http.get(app.url("/readyz")).send().await.expect("the api answers");
    (response.status().as_u16(), response.json().await.expect("a JSON probe"))
}

async fn schedule(app: &TestApp, content: &str, at: DateTime<Utc>) -> (u16, Value) {
    let body = json!({"campaign_id": "outage", "platforms": ["twitter"], "content": content, "scheduled_time": at.to_rfc3339()});
    app.post("outage-0", "/api/v1/posts/schedule", &body).await
}

async fn posted_count(app: &TestApp) -> i64 {
    app.posts_by_status().await.get("posted").copied().unwrap_or(0)
}

/// Waits until no post is open, then checks every one was published exactly once; returns how
/// many were published more than 5 s after their time, and the worst lateness.
async fn all_published_once(app: &TestApp, total: usize) -> (usize, f64) {
    let statuses = wait_until(Duration::from_secs(150), "every post to be final", || async {
        let statuses = app.posts_by_status().await;
        let open: i64 = ["pending", "retrying", "publishing"].iter().filter_map(|s| statuses.get(*s)).sum();
        (open == 0).then_some(statuses)
    })
    .await;
    assert_eq!(statuses.get("posted").copied(), Some(total as i64), "{statuses:?}");
    let texts = app.x.texts_received();
    assert_eq!(texts.len(), total, "every post reached X");
    assert!(texts.values().all(|n| *n == 1), "a post was sent twice: {texts:?}");
    let rows = app
        .query(
            "SELECT EXTRACT(EPOCH FROM (published_at - scheduled_time))::float8 AS late FROM scheduled_posts \
             WHERE status = 'posted'",
        )
        .await;
    let lateness: Vec<f64> = rows.iter().map(|row| row.try_get("", "late").expect("late")).collect();
    (lateness.iter().filter(|late| **late > 5.0).count(), lateness.iter().copied().fold(0.0, f64::max))
}

/// Seconds from `restarted` until X received its first tweet after it.
fn resumed_after(app: &TestApp, restarted: DateTime<Utc>) -> f64 {
    let first = app.x.requests_to("/2/tweets").into_iter().map(|r| r.at).filter(|at| *at >= restarted).min();
    first.map_or(f64::NAN, |at| (at - restarted).num_milliseconds() as f64 / 1000.0)
}

/// Posts of the test, due over 18 s from 3 s from now.
const POSTS: u32 = 300;

/// Connects the users, inserts [`POSTS`] posts tagged `tag`, starts two workers and returns them
/// once the first 40 posts are out.
async fn under_load(app: &TestApp, tag: &str) -> Vec<WorkerProcess> {
    for i in 0..USERS {
        app.connect_x(&format!("outage-{i}")).await;
    }
    app.x.set_tweet_delay(Duration::from_millis(50));
    app.insert_x_posts(tag, POSTS, Utc::now() + chrono::Duration::seconds(3), 60).await;
    let fleet = (1..=2).map(|n| tests::worker_process(app, BIN, &format!("outage-{tag}-worker-{n}"), &[])).collect();
    wait_until(Duration::from_secs(60), "the first 40 posts", || async {
        (posted_count(app).await >= 40).then_some(())
    })
    .await;
    fleet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_under_load_loses_nothing_and_sends_nothing_twice() {
    let mut redis = OwnRedis::start();
    let url = redis.url();
    let app = TestApp::spawn_api_only(|env| {
        env.insert("REDIS_URL".into(), url);
    })
    .await;
    let mut fleet = under_load(&app, "redis").await;

    redis.stop();
    let stopped = Instant::now();
    // The api says why it is not ready, fast; requests that need only the database still work,
    // and a post scheduled now is stored (the dispatcher pushes it once Redis is back).
    let (status, probe) = timed("/readyz", readyz(&app)).await;
    assert_eq!(status, 503, "{probe}");
    assert!(probe["detail"].as_str().is_some_and(|d| d.starts_with("redis")), "{probe}");
    let (status, campaign) = timed("a campaign read", app.get("outage-0", "/api/v1/posts/scheduled/herd")).await;
    assert_eq!(status, 200, "{campaign}");
    let (status, answer) =
        timed("a schedule", schedule(&app, "scheduled during the outage", Utc::now() + chrono::Duration::seconds(2)))
            .await;
    assert_eq!(status, 201, "{answer}");
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed())).await;

    let restarted = Utc::now();
    redis.start_again();
    let (late, worst) = all_published_once(&app, POSTS as usize + 1).await;
    let resumed = resumed_after(&app, restarted);
    eprintln!(
        "redis outage: 10 s; first tweet {resumed:.1} s after the restart; {late} of {} posts more than 5 s late \
         (worst {worst:.1} s); duplicates 0",
        POSTS + 1
    );
    assert!(resumed < 60.0, "resumed {resumed} s after Redis came back");
    let (status, probe) = readyz(&app).await;
    assert_eq!(status, 200, "{probe}");
    for worker in &mut fleet {
        worker.kill().expect("stop the worker");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_answers_503_and_publishes_everything_once() {
    let postgres = OwnPostgres::start();
    let url = postgres.url();
    let app = TestApp::spawn_api_only(|env| {
        env.insert("DATABASE_URL".into(), url);
        env.insert("DATABASE_TIMEOUT_SECS".into(), "2".into());
    })
    .await;
    let mut fleet = under_load(&app, "postgres").await;

    postgres.stop();
    let stopped = Instant::now();
    let (status, probe) = timed("/readyz", readyz(&app)).await;
    assert_eq!(status, 503, "{probe}");
    assert!(probe["detail"].as_str().is_some_and(|d| d.starts_with("database")), "{probe}");
    let (status, answer) = timed("a campaign read", app.get("outage-0", "/api/v1/posts/scheduled/herd")).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "database_unavailable", "{answer}");
    let (status, answer) =
        timed("a schedule", schedule(&app, "refused", Utc::now() + chrono::Duration::hours(1))).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "database_unavailable", "{answer}");
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(stopped.elapsed())).await;

    let restarted = Utc::now();
    postgres.start_again();
    let (late, worst) = all_published_once(&app, POSTS as usize).await;
    let resumed = resumed_after(&app, restarted);
    eprintln!(
        "postgres outage: 8 s; first tweet {resumed:.1} s after the restart; {late} of {POSTS} posts more than 5 s \
         late (worst {worst:.1} s); duplicates 0"
    );
    assert!(resumed < 60.0, "resumed {resumed} s after PostgreSQL came back");
    let refused = app.query("SELECT id FROM scheduled_posts WHERE post_content = 'refused'").await;
    assert!(refused.is_empty(), "a refused schedule stored nothing");
    for worker in &mut fleet {
        worker.kill().expect("stop the worker");
    }
    app.stop().await;
}
