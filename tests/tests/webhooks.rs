//! Webhooks end to end (issue 11): a receiver in the test verifies every delivery's signature
//! with its own implementation of the Standard Webhooks scheme.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use serde_json::{Value, json};
use tests::{
    Mode, TestApp,
    webhook_receiver::{Receiver, verify},
};

const TERMINAL: &[&str] = &["posted", "failed", "unknown"];

/// Compressed delivery settings: the day-long schedule in about ten seconds, a 1 s timeout.
fn fast(env: &mut HashMap<String, String>) {
    env.insert("WEBHOOK_RETRY_SCALE".into(), "0.0001".into());
    env.insert("WEBHOOK_TIMEOUT_SECS".into(), "1".into());
}

async fn register(app: &TestApp, user: &str, url: &str, events: &[&str]) -> (String, String) {
    let (status, body) = app.post(user, "/api/v1/webhooks", &json!({"url": url, "events": events})).await;
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (body["webhook"]["id"].as_str().expect("id").to_owned(), secret)
}

async fn schedule(app: &TestApp, user: &str, content: &str) -> String {
    let body = json!({"campaign_id": "c1", "platforms": ["twitter"], "content": content,
        "scheduled_time": Utc::now().to_rfc3339()});
    let (status, answer) = app.post(user, "/api/v1/posts/schedule", &body).await;
    assert_eq!(status, 201, "{answer}");
    answer["posts"][0]["id"].as_str().expect("id").to_owned()
}

fn body(delivery: &tests::RecordedRequest) -> Value {
    serde_json::from_str(&delivery.body).expect("a JSON body")
}

/// Waits until the receiver has `n` deliveries; returns them.
async fn received(receiver: &Receiver, n: usize, timeout: Duration) -> Vec<tests::RecordedRequest> {
    tests::wait_until(timeout, &format!("{n} deliveries"), || async {
        let got = receiver.deliveries();
        (got.len() >= n).then_some(got)
    })
    .await
}

/// Waits until Alice's endpoint `webhook` is disabled; returns it as the API shows it.
async fn disabled(app: &TestApp, webhook: &str, timeout: Duration) -> Value {
    tests::wait_until(timeout, "the endpoint to be disabled", || async {
        let (_, endpoint) = app.get("alice", &format!("/api/v1/webhooks/{webhook}")).await;
        (endpoint["enabled"] == false).then_some(endpoint)
    })
    .await
}

async fn deliveries(app: &TestApp, user: &str, webhook: &str) -> Vec<Value> {
    let (status, body) = app.get(user, &format!("/api/v1/webhooks/{webhook}/deliveries")).await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().expect("deliveries").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_delivered_once_per_change_and_signed() {
    let app = TestApp::spawn_with(Mode::Production, fast).await;
    let receiver = Receiver::start().await;
    let (webhook, secret) = register(&app, "alice", &receiver.url, &[]).await;
    app.connect_x("alice").await;

    let published = schedule(&app, "alice", "published").await;
    assert_eq!(app.wait_for_post("alice", &published, TERMINAL, Duration::from_secs(20)).await["status"], "posted");
    // 503 once: `post.retrying`, then `post.published`.
    app.x.script_tweet(503, json!({"title": "Service Unavailable", "status": 503}), vec![], Duration::ZERO);
    let flaky = schedule(&app, "alice", "flaky").await;
    assert_eq!(app.wait_for_post("alice", &flaky, TERMINAL, Duration::from_secs(30)).await["status"], "posted");
    // A duplicate: `post.failed`.
    let dup = schedule(&app, "alice", "published").await;
    assert_eq!(app.wait_for_post("alice", &dup, TERMINAL, Duration::from_secs(20)).await["status"], "failed");
    // A timeout after sending: `post.unknown`.
    app.x.script_tweet(201, json!({"data": {"id": "1", "text": "slow"}}), vec![], Duration::from_secs(5));
    let slow = schedule(&app, "alice", "slow").await;
    assert_eq!(app.wait_for_post("alice", &slow, TERMINAL, Duration::from_secs(20)).await["status"], "unknown");
    // Disconnecting: `connection.revoked`.
    let (status, _) = app.delete("alice", "/api/v1/auth/social/disconnect/twitter").await;
    assert_eq!(status, 200);

    let expected = [
        ("post.published", published.as_str()),
        ("post.retrying", flaky.as_str()),
        ("post.published", flaky.as_str()),
        ("post.failed", dup.as_str()),
        ("post.unknown", slow.as_str()),
    ];
    received(&receiver, expected.len() + 1, Duration::from_secs(30)).await;
    // A ping sent after everything: once it has arrived, any duplicate of the earlier events
    // (each was due before it) would have arrived too.
    let (status, ping) = app.post("alice", &format!("/api/v1/webhooks/{webhook}/test"), &json!({})).await;
    assert_eq!(status, 202, "{ping}");
    let ping_id = ping["id"].as_str().expect("ping id").to_owned();
    tests::wait_until(Duration::from_secs(20), "the ping", || async {
        receiver.deliveries().iter().any(|d| d.headers.get("webhook-id") == Some(&ping_id)).then_some(())
    })
    .await;

    let got = receiver.deliveries();
    let mut seen: Vec<(String, String)> = Vec::new();
    for delivery in &got {
        assert_eq!(verify(&secret, delivery), 1, "signature of {delivery:?}");
        assert_eq!(delivery.headers.get("content-type").map(String::as_str), Some("application/json"));
        let timestamp: i64 = delivery.headers["webhook-timestamp"].parse().expect("timestamp");
        assert!((Utc::now().timestamp() - timestamp).abs() < 120);
        assert!(!delivery.body.contains("access_token") && !delivery.body.contains("refresh_token"));
        let event = body(delivery);
        let kind = event["type"].as_str().expect("type").to_owned();
        if kind == "connection.revoked" {
            assert_eq!(event["data"]["platform"], "twitter", "{event}");
            assert_eq!(event["data"]["connection_status"], "revoked", "{event}");
        }
        let subject = event["data"]["id"].to_string().trim_matches('"').to_owned();
        seen.push((kind, subject));
    }
    for (kind, post) in expected {
        let n = seen.iter().filter(|(k, s)| k == kind && s == post).count();
        assert_eq!(n, 1, "{kind} for {post}: {seen:?}");
    }
    assert_eq!(seen.iter().filter(|(k, _)| k == "connection.revoked").count(), 1, "{seen:?}");
    assert_eq!(seen.iter().filter(|(k, _)| k == "webhook.test").count(), 1, "{seen:?}");
    assert_eq!(got.len(), expected.len() + 2, "{seen:?}");
    // A published event carries the post as the API shows it.
    let event = got.iter().map(body).find(|e| e["type"] == "post.published" && e["data"]["id"] == published);
    let event = event.expect("the published event");
    assert_eq!(event["data"]["status"], "posted");
    assert!(event["data"]["platform_post_id"].is_string(), "{event}");

    let listed = deliveries(&app, "alice", &webhook).await;
    assert_eq!(listed.len(), expected.len() + 2);
    assert!(listed.iter().all(|d| d["status"] == "succeeded" && d["attempts"][0]["status_code"] == 200), "{listed:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_with_the_same_id_then_dead() {
    let app = TestApp::spawn_with(Mode::Production, fast).await;
    let receiver = Receiver::start().await;
    let (webhook, secret) = register(&app, "alice", &receiver.url, &[]).await;
    // A 500, then a timeout (the answer takes 3 s, the limit is 1 s), then success.
    receiver.answer(&[(500, Duration::ZERO), (200, Duration::from_secs(3))]);
    let (status, ping) = app.post("alice", &format!("/api/v1/webhooks/{webhook}/test"), &json!({})).await;
    assert_eq!(status, 202, "{ping}");
    let got = received(&receiver, 3, Duration::from_secs(30)).await;
    let ids: Vec<&String> = got.iter().map(|d| &d.headers["webhook-id"]).collect();
    assert!(ids.iter().all(|id| **id == ping["id"]), "{ids:?}");
    assert!(got.iter().all(|d| verify(&secret, d) == 1));
    let listed = tests::wait_until(Duration::from_secs(10), "the delivery to succeed", || async {
        let listed = deliveries(&app, "alice", &webhook).await;
        (listed[0]["status"] == "succeeded").then_some(listed)
    })
    .await;
    let attempts = listed[0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert_eq!(attempts[0]["status_code"], 500);
    assert!(attempts[1]["error"].as_str().expect("error").contains("timed out"), "{attempts:?}");
    assert_eq!(attempts[2]["status_code"], 200);

    // Connection refused on every attempt: retried through the whole schedule, then dead.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("addr").port()
    };
    let (refused, _) = register(&app, "alice", &format!("http://127.0.0.1:{closed}/hook"), &[]).await;
    let (status, _) = app.post("alice", &format!("/api/v1/webhooks/{refused}/test"), &json!({})).await;
    assert_eq!(status, 202);
    let dead = tests::wait_until(Duration::from_secs(60), "the refused delivery to die", || async {
        let listed = deliveries(&app, "alice", &refused).await;
        (listed[0]["status"] == "dead").then(|| listed[0].clone())
    })
    .await;
    let attempts = dead["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), shared::webhooks::RETRY_SCHEDULE.len() + 1, "{dead}");
    assert!(attempts.iter().all(|a| a["status_code"].is_null() && a["error"].is_string()), "{dead}");
    assert!(dead["next_attempt_at"].is_null());

    // Replay: the dead delivery goes again under its id.
    let (status, replay) = app
        .post(
            "alice",
            &format!("/api/v1/webhooks/{refused}/deliveries/{}/replay", dead["id"].as_str().expect("id")),
            &json!({}),
        )
        .await;
    assert_eq!(status, 202, "{replay}");
    assert_eq!(replay["id"], dead["id"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint_until_re_enabled() {
    let app = TestApp::spawn_with(Mode::Production, fast).await;
    let receiver = Receiver::start().await;
    let (webhook, _) = register(&app, "alice", &receiver.url, &[]).await;
    receiver.answer(&[(410, Duration::ZERO)]);
    app.post("alice", &format!("/api/v1/webhooks/{webhook}/test"), &json!({})).await;
    let endpoint = disabled(&app, &webhook, Duration::from_secs(20)).await;
    assert!(endpoint["disabled_reason"].as_str().expect("reason").contains("410"), "{endpoint}");
    let listed = deliveries(&app, "alice", &webhook).await;
    assert_eq!((listed[0]["status"].as_str(), listed[0]["attempts"].as_array().map(Vec::len)), (Some("dead"), Some(1)));
    let (status, refused) = app.post("alice", &format!("/api/v1/webhooks/{webhook}/test"), &json!({})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("webhook_disabled")), "{refused}");
    let (status, enabled) = app.post("alice", &format!("/api/v1/webhooks/{webhook}/enable"), &json!({})).await;
    assert_eq!((status, &enabled["enabled"]), (200, &json!(true)), "{enabled}");
    let (status, _) = app.post("alice", &format!("/api/v1/webhooks/{webhook}/test"), &json!({})).await;
    assert_eq!(status, 202);
    received(&receiver, 2, Duration::from_secs(20)).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_old_one_for_the_window() {
    let app = TestApp::spawn_with(Mode::Production, |env| {
        fast(env);
        env.insert("WEBHOOK_ROTATION_OVERLAP_SECS".into(), "3".into());
    })
    .await;
    let receiver = Receiver::start().await;
    let (webhook, old) = register(&app, "alice", &receiver.url, &[]).await;
    let (status, rotated) = app.post("alice", &format!("/api/v1/webhooks/{webhook}/rotate-secret"), &json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new, old);
    let until: chrono::DateTime<Utc> =
        rotated["webhook"]["previous_secret_until"].as_str().expect("until").parse().expect("time");
    app.post("alice", &format!("/api/v1/webhooks/{webhook}/test"), &json!({})).await;
    let got = received(&receiver, 1, Duration::from_secs(20)).await;
    assert_eq!(got[0].headers["webhook-signature"].split(' ').count(), 2);
    assert_eq!((verify(&old, &got[0]), verify(&new, &got[0])), (1, 1));
    // Past the window, only the new secret signs.
    while Utc::now() <= until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.post("alice", &format!("/api/v1/webhooks/{webhook}/test"), &json!({})).await;
    let got = received(&receiver, 2, Duration::from_secs(20)).await;
    assert_eq!(got[1].headers["webhook-signature"].split(' ').count(), 1);
    assert_eq!((verify(&old, &got[1]), verify(&new, &got[1])), (0, 1));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_without_the_switch() {
    let app = TestApp::spawn_with(Mode::Production, |env| {
        fast(env);
        env.insert("MEDIA_ALLOW_PRIVATE".into(), "false".into());
    })
    .await;
    for url in [
        "http://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/",
        "https://localhost/x",
        "ftp://example.com/",
    ] {
        let (status, body) = app.post("alice", "/api/v1/webhooks", &json!({"url": url})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("validation_failed")), "{url}: {body}");
    }
    let (status, body) =
        app.post("alice", "/api/v1/webhooks", &json!({"url": "https://example.com/h", "events": ["post.nope"]})).await;
    assert_eq!(status, 422, "{body}");
    // An endpoint stored with a loopback address (as if the rules had changed since): refused
    // when delivering, and nothing reaches the receiver.
    let receiver = Receiver::start().await;
    let (webhook, _) = {
        let (status, body) = app.post("alice", "/api/v1/webhooks", &json!({"url": "https://example.com/h"})).await;
        assert_eq!(status, 201, "{body}");
        (body["webhook"]["id"].as_str().expect("id").to_owned(), ())
    };
    app.exec(&format!("UPDATE webhook_endpoints SET url = '{}' WHERE id = '{webhook}'", receiver.url)).await;
    app.post("alice", &format!("/api/v1/webhooks/{webhook}/test"), &json!({})).await;
    let listed = tests::wait_until(Duration::from_secs(20), "a refused attempt", || async {
        let listed = deliveries(&app, "alice", &webhook).await;
        (listed[0]["attempts"].as_array().is_some_and(|a| !a.is_empty())).then_some(listed)
    })
    .await;
    let error = listed[0]["attempts"][0]["error"].as_str().expect("error");
    assert!(error.contains("https"), "{error}");
    assert!(receiver.deliveries().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_webhooks_are_invisible() {
    let app = TestApp::spawn_with(Mode::Production, fast).await;
    let receiver = Receiver::start().await;
    let (webhook, _) = register(&app, "alice", &receiver.url, &["post.published"]).await;
    let (_, list) = app.get("bob", "/api/v1/webhooks").await;
    assert_eq!(list["webhooks"], json!([]));
    let (_, list) = app.get("alice", "/api/v1/webhooks").await;
    assert_eq!(list["webhooks"][0]["events"], json!(["post.published"]));
    for (method, path) in [
        ("get", format!("/api/v1/webhooks/{webhook}")),
        ("get", format!("/api/v1/webhooks/{webhook}/deliveries")),
        ("post", format!("/api/v1/webhooks/{webhook}/test")),
        ("post", format!("/api/v1/webhooks/{webhook}/rotate-secret")),
        ("post", format!("/api/v1/webhooks/{webhook}/enable")),
        ("delete", format!("/api/v1/webhooks/{webhook}")),
    ] {
        let (status, body) = match method {
            "get" => app.get("bob", &path).await,
            "post" => app.post("bob", &path, &json!({})).await,
            _ => app.delete("bob", &path).await,
        };
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{method} {path}: {body}");
    }
    let (status, _) = app.delete("alice", &format!("/api/v1/webhooks/{webhook}")).await;
    assert_eq!(status, 204);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_is_delivered_as_connection_expired_only_to_who_asked() {
    let app = TestApp::spawn_with(Mode::Production, fast).await;
    let receiver = Receiver::start().await;
    let (webhook, secret) = register(&app, "alice", &receiver.url, &["connection.expired"]).await;
    app.connect_x("alice").await;
    // X refuses a refresh token it already rotated (the fake, like X, refuses reuse): keep the
    // first one, let a refresh rotate it, then put it back and make the next post refresh.
    let stored = || async {
        let row =
            app.query("SELECT refresh_token FROM social_media_connections").await.into_iter().next().expect("row");
        row.try_get::<String>("", "refresh_token").expect("refresh token")
    };
    let expire = || async {
        app.x.expire_access_tokens();
        let at = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
        app.exec(&format!("UPDATE social_media_connections SET token_expires_at = '{at}'")).await;
    };
    let old = stored().await;
    expire().await;
    let first = schedule(&app, "alice", "first").await;
    assert_eq!(app.wait_for_post("alice", &first, TERMINAL, Duration::from_secs(30)).await["status"], "posted");
    app.exec(&format!("UPDATE social_media_connections SET refresh_token = '{old}'")).await;
    expire().await;
    let second = schedule(&app, "alice", "second").await;
    assert_eq!(app.wait_for_post("alice", &second, TERMINAL, Duration::from_secs(30)).await["status"], "failed");

    let got = received(&receiver, 1, Duration::from_secs(30)).await;
    let event = body(&got[0]);
    assert_eq!(verify(&secret, &got[0]), 1);
    assert_eq!(event["type"], "connection.expired", "{event}");
    assert_eq!(
        (event["data"]["platform"].as_str(), event["data"]["connection_status"].as_str()),
        (Some("twitter"), Some("expired"))
    );
    assert!(event["data"]["last_error"].as_str().is_some_and(|e| e.contains("reconnect")), "{event}");
    assert!(!got[0].body.contains(&old) && !got[0].body.contains("refresh_token"), "{event}");
    // A ping sent now arrives after anything due before it: then the published, the failed and a
    // second expired event would all have arrived, had they been sent.
    let (status, ping) = app.post("alice", &format!("/api/v1/webhooks/{webhook}/test"), &json!({})).await;
    assert_eq!(status, 202, "{ping}");
    let ping_id = ping["id"].as_str().expect("ping id").to_owned();
    tests::wait_until(Duration::from_secs(20), "the ping", || async {
        receiver.deliveries().iter().any(|d| d.headers.get("webhook-id") == Some(&ping_id)).then_some(())
    })
    .await;
    let types: Vec<String> =
        receiver.deliveries().iter().map(|d| body(d)["type"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(types, ["connection.expired", "webhook.test"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_history_past_its_retention_is_pruned_and_nothing_else() {
    // The default retry schedule: a refused delivery stays pending for its next attempt.
    let app = TestApp::spawn(Mode::Production).await;
    let receiver = Receiver::start().await;
    let (webhook, _) = register(&app, "alice", &receiver.url, &[]).await;
    let (refusing, _) = register(&app, "alice", "http://127.0.0.1:9/refused", &[]).await;
    let mut pings = Vec::new();
    for endpoint in [&webhook, &webhook, &refusing] {
        let (status, ping) = app.post("alice", &format!("/api/v1/webhooks/{endpoint}/test"), &json!({})).await;
        assert_eq!(status, 202, "{ping}");
        pings.push(ping["id"].as_str().expect("id").to_owned());
    }
    let (old, recent, waiting) = (&pings[0], &pings[1], &pings[2]);
    tests::wait_until(Duration::from_secs(30), "two deliveries and one refused attempt", || async {
        let row = |id: &str| format!("SELECT count(*)::bigint AS n FROM webhook_attempts WHERE delivery_id = '{id}'");
        let mut ready = true;
        for id in [old, recent, waiting] {
            ready &= app.query(&row(id)).await[0].try_get::<i64>("", "n").expect("n") > 0;
        }
        ready.then_some(())
    })
    .await;
    assert_eq!(delivery_status(&app, old).await.as_deref(), Some("succeeded"));
    assert_eq!(delivery_status(&app, waiting).await.as_deref(), Some("pending"));
    // Two of them finished long ago, as far as the rows say: one succeeded, one still pending.
    let event_of = |id: &str| format!("(SELECT event_id FROM webhook_deliveries WHERE id = '{id}')");
    for id in [old, waiting] {
        let past = (Utc::now() - chrono::Duration::days(40)).to_rfc3339();
        app.exec(&format!(
            "UPDATE webhook_events SET created_at = '{past}', fanned_out_at = '{past}' WHERE id = {}",
            event_of(id)
        ))
        .await;
        app.exec(&format!(
            "UPDATE webhook_deliveries SET updated_at = '{past}', created_at = '{past}' WHERE id = '{id}'"
        ))
        .await;
    }
    let old_event: String = app.query(&format!("SELECT event_id FROM webhook_deliveries WHERE id = '{old}'")).await[0]
        .try_get("", "event_id")
        .expect("event");
    // The sweep (every second here) deletes the old finished delivery, its attempts and then its
    // event; once the event is gone, that pass has looked at every row.
    tests::wait_until(Duration::from_secs(30), "the old delivery and its event pruned", || async {
        let gone = app.query(&format!("SELECT 1 FROM webhook_events WHERE id = '{old_event}'")).await.is_empty();
        gone.then_some(())
    })
    .await;
    assert_eq!(delivery_status(&app, old).await, None);
    let attempts = app.query(&format!("SELECT 1 FROM webhook_attempts WHERE delivery_id = '{old}'")).await;
    assert!(attempts.is_empty(), "its attempts went with it");
    assert_eq!(delivery_status(&app, recent).await.as_deref(), Some("succeeded"), "a recent delivery is kept");
    assert_eq!(
        delivery_status(&app, waiting).await.as_deref(),
        Some("pending"),
        "a pending delivery is kept, however old"
    );
    let listed = deliveries(&app, "alice", &webhook).await;
    assert_eq!(listed.iter().map(|d| d["id"].as_str().unwrap_or("")).collect::<Vec<_>>(), [recent.as_str()]);
    app.stop().await;
}

async fn delivery_status(app: &TestApp, id: &str) -> Option<String> {
    let sql = format!("SELECT status FROM webhook_deliveries WHERE id = '{id}'");
    app.query(&sql).await.first().map(|r| r.try_get::<String>("", "status").expect("status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_deliveries_by_outcome_and_show_the_pending_ones() {
    // Embedded: the in-process worker's counters are the api's `/metrics`.
    let app = TestApp::spawn(Mode::Embedded).await;
    let receiver = Receiver::start().await;
    let (good, _) = register(&app, "alice", &receiver.url, &[]).await;
    let (refusing, _) = register(&app, "alice", "http://127.0.0.1:9/refused", &[]).await;
    for endpoint in [&good, &refusing] {
        let (status, ping) = app.post("alice", &format!("/api/v1/webhooks/{endpoint}/test"), &json!({})).await;
        assert_eq!(status, 202, "{ping}");
    }
    let metrics = tests::wait_until(Duration::from_secs(30), "both attempts counted", || async {
        let text = app.http.get(app.url("/metrics")).send().await.ok()?.text().await.ok()?;
        let counted = text.contains("herald_webhook_delivery_attempts_total{state=\"succeeded\"} 1")
            && text.contains("herald_webhook_delivery_attempts_total{state=\"retrying\"} 1");
        counted.then_some(text)
    })
    .await;
    // The refused one waits for its next attempt: one pending, created a moment ago.
    let gauge = |name: &str| {
        metrics.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.trim().parse::<f64>().ok())
    };
    assert_eq!(gauge("herald_webhook_pending_deliveries"), Some(1.0), "{metrics}");
    let oldest = gauge("herald_webhook_oldest_pending_age_seconds").expect("oldest pending age");
    assert!((0.0..60.0).contains(&oldest), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_longer_than_the_limit_is_disabled_until_re_enabled() {
    // The day-long schedule in about ten seconds, and "failing for days" as two seconds.
    let app = TestApp::spawn_with(Mode::Production, |env| {
        fast(env);
        env.insert("WEBHOOK_DISABLE_AFTER_SECS".into(), "2".into());
    })
    .await;
    let receiver = Receiver::start().await;
    let (webhook, _) = register(&app, "alice", &receiver.url, &[]).await;
    receiver.answer(&[(500, Duration::ZERO); 20]);
    app.post("alice", &format!("/api/v1/webhooks/{webhook}/test"), &json!({})).await;
    let endpoint = disabled(&app, &webhook, Duration::from_secs(30)).await;
    assert!(endpoint["disabled_reason"].as_str().is_some_and(|r| r.starts_with("every delivery failed")), "{endpoint}");
    // Disabled by the rule, not at the end of the schedule (eight attempts), nor at once.
    let listed = deliveries(&app, "alice", &webhook).await;
    let attempts = listed[0]["attempts"].as_array().map_or(0, Vec::len);
    assert_eq!(listed[0]["status"], "dead", "{listed:?}");
    assert!((2..8).contains(&attempts), "{attempts} attempts: {listed:?}");
    let (status, enabled) = app.post("alice", &format!("/api/v1/webhooks/{webhook}/enable"), &json!({})).await;
    assert_eq!((status, &enabled["enabled"]), (200, &json!(true)), "{enabled}");
    receiver.reset();
    let (status, _) = app.post("alice", &format!("/api/v1/webhooks/{webhook}/test"), &json!({})).await;
    assert_eq!(status, 202);
    tests::wait_until(Duration::from_secs(20), "a delivery after re-enabling", || async {
        let listed = deliveries(&app, "alice", &webhook).await;
        listed.iter().any(|d| d["status"] == "succeeded").then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_a_failed_attempt_and_is_never_followed() {
    let app = TestApp::spawn_with(Mode::Production, fast).await;
    // The endpoint answers every delivery with a redirect to another receiver.
    let target = Receiver::start().await;
    let location = target.url.clone();
    let redirect = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .status(poem::http::StatusCode::TEMPORARY_REDIRECT)
            .header("location", location.clone())
            .finish()
    });
    let base =
        tests::serve_fake(poem::Route::new().at("/hook", poem::post(redirect)), tests::Recorder::default()).await;
    let (webhook, _) = register(&app, "alice", &format!("{base}/hook"), &[]).await;
    let (status, _) = app.post("alice", &format!("/api/v1/webhooks/{webhook}/test"), &json!({})).await;
    assert_eq!(status, 202);
    // Every attempt of the (compressed) schedule is made and fails with the 307.
    let dead = tests::wait_until(Duration::from_secs(40), "the delivery to die", || async {
        let listed = deliveries(&app, "alice", &webhook).await;
        listed.into_iter().find(|d| d["status"] == "dead")
    })
    .await;
    let attempts = dead["attempts"].as_array().expect("attempts");
    assert!(attempts.len() > 1 && attempts.iter().all(|a| a["status_code"] == 307), "{dead}");
    // All of them are over: had one followed the redirect, the target would have it.
    assert!(target.deliveries().is_empty(), "a redirect was followed");
    app.stop().await;
}
