//! Editing a waiting post and retrying a failed or unknown one (issue 8): each scoped to its
//! user, allowed only from the right status, and what is answered is what goes out.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tests::{Mode, TestApp};

async fn schedule(app: &TestApp, content: &str, at: DateTime<Utc>) -> String {
    let body = json!({"campaign_id": "c", "posts": [{"content": content, "platforms": ["twitter"],
        "scheduled_time": at.to_rfc3339()}]});
    let (status, body) = app.post("alice", "/api/v1/posts/schedule", &body).await;
    assert_eq!(status, 201, "{body}");
    body["posts"][0]["id"].as_str().expect("id").to_owned()
}

async fn patch(app: &TestApp, user: &str, post_id: &str, body: &Value) -> (u16, Value) {
    let response = app
        .http
        .patch(app.url(&format!("/api/v1/posts/{post_id}")))
        .bearer_auth(app.token(user))
        .json(body)
        .send()
        .await
        .expect("PATCH");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn time(post: &Value, field: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(post[field].as_str().expect("time")).expect("rfc3339").to_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_post_goes_out_with_its_new_words_at_its_new_time() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    // Due within the lookahead, so its job is already queued for the old time.
    let old_time = Utc::now() + chrono::Duration::seconds(2);
    let post_id = schedule(&app, "old words", old_time).await;
    let new_time = Utc::now() + chrono::Duration::seconds(5);
    let (status, edited) =
        patch(&app, "alice", &post_id, &json!({"content": "new words", "scheduled_time": new_time.to_rfc3339()})).await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!((edited["content"].as_str(), edited["status"].as_str()), (Some("new words"), Some("pending")));
    let posted = app.wait_for_post("alice", &post_id, &["posted", "failed", "unknown"], Duration::from_secs(30)).await;
    assert_eq!(posted["status"], "posted", "{posted}");
    assert!(time(&posted, "published_at") >= new_time, "sent at the old time: {posted}");
    let texts = app.x.texts_received();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts.get("new words"), Some(&1));

    // Once done, no more edits; the status is named.
    let (status, body) = patch(&app, "alice", &post_id, &json!({"content": "too late"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_waiting")), "{body}");
    assert!(body["error"]["message"].as_str().expect("message").contains("posted"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_are_validated_scoped_and_refused_past_waiting() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    let later = Utc::now() + chrono::Duration::hours(1);
    let post_id = schedule(&app, "kept", later).await;
    for (body, status, code) in [
        (json!({"content": "a".repeat(281)}), 422, "validation_failed"),
        (json!({"hashtags": ["not a tag"]}), 422, "validation_failed"),
        (json!({"scheduled_time": "2020-01-01T00:00:00Z"}), 422, "validation_failed"),
        (json!({"scheduled_time": "tomorrow"}), 422, "validation_failed"),
        (json!({"media_urls": ["ftp://example.com/a.png"]}), 422, "validation_failed"),
        (json!({"media_urls": ["https://example.com/a.mp4", "https://example.com/b.png"]}), 422, "validation_failed"),
        (json!({}), 422, "validation_failed"),
        (json!({"content": "x", "colour": "red"}), 400, "bad_request"),
    ] {
        let (got, answer) = patch(&app, "alice", &post_id, &body).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{body}: {answer}");
    }
    let (status, _) = patch(&app, "bob", &post_id, &json!({"content": "mine now"})).await;
    assert_eq!(status, 404);
    let (_, post) = app.get("alice", &format!("/api/v1/posts/{post_id}")).await;
    assert_eq!(post["content"], "kept", "a refused edit changes nothing");
    assert_eq!(time(&post, "scheduled_time").timestamp(), later.timestamp());
    // New media, checked for the post's platform, replace the old.
    let (status, answer) = patch(&app, "alice", &post_id, &json!({"media_urls": ["https://example.com/a.png"]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["media_urls"], json!(["https://example.com/a.png"]));

    // Hashtags alone; the time alone.
    let (status, post) = patch(&app, "alice", &post_id, &json!({"hashtags": ["#spring"]})).await;
    assert_eq!((status, post["hashtags"].clone()), (200, json!(["spring"])), "{post}");
    let moved = Utc::now() + chrono::Duration::hours(2);
    let (status, post) = patch(&app, "alice", &post_id, &json!({"scheduled_time": moved.to_rfc3339()})).await;
    assert_eq!(status, 200, "{post}");
    assert_eq!(
        (post["content"].as_str(), time(&post, "scheduled_time").timestamp()),
        (Some("kept"), moved.timestamp())
    );

    // A post being sent is past editing.
    app.exec(&format!("UPDATE scheduled_posts SET status = 'publishing' WHERE id = '{post_id}'")).await;
    let (status, body) = patch(&app, "alice", &post_id, &json!({"content": "late"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().expect("message").contains("publishing"), "{body}");
    app.stop().await;
}

async fn retry(app: &TestApp, user: &str, post_id: &str, body: &Value) -> (u16, Value) {
    app.post(user, &format!("/api/v1/posts/retry/{post_id}"), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_posts_retry_and_unknown_ones_only_when_confirmed() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    let later = Utc::now() + chrono::Duration::hours(1);
    let failed = schedule(&app, "failed once", later).await;
    let unknown = schedule(&app, "maybe live", later).await;
    let waiting = schedule(&app, "still waiting", later).await;
    app.exec(&format!(
        "UPDATE scheduled_posts SET status = 'failed', error_kind = 'transient', posting_error = 'X was down', \
         retry_count = 3, due_at = NULL WHERE id = '{failed}'"
    ))
    .await;
    app.exec(&format!(
        "UPDATE scheduled_posts SET status = 'unknown', error_kind = 'unknown', posting_error = 'timed out', \
         publish_phase = 'sending', due_at = NULL WHERE id = '{unknown}'"
    ))
    .await;

    let (status, body) = retry(&app, "bob", &failed, &json!({})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = retry(&app, "alice", &waiting, &json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_retryable")), "{body}");
    let (status, body) = retry(&app, "alice", &unknown, &json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("confirmation_required")), "{body}");
    let (status, body) = retry(&app, "alice", &unknown, &json!({"confirm_not_published": false})).await;
    assert_eq!(status, 409, "{body}");

    let (status, post) = retry(&app, "alice", &failed, &json!({})).await;
    assert_eq!(status, 200, "{post}");
    assert_eq!((post["status"].as_str(), post["retry_count"].as_i64()), (Some("pending"), Some(0)));
    assert_eq!(post["posting_error"], Value::Null);
    let at = Utc::now() + chrono::Duration::seconds(2);
    let (status, post) =
        retry(&app, "alice", &unknown, &json!({"confirm_not_published": true, "scheduled_time": at.to_rfc3339()}))
            .await;
    assert_eq!(status, 200, "{post}");

    for id in [&failed, &unknown] {
        let post = app.wait_for_post("alice", id, &["posted", "failed", "unknown"], Duration::from_secs(30)).await;
        assert_eq!(post["status"], "posted", "{post}");
    }
    let texts = app.x.texts_received();
    assert_eq!((texts.get("failed once"), texts.get("maybe live")), (Some(&1), Some(&1)), "{texts:?}");
    let (_, post) = app.get("alice", &format!("/api/v1/posts/{unknown}")).await;
    assert!(time(&post, "published_at") >= at);
    // Posted is not retryable.
    let (status, body) = retry(&app, "alice", &failed, &json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_retryable")), "{body}");
    app.stop().await;
}
