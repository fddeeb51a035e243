//! Media to a Facebook Page (DESIGN §10, §12) against the fake Facebook and the test media server:
//! Facebook fetches every URL itself, so Herald probes each (a ranged request) and hands it over.
//! One photo is one `photos` post; several are unpublished photos attached to one feed post, in
//! order; a video is posted by `file_url` and its processing awaited as saved `confirming` steps.
//! Media refused at schedule time, when probed, and by Facebook fails with the reason.

use std::time::Duration;

use serde_json::{Value, json};
use tests::{
    Fake, Mode, TestApp,
    fake_facebook::{PostKind, VideoStatus},
    media_server::expected_sha256,
};

use tests::error_message as message;

use tests::posting_error as error_of;

/// Connects Facebook for alice and picks the Page "Herald Cafe" (101).
async fn connect_page(app: &TestApp) {
    app.connect("alice", "facebook").await;
    let (status, body) = app.post("alice", "/api/v1/auth/social/pages/facebook", &json!({"page_id": "101"})).await;
    assert_eq!(status, 200, "{body}");
}

async fn schedule(app: &TestApp, media: Vec<String>, content: &str) -> (u16, Value) {
    app.schedule_media("alice", "facebook", content, media, Value::Null).await
}

async fn publish(app: &TestApp, media: Vec<String>, content: &str) -> Value {
    app.publish_media("alice", "facebook", content, media, Value::Null).await
}

/// The Page publishing calls Facebook received, by edge (`photos`, `feed`, `videos`, or `status`
/// for a video status read), in order.
fn steps(app: &TestApp) -> Vec<String> {
    app.facebook
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v26.0/") && !r.path.contains("/me") && !r.path.contains("oauth"))
        .map(|r| match r.path.rsplit('/').next() {
            Some(edge @ ("photos" | "feed" | "videos")) => edge.to_owned(),
            _ if r.query.contains("fields=status") => "status".to_owned(),
            _ => r.path.clone(),
        })
        .collect()
}

/// Whether each URL was probed (a ranged 206 with only the first bytes) before Facebook fetched it.
fn probed_before_fetched(app: &TestApp, url: &str) -> bool {
    let path = url.trim_start_matches(&app.media.base_url);
    let served: Vec<_> = app.media.served().into_iter().filter(|s| s.path_and_query == path).collect();
    served.len() == 2 && served[0].status == 206 && served[0].bytes_sent <= 32 && served[1].status == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_and_a_video_go_to_the_page_in_order() {
    let app = TestApp::spawn(Mode::Production).await;
    connect_page(&app).await;

    // One photo: probed, then one `photos` call that is the post.
    let photo = app.media.media_url("one.jpg", 60_000);
    let post = publish(&app, vec![photo.clone()], "one picture").await;
    assert_eq!(post["status"], "posted", "{post}");
    assert_eq!(steps(&app), ["photos"]);
    let photos = app.facebook.photos();
    assert_eq!((photos.len(), photos[0].published, photos[0].message.as_str()), (1, true, "one picture"));
    assert_eq!(photos[0].sha256, expected_sha256(&photo), "Facebook fetched the file's bytes");
    assert_eq!(post["platform_post_id"].as_str(), photos[0].attached_to.as_deref(), "the post id, not the photo's");
    assert!(probed_before_fetched(&app, &photo));

    // Three photos: three unpublished uploads in order, then one feed post attaching them in order.
    let three: Vec<String> = ["a.jpg", "b.png", "c.webp"].iter().map(|n| app.media.media_url(n, 70_000)).collect();
    let post = publish(&app, three.clone(), "three pictures").await;
    assert_eq!(post["status"], "posted", "{post}");
    assert_eq!(steps(&app), ["photos", "photos", "photos", "photos", "feed"]);
    let uploaded = &app.facebook.photos()[1..];
    assert!(uploaded.iter().all(|p| !p.published), "uploaded unpublished");
    let urls: Vec<&str> = uploaded.iter().map(|p| p.url.as_str()).collect();
    assert_eq!(urls, three.iter().map(String::as_str).collect::<Vec<_>>(), "uploaded in the post's order");
    for (photo, url) in uploaded.iter().zip(&three) {
        assert_eq!(photo.sha256, expected_sha256(url));
        assert!(probed_before_fetched(&app, url), "{url}");
    }
    let feed = app.facebook.page_posts().into_iter().find(|p| p.kind == PostKind::Feed).expect("feed post");
    assert_eq!(feed.photo_ids, uploaded.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), "ids linked in order");
    assert_eq!((feed.page_id.as_str(), feed.message.as_str()), ("101", "three pictures"));
    assert_eq!(post["platform_post_id"].as_str(), Some(feed.id.as_str()));
    assert!(uploaded.iter().all(|p| p.attached_to.as_deref() == Some(feed.id.as_str())));

    // A video: probed, posted by `file_url` on graph-video, then status polls until `ready`.
    let video = app.media.media_url("clip.mp4", 3_000_000);
    let post = publish(&app, vec![video.clone()], "a clip").await;
    assert_eq!(post["status"], "posted", "{post}");
    assert_eq!(steps(&app)[5..], ["videos", "status", "status", "status"]);
    let videos = app.facebook.videos();
    assert_eq!(videos.len(), 1);
    assert_eq!((videos[0].file_url.as_str(), videos[0].description.as_str()), (video.as_str(), "a clip"));
    assert_eq!((videos[0].status, videos[0].sha256.clone()), (VideoStatus::Ready, expected_sha256(&video)));
    assert_eq!(post["platform_post_id"].as_str(), Some(videos[0].id.as_str()));
    assert!(probed_before_fetched(&app, &video));
    assert_eq!(app.facebook.page_posts().len(), 3, "each post published once");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facebook_media_is_refused_with_the_reason() {
    let app = TestApp::spawn(Mode::Embedded).await;
    connect_page(&app).await;
    let jpg = |n: usize| app.media.media_url(&format!("p{n}.jpg"), 10_000);

    // At schedule time: too many photos, a video with photos, a format Facebook does not take.
    let (status, body) = schedule(&app, (0..11).map(jpg).collect(), "eleven").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(message(&body), "posts[0].media_urls (facebook): facebook takes at most 10 images in one post");
    let (status, body) = schedule(&app, vec![jpg(1), app.media.media_url("v.mp4", 1000)], "mixed").await;
    assert_eq!(status, 422, "{body}");
    assert!(message(&body).contains("alone"), "{body}");
    let (status, body) = schedule(&app, vec![app.media.url("/media/v.webm")], "webm").await;
    assert_eq!(status, 422, "{body}");
    assert!(message(&body).contains("does not take video/webm"), "{body}");

    // When probed: not an image, over Facebook's 4 MB for photos, missing, a video among photos
    // (behind a redirect, so its kind shows only in its bytes).
    let post = publish(&app, vec![app.media.url("/media/mislabelled.jpg")], "fake image").await;
    assert_eq!(post["status"], "failed", "{post}");
    assert!(error_of(&post).contains("not an image or video"), "{post}");
    let post = publish(&app, vec![app.media.media_url("big.jpg", 5_000_000)], "big image").await;
    assert_eq!(post["status"], "failed", "{post}");
    assert!(error_of(&post).contains("over the limit of 4 MB"), "{post}");
    assert!(app.media.bytes_sent_for("big.jpg") <= 32, "probed, not downloaded");
    let post = publish(&app, vec![jpg(2), app.media.url("/status/404")], "gone").await;
    assert_eq!(post["status"], "failed", "{post}");
    assert!(error_of(&post).contains("HTTP 404"), "{post}");
    let hidden = app.media.redirect_url(&app.media.media_url("hidden.mp4", 1000));
    let post = publish(&app, vec![jpg(3), hidden], "a hidden video").await;
    assert_eq!(post["status"], "failed", "{post}");
    assert!(error_of(&post).contains("Facebook takes a video alone"), "{post}");
    assert!(app.facebook.page_posts().is_empty() && app.facebook.videos().is_empty(), "nothing was published");
    assert!(app.facebook.photos().iter().all(|p| !p.published), "only unpublished photos reached Facebook");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facebook_failures_fail_with_facebooks_words() {
    let app = TestApp::spawn(Mode::Production).await;
    connect_page(&app).await;

    // The video is posted, then its processing ends in `error`.
    app.facebook.fail_next_video_processing();
    let post = publish(&app, vec![app.media.media_url("bad.mp4", 2_000_000)], "broken clip").await;
    assert_eq!((post["status"].as_str(), post["error_kind"].as_str()), (Some("failed"), Some("rejected")), "{post}");
    assert!(error_of(&post).contains("Video Processing Error"), "{post}");
    assert_eq!(app.facebook.videos()[0].status, VideoStatus::Error);

    // Facebook refuses a photo it fetched (its own size check, subcode 1366046).
    let words = "Your photos couldn't be uploaded. Photos should be smaller than 4 MB.";
    let refusal =
        json!({"error": {"message": words, "type": "OAuthException", "code": 100, "error_subcode": 1_366_046}});
    app.facebook.script_photo(400, refusal.clone(), Duration::ZERO);
    let post = publish(&app, vec![app.media.media_url("one.jpg", 1000)], "refused photo").await;
    assert_eq!((post["status"].as_str(), post["error_kind"].as_str()), (Some("failed"), Some("rejected")), "{post}");
    assert!(error_of(&post).contains(words), "{post}");
    // The first of two unpublished uploads is refused: nothing more is sent.
    app.facebook.script_photo(400, refusal, Duration::ZERO);
    let two = vec![app.media.media_url("x.jpg", 1000), app.media.media_url("y.jpg", 1000)];
    let post = publish(&app, two, "two, one refused").await;
    assert_eq!(post["status"], "failed", "{post}");
    assert!(error_of(&post).contains(words), "{post}");
    assert_eq!(steps(&app)[steps(&app).len() - 2..], ["photos", "photos"], "no second upload, no feed post");
    assert!(app.facebook.page_posts().iter().all(|p| p.kind == PostKind::Video), "no photo post was made");
    app.stop().await;
}
