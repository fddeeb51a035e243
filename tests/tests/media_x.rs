//! Media to X (DESIGN §10, §12) against the fake X and the test media server: images in one
//! upload each, video chunked and processed (a saved `processing` wait, not a sleep), the tweet
//! carrying the ids in order; and media refused at schedule time and when fetched.

use serde_json::Value;
use tests::{Fake, Mode, TestApp, media_server::expected_sha256};

use tests::error_message as message;

async fn schedule(app: &TestApp, media: Vec<String>, content: &str) -> (u16, Value) {
    app.schedule_media("alice", "twitter", content, media, Value::Null).await
}

async fn publish(app: &TestApp, media: Vec<String>, content: &str) -> Value {
    app.publish_media("alice", "twitter", content, media, Value::Null).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_and_a_video_go_to_x_in_order() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;

    // Two images: two simple uploads, then one tweet with both ids in the post's order.
    let images = vec![app.media.media_url("a.jpg", 60_000), app.media.media_url("b.png", 70_000)];
    let post = publish(&app, images.clone(), "two pictures").await;
    assert_eq!(post["status"], "posted", "{post}");
    let uploads = app.x.uploads();
    assert_eq!(uploads.len(), 2);
    assert_eq!(uploads[0].sha256, expected_sha256(&images[0]), "the bytes X received are the file's");
    assert_eq!(uploads[1].sha256, expected_sha256(&images[1]));
    let tweets = app.x.media_tweets();
    assert_eq!(tweets.len(), 1);
    assert_eq!(tweets[0].2, vec![uploads[0].id.clone(), uploads[1].id.clone()], "ids linked in order");
    assert_eq!(post["platform_post_id"].as_str(), Some(tweets[0].0.as_str()));

    // A 9 MB video: initialize, three appends, finalize, STATUS polls until succeeded, tweet.
    let video = app.media.media_url("clip.mp4", 9_000_000);
    let post = publish(&app, vec![video.clone()], "").await;
    assert_eq!(post["status"], "posted", "{post}");
    let upload = app.x.uploads().into_iter().last().expect("video upload");
    assert!(upload.chunked && upload.finalized);
    assert_eq!(upload.total_bytes, 9_000_000);
    assert_eq!(upload.segments.len(), 3, "4 MiB segments");
    assert_eq!(upload.sha256, expected_sha256(&video));
    assert_eq!(upload.processing.as_deref(), Some("succeeded"));
    let steps: Vec<String> = app
        .x
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/2/media/upload/") || r.query.contains("STATUS") || r.path == "/2/tweets")
        .map(|r| {
            r.path.rsplit('/').next().unwrap_or_default().to_owned()
                + if r.query.contains("STATUS") { "?STATUS" } else { "" }
        })
        .skip_while(|step| step != "initialize")
        .collect();
    assert_eq!(
        steps,
        [
            "initialize",
            "append",
            "append",
            "append",
            "finalize",
            "upload?STATUS",
            "upload?STATUS",
            "upload?STATUS",
            "tweets"
        ]
    );
    let tweet = app.x.media_tweets().into_iter().last().expect("video tweet");
    assert_eq!(tweet.2, vec![upload.id.clone()]);
    assert_eq!(app.x.media_tweets().len(), 2, "each post tweeted once");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_media_is_refused_with_the_reason() {
    let app = TestApp::spawn(Mode::Embedded).await;
    app.connect_x("alice").await;
    let jpg = |n: usize| app.media.media_url(&format!("p{n}.jpg"), 10_000);

    // At schedule time: too many, a video with images, not a URL.
    let (status, body) = schedule(&app, (0..5).map(jpg).collect(), "five").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(message(&body), "posts[0].media_urls (twitter): twitter takes at most 4 images in one post");
    let (status, body) = schedule(&app, vec![jpg(1), app.media.media_url("v.mp4", 1000)], "mixed").await;
    assert_eq!(status, 422, "{body}");
    assert!(message(&body).contains("alone"), "{body}");
    let (status, body) = schedule(&app, vec!["not a url".into()], "x").await;
    assert_eq!(status, 422, "{body}");
    assert!(message(&body).starts_with("posts[0].media_urls[0] (twitter): `not a url` is not a URL"), "{body}");

    // When fetched: the bytes are not an image, a file over X's 5 MB, a missing file.
    let post = publish(&app, vec![app.media.url("/media/mislabelled.jpg")], "fake image").await;
    assert_eq!(post["status"], "failed", "{post}");
    assert!(post["posting_error"].as_str().expect("error").contains("not an image or video"), "{post}");
    let post = publish(&app, vec![app.media.media_url("big.jpg", 6_000_000)], "big image").await;
    assert_eq!(post["status"], "failed", "{post}");
    assert!(post["posting_error"].as_str().expect("error").contains("over the limit of 5 MB"), "{post}");
    let post = publish(&app, vec![app.media.url("/status/404")], "gone").await;
    assert_eq!(post["status"], "failed", "{post}");
    assert!(post["posting_error"].as_str().expect("error").contains("HTTP 404"), "{post}");
    assert!(app.x.uploads().is_empty() && app.x.media_tweets().is_empty(), "nothing refused reached X");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_video_that_fails_processing_fails_with_xs_words() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect_x("alice").await;
    app.x.fail_next_processing();
    let post = publish(&app, vec![app.media.media_url("bad.mp4", 2_000_000)], "broken").await;
    assert_eq!(post["status"], "failed", "{post}");
    assert_eq!(post["error_kind"], "rejected");
    assert!(post["posting_error"].as_str().expect("error").contains("Your media file is not supported"), "{post}");
    assert!(app.x.media_tweets().is_empty());
    app.stop().await;
}

/// Without `MEDIA_ALLOW_PRIVATE`: plain http and private literal addresses are refused when the
/// post is scheduled; a name that resolves to a private address is refused when fetched, by the
/// address the connection would use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_without_the_switch() {
    let app = TestApp::spawn_with(Mode::Embedded, |env| {
        env.insert("MEDIA_ALLOW_PRIVATE".into(), "false".into());
    })
    .await;
    app.connect_x("alice").await;
    for (url, says) in [
        (app.media.media_url("a.jpg", 1000), "must be an https URL"),
        ("https://127.0.0.1/a.jpg".to_owned(), "private or reserved"),
        ("https://169.254.169.254/latest/meta-data/x.jpg".to_owned(), "private or reserved"),
        ("https://[::ffff:10.0.0.1]/a.jpg".to_owned(), "private or reserved"),
        ("https://localhost/a.jpg".to_owned(), "private or reserved"),
    ] {
        let (status, body) = schedule(&app, vec![url.clone()], "private").await;
        assert_eq!(status, 422, "{url}: {body}");
        assert!(message(&body).contains(says), "{url}: {body}");
    }
    // `vm` (this machine's name) resolves to 127.0.0.1 through /etc/hosts: accepted as a name,
    // refused by the resolver before any connection.
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default().trim().to_owned();
    let port = app.media.base_url.rsplit(':').next().expect("port").to_owned();
    let post = publish(&app, vec![format!("https://{host}:{port}/media/a.jpg")], "by name").await;
    assert_eq!(post["status"], "failed", "{post}");
    assert!(post["posting_error"].as_str().expect("error").contains("private or reserved"), "{post}");
    assert!(app.media.served().is_empty(), "the media server was never reached");
    app.stop().await;
}
