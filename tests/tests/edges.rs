//! The refusals of the walking skeleton: authentication, OAuth state and redirect rules, input
//! validation, and isolation between users.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use serde_json::{Value, json};
use tests::{Fake, Mode, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

fn jwt(header: &Value, claims: &Value, secret: &str) -> String {
    use hmac::{Hmac, Mac};
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac");
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_bearer_token_is_401_in_the_json_shape() {
    let app = TestApp::spawn(Mode::Production).await;
    let secret = app.settings.jwt_secret.expose().to_owned();
    let now = Utc::now().timestamp();
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let valid_claims = json!({"sub": "alice", "exp": now + 600, "iat": now});
    // Sanity: a token made here the same way is accepted, so the refusals below are about what
    // each one changes.
    let good = jwt(&hs256, &valid_claims, &secret);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("not a jwt", Some("Bearer not-a-jwt".into())),
        ("basic scheme", Some(format!("Basic {}", URL_SAFE_NO_PAD.encode("alice:pw")))),
        ("expired", Some(format!("Bearer {}", jwt(&hs256, &json!({"sub": "alice", "exp": now - 3600}), &secret)))),
        ("wrong key", Some(format!("Bearer {}", jwt(&hs256, &valid_claims, "another-secret-0123456789abcdef0123")))),
        (
            "alg none",
            Some(format!(
                "Bearer {}.{}.",
                URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
                URL_SAFE_NO_PAD.encode(valid_claims.to_string())
            )),
        ),
        ("no sub", Some(format!("Bearer {}", jwt(&hs256, &json!({"exp": now + 600}), &secret)))),
        ("no exp", Some(format!("Bearer {}", jwt(&hs256, &json!({"sub": "alice"}), &secret)))),
        ("tampered", Some(format!("Bearer {}x", &good))),
    ];
    let routes = [
        ("GET", "/api/v1/auth/social/connections"),
        ("GET", "/api/v1/auth/social/status"),
        ("POST", "/api/v1/auth/social/initiate"),
        ("POST", "/api/v1/posts/schedule"),
        ("GET", "/api/v1/posts/scheduled/c1"),
        ("GET", "/api/v1/posts/some-id"),
    ];
    for (name, header) in &cases {
        for (method, path) in routes {
            let mut request = app.http.request(method.parse().expect("method"), app.url(path)).json(&json!({}));
            if let Some(header) = header {
                request = request.header("authorization", header);
            }
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 401, "{name} {method} {path}: {body}");
            assert_eq!(
                body,
                json!({"error": {"code": "unauthorized", "message": "a valid bearer token is required"}}),
                "{name}"
            );
        }
    }
    let response = app
        .http
        .get(app.url("/api/v1/auth/social/connections"))
        .header("authorization", format!("Bearer {good}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_state_and_redirect_rules() {
    let app = TestApp::spawn(Mode::Production).await;

    // A callback_url that is not exactly Herald's own callback, or that path on a FRONTEND_ORIGIN
    // origin (http://frontend.test:3000 here), is refused.
    for foreign in [
        "https://evil.example/api/v1/auth/social/callback/twitter".to_owned(),
        app.url("/api/v1/auth/social/callback/twitter/"),
        app.url("/api/v1/auth/social/callback/linkedin"),
        "http://frontend.test:3000/api/v1/auth/social/callback/linkedin".to_owned(),
        "http://frontend.test:3001/api/v1/auth/social/callback/twitter".to_owned(),
        "http://frontend.test:3000/callback/twitter".to_owned(),
    ] {
        let (status, body) = app
            .post("alice", "/api/v1/auth/social/initiate", &json!({"platform": "twitter", "callback_url": foreign}))
            .await;
        assert_error(status, &body, 422, "validation_failed");
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| m.starts_with("callback_url: must be one of")),
            "{body}"
        );
    }
    let exact = app.url("/api/v1/auth/social/callback/twitter");
    let (status, _) =
        app.post("alice", "/api/v1/auth/social/initiate", &json!({"platform": "x", "callback_url": exact})).await;
    assert_eq!(status, 200);
    // The frontend's own origin (its proxy forwards `/api` to Herald): that URL is the
    // `redirect_uri` of the consent and of the code exchange, and the connection completes.
    let on_frontend = "http://frontend.test:3000/api/v1/auth/social/callback/twitter";
    let (status, body) = app
        .post("bob", "/api/v1/auth/social/initiate", &json!({"platform": "twitter", "callback_url": on_frontend}))
        .await;
    assert_eq!(status, 200, "{body}");
    let oauth_url = body["oauth_url"].as_str().expect("oauth_url");
    let query: std::collections::HashMap<_, _> =
        url::Url::parse(oauth_url).expect("url").query_pairs().into_owned().collect();
    assert_eq!(query["redirect_uri"], on_frontend);
    let callback_url = app.consent(oauth_url).await;
    assert!(callback_url.starts_with(on_frontend), "{callback_url}");
    // What the frontend's proxy does: the same path and query, to Herald.
    let proxied = callback_url.replacen("http://frontend.test:3000", &app.base_url, 1);
    let (status, html) = app.callback(&proxied).await;
    assert_eq!(status, 200, "{html}");
    let exchange = app.x.requests_to("/2/oauth2/token").into_iter().last().expect("token request");
    assert_eq!(exchange.form().get("redirect_uri").map(String::as_str), Some(on_frontend));

    let (status, body) = app.post("alice", "/api/v1/auth/social/initiate", &json!({"platform": "myspace"})).await;
    assert_error(status, &body, 400, "unknown_platform");

    // A state works once.
    let callback_url = app.consent(&app.initiate("alice", "twitter").await).await;
    let (status, html) = app.callback(&callback_url).await;
    assert_eq!(status, 200, "{html}");
    let (status, html) = app.callback(&callback_url).await;
    assert_eq!(status, 400);
    assert!(html.contains(r#""error":"invalid_state""#), "{html}");

    // A state older than ten minutes is refused.
    let callback_url = app.consent(&app.initiate("bob", "twitter").await).await;
    app.exec(&format!(
        "UPDATE oauth_states SET expires_at = '{}'",
        (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339()
    ))
    .await;
    let (status, html) = app.callback(&callback_url).await;
    assert_eq!(status, 400);
    assert!(html.contains("longer than 10 minutes"), "{html}");

    // A state issued for X is refused on another platform's callback (and is spent).
    let callback_url = app.consent(&app.initiate("bob", "twitter").await).await;
    let other = callback_url.replace("/callback/twitter", "/callback/linkedin");
    let (status, html) = app.callback(&other).await;
    assert_eq!(status, 400);
    assert!(html.contains("issued for twitter"), "{html}");
    let (status, _) = app.callback(&callback_url).await;
    assert_eq!(status, 400, "the state was spent by the failed attempt");

    // Forged and missing states.
    let (status, _) = app.callback(&app.url("/api/v1/auth/social/callback/twitter?code=abc&state=forged.value")).await;
    assert_eq!(status, 400);
    let (status, _) = app.callback(&app.url("/api/v1/auth/social/callback/twitter?code=abc")).await;
    assert_eq!(status, 400);

    // The user declines at X.
    let oauth_url = app.initiate("carol", "twitter").await;
    let state = url::Url::parse(&oauth_url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .expect("state")
        .1
        .into_owned();
    let declined = format!(
        "{}?error=access_denied&error_description=The+user+denied&state={}",
        app.url("/api/v1/auth/social/callback/twitter"),
        url::form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>()
    );
    let (status, html) = app.callback(&declined).await;
    assert_eq!(status, 400);
    assert!(html.contains(r#""error":"access_denied""#) && html.contains("window.opener.postMessage"), "{html}");
    let (_, connections) = app.get("carol", "/api/v1/auth/social/connections").await;
    assert_eq!(connections["connections"], json!([]));

    // X's authorization code lives 30 seconds: a late exchange fails and nothing is stored.
    let callback_url = app.consent(&app.initiate("dave", "twitter").await).await;
    app.x.advance(chrono::Duration::seconds(31));
    let (status, html) = app.callback(&callback_url).await;
    assert_eq!(status, 502);
    assert!(html.contains("token exchange failed"), "{html}");
    let (_, connections) = app.get("dave", "/api/v1/auth/social/connections").await;
    assert_eq!(connections["connections"], json!([]));

    // No page carries the authorization code or a token.
    for token in app.x.issued_tokens() {
        assert!(!html.contains(&token));
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_validates_at_the_edge_and_scopes_to_the_user() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    let schedule = |content: String, time: String| json!({"campaign_id": "c-1", "platforms": ["twitter"], "content": content, "scheduled_time": time});
    // Due in seconds: a refused request that was stored anyway would be sent before the end.
    let at = Utc::now() + chrono::Duration::seconds(5);
    let later = at.to_rfc3339();

    let (status, body) = app.post("alice", "/api/v1/posts/schedule", &schedule("a".repeat(281), later.clone())).await;
    assert_error(status, &body, 422, "validation_failed");
    assert!(body["error"]["message"].as_str().expect("message").contains("281"), "{body}");
    // 257 letters and a long URL weigh 257 + 1 + 23 = 281; one letter less fits.
    let url = format!("https://example.com/{}", "p".repeat(100));
    let (status, _) = app
        .post("alice", "/api/v1/posts/schedule", &schedule(format!("{} {url}", "b".repeat(257)), later.clone()))
        .await;
    assert_eq!(status, 422);
    let (status, body) = app
        .post("alice", "/api/v1/posts/schedule", &schedule(format!("{} {url}", "b".repeat(256)), later.clone()))
        .await;
    assert_eq!(status, 201, "{body}");
    let alice_post = body["posts"][0]["id"].as_str().expect("id").to_owned();

    for naive in ["2030-01-01T09:00:00", "2030-01-01 09:00", "tomorrow", ""] {
        let (status, body) = app.post("alice", "/api/v1/posts/schedule", &schedule("hi".into(), naive.into())).await;
        assert_error(status, &body, 422, "validation_failed");
        assert!(body["error"]["message"].as_str().expect("message").contains("offset"), "{naive}: {body}");
    }
    let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (status, body) = app.post("alice", "/api/v1/posts/schedule", &schedule("hi".into(), past)).await;
    assert_error(status, &body, 422, "validation_failed");
    for (body, status, code) in [
        (
            json!({"campaign_id": "c 1", "platforms": ["twitter"], "content": "x", "scheduled_time": later}),
            422,
            "validation_failed",
        ),
        (
            json!({"campaign_id": "c1", "platforms": ["myspace"], "content": "x", "scheduled_time": later}),
            422,
            "validation_failed",
        ),
        (json!({"campaign_id": "c1", "platforms": ["twitter"], "scheduled_time": later}), 400, "bad_request"),
    ] {
        let (got, answer) = app.post("alice", "/api/v1/posts/schedule", &body).await;
        assert_error(got, &answer, status, code);
    }
    // A body announced over 256 KiB is refused before it is read. Sent by hand: a client still
    // writing a large body may see the early answer as a broken pipe.
    let raw = format!(
        "POST /api/v1/posts/schedule HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        app.token("alice"),
        300 * 1024
    );
    let mut stream = tokio::net::TcpStream::connect(app.base_url.trim_start_matches("http://")).await.expect("connect");
    stream.write_all(raw.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).expect("body")).expect("json");
    assert_eq!(body["error"]["code"], "payload_too_large");

    // Bob has no X connection: he cannot schedule to it, and Alice's post does not exist for him.
    let (status, body) = app.post("bob", "/api/v1/posts/schedule", &schedule("hi".into(), later.clone())).await;
    assert_error(status, &body, 409, "not_connected");
    let (status, body) = app.get("bob", &format!("/api/v1/posts/{alice_post}")).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app.get("bob", "/api/v1/posts/scheduled/c-1").await;
    assert_eq!(status, 200);
    assert_eq!(body["posts"], json!([]));
    let (_, body) = app.get("bob", "/api/v1/auth/social/connections").await;
    assert_eq!(body["connections"], json!([]));
    let (status, body) = app.get("alice", &format!("/api/v1/posts/{alice_post}")).await;
    assert_eq!(status, 200, "{body}");

    // Only the accepted post was published; nothing for the refused requests.
    app.wait_past(at).await;
    let texts: Vec<String> = app.x.tweets().into_iter().map(|(_, text)| text).collect();
    assert_eq!(texts, [format!("{} {url}", "b".repeat(256))]);
    app.stop().await;
}
