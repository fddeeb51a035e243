//! The API's rate limits (README "Limits"): a bucket per user shared by every api instance
//! through Redis (or kept in the process with the embedded default), stricter buckets for
//! `initiate` and per client address for the callback, 429 in the one error shape with the IETF
//! draft's fields, and one noisy user never slowing another.

use std::time::Duration;

use serde_json::{Value, json};
use tests::{Mode, TestApp};

/// `RATE_LIMIT_PER_MIN=60` with a burst of 5: five requests at once, then one per second.
fn tight(env: &mut std::collections::HashMap<String, String>) {
    env.insert("RATE_LIMIT_PER_MIN".into(), "60".into());
    env.insert("RATE_LIMIT_BURST".into(), "5".into());
}

/// A GET as `token` (or none): status, the two rate-limit fields, `Retry-After`, and the body.
async fn get(app: &TestApp, token: Option<&str>, path: &str) -> (u16, String, String, Option<String>, Value) {
    let mut request = app.http.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET");
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().expect("ascii").to_owned());
    let (policy, state, retry) = (
        header("ratelimit-policy").unwrap_or_default(),
        header("ratelimit").unwrap_or_default(),
        header("retry-after"),
    );
    let status = response.status().as_u16();
    (status, policy, state, retry, response.json().await.unwrap_or(Value::Null))
}

async fn a_user_past_the_burst_is_refused_alone(mode: Mode) {
    let app = TestApp::spawn_with(mode, tight).await;
    let (alice, bob) = (app.token("alice"), app.token("bob"));
    let path = "/api/v1/auth/social/connections";
    for left in (0..5).rev() {
        let (status, policy, state, retry, body) = get(&app, Some(&alice), path).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(policy, "\"user\";q=5;w=5");
        assert!(state.starts_with(&format!("\"user\";r={left};t=")), "{state}");
        assert_eq!(retry, None);
    }
    let (status, policy, state, retry, body) = get(&app, Some(&alice), path).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("retry after 1 s")), "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(policy, "\"user\";q=5;w=5");
    assert!(state.starts_with("\"user\";r=0;t="), "{state}");
    // Bob's bucket is his own, full.
    let (status, _, state, _, body) = get(&app, Some(&bob), path).await;
    assert_eq!(status, 200, "{body}");
    assert!(state.starts_with("\"user\";r=4;"), "{state}");
    // After Retry-After, one more of Alice's goes through, and only one.
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    assert_eq!(get(&app, Some(&alice), path).await.0, 200);
    assert_eq!(get(&app, Some(&alice), path).await.0, 429);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_past_the_burst_is_refused_alone_on_redis() {
    a_user_past_the_burst_is_refused_alone(Mode::Production).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_past_the_burst_is_refused_alone_in_the_embedded_default() {
    a_user_past_the_burst_is_refused_alone(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_instances_share_one_bucket_per_user() {
    let app = TestApp::spawn_with(Mode::Production, tight).await;
    // A second api on the same database and Redis prefix, as a scaled-out deployment runs them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let second = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::run(app.settings.clone(), listener, async move {
        let _ = stopped.await;
    }));
    let token = app.token("alice");
    let path = "/api/v1/auth/social/connections";
    let mut statuses = Vec::new();
    for n in 0..6 {
        let base = if n % 2 == 0 { app.base_url.clone() } else { second.clone() };
        let response = app.http.get(format!("{base}{path}")).bearer_auth(&token).send().await.expect("GET");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429], "five in all across both instances, then refused");
    let _ = stop.send(());
    server.await.expect("second api").expect("second api ran");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_user_is_refused_while_a_quiet_one_is_served() {
    let app = TestApp::spawn_with(Mode::Production, tight).await;
    let noisy = app.token("noisy");
    let quiet = app.token("quiet");
    let path = "/api/v1/posts/status/summary";
    // The noisy user keeps 16 requests in flight for the whole time the quiet one is served.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise: Vec<_> = (0..16)
        .map(|_| {
            let (http, url, token, stop) = (app.http.clone(), app.url(path), noisy.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = std::collections::HashMap::<u16, u32>::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let response = http.get(&url).bearer_auth(&token).send().await.expect("noise");
                    *statuses.entry(response.status().as_u16()).or_default() += 1;
                }
                statuses
            })
        })
        .collect();
    // One request a second from the quiet user, under its own one-per-second refill: every one
    // is served while the noise goes on.
    for _ in 0..4 {
        let (status, _, _, _, body) = get(&app, Some(&quiet), path).await;
        assert_eq!(status, 200, "the quiet user was refused: {body}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut totals = std::collections::HashMap::<u16, u32>::new();
    for task in noise {
        for (status, count) in task.await.expect("noise task") {
            *totals.entry(status).or_default() += count;
        }
    }
    eprintln!("noisy user's answers: {totals:?}");
    assert_eq!(totals.keys().copied().filter(|s| ![200, 429].contains(s)).count(), 0, "{totals:?}");
    // Four seconds at one a second plus the burst of five, give or take the boundaries.
    let served = totals.get(&200).copied().unwrap_or(0);
    assert!((5..=11).contains(&served), "the noisy user got {served} answers through: {totals:?}");
    assert!(totals.get(&429).copied().unwrap_or(0) > 100, "{totals:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_has_a_stricter_bucket_of_its_own() {
    let app = TestApp::spawn_with(Mode::Production, |env| {
        env.insert("RATE_LIMIT_INITIATE_PER_MIN".into(), "2".into());
    })
    .await;
    let body = json!({"platform": "twitter"});
    let token = app.token("alice");
    let mut statuses = Vec::new();
    let mut last = Value::Null;
    let mut policy = String::new();
    for _ in 0..3 {
        let response = app
            .http
            .post(app.url("/api/v1/auth/social/initiate"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("initiate");
        statuses.push(response.status().as_u16());
        policy = response.headers()["ratelimit-policy"].to_str().expect("ascii").to_owned();
        last = response.json().await.expect("json");
    }
    assert_eq!(statuses, [200, 200, 429], "{last}");
    assert_eq!(last["error"]["code"], "rate_limited");
    assert!(last["error"]["message"].as_str().is_some_and(|m| m.contains("initiate")), "{last}");
    assert!(policy.contains("\"initiate\";q=2;w=60"), "{policy}");
    // The rest of the API still answers her.
    assert_eq!(app.get("alice", "/api/v1/auth/social/connections").await.0, 200);
    // Two initiates means two state rows, not three.
    use sea_orm::{EntityTrait, PaginatorTrait};
    let states = shared::db::entities::oauth_state::Entity::find().count(&app.db).await.expect("count");
    assert_eq!(states, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_is_limited_per_client_address() {
    let app = TestApp::spawn_with(Mode::Production, |env| {
        env.insert("RATE_LIMIT_CALLBACK_PER_MIN".into(), "3".into());
        env.insert("TRUST_FORWARDED_FOR".into(), "true".into());
    })
    .await;
    let callback = |forwarded: &'static str| {
        let request = app
            .http
            .get(app.url("/api/v1/auth/social/callback/twitter?code=c&state=forged"))
            .header("x-forwarded-for", forwarded);
        async move { request.send().await.expect("callback").status().as_u16() }
    };
    // A forged state gets the popup's refusal page; the fourth from one address gets 429. What a
    // client puts left of the proxy's entry does not change its address.
    for _ in 0..3 {
        assert_ne!(callback("203.0.113.7").await, 429);
    }
    assert_eq!(callback("203.0.113.7").await, 429);
    assert_eq!(callback("198.51.100.1, 203.0.113.7").await, 429);
    // Another address has its own bucket.
    assert_ne!(callback("203.0.113.8").await, 429);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_count_against_their_address() {
    let app = TestApp::spawn_with(Mode::Production, tight).await;
    let path = "/api/v1/auth/social/connections";
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get(&app, Some("not-a-jwt"), path).await.0);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    // A user with a valid token is not affected by the anonymous address's bucket.
    assert_eq!(app.get("alice", path).await.0, 200);
    // Probes and the document are never limited.
    for _ in 0..10 {
        assert_eq!(get(&app, None, "/readyz").await.0, 200);
        assert_eq!(app.http.get(app.url("/openapi.yaml")).send().await.expect("spec").status().as_u16(), 200);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_readable_from_the_frontends_origin() {
    let app = TestApp::spawn_with(Mode::Production, |env| {
        env.insert("RATE_LIMIT_PER_MIN".into(), "1".into());
        env.insert("RATE_LIMIT_BURST".into(), "1".into());
    })
    .await;
    let token = app.token("alice");
    let request = || {
        app.http
            .get(app.url("/api/v1/auth/social/connections"))
            .bearer_auth(&token)
            .header("origin", "http://frontend.test:3000")
            .send()
    };
    assert_eq!(request().await.expect("first").status().as_u16(), 200);
    let refused = request().await.expect("second");
    assert_eq!(refused.status().as_u16(), 429);
    let headers = refused.headers();
    assert_eq!(headers["access-control-allow-origin"], "http://frontend.test:3000");
    let exposed = headers["access-control-expose-headers"].to_str().expect("ascii").to_ascii_lowercase();
    for name in ["retry-after", "ratelimit", "ratelimit-policy"] {
        assert!(exposed.split(',').any(|h| h.trim() == name), "{name} not exposed: {exposed}");
    }
    assert_eq!(headers["retry-after"], "60");
    app.stop().await;
}
