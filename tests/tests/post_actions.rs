//! Acting on a scheduled post: cancel it, publish it now, and count posts by status; each scoped
//! to its user and allowed only while the post is waiting.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tests::{Mode, TestApp};

async fn schedule(app: &TestApp, campaign: &str, content: &str) -> String {
    schedule_at(app, campaign, content, Utc::now() + chrono::Duration::hours(1)).await
}

async fn schedule_at(app: &TestApp, campaign: &str, content: &str, at: DateTime<Utc>) -> String {
    let at = at.to_rfc3339();
    let (status, body) = app
        .post(
            "alice",
            "/api/v1/posts/schedule",
            &json!({"campaign_id": campaign, "platforms": ["twitter"], "content": content, "scheduled_time": at}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["posts"][0]["id"].as_str().expect("id").to_owned()
}

async fn summary(app: &TestApp, query: &str) -> Value {
    let (status, body) = app.get("alice", &format!("/api/v1/posts/status/summary{query}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_publish_now_and_summary() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    let keep = schedule(&app, "spring", "stays pending").await;
    // Due in seconds, so it is dispatched at once and the cancel has a queued job to beat.
    let cancel_at = Utc::now() + chrono::Duration::seconds(4);
    let cancel = schedule_at(&app, "spring", "cancelled before its time", cancel_at).await;
    let now = schedule(&app, "summer", "published on demand").await;

    // Bob sees none of it.
    let (code, _) = app.delete("bob", &format!("/api/v1/posts/cancel/{cancel}")).await;
    assert_eq!(code, 404);
    let (code, _) = app.post("bob", &format!("/api/v1/posts/publish/{now}"), &json!({})).await;
    assert_eq!(code, 404);
    let (_, bobs) = app.get("bob", "/api/v1/posts/status/summary").await;
    assert_eq!(bobs["total"], 0);

    let (code, body) = app.delete("alice", &format!("/api/v1/posts/cancel/{cancel}")).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("cancelled")), "{body}");
    let (code, body) = app.delete("alice", &format!("/api/v1/posts/cancel/{cancel}")).await;
    assert_eq!((code, body["error"]["code"].as_str()), (409, Some("not_waiting")), "{body}");
    let (code, _) = app.post("alice", &format!("/api/v1/posts/publish/{cancel}"), &json!({})).await;
    assert_eq!(code, 409, "a cancelled post cannot be published");

    let (code, body) = app.post("alice", &format!("/api/v1/posts/publish/{now}"), &json!({})).await;
    assert_eq!(code, 200, "{body}");
    let post = app.wait_for_post("alice", &now, &["posted", "failed", "unknown"], Duration::from_secs(20)).await;
    assert_eq!(post["status"], "posted", "{post}");
    let (code, body) = app.delete("alice", &format!("/api/v1/posts/cancel/{now}")).await;
    assert_eq!((code, body["error"]["code"].as_str()), (409, Some("not_waiting")));

    let all = summary(&app, "").await;
    assert_eq!(
        (all["total"].as_i64(), all["pending"].as_i64(), all["cancelled"].as_i64(), all["posted"].as_i64()),
        (Some(3), Some(1), Some(1), Some(1))
    );
    let spring = summary(&app, "?campaign_id=spring").await;
    assert_eq!(
        (spring["total"].as_i64(), spring["pending"].as_i64(), spring["posted"].as_i64()),
        (Some(2), Some(1), Some(0))
    );
    let (code, body) = app.get("alice", "/api/v1/posts/status/summary?campaign_id=not%20valid").await;
    assert_eq!((code, body["error"]["code"].as_str()), (422, Some("validation_failed")));

    // The cancelled post was never sent, even once its time had passed; nor the one still pending.
    app.wait_past(cancel_at).await;
    assert_eq!(app.x.tweets().len(), 1);
    let (_, kept) = app.get("alice", &format!("/api/v1/posts/{keep}")).await;
    assert_eq!(kept["status"], "pending");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_the_first_response() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    let at = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let body = json!({"campaign_id": "idem", "platforms": ["twitter"], "content": "once only", "scheduled_time": at});
    let send = |user: &'static str, key: &'static str, body: Value| {
        let request = app
            .http
            .post(app.url("/api/v1/posts/schedule"))
            .bearer_auth(app.token(user))
            .header("Idempotency-Key", key)
            .json(&body);
        async move {
            let response = request.send().await.expect("POST");
            let replayed = response.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap_or("").to_owned());
            (response.status().as_u16(), replayed, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (code, replayed, first) = send("alice", "key-1", body.clone()).await;
    assert_eq!((code, replayed), (201, None), "{first}");
    let (code, replayed, again) = send("alice", "key-1", body.clone()).await;
    assert_eq!((code, replayed.as_deref()), (201, Some("true")));
    assert_eq!(again, first, "the first response, unchanged");

    let mut other = body.clone();
    other["content"] = json!("something else");
    let (code, _, error) = send("alice", "key-1", other).await;
    assert_eq!((code, error["error"]["code"].as_str()), (409, Some("idempotency_key_reused")));
    // Keys belong to their user.
    let (code, replayed, _) = send("bob", "key-1", body.clone()).await;
    assert_eq!((code, replayed), (409, None), "bob has no X connection: his request runs, and fails on its own");
    // A failed request releases its key, so it can be retried.
    let (code, _, _) = send("bob", "key-1", body.clone()).await;
    assert_eq!(code, 409);

    let (_, campaign) = app.get("alice", "/api/v1/posts/scheduled/idem").await;
    assert_eq!(campaign["posts"].as_array().map(Vec::len), Some(1), "one post for three requests: {campaign}");
    app.stop().await;
}
