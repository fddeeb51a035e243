//! Disconnecting a platform: revocation at the platform, tokens deleted even when revocation
//! fails, waiting posts failed as `not_connected`, and isolation between users.

use chrono::Utc;
use serde_json::json;
use tests::{Fake, Mode, TestApp};

async fn connection_rows(app: &TestApp) -> usize {
    app.query("SELECT id FROM social_media_connections").await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_revokes_deletes_and_fails_waiting_posts() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    app.connect_x("bob").await;
    // Due in seconds: the disconnect must stop a post whose job is already queued.
    let at = Utc::now() + chrono::Duration::seconds(4);
    let later = at.to_rfc3339();
    let (status, body) = app
        .post(
            "alice",
            "/api/v1/posts/schedule",
            &json!({"campaign_id": "c", "platforms": ["twitter"], "content": "later", "scheduled_time": later}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let post_id = body["posts"][0]["id"].as_str().expect("id").to_owned();
    let live_before: Vec<String> = app.x.issued_tokens().into_iter().filter(|t| app.x.token_is_live(t)).collect();
    assert_eq!(live_before.len(), 4, "two users, an access and a refresh token each");

    // Bob cannot disconnect Alice: he disconnects only himself.
    let (status, body) = app.delete("bob", "/api/v1/auth/social/disconnect/twitter").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revocation"], "revoked");
    assert_eq!(body["posts_failed"], 0);
    let (_, alice) = app.get("alice", "/api/v1/auth/social/connections").await;
    assert_eq!(alice["connections"].as_array().expect("list").len(), 1);

    let (status, body) = app.delete("alice", "/api/v1/auth/social/disconnect/x").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"platform": "twitter", "disconnected": true, "revocation": "revoked", "posts_failed": 1}));
    let revocations = app.x.requests_to("/2/oauth2/revoke");
    assert_eq!(revocations.len(), 4);
    assert!(revocations.iter().all(|r| r.headers["authorization"].starts_with("Basic ")));
    assert!(app.x.issued_tokens().iter().all(|t| !app.x.token_is_live(t)), "X no longer accepts any token");
    assert_eq!(connection_rows(&app).await, 0);

    let (_, post) = app.get("alice", &format!("/api/v1/posts/{post_id}")).await;
    assert_eq!(post["status"], "failed");
    assert_eq!(post["error_kind"], "not_connected");
    assert_eq!(post["posting_error"], "the twitter account was disconnected");
    let (_, status) = app.get("alice", "/api/v1/auth/social/status").await;
    assert_eq!(status["platforms"][1]["status"], "disconnected");

    let (status, body) = app.delete("alice", "/api/v1/auth/social/disconnect/twitter").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, body) = app.delete("alice", "/api/v1/auth/social/disconnect/myspace").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_platform")));
    let response = app.http.delete(app.url("/api/v1/auth/social/disconnect/twitter")).send().await.expect("DELETE");
    assert_eq!(response.status().as_u16(), 401);
    app.wait_past(at).await;
    assert!(app.x.tweets().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_revocation_still_deletes_the_tokens() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    app.x.fail_revocation();
    let (status, body) = app.delete("alice", "/api/v1/auth/social/disconnect/twitter").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revocation"], "failed");
    assert_eq!(body["revocation_error"], "Service Unavailable");
    assert_eq!(connection_rows(&app).await, 0);
    app.stop().await;
}
