//! The sandbox as a person uses it: its printed environment, evaluated by a shell, is all that
//! points Herald (the embedded default, as `cargo run --release -p api` runs it) at the fakes;
//! each platform is connected the way a browser does it (authorize URL → consent page → Allow →
//! callback), refused once with Deny first, and published to once. The harness's own fakes,
//! which the test app starts too, must receive nothing.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use sandbox::{Options, Sandbox, Site, env_for, exports};
use serde_json::{Value, json};
use tests::{Fake, Mode, TestApp, base_env, fake_facebook::PostKind};

/// Evaluates `export` lines in `sh` the way `eval "$(sandbox --print-env)"` does; returns the
/// variables they set.
fn evaluated(exports: &str) -> HashMap<String, String> {
    let run = |script: &str| -> HashMap<String, String> {
        let out =
            Command::new("sh").args(["-c", r#"eval "$1" && env -0"#, "sh", script]).env_clear().output().expect("sh");
        assert!(out.status.success(), "sh: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
            .split(|b| *b == 0)
            .filter_map(|entry| {
                let entry = String::from_utf8_lossy(entry);
                let (name, value) = entry.split_once('=')?;
                Some((name.to_owned(), value.to_owned()))
            })
            .collect()
    };
    let before = run("");
    run(exports).into_iter().filter(|(name, value)| before.get(name) != Some(value)).collect()
}

/// Herald's embedded default with the test harness's settings (secrets, fast polling) and, for
/// every platform, only what `sandbox_env` says: none of the harness's fakes, and no
/// `MEDIA_ALLOW_PRIVATE` unless the sandbox printed it.
async fn herald_on(sandbox_env: HashMap<String, String>) -> TestApp {
    TestApp::spawn_with(Mode::Embedded, move |env| {
        let backend = env["BACKEND_URL"].clone();
        *env = base_env(&[], &backend);
        env.remove("MEDIA_ALLOW_PRIVATE");
        env.extend(sandbox_env);
    })
    .await
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// Every `<{name} …>` tag of a page.
fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name} ");
    html.match_indices(&open).map(|(at, _)| &html[at..at + html[at..].find('>').expect("a closed tag")]).collect()
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = start + tag[start..].find('"')?;
    Some(unescape(&tag[start..end]))
}

type Pairs = Vec<(String, String)>;

/// The consent page's form.
struct ConsentForm {
    action: String,
    /// Its hidden fields.
    fields: Pairs,
    /// What its buttons send (`name`, `value`).
    buttons: Pairs,
}

fn consent_form(html: &str) -> ConsentForm {
    let forms = tags(html, "form");
    assert_eq!(forms.len(), 1, "one form: {html}");
    assert_eq!(attr(forms[0], "method").as_deref(), Some("post"));
    let named = |tag: &str| (attr(tag, "name").expect("name"), attr(tag, "value").expect("value"));
    ConsentForm {
        action: attr(forms[0], "action").expect("action"),
        fields: tags(html, "input").into_iter().map(named).collect(),
        buttons: tags(html, "button").into_iter().map(named).collect(),
    }
}

/// Connects `platform` as a browser does: opens the `oauth_url`, reads the consent page, clicks
/// the button whose value is `choice`, follows the redirect to Herald's callback. Returns the
/// callback's status and page.
async fn connect_by_consent(app: &TestApp, platform: &str, choice: &str) -> (u16, String) {
    let oauth_url = app.initiate("alice", platform).await;
    let page = app.http.get(&oauth_url).send().await.expect("authorize");
    assert_eq!(page.status().as_u16(), 200, "{platform}: the authorize URL answers the consent page");
    let html = page.text().await.expect("consent page");
    let ConsentForm { action, mut fields, buttons } = consent_form(&html);
    let values: Vec<&str> = buttons.iter().map(|(_, value)| value.as_str()).collect();
    assert_eq!(values, ["allow", "deny"], "{platform}: Allow and Deny");
    assert!(html.contains("Allow") && html.contains("Deny"), "{html}");
    let button = buttons.iter().find(|(_, value)| value == choice).expect("the button").clone();
    fields.push(button);
    let action = url::Url::parse(&oauth_url).expect("oauth url").join(&action).expect("action");
    let response = app.http.post(action).form(&fields).send().await.expect("consent decision");
    assert_eq!(response.status().as_u16(), 302, "{platform}: the decision redirects back");
    let location = response.headers()["location"].to_str().expect("location").to_owned();
    assert!(location.starts_with(&app.url("/api/v1/auth/social/callback/")), "{platform}: back to Herald: {location}");
    app.callback(&location).await
}

/// The JSON the popup page posts to its opener.
fn popup_message(html: &str) -> Value {
    let start = html.find("var message = ").expect("message") + "var message = ".len();
    let end = start + html[start..].find(";\n").expect("end of message");
    serde_json::from_str(&html[start..end]).expect("message JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_connects_all_five_through_the_consent_pages_and_publishes_once_to_each() {
    let sandbox = Sandbox::start(&Options { port_base: 0, ..Options::default() }, false).await.expect("sandbox");
    let app = herald_on(evaluated(&exports(&sandbox.env()))).await;

    // Deny first: each platform's own refusal comes back to Herald's callback and is reported.
    let refusals = [
        ("twitter", "access_denied"),
        ("linkedin", "user_cancelled_authorize"),
        ("instagram", "access_denied"),
        ("facebook", "access_denied"),
        ("tiktok", "access_denied"),
    ];
    for (platform, error) in refusals {
        let (status, html) = connect_by_consent(&app, platform, "deny").await;
        assert_eq!(status, 400, "{platform}: {html}");
        let message = popup_message(&html);
        assert_eq!((message["status"].as_str(), message["error"].as_str()), (Some("error"), Some(error)), "{message}");
    }
    let (_, connections) = app.get("alice", "/api/v1/auth/social/connections").await;
    assert_eq!(connections["connections"], json!([]), "nothing connected by a refusal");

    // Then Allow: connected as the fakes' accounts.
    let mut popups = HashMap::new();
    for platform in ["twitter", "linkedin", "instagram", "facebook", "tiktok"] {
        let (status, html) = connect_by_consent(&app, platform, "allow").await;
        assert_eq!(status, 200, "{platform}: {html}");
        let message = popup_message(&html);
        assert_eq!(message["status"], "connected", "{platform}: {message}");
        popups.insert(platform, message);
    }
    assert_eq!(popups["twitter"]["username"], tests::fake_x::USERNAME);
    assert_eq!(popups["instagram"]["username"], tests::fake_instagram::USERNAME);
    // Facebook: two Pages, so the popup asks the console to choose; it posts the choice.
    let facebook = &popups["facebook"];
    assert_eq!(facebook["needs_page_selection"], true, "{facebook}");
    let page_ids: Vec<&str> =
        facebook["pages"].as_array().expect("pages").iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(page_ids, ["101", "102"]);
    let (status, body) = app.post("alice", "/api/v1/auth/social/pages/facebook", &json!({"page_id": "101"})).await;
    assert_eq!(status, 200, "{body}");
    let (_, status) = app.get("alice", "/api/v1/auth/social/status").await;
    for platform in ["twitter", "linkedin", "instagram", "facebook", "tiktok"] {
        let entry = status["platforms"].as_array().and_then(|all| all.iter().find(|p| p["platform"] == platform));
        assert_eq!(entry.map(|p| &p["status"]), Some(&json!("active")), "{platform}: {status}");
    }
    let facebook = status["platforms"].as_array().and_then(|all| all.iter().find(|p| p["platform"] == "facebook"));
    assert_eq!(facebook.map(|p| &p["page_name"]), Some(&json!("Herald Cafe")), "{status}");

    // One post each: text to X, LinkedIn and the Page, an image to Instagram, a video to TikTok;
    // and a video to the Page, which goes to another host.
    let image = sandbox.sample_image_url();
    let video = sandbox.sample_video_url();
    let posts = [
        ("twitter", "Hello from the sandbox", vec![]),
        ("linkedin", "Hello LinkedIn from the sandbox", vec![]),
        ("facebook", "Hello Page from the sandbox", vec![]),
        // Page videos go to Graph's video host: FACEBOOK_VIDEO_API_BASE.
        ("facebook", "A Page video from the sandbox", vec![video.clone()]),
        ("instagram", "A picture from the sandbox", vec![image.clone()]),
        ("tiktok", "A clip from the sandbox", vec![video.clone()]),
    ];
    let mut ids = Vec::new();
    for (platform, content, media) in posts {
        let (status, body) = app.schedule_media("alice", platform, content, media, Value::Null).await;
        assert_eq!(status, 201, "{platform}: {body}");
        ids.push((platform, body["posts"][0]["id"].as_str().expect("id").to_owned()));
    }
    let mut platform_ids: HashMap<&str, Vec<String>> = HashMap::new();
    for (platform, id) in ids {
        let post = app.wait_for_post("alice", &id, &["posted", "failed", "unknown"], Duration::from_secs(90)).await;
        assert_eq!(post["status"], "posted", "{platform}: {post}");
        let platform_id = post["platform_post_id"].as_str().expect("platform post id").to_owned();
        platform_ids.entry(platform).or_default().push(platform_id);
    }
    let id = |platform: &str| platform_ids[platform][0].clone();

    // Each fake of the sandbox published exactly one, the one Herald reports.
    let tweets = sandbox.x.tweets();
    assert_eq!(tweets.len(), 1, "{tweets:?}");
    assert_eq!((&tweets[0].0, tweets[0].1.as_str()), (&id("twitter"), "Hello from the sandbox"));
    let linkedin = sandbox.linkedin.created_posts();
    assert_eq!(linkedin.len(), 1, "{linkedin:?}");
    assert_eq!(linkedin[0].urn, id("linkedin"));
    let page_posts = sandbox.facebook.page_posts();
    let posted: Vec<(&str, PostKind, &str)> =
        page_posts.iter().map(|p| (p.id.as_str(), p.kind, p.page_id.as_str())).collect();
    let facebook_ids = &platform_ids["facebook"];
    assert_eq!(
        posted,
        [(facebook_ids[0].as_str(), PostKind::Feed, "101"), (facebook_ids[1].as_str(), PostKind::Video, "101")]
    );
    let instagram = sandbox.instagram.published_media();
    assert_eq!(instagram.len(), 1, "{instagram:?}");
    assert_eq!(instagram[0].media_id, id("instagram"));
    let tiktok = sandbox.tiktok.published();
    assert_eq!(tiktok.len(), 1, "{:?}", sandbox.tiktok.publishes());
    assert_eq!(tiktok[0].urls, std::slice::from_ref(&video), "TikTok pulled the sample video from the verified prefix");
    assert!(sandbox.media.served().iter().any(|s| image.ends_with(&s.path_and_query)), "the image was fetched");

    // Nothing went to the harness's own fakes: the printed environment alone pointed Herald.
    for (name, count) in [
        ("x", app.x.requests().len()),
        ("linkedin", app.linkedin.requests().len()),
        ("instagram", app.instagram.requests().len()),
        ("facebook", app.facebook.requests().len()),
        ("tiktok", app.tiktok.requests().len()),
        ("media", app.media.requests().len()),
    ] {
        assert_eq!(count, 0, "the harness's fake {name} was called");
    }

    // A person watching sees each publish in the log and on the fake's page.
    let log = sandbox.log_lines();
    let expected = [
        format!("x: POST /2/tweets → 201 tweet {}", id("twitter")),
        format!("linkedin: POST /rest/posts → 201 post {}", id("linkedin")),
        format!("facebook: POST /v26.0/101/feed → 200 post {}", id("facebook")),
        format!("facebook: POST /v26.0/101/videos → 200 video {}", platform_ids["facebook"][1]),
        format!(" → 200 published media {}", id("instagram")),
        "tiktok: POST /v2/post/publish/video/init/ → 200 publish ".to_owned(),
        "x: consent Deny → 302 back to".to_owned(),
        "x: consent Allow → 302 back to".to_owned(),
    ];
    for line in expected {
        assert!(log.iter().any(|l| l.contains(&line)), "no log line with {line:?}:\n{}", log.join("\n"));
    }
    assert!(!log.iter().any(|l| sandbox.x.issued_tokens().iter().any(|t| l.contains(t))), "no token in the log");
    for (site, published) in [(Site::X, id("twitter")), (Site::Instagram, id("instagram"))] {
        let page =
            app.http.get(format!("{}/", sandbox.url(site))).send().await.expect("page").text().await.expect("html");
        assert!(page.contains(&published) && page.contains("Published: 1"), "{page}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_refusal_the_fake_never_gave_does_not_turn_the_next_allow_into_one() {
    let sandbox = Sandbox::start(&Options { port_base: 0, ..Options::default() }, false).await.expect("sandbox");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let authorize = format!("{}/v2/auth/authorize/", sandbox.url(Site::Tiktok));
    let valid = [
        ("client_key", tests::fake_tiktok::CLIENT_ID),
        ("response_type", "code"),
        ("scope", "user.info.basic,video.publish"),
        ("redirect_uri", "http://localhost:8080/api/v1/auth/social/callback/tiktok"),
        ("state", "s1"),
    ];
    let decide = |fields: Vec<(&'static str, &'static str)>| {
        let request = http.post(&authorize).form(&fields);
        async move { request.send().await.expect("decision") }
    };
    // Deny on a request TikTok refuses itself (a wrong client): its error page, no redirect.
    let refused = decide(vec![("client_key", "wrong"), ("response_type", "code"), ("sandbox_decision", "deny")]).await;
    assert_eq!(refused.status().as_u16(), 400);
    // The next Allow still gets a code.
    let mut fields = valid.to_vec();
    fields.push(("sandbox_decision", "allow"));
    let allowed = decide(fields).await;
    assert_eq!(allowed.status().as_u16(), 302);
    let location = allowed.headers()["location"].to_str().expect("location");
    assert!(location.contains("code=") && !location.contains("error="), "{location}");
    // And a Deny on a valid request is TikTok's own refusal.
    let mut fields = valid.to_vec();
    fields.push(("sandbox_decision", "deny"));
    let denied = decide(fields).await;
    let location = denied.headers()["location"].to_str().expect("location");
    assert!(location.contains("error=access_denied") && location.contains("state=s1"), "{location}");
}

/// The binary, killed on drop.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_the_fakes_it_prints_and_print_env_names_the_same_variables() {
    let bin = env!("CARGO_BIN_EXE_sandbox");
    let mut child = Running(
        Command::new(bin)
            .args(["--port-base", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the sandbox"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let printed = tokio::task::spawn_blocking(move || {
        let mut printed = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("a line");
            if line.starts_with("# sandbox ready") {
                return printed;
            }
            printed.push_str(&line);
            printed.push('\n');
        }
        panic!("the sandbox ended before it was ready:\n{printed}");
    })
    .await
    .expect("stdout reader");
    let env = evaluated(&printed);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");

    // Each platform's page names its fake; its authorize URL answers a consent page.
    for (prefix, title) in [
        ("TWITTER", "X"),
        ("LINKEDIN", "LinkedIn"),
        ("INSTAGRAM", "Instagram"),
        ("FACEBOOK", "Facebook"),
        ("TIKTOK", "TikTok"),
    ] {
        let base = &env[&format!("{prefix}_API_BASE")];
        let page = http.get(format!("{base}/")).send().await.expect("page").text().await.expect("html");
        assert!(page.contains(&format!("Fake {title} (Herald sandbox)")), "{prefix}: {page}");
        let consent = http.get(&env[&format!("{prefix}_AUTH_URL")]).send().await.expect("consent");
        assert_eq!(consent.status().as_u16(), 200, "{prefix}");
        assert!(consent.text().await.expect("html").contains("value=\"allow\""), "{prefix}");
    }

    // `--print-env` prints the same variables, for the fixed ports it names.
    let out = Command::new(bin).args(["--print-env", "--port-base", "9100"]).output().expect("--print-env");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fixed = evaluated(&String::from_utf8(out.stdout).expect("utf-8"));
    let names = |env: &HashMap<String, String>| {
        let mut names: Vec<String> = env.keys().cloned().collect();
        names.sort();
        names
    };
    assert_eq!(names(&fixed), names(&env));
    assert_eq!(fixed, evaluated(&exports(&env_for(&Options { port_base: 9100, ..Options::default() }))));
    assert_eq!(fixed["TWITTER_AUTH_URL"], "http://127.0.0.1:9101/i/oauth2/authorize");
    assert_eq!(fixed["FACEBOOK_VIDEO_API_BASE"], "http://127.0.0.1:9104");
    assert_eq!(fixed["MEDIA_ALLOW_PRIVATE"], "true");
}
