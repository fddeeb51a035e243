//! The original frontend's scheduling request (DESIGN §13): a campaign's posts in one body, laid
//! out by `scheduling_options` where they have no time, accepted or refused as one, and its dry
//! run.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};
use tests::{Mode, TestApp};

/// The original design's example, verbatim but for the year.
const ORIGINAL_BODY: &str = r##"{"campaign_id": "demo",
 "posts": [{"content": "Test post content", "platforms": ["linkedin"], "scheduled_time": "2027-06-22T15:00:00Z",
            "hashtags": ["#marketing"]}],
 "scheduling_options": {"interval_hours": 1, "start_time": "09:00"}}"##;

async fn send_raw(
    app: &TestApp,
    user: &str,
    path: &str,
    body: &str,
    key: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut request = app
        .http
        .post(app.url(path))
        .bearer_auth(app.token(user))
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("POST");
    let replayed = response.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap_or("").to_owned());
    (response.status().as_u16(), replayed, response.json().await.unwrap_or(Value::Null))
}

async fn stored_rows(app: &TestApp) -> i64 {
    let row = app
        .query("SELECT COUNT(*) AS n FROM scheduled_posts WHERE campaign_id <> 'sentinel'")
        .await
        .into_iter()
        .next()
        .expect("row");
    row.try_get::<i64>("", "n").expect("n")
}

async fn original_body_is_accepted(mode: Mode) {
    let app = TestApp::spawn(mode).await;
    app.connect("alice", "linkedin").await;
    let (status, _, body) = send_raw(&app, "alice", "/api/v1/posts/schedule", ORIGINAL_BODY, None).await;
    assert_eq!(status, 201, "{body}");
    let posts = body["posts"].as_array().expect("posts");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["platform"], "linkedin");
    assert_eq!(posts[0]["campaign_id"], "demo");
    assert_eq!(posts[0]["content"], "Test post content");
    assert_eq!(posts[0]["hashtags"], json!(["marketing"]));
    let at = DateTime::parse_from_rfc3339(posts[0]["scheduled_time"].as_str().expect("time")).expect("rfc3339");
    assert_eq!(at, DateTime::parse_from_rfc3339("2027-06-22T15:00:00Z").expect("t"));
    assert_eq!(posts[0]["status"], "pending");
    assert_eq!(posts[0]["group_id"], body["group_id"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_request_is_accepted_on_postgres_and_redis() {
    original_body_is_accepted(Mode::Production).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_request_is_accepted_on_the_embedded_default() {
    original_body_is_accepted(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_without_a_time_are_laid_out_daily_at_nine_in_berlin() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    app.connect("alice", "linkedin").await;
    let body = json!({
        "campaign_id": "spring",
        "posts": [
            {"content": "first", "platforms": ["twitter", "linkedin"]},
            {"content": "pinned", "platforms": ["twitter"], "scheduled_time": "2027-01-05T12:00:00Z"},
            {"content": "second", "platforms": ["linkedin"]},
            {"content": "third", "platforms": ["twitter"]},
        ],
        "scheduling_options": {"interval_hours": 24, "start_time": "09:00", "timezone": "Europe/Berlin"}
    });
    let (status, body) = app.post("alice", "/api/v1/posts/schedule", &body).await;
    assert_eq!(status, 201, "{body}");
    let posts = body["posts"].as_array().expect("posts");
    assert_eq!(posts.len(), 5, "one row per post and platform");
    assert!(posts.iter().all(|p| p["group_id"] == body["group_id"]));
    let time = |content: &str| -> Vec<DateTime<Utc>> {
        posts
            .iter()
            .filter(|p| p["content"] == content)
            .map(|p| {
                DateTime::parse_from_rfc3339(p["scheduled_time"].as_str().expect("time")).expect("rfc3339").to_utc()
            })
            .collect()
    };
    let first = time("first");
    assert_eq!(first.len(), 2);
    assert_eq!(first[0], first[1], "both platforms of a post share its time");
    assert_eq!(time("pinned"), [DateTime::parse_from_rfc3339("2027-01-05T12:00:00Z").expect("t").to_utc()]);
    let laid_out = [first[0], time("second")[0], time("third")[0]];
    let berlin: Vec<_> = laid_out.iter().map(|t| t.with_timezone(&Tz::Europe__Berlin)).collect();
    for local in &berlin {
        assert_eq!((local.hour(), local.minute()), (9, 0), "{local}");
    }
    // The next 09:00 in Berlin, then one calendar day apart, whatever the offsets.
    assert!(laid_out[0] > Utc::now() && laid_out[0] <= Utc::now() + Duration::hours(25));
    for pair in berlin.windows(2) {
        assert_eq!(pair[1].date_naive(), pair[0].date_naive().succ_opt().expect("next day"));
    }
    assert!(berlin[0].year() >= 2026);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_names_the_post_the_platform_and_the_field_and_stores_nothing() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    app.connect("alice", "linkedin").await;
    let at = (Utc::now() + Duration::hours(2)).to_rfc3339();
    let long = "a".repeat(291);
    let cases = [
        (
            json!({"campaign_id": "c", "posts": [
                {"content": "fine", "platforms": ["twitter", "linkedin"], "scheduled_time": at},
                {"content": long, "platforms": ["linkedin", "twitter"], "scheduled_time": at}]}),
            422,
            "posts[1].content (twitter): is 291 characters as twitter counts them, over its limit of 280",
        ),
        (
            json!({"campaign_id": "c", "posts": [{"content": "no time", "platforms": ["twitter"]}]}),
            422,
            "posts[0].scheduled_time: is required when the request has no scheduling_options",
        ),
        (
            json!({"campaign_id": "c", "posts": [{"content": "x", "platforms": ["myspace"], "scheduled_time": at}]}),
            422,
            "posts[0].platforms: `myspace` is not a platform",
        ),
        (
            json!({"campaign_id": "c", "posts": [{"content": "x", "platforms": ["twitter"], "scheduled_time": at}],
                   "scheduling_options": {"interval_hours": 1, "start_time": "09:00", "timezone": "Mars/Olympus"}}),
            422,
            "scheduling_options.timezone",
        ),
        (json!({"campaign_id": "c", "posts": []}), 422, "posts: send 1 to 1000 posts"),
        // Unknown fields are refused, in the posts and at the top.
        (
            json!({"campaign_id": "c", "posts": [{"content": "x", "platforms": ["twitter"], "scheduled_time": at, "colour": "red"}]}),
            400,
            "colour",
        ),
        (
            json!({"campaign_id": "c", "posts": [{"content": "x", "platforms": ["twitter"], "scheduled_time": at}], "priority": 1}),
            400,
            "priority",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, answer) = app.post("alice", "/api/v1/posts/schedule", &body).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(got, status, "{body}: {answer}");
        assert!(message.contains(needle), "{message:?} does not say {needle:?}");
    }
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"content": format!("post {i}"), "platforms": ["twitter"], "scheduled_time": at}))
        .collect();
    let (got, answer) =
        app.post("alice", "/api/v1/posts/schedule", &json!({"campaign_id": "c", "posts": too_many})).await;
    assert_eq!(got, 422, "{answer}");
    assert_eq!(stored_rows(&app).await, 0, "a refused request stores nothing");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_work_with_the_campaign_shape() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect("alice", "linkedin").await;
    let (code, replayed, first) = send_raw(&app, "alice", "/api/v1/posts/schedule", ORIGINAL_BODY, Some("k-1")).await;
    assert_eq!((code, replayed), (201, None), "{first}");
    let (code, replayed, again) = send_raw(&app, "alice", "/api/v1/posts/schedule", ORIGINAL_BODY, Some("k-1")).await;
    assert_eq!((code, replayed.as_deref()), (201, Some("true")));
    assert_eq!(again, first);
    let other = ORIGINAL_BODY.replace("Test post content", "Other content");
    let (code, _, answer) = send_raw(&app, "alice", "/api/v1/posts/schedule", &other, Some("k-1")).await;
    assert_eq!(code, 409, "{answer}");
    assert_eq!(stored_rows(&app).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_counts_each_post_per_platform_and_stores_nothing() {
    let app = TestApp::spawn(Mode::Production).await;
    // No connection needed: a composer checks text before the account is connected.
    let at = (Utc::now() + Duration::hours(2)).to_rfc3339();
    let url = format!("https://example.com/{}", "p".repeat(100));
    let body = json!({"campaign_id": "c", "posts": [
        {"content": format!("see {url}"), "platforms": ["twitter", "linkedin"], "scheduled_time": at, "hashtags": ["#launch"]},
        {"content": "b".repeat(300), "platforms": ["twitter"]}],
        "scheduling_options": {"interval_hours": 2, "start_time": "10:00", "timezone": "America/New_York"}});
    let (status, answer) = app.post("alice", "/api/v1/posts/validate", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["valid"], false);
    let checks = answer["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 3, "{answer}");
    // X weighs the URL as 23: "see " + 23 + "\n\n#launch".
    assert_eq!(
        checks[0],
        json!({"index": 0, "platform": "twitter", "length": 4 + 23 + 9, "limit": 280,
        "scheduled_time": checks[0]["scheduled_time"]}),
        "an absent field is left out, never null"
    );
    assert_eq!((checks[1]["platform"].as_str(), checks[1]["length"].as_u64()), (Some("linkedin"), Some(4 + 120 + 9)));
    assert_eq!((checks[2]["length"].as_u64(), checks[2]["limit"].as_u64()), (Some(300), Some(280)));
    assert!(checks[2]["error"].as_str().expect("error").starts_with("posts[1].content (twitter): "), "{answer}");
    let laid: DateTime<Utc> =
        DateTime::parse_from_rfc3339(checks[2]["scheduled_time"].as_str().expect("laid out")).expect("t").to_utc();
    assert_eq!(laid.with_timezone(&Tz::America__New_York).hour(), 10);
    let (status, answer) =
        app.post("bob", "/api/v1/posts/validate", &json!({"campaign_id": "bad id", "posts": []})).await;
    assert_eq!(status, 422, "{answer}");
    let response = app.http.post(app.url("/api/v1/posts/validate")).json(&body).send().await.expect("POST");
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(stored_rows(&app).await, 0);
    app.stop().await;
}
