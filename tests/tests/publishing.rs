//! The worker's publishing rules against the fake X: token refresh with rotation (one refresh at a
//! time per connection), classified failures, retries, and never publishing early.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tests::{Fake, Mode, TestApp};

async fn schedule(app: &TestApp, user: &str, content: &str, at: chrono::DateTime<Utc>) -> String {
    let (status, body) = app
        .post(
            user,
            "/api/v1/posts/schedule",
            &json!({"campaign_id": "c1", "platforms": ["twitter"], "content": content, "scheduled_time": at.to_rfc3339()}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["posts"][0]["id"].as_str().expect("id").to_owned()
}

/// Makes the stored access token expire at `now + offset`, with X already refusing it.
async fn expire_token(app: &TestApp, offset: chrono::Duration) {
    app.x.expire_access_tokens();
    let at = (Utc::now() + offset).to_rfc3339();
    app.exec(&format!("UPDATE social_media_connections SET token_expires_at = '{at}'")).await;
}

/// Alice's line of `/status` for X.
async fn twitter_status(app: &TestApp) -> Value {
    let (_, status) = app.get("alice", "/api/v1/auth/social/status").await;
    status["platforms"]
        .as_array()
        .expect("platforms")
        .iter()
        .find(|p| p["platform"] == "twitter")
        .cloned()
        .expect("twitter")
}

async fn stored_refresh_token(app: &TestApp) -> String {
    let row = app.query("SELECT refresh_token FROM social_media_connections").await.into_iter().next().expect("row");
    row.try_get::<String>("", "refresh_token").expect("refresh token")
}

const TERMINAL: &[&str] = &["posted", "failed", "unknown"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_token_is_refreshed_once_with_rotation() {
    let mut app = TestApp::spawn(Mode::Production).await;
    // Three worker processes share the queue and race for the same connection's token.
    app.spawn_worker().await;
    app.spawn_worker().await;
    app.connect_x("alice").await;
    let before = stored_refresh_token(&app).await;
    // X's tokens are now dead and Herald's row says they expire in a minute (inside the margin).
    expire_token(&app, chrono::Duration::minutes(1)).await;

    // Five posts due in the same second race for the token across the workers (and their refresh
    // sweeps): one refresh serves them all.
    let at = Utc::now() + chrono::Duration::seconds(1);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(schedule(&app, "alice", &format!("post number {i}"), at).await);
    }
    for id in &ids {
        let post = app.wait_for_post("alice", id, TERMINAL, Duration::from_secs(30)).await;
        assert_eq!(post["status"], "posted", "{post}");
    }
    let refreshes: Vec<_> = app
        .x
        .requests_to("/2/oauth2/token")
        .into_iter()
        .filter(|r| r.form()["grant_type"] == "refresh_token")
        .collect();
    assert_eq!(refreshes.len(), 1, "one refresh for five posts");
    assert_eq!(app.x.requests_to("/2/tweets").len(), 5, "each post sent once, whichever worker took it");
    assert!(refreshes[0].headers["authorization"].starts_with("Basic "));
    assert_eq!(app.x.spent_refresh_tokens().len(), 1);
    let after = stored_refresh_token(&app).await;
    assert_ne!(before, after, "the rotated refresh token was stored");
    let twitter = twitter_status(&app).await;
    assert_eq!(twitter["status"], "active");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_refresh_marks_the_connection_expired_and_fails_the_post() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    // Keep the refresh token Herald holds now: once Herald has rotated it, X refuses it (400), as
    // it refuses any reused refresh token.
    let old = stored_refresh_token(&app).await;
    expire_token(&app, chrono::Duration::minutes(-1)).await;
    let first = schedule(&app, "alice", "first", Utc::now()).await;
    assert_eq!(app.wait_for_post("alice", &first, TERMINAL, Duration::from_secs(30)).await["status"], "posted");
    app.exec(&format!("UPDATE social_media_connections SET refresh_token = '{old}'")).await;
    expire_token(&app, chrono::Duration::minutes(-1)).await;
    let second = schedule(&app, "alice", "second", Utc::now()).await;
    let post = app.wait_for_post("alice", &second, TERMINAL, Duration::from_secs(30)).await;
    assert_eq!(post["status"], "failed", "{post}");
    assert_eq!(post["error_kind"], "not_connected");
    assert!(
        post["posting_error"].as_str().expect("error").contains("Value passed for the token was invalid"),
        "{post}"
    );
    let twitter = twitter_status(&app).await;
    assert_eq!(twitter["status"], "expired", "{twitter}");
    assert!(twitter["last_error"].as_str().expect("last_error").contains("reconnect"));
    assert_eq!(app.x.tweets().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_failures_are_classified() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;

    // 403 duplicate content: failed at once with X's words.
    let first = schedule(&app, "alice", "same words", Utc::now()).await;
    assert_eq!(app.wait_for_post("alice", &first, TERMINAL, Duration::from_secs(20)).await["status"], "posted");
    let dup = schedule(&app, "alice", "same words", Utc::now()).await;
    let post = app.wait_for_post("alice", &dup, TERMINAL, Duration::from_secs(20)).await;
    assert_eq!(post["status"], "failed");
    assert_eq!(post["error_kind"], "rejected");
    assert_eq!(post["posting_error"], "You are not allowed to create a Tweet with duplicate content.");

    // 503: retried with backoff, then posted; exactly one tweet.
    app.x.script_tweet(
        503,
        json!({"title": "Service Unavailable", "detail": "Service Unavailable", "status": 503}),
        vec![],
        Duration::ZERO,
    );
    let flaky = schedule(&app, "alice", "after an outage", Utc::now()).await;
    let post = app.wait_for_post("alice", &flaky, &["retrying"], Duration::from_secs(20)).await;
    assert_eq!(post["error_kind"], "transient");
    assert_eq!(post["retry_count"], 1);
    let post = app.wait_for_post("alice", &flaky, TERMINAL, Duration::from_secs(20)).await;
    assert_eq!(post["status"], "posted", "{post}");
    assert_eq!(app.x.tweets().iter().filter(|(_, t)| t == "after an outage").count(), 1);

    // 429 with X's reset header: retried at the reset time.
    let reset = Utc::now().timestamp() + 2;
    app.x.script_tweet(
        429,
        json!({"errors": [{"code": 88, "message": "Rate limit exceeded"}]}),
        vec![("x-rate-limit-reset".into(), reset.to_string())],
        Duration::ZERO,
    );
    let limited = schedule(&app, "alice", "rate limited once", Utc::now()).await;
    let post = app.wait_for_post("alice", &limited, &["retrying"], Duration::from_secs(20)).await;
    assert_eq!(post["error_kind"], "rate_limited");
    assert_eq!(post["posting_error"], "Rate limit exceeded");
    let next: chrono::DateTime<Utc> = post["next_attempt_at"].as_str().expect("next").parse().expect("time");
    assert_eq!(next.timestamp(), reset);
    assert_eq!(app.wait_for_post("alice", &limited, TERMINAL, Duration::from_secs(20)).await["status"], "posted");

    // A timeout after the request was sent: X may have it, so it is `unknown` and never re-sent.
    app.x.script_tweet(201, json!({"data": {"id": "1", "text": "slow"}}), vec![], Duration::from_secs(5));
    let slow = schedule(&app, "alice", "slow", Utc::now()).await;
    let post = app.wait_for_post("alice", &slow, TERMINAL, Duration::from_secs(20)).await;
    assert_eq!(post["status"], "unknown", "{post}");
    assert_eq!(post["error_kind"], "unknown");

    // 401 on a token Herald thought valid: refreshed once and sent again.
    app.x.expire_access_tokens();
    let stale = schedule(&app, "alice", "with a stale token", Utc::now()).await;
    let post = app.wait_for_post("alice", &stale, TERMINAL, Duration::from_secs(20)).await;
    assert_eq!(post["status"], "posted", "{post}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_published_before_its_time() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    // Times with a fraction of a second: the queue keeps whole seconds.
    let mut expected = Vec::new();
    for i in 0..4 {
        let at = Utc::now() + chrono::Duration::milliseconds(1_300 + 250 * i);
        expected.push((schedule(&app, "alice", &format!("timed {i}"), at).await, at));
    }
    for (i, (id, at)) in expected.into_iter().enumerate() {
        let post: Value = app.wait_for_post("alice", &id, TERMINAL, Duration::from_secs(20)).await;
        assert_eq!(post["status"], "posted");
        let published: chrono::DateTime<Utc> = post["published_at"].as_str().expect("published").parse().expect("time");
        assert!(published >= at, "published at {published}, scheduled for {at}");
        // X itself received the request after the post's time.
        let text = format!("timed {i}");
        let request =
            app.x.requests_to("/2/tweets").into_iter().find(|r| r.body.contains(&text)).expect("tweet request");
        assert!(request.at >= at, "X received it at {}, scheduled for {at}", request.at);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_orphaned_while_publishing_becomes_unknown_and_is_not_resent() {
    let app = TestApp::spawn_with(Mode::Production, |env| {
        env.insert("PUBLISH_STALE_AFTER_SECS".into(), "2".into());
    })
    .await;
    app.connect_x("alice").await;
    // Two posts claimed by a worker that then died: one after it began sending (its row says
    // `sending`), one before. Both claims are fresh, so the dispatcher looks again once they are
    // stale.
    let sent =
        schedule(&app, "alice", "claimed and sent by a dead worker", Utc::now() + chrono::Duration::hours(1)).await;
    let unsent = schedule(&app, "alice", "claimed by a dead worker", Utc::now() + chrono::Duration::hours(1)).await;
    let now = Utc::now();
    let stale_at = (now + chrono::Duration::seconds(2)).to_rfc3339();
    for (id, phase) in [(&sent, "'sending'"), (&unsent, "NULL")] {
        app.exec(&format!(
            "UPDATE scheduled_posts SET status = 'publishing', claim_token = 'dead-{id}', claimed_at = '{}', \
                 due_at = '{stale_at}', publish_phase = {phase} WHERE id = '{id}'",
            now.to_rfc3339()
        ))
        .await;
    }
    let post = app.wait_for_post("alice", &sent, &["unknown", "posted", "failed"], Duration::from_secs(20)).await;
    assert_eq!(post["status"], "unknown", "{post}");
    assert!(post["posting_error"].as_str().expect("error").contains("check the platform"));
    // The one that never reached X is sent, once.
    let post = app.wait_for_post("alice", &unsent, &["unknown", "posted", "failed"], Duration::from_secs(20)).await;
    assert_eq!(post["status"], "posted", "{post}");
    assert_eq!(app.x.tweets().iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(), ["claimed by a dead worker"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_whose_claim_was_taken_meanwhile_is_not_written_and_is_counted() {
    // Embedded: the in-process worker shares the api's metrics.
    let app = TestApp::spawn(Mode::Embedded).await;
    app.connect_x("alice").await;
    app.x.set_tweet_delay(Duration::from_millis(1500));
    let post_id = schedule(&app, "alice", "claimed away", Utc::now() + chrono::Duration::seconds(1)).await;
    // The suite runs many apps at once on two cores: the in-process worker may pick up late.
    tests::wait_until(Duration::from_secs(60), "X to receive the tweet", || async {
        (app.x.requests_to("/2/tweets").len() == 1).then_some(())
    })
    .await;
    // While the attempt waits for X, another attempt takes the post over (as a stale-claim
    // resolution would): the first attempt's outcome must not overwrite it.
    app.exec(&format!("UPDATE scheduled_posts SET claim_token = 'someone-else' WHERE id = '{post_id}'")).await;
    tests::wait_until(Duration::from_secs(20), "the lost write to be logged", || async {
        tests::log_lines_with(&post_id).iter().any(|line| line.contains("publish outcome not recorded")).then_some(())
    })
    .await;
    let rows = app.query(&format!("SELECT status, claim_token FROM scheduled_posts WHERE id = '{post_id}'")).await;
    let status: String = rows[0].try_get("", "status").expect("status");
    let token: String = rows[0].try_get("", "claim_token").expect("token");
    assert_eq!((status.as_str(), token.as_str()), ("publishing", "someone-else"));
    let metrics = app.http.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("herald_lost_claims_total 1"), "{metrics}");
    app.stop().await;
}
