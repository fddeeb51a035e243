//! CORS (DESIGN §13): the frontend runs on its own origin (one of `FRONTEND_ORIGIN`, a
//! comma-separated list) and calls the API with `fetch` and a bearer token; no other origin gets
//! an answer a browser would let it read.

use reqwest::Method;
use tests::{Mode, TestApp};

const FRONTEND: &str = "http://frontend.test:3000";
const SECOND: &str = "http://planner.test:4000";

async fn spawn() -> TestApp {
    TestApp::spawn_with(Mode::Production, |env| {
        env.insert("FRONTEND_ORIGIN".into(), format!("{FRONTEND}, {SECOND}"));
    })
    .await
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().unwrap_or_default().to_owned())
}

/// The browser's preflight of a schedule request with the frontend's headers, from `origin`.
async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.http
        .request(Method::OPTIONS, app.url("/api/v1/posts/schedule"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization, content-type, idempotency-key")
        .send()
        .await
        .expect("preflight")
}

/// Alice's connection status, asked from `origin`.
async fn status_from(app: &TestApp, origin: &str) -> reqwest::Response {
    app.http
        .get(app.url("/api/v1/auth/social/status"))
        .header("Origin", origin)
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .expect("GET")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_origins_may_call_the_api_and_others_may_not() {
    let app = spawn().await;
    for origin in [FRONTEND, SECOND, app.base_url.as_str()] {
        let preflight = preflight(&app, origin).await;
        assert_eq!(preflight.status().as_u16(), 200, "{origin}");
        assert_eq!(header(&preflight, "access-control-allow-origin").as_deref(), Some(origin));
        let allowed = header(&preflight, "access-control-allow-headers").unwrap_or_default().to_lowercase();
        assert!(allowed.contains("authorization") && allowed.contains("idempotency-key"), "{allowed}");

        let response = status_from(&app, origin).await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(header(&response, "access-control-allow-origin").as_deref(), Some(origin));
        assert!(header(&response, "access-control-expose-headers").unwrap_or_default().contains("idempotent-replayed"));
    }

    // Any other origin: refused in the one error shape, with nothing a browser would accept.
    for origin in ["http://evil.test", "http://frontend.test:3001", "https://frontend.test:3000"] {
        let preflight = preflight(&app, origin).await;
        assert_eq!(preflight.status().as_u16(), 403, "{origin}");
        assert_eq!(header(&preflight, "access-control-allow-origin"), None);
        let body: serde_json::Value = preflight.json().await.expect("json");
        assert!(body["error"]["code"].is_string(), "{body}");
        let response = status_from(&app, origin).await;
        assert_eq!(header(&response, "access-control-allow-origin"), None, "{origin}");
        assert_eq!(response.status().as_u16(), 403);
    }

    // Without an Origin (curl, servers), nothing changes.
    let response =
        app.http.get(app.url("/api/v1/auth/social/status")).bearer_auth(app.token("alice")).send().await.expect("GET");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_popup_reports_to_every_listed_origin_and_no_other() {
    let app = spawn().await;
    let html = app.connect_x("alice").await;
    assert!(html.contains(&format!("[\"{FRONTEND}\",\"{SECOND}\"]")), "{html}");
    assert!(!html.contains("\"*\""));
    app.stop().await;
}
