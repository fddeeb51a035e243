//! Every platform connects end to end against its fake, with its identity stored and its tokens
//! encrypted; every failure of the consent and token exchange ends in a clear page and nothing
//! stored; refresh, rotation and revocation follow each platform's rules; and every route is
//! scoped to its user.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tests::{Fake, Mode, TestApp, captured_logs, fake_facebook, fake_instagram, fake_linkedin, fake_tiktok};

const PLATFORMS: [&str; 4] = ["linkedin", "tiktok", "facebook", "instagram"];

/// Stored secret columns of every connection row.
async fn stored_secrets(app: &TestApp) -> Vec<String> {
    let rows = app.query("SELECT access_token, COALESCE(refresh_token, '') AS r, COALESCE(page_access_token, '') AS p FROM social_media_connections").await;
    rows.iter()
        .flat_map(|row| ["access_token", "r", "p"].map(|c| row.try_get::<String>("", c).expect("column")))
        .collect()
}

/// The access- and refresh-token ciphertexts of a platform's connection.
async fn ciphertext(app: &TestApp, platform: &str) -> (String, String) {
    let row = app.query(&format!("SELECT access_token, COALESCE(refresh_token, '') AS r FROM social_media_connections WHERE platform = '{platform}'")).await.into_iter().next().expect("row");
    (row.try_get::<String>("", "access_token").expect("a"), row.try_get::<String>("", "r").expect("r"))
}

async fn status_of(app: &TestApp, user: &str, platform: &str) -> Value {
    let (_, status) = app.get(user, "/api/v1/auth/social/status").await;
    status["platforms"]
        .as_array()
        .expect("platforms")
        .iter()
        .find(|p| p["platform"] == platform)
        .cloned()
        .expect("line")
}

async fn connection_of(app: &TestApp, user: &str, platform: &str) -> Option<Value> {
    let (_, body) = app.get(user, "/api/v1/auth/social/connections").await;
    body["connections"].as_array().expect("list").iter().find(|c| c["platform"] == platform).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_platform_connects_with_its_identity_and_encrypted_tokens() {
    let app = TestApp::spawn(Mode::Production).await;
    let expected = [
        ("linkedin", fake_linkedin::USER_ID, fake_linkedin::DISPLAY_NAME),
        ("tiktok", fake_tiktok::USER_ID, fake_tiktok::DISPLAY_NAME),
        ("facebook", fake_facebook::USER_ID, fake_facebook::USER_NAME),
        ("instagram", fake_instagram::USER_ID, fake_instagram::USERNAME),
    ];
    let mut pages = Vec::new();
    for (platform, user_id, username) in expected {
        let html = app.connect("alice", platform).await;
        assert!(html.contains(r#""status":"connected""#), "{platform}: {html}");
        if platform == "facebook" {
            pages.push(html);
        }
        let connection = connection_of(&app, "alice", platform).await.expect("connection");
        assert_eq!(connection["platform_user_id"], user_id, "{platform}");
        assert_eq!(connection["platform_username"], username, "{platform}");
        assert_eq!(connection["connection_status"], "active");
    }
    // The consent URLs carried each platform's current scopes.
    let authorize = app.linkedin.requests_to("/oauth/v2/authorization");
    assert!(
        authorize[0].query.contains("scope=openid+profile+w_member_social")
            || authorize[0].query.contains("scope=openid%20profile%20w_member_social")
    );
    let authorize = app.tiktok.requests_to("/v2/auth/authorize/");
    assert!(
        authorize[0].query.contains("client_key=") && authorize[0].query.contains("user.info.basic%2Cvideo.publish")
    );
    // LinkedIn and TikTok take the client secret in the form body; Instagram's short token was
    // exchanged for a long-lived one; Facebook's too.
    assert!(app.linkedin.requests_to("/oauth/v2/accessToken")[0].form().contains_key("client_secret"));
    assert_eq!(app.tiktok.requests_to("/v2/oauth/token/")[0].form()["client_key"], fake_tiktok::CLIENT_ID);
    assert_eq!(app.instagram.requests_ending_with("/access_token").len(), 2);
    assert!(app.facebook.requests().iter().any(|r| r.query.contains("grant_type=fb_exchange_token")));
    assert_eq!(app.facebook.versions_seen(), vec!["v26.0".to_owned()]);

    // Facebook returned two Pages: the popup lists them and asks for a choice.
    assert!(pages[0].contains(r#""needs_page_selection":true"#) && pages[0].contains("Herald Cafe"), "{}", pages[0]);
    assert_eq!(status_of(&app, "alice", "facebook").await["status"], "error");
    for platform in ["linkedin", "tiktok", "instagram", "twitter"] {
        let expected = if platform == "twitter" { "disconnected" } else { "active" };
        assert_eq!(status_of(&app, "alice", platform).await["status"], expected, "{platform}");
    }

    let secrets = stored_secrets(&app).await;
    let logs = captured_logs();
    for token in app.issued_tokens() {
        assert!(secrets.iter().all(|s| !s.contains(&token)), "a stored column holds a token in plaintext");
        assert!(!logs.contains(&token), "a log line holds a token");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facebook_page_choice_and_publishing() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect("alice", "facebook").await;
    let later = (Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let schedule = json!({"campaign_id": "fb", "platforms": ["facebook"], "content": "Fresh bread today", "scheduled_time": later});
    let (status, body) = app.post("alice", "/api/v1/posts/schedule", &schedule).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_connected")), "{body}");

    let (status, body) = app.get("alice", "/api/v1/auth/social/pages/facebook").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["pages"],
        json!([{"id": "101", "name": "Herald Cafe", "selected": false}, {"id": "102", "name": "Herald Books", "selected": false}])
    );
    let (status, body) = app.post("alice", "/api/v1/auth/social/pages/facebook", &json!({"page_id": "999"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, _) = app.post("bob", "/api/v1/auth/social/pages/facebook", &json!({"page_id": "101"})).await;
    assert_eq!(status, 404, "bob has no Facebook connection");
    let (status, body) = app.post("alice", "/api/v1/auth/social/pages/facebook", &json!({"page_id": "101"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["page"], json!({"id": "101", "name": "Herald Cafe", "selected": true}));
    let line = status_of(&app, "alice", "facebook").await;
    assert_eq!((line["status"].as_str(), line["page_name"].as_str()), (Some("active"), Some("Herald Cafe")));
    let (status, body) = app.get("alice", "/api/v1/auth/social/pages/linkedin").await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("validation_failed")), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("do not go to a Page")), "{body}");

    let (status, body) = app.post("alice", "/api/v1/posts/schedule", &schedule).await;
    assert_eq!(status, 201, "{body}");
    let id = body["posts"][0]["id"].as_str().expect("id").to_owned();
    let post = app.wait_for_post("alice", &id, &["posted", "failed", "unknown"], Duration::from_secs(20)).await;
    assert_eq!(post["status"], "posted", "{post}");
    let posts = app.facebook.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!((posts[0].1.as_str(), posts[0].2.as_str()), ("101", "Fresh bread today"));
    assert_eq!(post["platform_post_id"], posts[0].0.as_str());

    // The user removes the app on Facebook: the next post fails and the connection says `revoked`.
    let deauthorize = format!("{}/v26.0/{}/permissions", app.facebook.base_url, fake_facebook::USER_ID);
    let app_token = format!("{}|{}", fake_facebook::APP_ID, fake_facebook::APP_SECRET);
    let response = reqwest::Client::new().delete(deauthorize).bearer_auth(app_token).send().await.expect("deauthorize");
    assert!(response.status().is_success());
    let again = json!({"campaign_id": "fb", "platforms": ["facebook"], "content": "After removal", "scheduled_time": Utc::now().to_rfc3339()});
    let (status, body) = app.post("alice", "/api/v1/posts/schedule", &again).await;
    assert_eq!(status, 201, "{body}");
    let id = body["posts"][0]["id"].as_str().expect("id").to_owned();
    let post = app.wait_for_post("alice", &id, &["posted", "failed", "unknown"], Duration::from_secs(20)).await;
    assert_eq!(
        (post["status"].as_str(), post["error_kind"].as_str()),
        (Some("failed"), Some("unauthorized")),
        "{post}"
    );
    let line = status_of(&app, "alice", "facebook").await;
    assert_eq!(line["status"], "revoked", "{line}");
    assert!(line["last_error"].as_str().expect("error").contains("reconnect"));

    // A single Page is chosen without asking.
    app.facebook.set_pages(vec![("201".into(), "Only Page".into())]);
    let html = app.connect("carol", "facebook").await;
    assert!(html.contains(r#""needs_page_selection":false"#), "{html}");
    assert_eq!(status_of(&app, "carol", "facebook").await["page_name"], "Only Page");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_publishes_with_the_posts_api_and_reports_expiry() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect("alice", "linkedin").await;
    let at = (Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let (status, body) = app
        .post("alice", "/api/v1/posts/schedule", &json!({"campaign_id": "li", "platforms": ["linkedin"], "content": "Launch (beta) today", "hashtags": ["rust"], "scheduled_time": at}))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["posts"][0]["id"].as_str().expect("id").to_owned();
    let post = app.wait_for_post("alice", &id, &["posted", "failed", "unknown"], Duration::from_secs(20)).await;
    assert_eq!(post["status"], "posted", "{post}");
    let request = &app.linkedin.requests_to("/rest/posts")[0];
    assert_eq!(request.headers["linkedin-version"], "202603");
    assert_eq!(request.headers["x-restli-protocol-version"], "2.0.0");
    let (urn, body) = &app.linkedin.posts()[0];
    assert_eq!(post["platform_post_id"], urn.as_str());
    assert_eq!(body["author"], format!("urn:li:person:{}", fake_linkedin::USER_ID));
    assert_eq!(body["commentary"], "Launch \\(beta\\) today\n\n{hashtag|\\#|rust}");

    // Self-serve apps get no refresh token: the status warns in the last 7 days, then expires.
    let set_expiry = |days: i64| {
        format!(
            "UPDATE social_media_connections SET token_expires_at = '{}'",
            (Utc::now() + chrono::Duration::days(days)).to_rfc3339()
        )
    };
    app.exec(&set_expiry(3)).await;
    assert_eq!(status_of(&app, "alice", "linkedin").await["status"], "expiring");
    app.exec(&set_expiry(-1)).await;
    assert_eq!(status_of(&app, "alice", "linkedin").await["status"], "expired");
    // The sweep marks it expired in the database, with a reason.
    tests::wait_until(Duration::from_secs(10), "the sweep to mark LinkedIn expired", || async {
        let connection = connection_of(&app, "alice", "linkedin").await?;
        (connection["connection_status"] == "expired").then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_and_revocation_per_platform() {
    let app = TestApp::spawn(Mode::Production).await;
    app.linkedin.issue_refresh_tokens(true);
    for platform in PLATFORMS {
        app.connect("alice", platform).await;
    }
    app.post("alice", "/api/v1/auth/social/pages/facebook", &json!({"page_id": "102"})).await;
    let before_tiktok = ciphertext(&app, "tiktok").await;
    let first_refresh = before_tiktok.1.clone();
    let before_linkedin = ciphertext(&app, "linkedin").await;
    let before_instagram = ciphertext(&app, "instagram").await;

    // Inside each platform's margin, the sweep refreshes: TikTok rotates its refresh token,
    // LinkedIn (with programmatic refresh) renews, Instagram refreshes the long-lived token itself
    // once it is a day old.
    app.instagram.advance(chrono::Duration::days(2));
    for (platform, minutes) in [("tiktok", 5), ("linkedin", 60 * 24), ("instagram", 60 * 24)] {
        app.exec(&format!(
            "UPDATE social_media_connections SET token_expires_at = '{}' WHERE platform = '{platform}'",
            (Utc::now() + chrono::Duration::minutes(minutes)).to_rfc3339()
        ))
        .await;
    }
    tests::wait_until(Duration::from_secs(15), "the sweep to refresh three platforms", || async {
        let done = ciphertext(&app, "tiktok").await.0 != before_tiktok.0
            && ciphertext(&app, "linkedin").await.0 != before_linkedin.0
            && ciphertext(&app, "instagram").await.0 != before_instagram.0;
        done.then_some(())
    })
    .await;
    assert_ne!(ciphertext(&app, "tiktok").await.1, before_tiktok.1, "TikTok's rotated refresh token was stored");
    assert_eq!(app.tiktok.spent_refresh_tokens().len(), 1);
    assert!(app.instagram.requests_ending_with("/refresh_access_token").len() == 1);
    for platform in ["tiktok", "linkedin", "instagram"] {
        assert_eq!(status_of(&app, "alice", platform).await["status"], "active", "{platform}");
    }

    // An outage at refresh time leaves the connection as it was, and a later sweep succeeds.
    let current = ciphertext(&app, "tiktok").await;
    app.tiktok.script_token(503, "<html>down</html>".into(), "text/html", Duration::ZERO);
    let refreshes = app.tiktok.requests_to("/v2/oauth/token/").len();
    app.exec(&format!(
        "UPDATE social_media_connections SET token_expires_at = '{}' WHERE platform = 'tiktok'",
        (Utc::now() + chrono::Duration::minutes(5)).to_rfc3339()
    ))
    .await;
    tests::wait_until(Duration::from_secs(15), "a failed and then a successful TikTok refresh", || async {
        (app.tiktok.requests_to("/v2/oauth/token/").len() >= refreshes + 2).then_some(())
    })
    .await;
    assert_eq!(status_of(&app, "alice", "tiktok").await["status"], "active");
    tests::wait_until(Duration::from_secs(5), "the new TikTok tokens to be stored", || async {
        (ciphertext(&app, "tiktok").await.0 != current.0).then_some(())
    })
    .await;
    assert_eq!(app.tiktok.spent_refresh_tokens().len(), 2, "the outage burnt no refresh token");

    // LinkedIn too refuses a refresh token it has replaced: the connection says so.
    assert_eq!(app.linkedin.spent_refresh_tokens().len(), 1);
    app.exec(&format!(
        "UPDATE social_media_connections SET refresh_token = '{}', token_expires_at = '{}' WHERE platform = 'linkedin'",
        before_linkedin.1,
        (Utc::now() + chrono::Duration::hours(1)).to_rfc3339()
    ))
    .await;
    let line = tests::wait_until(Duration::from_secs(15), "LinkedIn to be marked expired", || async {
        let line = status_of(&app, "alice", "linkedin").await;
        (line["status"] == "expired").then_some(line)
    })
    .await;
    assert!(line["last_error"].as_str().expect("error").contains("refresh token is invalid"), "{line}");

    // A reused TikTok refresh token is refused: the connection is marked expired with TikTok's
    // words, and the refresh is not retried.
    app.exec(&format!(
        "UPDATE social_media_connections SET refresh_token = '{}', token_expires_at = '{}' WHERE platform = 'tiktok'",
        // A refresh token TikTok already rotated away.
        first_refresh,
        (Utc::now() + chrono::Duration::minutes(5)).to_rfc3339()
    ))
    .await;
    tests::wait_until(Duration::from_secs(15), "TikTok to be marked expired", || async {
        let line = status_of(&app, "alice", "tiktok").await;
        (line["status"] == "expired").then_some(line)
    })
    .await;
    let line = status_of(&app, "alice", "tiktok").await;
    assert!(line["last_error"].as_str().expect("error").contains("Refresh token is invalid or expired"), "{line}");

    // Disconnect: TikTok and Facebook revoke, LinkedIn and Instagram have no endpoint.
    let live_tiktok: Vec<String> =
        app.tiktok.issued_tokens().into_iter().filter(|t| app.tiktok.token_is_live(t)).collect();
    for (platform, revocation) in
        [("tiktok", "revoked"), ("facebook", "revoked"), ("linkedin", "not_supported"), ("instagram", "not_supported")]
    {
        let (status, body) = app.delete("alice", &format!("/api/v1/auth/social/disconnect/{platform}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["revocation"], revocation, "{platform}: {body}");
        assert_eq!(status_of(&app, "alice", platform).await["status"], "disconnected");
    }
    assert_eq!(app.tiktok.requests_to("/v2/oauth/revoke/").len(), 1);
    assert!(live_tiktok.iter().all(|t| !app.tiktok.token_is_live(t)) || live_tiktok.is_empty());
    assert!(
        app.facebook.issued_tokens().iter().all(|t| !app.facebook.token_is_live(t)),
        "Facebook de-authorized every token"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_and_exchange_failures_store_nothing() {
    let app = TestApp::spawn(Mode::Production).await;
    for platform in ["twitter", "linkedin", "tiktok", "facebook", "instagram"] {
        // Declined at the platform.
        match platform {
            "twitter" => app.x.deny_next_consent(),
            "linkedin" => app.linkedin.deny_next_consent(),
            "tiktok" => app.tiktok.deny_next_consent(),
            "facebook" => app.facebook.deny_next_consent(),
            _ => app.instagram.deny_next_consent(),
        }
        let (status, html) = app.try_connect("alice", platform).await;
        assert_eq!(status, 400, "{platform}: {html}");
        assert!(html.contains(r#""status":"error""#), "{platform}: {html}");

        // The token endpoint fails: a refusal, an outage, garbage, and a timeout.
        let script = |status: u16, body: &str, content_type: &str, delay: Duration| match platform {
            "twitter" => app.x.script_token(status, body.into(), content_type, delay),
            "linkedin" => app.linkedin.script_token(status, body.into(), content_type, delay),
            "tiktok" => app.tiktok.script_token(status, body.into(), content_type, delay),
            "facebook" => app.facebook.script_token(status, body.into(), content_type, delay),
            _ => app.instagram.script_token(status, body.into(), content_type, delay),
        };
        for (code, body, content_type, delay, expected) in [
            (
                400,
                r#"{"error":"invalid_grant","error_description":"bad code"}"#,
                "application/json",
                Duration::ZERO,
                "bad code",
            ),
            (503, "<html>down</html>", "text/html", Duration::ZERO, "HTTP 503"),
            (200, "{not json", "application/json", Duration::ZERO, "unexpected body"),
            (200, "{}", "application/json", Duration::from_secs(4), "timed out"),
        ] {
            script(code, body, content_type, delay);
            let (status, html) = app.try_connect("alice", platform).await;
            assert_eq!(status, 502, "{platform} {code}: {html}");
            assert!(html.contains("token exchange failed") && html.contains(expected), "{platform} {code}: {html}");
        }
        assert!(connection_of(&app, "alice", platform).await.is_none(), "{platform}: nothing stored");
    }

    // A state issued for one platform does not work on another's callback.
    let oauth_url = app.initiate("alice", "tiktok").await;
    let callback_url = app.consent(&oauth_url).await;
    let (status, html) = app.callback(&callback_url.replace("/callback/tiktok", "/callback/linkedin")).await;
    assert_eq!(status, 400);
    assert!(html.contains("issued for tiktok"), "{html}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_scoped_to_its_user() {
    let app = TestApp::spawn(Mode::Production).await;
    for platform in PLATFORMS {
        app.connect("alice", platform).await;
    }
    let (_, bob) = app.get("bob", "/api/v1/auth/social/connections").await;
    assert_eq!(bob["connections"], json!([]));
    let (_, status) = app.get("bob", "/api/v1/auth/social/status").await;
    assert!(status["platforms"].as_array().expect("list").iter().all(|p| p["status"] == "disconnected"), "{status}");
    let (code, _) = app.get("bob", "/api/v1/auth/social/pages/facebook").await;
    assert_eq!(code, 404);
    for platform in PLATFORMS {
        let (code, _) = app.delete("bob", &format!("/api/v1/auth/social/disconnect/{platform}")).await;
        assert_eq!(code, 404, "{platform}");
        assert!(connection_of(&app, "alice", platform).await.is_some(), "alice keeps {platform}");
    }
    // Instagram and TikTok publish media only: a text post to them is refused.
    for platform in ["instagram", "tiktok"] {
        let at = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let (code, body) = app
            .post(
                "alice",
                "/api/v1/posts/schedule",
                &json!({"campaign_id": "m", "platforms": [platform], "content": "hi", "scheduled_time": at}),
            )
            .await;
        assert_eq!((code, body["error"]["code"].as_str()), (422, Some("validation_failed")), "{platform}: {body}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platforms_without_credentials_are_not_configured() {
    let app = TestApp::spawn_with(Mode::Production, |env| {
        env.remove("LINKEDIN_CLIENT_SECRET");
        env.remove("FACEBOOK_APP_ID");
    })
    .await;
    for platform in ["linkedin", "facebook"] {
        assert_eq!(status_of(&app, "alice", platform).await["status"], "not_configured");
        let (code, body) = app.post("alice", "/api/v1/auth/social/initiate", &json!({"platform": platform})).await;
        assert_eq!((code, body["error"]["code"].as_str()), (409, Some("platform_not_configured")));
    }
    assert_eq!(status_of(&app, "alice", "tiktok").await["status"], "disconnected");
    app.stop().await;
}
