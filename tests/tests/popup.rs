//! The OAuth popup page in a real browser (Debian's headless Chromium, driven through
//! chromedriver's WebDriver API): an opener page on `FRONTEND_ORIGIN` opens the consent popup,
//! the fake platform consents, Herald's callback page posts the result to the opener and closes;
//! the same flow opened from another origin delivers nothing.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use poem::{Route, handler, web::Html};
use serde_json::{Value, json};
use tests::{Mode, TestApp, wait_until};

/// The opener: opens the URL in `?u=` as a popup and records every message it receives.
#[handler]
fn opener() -> Html<&'static str> {
    Html(
        r#"<!doctype html><html><body><script>
window.received = [];
window.addEventListener('message', function (e) { window.received.push({origin: e.origin, data: e.data}); });
window.popup = window.open(new URLSearchParams(location.search).get('u'), 'herald-oauth', 'width=500,height=600');
</script></body></html>"#,
    )
}

/// A frontend page with nothing on it, for scripts run through WebDriver.
#[handler]
fn blank() -> Html<&'static str> {
    Html("<!doctype html><html><body>frontend</body></html>")
}

/// The original frontend's calls, made with `fetch` from the page: start a connection, read the
/// status, schedule with an `Idempotency-Key`. Resolves with what the page could read.
const FRONTEND_CALLS: &str = r#"
var api = arguments[0], token = arguments[1], at = arguments[2], done = arguments[arguments.length - 1];
var headers = {'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'};
var out = {};
fetch(api + '/api/v1/auth/social/initiate', {method: 'POST', headers: headers, body: JSON.stringify({platform: 'twitter'})})
  .then(function (r) { out.initiate = r.status; return r.json(); })
  .then(function (j) { out.oauth_url = j.oauth_url; return fetch(api + '/api/v1/auth/social/status', {headers: headers}); })
  .then(function (r) { out.status = r.status; return r.json(); })
  .then(function () {
    var body = {campaign_id: 'web', posts: [{content: 'from the frontend', platforms: ['linkedin'],
      scheduled_time: at, hashtags: ['#marketing']}]};
    return fetch(api + '/api/v1/posts/schedule', {method: 'POST', body: JSON.stringify(body),
      headers: Object.assign({'Idempotency-Key': 'web-1'}, headers)});
  })
  .then(function (r) { out.schedule = r.status; out.replayed = r.headers.get('Idempotent-Replayed'); return r.json(); })
  .then(function (j) { out.answer = j; out.content = j.posts ? j.posts[0].content : null; done(out); })
  .catch(function (e) { out.error = String(e); done(out); });
"#;

async fn serve_opener() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).expect("acceptor");
    let routes = Route::new().at("/opener", poem::get(opener)).at("/app", poem::get(blank));
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(routes));
    origin
}

/// chromedriver and one headless Chromium session, ended on drop.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    profile: std::path::PathBuf,
}

impl Browser {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; .ci/services installs it)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_until(Duration::from_secs(20), "chromedriver to start", || async {
            http.get(format!("{base}/status")).send().await.ok().filter(|r| r.status().is_success())
        })
        .await;
        let profile = std::env::temp_dir().join(format!("herald-chromium-{}", uuid::Uuid::new_v4().simple()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-popup-blocking",
                     "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", format!("--user-data-dir={}", profile.display())]
        }}}});
        let response: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("json");
        let session =
            response["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {response}")).to_owned();
        Self { driver, base, session, http, profile }
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let response: Value =
            self.http.post(url).json(&body).send().await.expect("webdriver").json().await.expect("json");
        response["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command("url", json!({"url": url})).await;
    }

    async fn received(&self) -> Vec<Value> {
        self.command("execute/sync", json!({"script": "return window.received || [];", "args": []}))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    /// Ends the WebDriver session first, which closes Chromium (killing chromedriver alone leaves
    /// a headless Chromium running), then stops the driver. Blocking std I/O: `drop` cannot await,
    /// and this runs during a panic too.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let address = self.base.trim_start_matches("http://").to_owned();
        if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn opener_url(origin: &str, oauth_url: &str) -> String {
    format!("{origin}/opener?u={}", url::form_urlencoded::byte_serialize(oauth_url.as_bytes()).collect::<String>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn popup_posts_its_result_to_the_frontend_origin_only() {
    let frontend = serve_opener().await;
    let elsewhere = serve_opener().await;
    let origin = frontend.clone();
    let app = TestApp::spawn_with(Mode::Production, move |env| {
        env.insert("FRONTEND_ORIGIN".into(), origin.clone());
        env.insert("FRONTEND_URL".into(), format!("{origin}/connected"));
    })
    .await;
    let browser = Browser::start().await;

    // From the frontend's origin: the opener receives the result and the popup closes.
    browser.open(&opener_url(&frontend, &app.initiate("alice", "twitter").await)).await;
    let messages = wait_until(Duration::from_secs(20), "the opener to receive the popup's message", || async {
        let received = browser.received().await;
        (!received.is_empty()).then_some(received)
    })
    .await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["origin"], app.base_url.as_str());
    let data = &messages[0]["data"];
    assert_eq!(
        (data["type"].as_str(), data["platform"].as_str(), data["status"].as_str(), data["username"].as_str()),
        (Some("herald:oauth"), Some("twitter"), Some("connected"), Some(tests::fake_x::USERNAME))
    );
    for token in app.issued_tokens() {
        assert!(!data.to_string().contains(&token));
    }
    wait_until(Duration::from_secs(10), "the popup to close itself", || async {
        let closed =
            browser.command("execute/sync", json!({"script": "return window.popup.closed;", "args": []})).await;
        (closed == json!(true)).then_some(())
    })
    .await;

    // From another origin: the same flow completes, but the message is not delivered to it.
    browser.open(&opener_url(&elsewhere, &app.initiate("bob", "twitter").await)).await;
    wait_until(Duration::from_secs(20), "bob's connection", || async {
        let (_, body) = app.get("bob", "/api/v1/auth/social/connections").await;
        (!body["connections"].as_array()?.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(browser.received().await, Vec::<Value>::new(), "a page on another origin received the result");
    drop(browser);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_connects_x_through_the_popup() {
    // With FRONTEND_ORIGIN left at its default, the popup reports to the api's own console page.
    let app = TestApp::spawn_with(Mode::Production, |env| {
        env.remove("FRONTEND_ORIGIN");
        env.remove("FRONTEND_URL");
    })
    .await;
    let browser = Browser::start().await;
    browser.open(&format!("{}/#token={}", app.base_url, app.token("alice"))).await;
    let text = |selector: &'static str| {
        let browser = &browser;
        async move {
            let script = format!("var e = document.querySelector('{selector}'); return e ? e.textContent : null;");
            browser.command("execute/sync", json!({"script": script, "args": []})).await
        }
    };
    wait_until(Duration::from_secs(20), "the console to list the platforms", || async {
        (text("tr[data-platform=twitter] td:nth-child(2)").await == json!("disconnected")).then_some(())
    })
    .await;
    let button =
        browser.command("element", json!({"using": "css selector", "value": "tr[data-platform=twitter] button"})).await;
    let id = button.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).expect("button").to_owned();
    browser.command(&format!("element/{id}/click"), json!({})).await;
    wait_until(Duration::from_secs(20), "the console to show the connection", || async {
        let message = text("#message").await;
        let status = text("tr[data-platform=twitter] td:nth-child(2)").await;
        (message.as_str().is_some_and(|m| m.contains("Connected twitter as heraldtest")) && status == json!("active"))
            .then_some(())
    })
    .await;
    // Then schedule from the console (the campaign body; a minute ahead when no time is given).
    browser
        .command(
            "execute/sync",
            json!({"script": "document.getElementById('content').value = 'from the console'; \
                             document.getElementById('schedule').click(); return true;", "args": []}),
        )
        .await;
    wait_until(Duration::from_secs(20), "the console's post to be scheduled", || async {
        let (_, page) = app.get("alice", "/api/v1/posts/scheduled/console").await;
        (page["posts"][0]["status"] == "pending" && page["posts"][0]["content"] == "from the console").then_some(())
    })
    .await;
    drop(browser);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frontend_on_a_listed_origin_calls_the_api_and_one_elsewhere_is_refused_by_the_browser() {
    let frontend = serve_opener().await;
    let elsewhere = serve_opener().await;
    let listed = frontend.clone();
    let app = TestApp::spawn_with(Mode::Production, move |env| {
        env.insert("FRONTEND_ORIGIN".into(), format!("http://unused.test:1, {listed}"));
    })
    .await;
    app.connect("alice", "linkedin").await;
    let browser = Browser::start().await;
    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let run = async |origin: &str| {
        browser.open(&format!("{origin}/app")).await;
        let args = json!([app.base_url, app.token("alice"), at]);
        browser.command("execute/async", json!({"script": FRONTEND_CALLS, "args": args})).await
    };
    let out = run(&frontend).await;
    assert_eq!(out["error"], Value::Null, "{out}");
    assert_eq!(
        (out["initiate"].as_u64(), out["status"].as_u64(), out["schedule"].as_u64()),
        (Some(200), Some(200), Some(201)),
        "{out}"
    );
    assert!(out["oauth_url"].as_str().is_some_and(|u| u.contains("/i/oauth2/authorize")), "{out}");
    assert_eq!(out["content"], "from the frontend");
    // The replay header is readable from the page too.
    let again = run(&frontend).await;
    assert_eq!((again["schedule"].as_u64(), again["replayed"].as_str()), (Some(201), Some("true")), "{again}");

    // The same page from an origin not listed: the browser refuses to let it read anything.
    let out = run(&elsewhere).await;
    assert!(out["error"].as_str().is_some_and(|e| e.contains("Failed to fetch")), "{out}");
    assert_eq!(out["initiate"], Value::Null);
    let (_, page) = app.get("alice", "/api/v1/posts/scheduled/web").await;
    assert_eq!(page["posts"].as_array().map(Vec::len), Some(1), "only the listed origin scheduled (once)");
    drop(browser);
    app.stop().await;
}
