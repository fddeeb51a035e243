//! Listing posts (issue 8): `GET /api/v1/posts` and a campaign's posts, filtered, by time, in
//! keyset pages that neither repeat nor skip a post while others are added.

use std::collections::HashMap;

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use tests::{Mode, TestApp};

/// Every page of `path` (which may carry filters) for `user`, with `limit` per page.
async fn all_pages(
    app: &TestApp,
    user: &str,
    path: &str,
    limit: u32,
    mut between: impl AsyncFnMut(usize),
) -> Vec<Value> {
    let mut posts = Vec::new();
    let mut cursor: Option<String> = None;
    let sep = if path.contains('?') { '&' } else { '?' };
    for page in 0.. {
        let url = match &cursor {
            Some(cursor) => format!("{path}{sep}limit={limit}&cursor={cursor}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let (status, body) = app.get(user, &url).await;
        assert_eq!(status, 200, "{url}: {body}");
        let items = body["posts"].as_array().expect("posts").clone();
        assert!(items.len() <= limit as usize);
        posts.extend(items);
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        between(page).await;
    }
    posts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_through_a_thousand_posts_without_gap_or_repeat_while_posts_are_added() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    let first = Utc::now() + Duration::hours(1);
    app.insert_x_posts("page", 1000, first, 1000).await;
    app.connect_x("bob").await;
    let seen = all_pages(&app, "alice", "/api/v1/posts", 97, async |page| {
        // New posts land before and after the cursor as the client pages.
        if page % 3 == 0 {
            app.insert_x_posts(&format!("late{page}"), 20, first + Duration::milliseconds(333), 50_000).await;
        }
    })
    .await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for post in &seen {
        *counts.entry(post["id"].as_str().expect("id").to_owned()).or_default() += 1;
    }
    assert!(counts.values().all(|n| *n == 1), "a post was listed twice");
    for n in 1..=1000 {
        assert_eq!(counts.get(&format!("page-{n}")), Some(&1), "page-{n} was skipped");
    }
    // In time order.
    let times: Vec<&str> = seen.iter().map(|p| p["scheduled_time"].as_str().expect("time")).collect();
    let parsed: Vec<_> = times.iter().map(|t| chrono::DateTime::parse_from_rfc3339(t).expect("t")).collect();
    assert!(parsed.windows(2).all(|w| w[0] <= w[1]));
    // Bob sees only his own.
    let bobs = all_pages(&app, "bob", "/api/v1/posts", 500, async |_| {}).await;
    assert!(bobs.iter().all(|p| p["id"].as_str().expect("id").starts_with("late")), "bob saw another user's post");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_filter_by_status_platform_time_and_change() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    app.connect("alice", "linkedin").await;
    let at = |hours: i64| (Utc::now() + Duration::hours(hours)).to_rfc3339();
    let body = json!({"campaign_id": "spring", "posts": [
        {"content": "one", "platforms": ["twitter", "linkedin"], "scheduled_time": at(1)},
        {"content": "two", "platforms": ["twitter"], "scheduled_time": at(2)},
        {"content": "three", "platforms": ["linkedin"], "scheduled_time": at(3)}]});
    let (status, body) = app.post("alice", "/api/v1/posts/schedule", &body).await;
    assert_eq!(status, 201, "{body}");
    let (status, other) = app
        .post(
            "alice",
            "/api/v1/posts/schedule",
            &json!({"campaign_id": "autumn", "posts": [{"content": "four", "platforms": ["twitter"], "scheduled_time": at(4)}]}),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let cancelled = body["posts"][0]["id"].as_str().expect("id").to_owned();
    let before_cancel = Utc::now();
    let (code, _) = app.delete("alice", &format!("/api/v1/posts/cancel/{cancelled}")).await;
    assert_eq!(code, 200);

    let contents = |page: &Value| -> Vec<String> {
        page["posts"]
            .as_array()
            .expect("posts")
            .iter()
            .map(|p| format!("{}:{}", p["content"].as_str().unwrap_or(""), p["platform"].as_str().unwrap_or("")))
            .collect()
    };
    let cases = [
        ("/api/v1/posts", vec!["one:twitter", "one:linkedin", "two:twitter", "three:linkedin", "four:twitter"]),
        ("/api/v1/posts?platform=linkedin", vec!["one:linkedin", "three:linkedin"]),
        ("/api/v1/posts?platform=x&status=pending", vec!["two:twitter", "four:twitter"]),
        ("/api/v1/posts?status=cancelled,posted", vec!["one:twitter"]),
        ("/api/v1/posts/scheduled/spring?status=pending", vec!["one:linkedin", "two:twitter", "three:linkedin"]),
    ];
    for (path, expected) in cases {
        let (status, page) = app.get("alice", path).await;
        assert_eq!(status, 200, "{path}: {page}");
        let mut got = contents(&page);
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        // Posts of one time come in id order; compare as sets within the same time.
        got.sort();
        want.sort();
        assert_eq!(got, want, "{path}");
    }
    let from = urlencode(&at(2).replace("+00:00", "Z"));
    let (_, page) = app.get("alice", &format!("/api/v1/posts?from={from}")).await;
    assert_eq!(contents(&page).len(), 2, "{page}");
    let since = urlencode(&before_cancel.to_rfc3339());
    let (_, page) = app.get("alice", &format!("/api/v1/posts?updated_since={since}")).await;
    assert_eq!(contents(&page), ["one:twitter"], "only the cancelled post changed since");

    for bad in ["?status=lost", "?status=", "?platform=myspace", "?cursor=bm9wZQ", "?from=yesterday"] {
        let (status, body) = app.get("alice", &format!("/api/v1/posts{bad}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("validation_failed")), "{bad}: {body}");
    }
    // A page size outside the document's 1-500 does not match it: 400, with the reason.
    for bad in ["?limit=0", "?limit=501", "?limit=-1"] {
        let (status, body) = app.get("alice", &format!("/api/v1/posts{bad}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{bad}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("limit")), "{bad}: {body}");
    }
    // The summary: counts per platform, the next due post, the last failure.
    let (status, summary) = app.get("alice", "/api/v1/posts/status/summary").await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!((summary["total"].as_i64(), summary["cancelled"].as_i64()), (Some(5), Some(1)));
    let platforms: Vec<(String, i64, i64)> = summary["platforms"]
        .as_array()
        .expect("platforms")
        .iter()
        .map(|p| {
            (
                p["platform"].as_str().unwrap_or("").to_owned(),
                p["total"].as_i64().unwrap_or(0),
                p["pending"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(platforms, [("linkedin".to_owned(), 2, 2), ("twitter".to_owned(), 3, 2)], "{summary}");
    assert_eq!(
        (summary["next_due"]["content"].as_str(), summary["next_due"]["platform"].as_str()),
        (Some("one"), Some("linkedin"))
    );
    assert_eq!(summary["last_failure"], Value::Null);
    let two = body["posts"][2]["id"].as_str().expect("id").to_owned();
    app.exec(&format!(
        "UPDATE scheduled_posts SET status = 'failed', posting_error = 'X said no', due_at = NULL WHERE id = '{two}'"
    ))
    .await;
    let (_, summary) = app.get("alice", "/api/v1/posts/status/summary?campaign_id=spring").await;
    assert_eq!(
        (summary["last_failure"]["id"].as_str(), summary["total"].as_i64()),
        (Some(two.as_str()), Some(4)),
        "{summary}"
    );
    let (_, bobs) = app.get("bob", "/api/v1/posts/status/summary").await;
    assert_eq!((bobs["total"].as_i64(), bobs["next_due"].clone()), (Some(0), Value::Null));

    let (status, page) = app.get("bob", "/api/v1/posts/scheduled/spring").await;
    assert_eq!((status, page["posts"].clone()), (200, json!([])));
    app.stop().await;
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
