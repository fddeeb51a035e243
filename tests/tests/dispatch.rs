//! Dispatch (DESIGN §11) on PostgreSQL and Redis: herds, a flushed queue, reschedules that race
//! with a dispatched job, and a backlog after an outage. Posts are written straight into the table
//! (as the API stores them) so that tens of thousands can be prepared in a second; everything after
//! that is Herald's own work, watched through its rows, its Redis keys and the fake X.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use tests::{Fake, Mode, TestApp, wait_until};

/// Waits until no post is waiting or publishing, sampling the test's Redis key count meanwhile;
/// returns the statuses and the peak key count.
async fn wait_until_all_final(app: &TestApp, timeout: Duration) -> (HashMap<String, i64>, usize) {
    let mut peak_keys = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        peak_keys = peak_keys.max(app.redis_keys().await.len());
        let statuses = app.posts_by_status().await;
        let open: i64 = ["pending", "retrying", "publishing"].iter().filter_map(|s| statuses.get(*s)).sum();
        if open == 0 {
            return (statuses, peak_keys);
        }
        assert!(tokio::time::Instant::now() < deadline, "posts still open after {timeout:?}: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Connects X for `n` users named `{prefix}-{i}`.
async fn connect_users(app: &TestApp, prefix: &str, n: usize) {
    for i in 0..n {
        app.connect_x(&format!("{prefix}-{i}")).await;
    }
}

/// Inserts one pending X post of `user`, due at `at`, with this id and text.
async fn insert_one(app: &TestApp, user: &str, id: &str, text: &str, at: DateTime<Utc>) {
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    app.exec(&format!(
        "INSERT INTO scheduled_posts (id, group_id, campaign_id, user_id, social_connection_id, platform, post_content, \
         media_urls, hashtags, scheduled_time, status, retry_count, created_at, updated_at, due_at) \
         SELECT '{id}', '{id}', 'c1', user_id, id, 'twitter', '{text}', '[]', '[]', '{at}', 'pending', 0, now(), now(), '{at}' \
         FROM social_media_connections WHERE user_id = '{user}'"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_of_20000_posts_due_in_one_second_is_published_once_each() {
    // Short rounds: once the queue is full, each has room for the few dozen posts published since
    // the last, fewer than the herd has users.
    let mut app = TestApp::spawn_with(Mode::Production, |env| {
        env.insert("DISPATCH_INTERVAL_MS".into(), "50".into());
    })
    .await;
    app.spawn_worker().await;
    connect_users(&app, "herd", 100).await;
    // Beyond the dispatcher's lookahead, so every post goes through the dispatcher's rounds.
    let at = Utc::now() + chrono::Duration::seconds(10);
    let at = at - chrono::Duration::nanoseconds(i64::from(at.timestamp_subsec_nanos() % 1_000_000));
    app.insert_x_posts("herd", 20_000, at, 0).await;
    // Another user's single post, due in the same second, written once the herd has filled the
    // queue: from then on each round has room for a few dozen posts, and every herd user has a
    // post due as early as the loner's, with an id that sorts first. Only weighing by user (not
    // the order of times or ids) brings it forward.
    let queue = app.queue_name();
    let mut redis = app.redis().await;
    wait_until(Duration::from_secs(30), "the herd fills the queue", || {
        let mut redis = redis.clone();
        let key = format!("{queue}:scheduled");
        async move {
            let depth: usize = redis::cmd("ZCARD").arg(key).query_async(&mut redis).await.expect("ZCARD");
            (depth >= 1_900).then_some(())
        }
    })
    .await;
    assert!(Utc::now() < at, "the herd was due before the queue filled");
    app.connect_x("loner").await;
    insert_one(&app, "loner", "zzz-loner", "the loner post", at).await;

    let (statuses, peak_keys) = wait_until_all_final(&app, Duration::from_secs(300)).await;
    assert_eq!(statuses.get("posted"), Some(&20_001), "{statuses:?}");
    let texts = app.x.texts_received();
    assert_eq!(texts.len(), 20_001);
    assert!(texts.values().all(|n| *n == 1), "a post was sent twice");
    let requests = app.x.requests_to("/2/tweets");
    assert!(requests.iter().all(|r| r.at >= at), "a post went out before its time");
    // The queue's depth stays under its cap, and finished jobs are removed: the keys are bounded
    // by the cap (2,000), not by the herd.
    assert!(peak_keys < 4_000, "{peak_keys} Redis keys at the peak");
    // Neither worker's consumer died and was restarted (a restart registers a new name).
    let registered: usize =
        redis::cmd("ZCARD").arg(format!("{}:workers", app.queue_name())).query_async(&mut redis).await.expect("ZCARD");
    assert_eq!(registered, 2, "a consumer was restarted");
    // The loner waited for the queue that was full when it came (2,000) and a round or two, not
    // for the herd.
    let position = requests.iter().position(|r| r.body.contains("the loner post")).expect("loner sent");
    assert!(position < 3_000, "the loner's post was sent {position}th");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_survive_a_flushed_redis() {
    let app = TestApp::spawn_with(Mode::Production, |env| {
        env.insert("DISPATCH_REDISPATCH_AFTER_SECS".into(), "3".into());
    })
    .await;
    connect_users(&app, "flush", 5).await;
    let at = Utc::now() + chrono::Duration::seconds(4);
    app.insert_x_posts("flush", 500, at, 0).await;
    // Once every post has its job in Redis, Redis loses everything (only this test's keys).
    wait_until(Duration::from_secs(20), "every post to be dispatched", || async {
        let rows = app.posts_by_status().await;
        let queued = app.redis_keys().await.len();
        (rows.get("pending") == Some(&500) && queued >= 500).then_some(())
    })
    .await;
    app.flush_redis().await;
    assert!(app.redis_keys().await.len() < 10);

    let (statuses, _) = wait_until_all_final(&app, Duration::from_secs(60)).await;
    assert_eq!(statuses.get("posted"), Some(&500), "{statuses:?}");
    let texts = app.x.texts_received();
    assert_eq!(texts.len(), 500);
    assert!(texts.values().all(|n| *n == 1), "a post was sent twice");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reschedule_after_dispatch_wins_over_the_dispatched_job() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    let old_time = Utc::now() + chrono::Duration::seconds(2);
    insert_one(&app, "alice", "moved", "the old words", old_time).await;
    // The dispatcher pushes the post's job for its old time...
    wait_until(Duration::from_secs(10), "the post to be dispatched", || async {
        let rows = app.redis_keys().await;
        rows.iter().any(|k| k.ends_with(":scheduled")).then_some(())
    })
    .await;
    // ...and then the user moves it 8 s later and changes its words, as an edit does: a new
    // time, a new text, and no job for it any more.
    let new_time = old_time + chrono::Duration::seconds(8);
    let new = new_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    app.exec(&format!(
        "UPDATE scheduled_posts SET scheduled_time = '{new}', due_at = '{new}', dispatched_at = NULL, \
         post_content = 'the new words' WHERE id = 'moved'"
    ))
    .await;
    let post = app.wait_for_post("alice", "moved", &["posted", "failed", "unknown"], Duration::from_secs(30)).await;
    assert_eq!(post["status"], "posted", "{post}");
    let requests = app.x.requests_to("/2/tweets");
    assert_eq!(requests.len(), 1, "sent once");
    assert!(requests[0].at >= new_time, "sent at {}, moved to {new_time}", requests[0].at);
    assert!(requests[0].body.contains("the new words"), "{}", requests[0].body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_from_ten_minutes_of_downtime_does_not_stall() {
    // The api runs, the workers do not: for ten minutes posts came due and nobody sent them.
    let mut app = TestApp::spawn_api_only(|_| {}).await;
    connect_users(&app, "backlog", 10).await;
    let ten_minutes_ago = Utc::now() - chrono::Duration::minutes(10);
    // 12,000 posts, one every 50 ms over the ten minutes: more than 8,000 at once would stall
    // apalis-redis if they were pushed together.
    app.insert_x_posts("backlog", 12_000, ten_minutes_ago, 50).await;
    app.spawn_worker().await;
    let (statuses, peak_keys) = wait_until_all_final(&app, Duration::from_secs(240)).await;
    assert_eq!(statuses.get("posted"), Some(&12_000), "{statuses:?}");
    assert!(app.x.texts_received().values().all(|n| *n == 1), "a post was sent twice");
    assert!(peak_keys < 4_000, "{peak_keys} Redis keys at the peak");
    app.stop().await;
}
