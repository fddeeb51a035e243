//! Crash safety of a media post (DESIGN §12) with real `worker` processes: the fake platform holds
//! the request of one step while the test SIGKILLs the worker making it, then another worker
//! starts. Before the point of no return (the tweet, the LinkedIn post, the Facebook feed post)
//! the post is resumed from its last saved step and published once; at it, X, LinkedIn and
//! Facebook cannot be asked, so the post becomes `unknown`: never two posts.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tests::{Fake, TestApp, wait_until};

const FINAL: &[&str] = &["posted", "failed", "unknown"];

/// How X answers the held step.
#[derive(Clone, Copy, PartialEq)]
enum Hold {
    /// X never sees the request.
    Request,
    /// X acts on it; the answer never comes back.
    Reply,
}

/// Where the post goes.
#[derive(Clone, Copy)]
enum Target {
    /// A 6 MB video to X.
    X,
    /// A 9 MB video (three parts) to LinkedIn.
    Linkedin,
    /// Three photos to a Facebook Page (unpublished photos, then one feed post).
    Facebook,
}

/// Schedules the target's media post, holds `method path_suffix` at its fake, kills the worker
/// holding it, starts another; returns the post once final.
async fn kill_at(target: Target, method: &str, path_suffix: &str, hold: Hold) -> (TestApp, Value) {
    let app = TestApp::spawn_api_only(|env| {
        env.insert("PUBLISH_STALE_AFTER_SECS".into(), "2".into());
        env.insert("PLATFORM_HTTP_TIMEOUT_SECS".into(), "30".into());
    })
    .await;
    let (platform, media) = match target {
        Target::X => {
            app.connect_x("alice").await;
            ("twitter", vec![app.media.media_url("clip.mp4", 6_000_000)])
        }
        Target::Linkedin => {
            app.connect("alice", "linkedin").await;
            ("linkedin", vec![app.media.media_url("clip.mp4", 9_000_000)])
        }
        Target::Facebook => {
            app.connect("alice", "facebook").await;
            let (status, body) =
                app.post("alice", "/api/v1/auth/social/pages/facebook", &json!({"page_id": "101"})).await;
            assert_eq!(status, 200, "{body}");
            ("facebook", (0..3).map(|i| app.media.media_url(&format!("p{i}.jpg"), 40_000)).collect())
        }
    };
    let held = |fake: &dyn Fn(&str, &str)| fake(method, path_suffix);
    match (target, hold) {
        (Target::X, Hold::Request) => held(&|m, p| app.x.hold(m, p)),
        (Target::X, Hold::Reply) => held(&|m, p| app.x.hold_reply(m, p)),
        (Target::Linkedin, Hold::Request) => held(&|m, p| app.linkedin.hold(m, p)),
        (Target::Linkedin, Hold::Reply) => held(&|m, p| app.linkedin.hold_reply(m, p)),
        (Target::Facebook, Hold::Request) => held(&|m, p| app.facebook.hold(m, p)),
        (Target::Facebook, Hold::Reply) => held(&|m, p| app.facebook.hold_reply(m, p)),
    }
    let content = format!("killed at {path_suffix}");
    let (status, answer) = app.schedule_media("alice", platform, &content, media, Value::Null).await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["posts"][0]["id"].as_str().expect("id").to_owned();

    let bin = env!("CARGO_BIN_EXE_worker");
    let name = format!("{platform}{}", path_suffix.replace('/', "-"));
    let mut first = tests::worker_process(&app, bin, &format!("media-kill-first-{name}"), &[]);
    let wait = Duration::from_secs(30);
    match target {
        Target::X => drop(app.x.wait_held(wait).await),
        Target::Linkedin => drop(app.linkedin.wait_held(wait).await),
        Target::Facebook => drop(app.facebook.wait_held(wait).await),
    }
    first.kill().expect("SIGKILL the worker");
    first.wait().expect("reap it");
    let (_, held) = app.get("alice", &format!("/api/v1/posts/{id}")).await;
    assert_eq!(held["status"], "publishing", "{held}");

    let mut second = tests::worker_process(&app, bin, &format!("media-kill-second-{name}"), &[]);
    let post = app.wait_for_post("alice", &id, FINAL, Duration::from_secs(90)).await;
    second.kill().expect("stop the second worker");
    second.wait().expect("reap it");
    (app, post)
}

/// Resumed from the step it died in: one tweet, carrying the video that finished processing.
async fn resumed_once(method: &str, path_suffix: &str) {
    let (app, post) = kill_at(Target::X, method, path_suffix, Hold::Request).await;
    assert_eq!(post["status"], "posted", "{post}");
    let tweets = app.x.media_tweets();
    assert_eq!(tweets.len(), 1, "one tweet: {tweets:?}");
    let ready: Vec<_> = app.x.uploads().into_iter().filter(|u| u.processing.as_deref() == Some("succeeded")).collect();
    assert_eq!(ready.len(), 1, "one upload finished");
    assert_eq!(tweets[0].2, vec![ready[0].id.clone()], "the tweet carries the finished upload");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_initialize() {
    resumed_once("POST", "/2/media/upload/initialize").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_append() {
    resumed_once("POST", "/append").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_finalize() {
    resumed_once("POST", "/finalize").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_asking_for_the_processing_status() {
    resumed_once("GET", "/2/media/upload").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_the_tweet_is_unknown_and_never_tweeted_twice() {
    for hold in [Hold::Request, Hold::Reply] {
        let (app, post) = kill_at(Target::X, "POST", "/2/tweets", hold).await;
        assert_eq!(post["status"], "unknown", "{post}");
        assert_eq!(post["error_kind"], "unknown");
        // The second worker resolved the post: anything it would have sent came before this.
        let expected = usize::from(hold == Hold::Reply);
        assert_eq!(app.x.media_tweets().len(), expected, "X acted on the held tweet only when told to");
        assert_eq!(app.x.requests_to("/2/tweets").len(), 1, "the tweet was never sent again");
        app.stop().await;
    }
}

/// LinkedIn, killed while initializing the video upload and while sending its second part:
/// resumed, one post carrying the video whose parts all arrived; killed at the post: unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_killed_at_each_step() {
    for (method, suffix) in [("POST", "/rest/videos"), ("PUT", "/1")] {
        let (app, post) = kill_at(Target::Linkedin, method, suffix, Hold::Request).await;
        assert_eq!(post["status"], "posted", "{suffix}: {post}");
        let posts = app.linkedin.created_posts();
        assert_eq!(posts.len(), 1, "{suffix}: one post");
        let available: Vec<_> =
            app.linkedin.videos().into_iter().filter(|v| v.status.as_str() == "AVAILABLE").map(|v| v.urn).collect();
        assert_eq!(posts[0].media, available, "{suffix}: the post carries the finished video");
        app.stop().await;
    }
    let (app, post) = kill_at(Target::Linkedin, "POST", "/rest/posts", Hold::Reply).await;
    assert_eq!(post["status"], "unknown", "{post}");
    assert_eq!(app.linkedin.requests_to("/rest/posts").len(), 1, "the post was never sent again");
    app.stop().await;
}

/// Facebook, killed while uploading the first unpublished photo: resumed, one feed post with
/// three photos; killed at the feed post: unknown, never posted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facebook_killed_at_each_step() {
    let (app, post) = kill_at(Target::Facebook, "POST", "/photos", Hold::Request).await;
    assert_eq!(post["status"], "posted", "{post}");
    let posts = app.facebook.page_posts();
    assert_eq!(posts.len(), 1, "one feed post: {posts:?}");
    assert_eq!(posts[0].photo_ids.len(), 3);
    app.stop().await;
    let (app, post) = kill_at(Target::Facebook, "POST", "/feed", Hold::Reply).await;
    assert_eq!(post["status"], "unknown", "{post}");
    assert_eq!(app.facebook.requests_ending_with("/feed").len(), 1, "the feed post was never sent again");
    assert_eq!(app.facebook.page_posts().len(), 1);
    app.stop().await;
}

/// Pacing across two worker processes: X takes 100 posts per user per 15 minutes, counted in
/// Redis for every worker. The 101st post of one account is held back (rescheduled, not failed)
/// and X never answers 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_keep_one_accounts_x_budget() {
    let app = TestApp::spawn_api_only(|env| {
        env.insert("X_POSTS_PER_15_MIN".into(), "100".into());
    })
    .await;
    app.connect_x("pace").await;
    let bin = env!("CARGO_BIN_EXE_worker");
    let mut workers =
        [tests::worker_process(&app, bin, "pace-a", &[]), tests::worker_process(&app, bin, "pace-b", &[])];
    app.insert_x_posts("pace", 103, Utc::now() + chrono::Duration::seconds(2), 0).await;
    let statuses = wait_until(Duration::from_secs(60), "100 posted and 3 held back", || async {
        let statuses = app.posts_by_status().await;
        let held =
            app.query("SELECT id FROM scheduled_posts WHERE status = 'pending' AND error_kind = 'rate_limited'").await;
        (statuses.get("posted") == Some(&100) && held.len() == 3).then_some(statuses)
    })
    .await;
    for worker in &mut workers {
        worker.kill().expect("stop the worker");
        worker.wait().expect("reap it");
    }
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert_eq!(app.x.requests_to("/2/tweets").len(), 100, "X was never asked for a 101st post");
    let held =
        app.query("SELECT posting_error, error_kind, due_at FROM scheduled_posts WHERE status = 'pending'").await;
    for row in &held {
        let error: String = row.try_get("", "posting_error").expect("error");
        assert!(error.contains("takes 100 posts per account every 15 minutes"), "{error}");
        let due: chrono::DateTime<Utc> = row.try_get("", "due_at").expect("due");
        assert!(due > Utc::now() + chrono::Duration::minutes(14), "held back until the window frees: {due}");
    }
    app.stop().await;
}
