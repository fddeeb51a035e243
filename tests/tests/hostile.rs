//! Hostile input at the edge (README "Limits"): oversized and malformed bodies, NUL and control
//! characters, 10,000 hashtags, 100 KB path parameters, SQL metacharacters in every string
//! field, a bearer token with a 1 MB header, a callback with 100 query parameters. None gives a
//! 500 or takes the server down, the refusals leave every stored row as it was, and what is
//! accepted is stored and returned byte for byte.

use std::time::Duration;

use serde_json::{Value, json};
use tests::{Mode, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every table a request could write, each row as JSON text, in a stable order.
async fn stored(app: &TestApp) -> Vec<String> {
    let mut rows = Vec::new();
    for table in [
        "scheduled_posts",
        "social_media_connections",
        "oauth_states",
        "idempotency_keys",
        "campaign_chat_history",
        "webhook_endpoints",
        "webhook_events",
        "webhook_deliveries",
    ] {
        let sql = format!("SELECT '{table}: ' || row_to_json(t)::text AS row FROM {table} t ORDER BY 1");
        for row in app.query(&sql).await {
            rows.push(row.try_get::<String>("", "row").expect("row"));
        }
    }
    rows
}

/// A request's answer: status and JSON body (`Null` when the body is not JSON).
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the api answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A refusal: a 4xx in the one error shape.
fn refused(what: &str, (status, body): &(u16, Value), expected: u16) {
    assert_eq!(*status, expected, "{what}: {body}");
    assert!(body["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{what}: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
}

/// Writes `head` and then `body` by hand and reads the answer's status line: a client still
/// writing may see an early answer as a broken pipe, which reqwest reports as an error.
async fn raw(app: &TestApp, head: &str, body: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(app.base_url.trim_start_matches("http://")).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write the head");
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn schedule_body(content: &str, at: &str) -> Value {
    json!({"campaign_id": "hostile", "platforms": ["twitter"], "content": content, "scheduled_time": at})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_and_change_nothing_stored() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let (status, body) =
        app.post("alice", "/api/v1/posts/schedule", &schedule_body("the one stored post", &later)).await;
    assert_eq!(status, 201, "{body}");
    let post_id = body["posts"][0]["id"].as_str().expect("id").to_owned();
    let (status, body) =
        app.post("alice", "/api/v1/campaigns/hostile/chat", &json!({"role": "user", "message": "hi"})).await;
    assert_eq!(status, 200, "{body}");
    let before = stored(&app).await;
    let token = app.token("alice");
    let schedule = || app.http.post(app.url("/api/v1/posts/schedule")).bearer_auth(&token);

    // A chunked body over 256 KiB (no Content-Length to refuse it by).
    let big = format!("{{\"campaign_id\": \"hostile\", \"content\": \"{}\"}}", "a".repeat(300 * 1024));
    let head = format!(
        "POST /api/v1/posts/schedule HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let chunked = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
    let answer = raw(&app, &head, chunked.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    // JSON nested 50,000 deep, invalid UTF-8, a body that is not JSON, the wrong content type.
    let nested = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    for (what, bytes) in [
        ("nested", format!("{{\"campaign_id\": {nested}}}").into_bytes()),
        ("invalid utf-8", b"{\"campaign_id\": \"c\xff\xfe\", \"platforms\": [\"twitter\"]}".to_vec()),
        ("raw control character", b"{\"campaign_id\": \"c\x01\"}".to_vec()),
        ("truncated", b"{\"campaign_id\": ".to_vec()),
    ] {
        let answer = send(schedule().header("content-type", "application/json").body(bytes)).await;
        refused(what, &answer, 400);
    }
    let answer = send(schedule().header("content-type", "text/plain").body("campaign_id=c")).await;
    refused("text/plain", &answer, 415);

    // NUL in every text field that is stored: refused, never a database error.
    for (what, body) in [
        ("content", schedule_body("before\u{0}after", &later)),
        (
            "hashtags",
            json!({"campaign_id": "c", "platforms": ["twitter"], "content": "x", "hashtags": ["a\u{0}b"], "scheduled_time": later}),
        ),
        (
            "campaign_id",
            json!({"campaign_id": "c\u{0}", "platforms": ["twitter"], "content": "x", "scheduled_time": later}),
        ),
        (
            "platform",
            json!({"campaign_id": "c", "platforms": ["twitter\u{0}"], "content": "x", "scheduled_time": later}),
        ),
        ("time", schedule_body("x", &format!("{later}\u{0}"))),
    ] {
        refused(what, &send(schedule().json(&body)).await, 422);
    }
    refused(
        "edit with NUL",
        &send(
            app.http
                .patch(app.url(&format!("/api/v1/posts/{post_id}")))
                .bearer_auth(&token)
                .json(&json!({"content": "a\u{0}"})),
        )
        .await,
        422,
    );
    refused(
        "chat with NUL",
        &app.post("alice", "/api/v1/campaigns/hostile/chat", &json!({"role": "user", "message": "a\u{0}b"})).await,
        422,
    );

    // 10,000 hashtags: over X's limit, refused with the count.
    let tags: Vec<String> = (0..10_000).map(|n| format!("tag{n}")).collect();
    let body = json!({"campaign_id": "c", "platforms": ["twitter"], "content": "x", "hashtags": tags, "scheduled_time": later});
    let answer = send(schedule().json(&body)).await;
    refused("10,000 hashtags", &answer, 422);
    assert!(answer.1["error"]["message"].as_str().is_some_and(|m| m.contains("over its limit")), "{}", answer.1);

    // 100 KB identifiers: in the body they reach validation; in a path they are past what a URI
    // may hold (the http crate's 64 KiB), so hyper answers 414 before Herald sees them, and
    // identifiers just under that reach every kind of path parameter.
    let long = "a".repeat(100 * 1024);
    refused(
        "long campaign_id",
        &send(
            schedule()
                .json(&json!({"campaign_id": long, "platforms": ["twitter"], "content": "x", "scheduled_time": later})),
        )
        .await,
        422,
    );
    let head = format!(
        "GET /api/v1/posts/scheduled/{long} HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let answer = raw(&app, &head, b"").await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{:.200}", answer);
    let long = "a".repeat(60 * 1024);
    for (method, path, status) in [
        ("GET", format!("/api/v1/posts/{long}"), 404),
        ("PATCH", format!("/api/v1/posts/{long}"), 404),
        ("DELETE", format!("/api/v1/posts/cancel/{long}"), 404),
        ("POST", format!("/api/v1/posts/publish/{long}"), 404),
        ("GET", format!("/api/v1/posts/scheduled/{long}"), 422),
        ("GET", format!("/api/v1/campaigns/{long}/chat"), 422),
        ("GET", format!("/api/v1/webhooks/{long}"), 404),
        ("DELETE", format!("/api/v1/auth/social/disconnect/{long}"), 400),
        ("GET", "/api/v1/posts/%00".to_owned(), 404),
        ("POST", "/api/v1/posts/retry/%00".to_owned(), 404),
        ("GET", "/api/v1/webhooks/ep_%00/deliveries".to_owned(), 404),
        ("GET", "/api/v1/posts/scheduled/c%00".to_owned(), 422),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = app.http.request(method.clone(), app.url(&path)).bearer_auth(&token);
        if method == reqwest::Method::PATCH {
            request = request.json(&json!({"content": "x"}));
        } else if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        refused(&format!("{method} {:.60}", path), &send(request).await, status);
    }

    // SQL metacharacters where a string goes into a query: inert, a plain refusal or nothing.
    let sql = ["' OR '1'='1", "'; DROP TABLE scheduled_posts; --", "\" OR \"\"=\"", "1; SELECT pg_sleep(10)"];
    for text in sql {
        let quoted = urlencode(text);
        refused(
            "post id",
            &send(app.http.get(app.url(&format!("/api/v1/posts/{quoted}"))).bearer_auth(&token)).await,
            404,
        );
        for query in ["status", "platform", "from", "cursor", "updated_since"] {
            let path = format!("/api/v1/posts/scheduled/hostile?{query}={quoted}");
            refused(&format!("{query}={text}"), &send(app.http.get(app.url(&path)).bearer_auth(&token)).await, 422);
        }
        let body = json!({"campaign_id": text, "platforms": ["twitter"], "content": "x", "scheduled_time": later});
        refused("campaign_id", &send(schedule().json(&body)).await, 422);
        let body = json!({"campaign_id": "c", "platforms": ["twitter"], "content": "x", "hashtags": [text], "scheduled_time": later});
        refused("hashtag", &send(schedule().json(&body)).await, 422);
        refused("initiate", &app.post("alice", "/api/v1/auth/social/initiate", &json!({"platform": text})).await, 400);
        refused("webhook url", &app.post("alice", "/api/v1/webhooks", &json!({"url": text})).await, 422);
    }

    // A bearer token with a 1 MB header: the connection is refused by hyper's header limit (431)
    // or the token by the verifier (401), never more. And one of 100 KB, inside hyper's limit.
    let header = base64_url(&format!("{{\"alg\":\"HS256\",\"pad\":\"{}\"}}", "p".repeat(1024 * 1024)));
    let huge = format!("{header}.e30.c2ln");
    let head = format!(
        "GET /api/v1/posts/{post_id} HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {huge}\r\nConnection: close\r\n\r\n"
    );
    let answer = raw(&app, &head, b"").await;
    assert!(answer.starts_with("HTTP/1.1 431") || answer.is_empty(), "{:.200}", answer);
    let header = base64_url(&format!("{{\"alg\":\"HS256\",\"pad\":\"{}\"}}", "p".repeat(100 * 1024)));
    let answer =
        send(app.http.get(app.url(&format!("/api/v1/posts/{post_id}"))).bearer_auth(format!("{header}.e30.c2ln")))
            .await;
    refused("100 KB JWT header", &answer, 401);

    // A callback with 100 query parameters and a forged state: the popup's refusal, not a 500.
    let mut query: Vec<String> = (0..98).map(|n| format!("p{n}={}", "v".repeat(100))).collect();
    query.push("state=forged".into());
    query.push("code=c".into());
    let response = app
        .http
        .get(app.url(&format!("/api/v1/auth/social/callback/twitter?{}", query.join("&"))))
        .send()
        .await
        .expect("callback");
    let status = response.status().as_u16();
    let page = response.text().await.expect("page");
    assert!((400..500).contains(&status), "{status}: {page:.300}");

    // Still serving, and nothing stored changed.
    let (status, body) = app.get("alice", &format!("/api/v1/posts/{post_id}")).await;
    assert_eq!(status, 200, "{body}");
    let after = stored(&app).await;
    assert_eq!(before, after, "a refused request changed what is stored");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_and_sql_metacharacters_are_stored_and_sent_byte_for_byte() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    // Tabs, newlines, C0 and C1 controls, DEL, bidi overrides, zero-width characters, an emoji
    // sequence and SQL: all kept as sent (only leading and trailing whitespace is trimmed).
    let content =
        "a\tb\r\nc\u{1}\u{1b}[31m\u{7f}\u{85}\u{202e}rtl\u{200b}\u{feff}👩‍👩‍👧 '; DROP TABLE scheduled_posts; -- \\ %00 $1";
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let key = "';DROP/**/TABLE/**/idempotency_keys;--";
    let request = || {
        app.http
            .post(app.url("/api/v1/posts/schedule"))
            .bearer_auth(app.token("alice"))
            .header("idempotency-key", key)
            .json(&schedule_body(content, &at))
    };
    let (status, body) = send(request()).await;
    assert_eq!(status, 201, "{body}");
    let post_id = body["posts"][0]["id"].as_str().expect("id").to_owned();
    // The same key replays the first answer: the key was stored as sent and found again.
    let replay = request().send().await.expect("replay");
    assert_eq!(replay.status().as_u16(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let (_, post) = app.get("alice", &format!("/api/v1/posts/{post_id}")).await;
    assert_eq!(post["content"], content);

    let message = "line\u{0b}one\u{1f}\r\n'); DELETE FROM campaign_chat_history; --";
    let (status, body) =
        app.post("alice", "/api/v1/campaigns/hostile/chat", &json!({"role": "user", "message": message})).await;
    assert_eq!(status, 200, "{body}");
    let (_, chat) = app.get("alice", "/api/v1/campaigns/hostile/chat").await;
    assert_eq!(chat["messages"][0]["message"], message, "{chat}");

    // X receives the text exactly as stored, once.
    let published =
        app.wait_for_post("alice", &post_id, &["posted", "failed", "unknown"], Duration::from_secs(60)).await;
    assert_eq!(published["status"], "posted", "{published}");
    let texts: Vec<String> = app.x.tweets().into_iter().map(|(_, text)| text).collect();
    assert_eq!(texts, [content]);
    // The tables the SQL named are all still there.
    for table in ["scheduled_posts", "idempotency_keys", "campaign_chat_history"] {
        let rows = app.query(&format!("SELECT count(*)::bigint AS n FROM {table}")).await;
        assert!(rows[0].try_get::<i64>("", "n").expect("count") >= 1, "{table}");
    }
    app.stop().await;
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn base64_url(text: &str) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD.encode(text)
}
