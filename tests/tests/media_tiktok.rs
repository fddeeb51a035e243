//! Media to TikTok by Direct Post (DESIGN §10, §12; PLATFORMS.md §5.3–5.5) against the fake TikTok
//! and the test media server: a video uploaded in chunks, a video and photos pulled from verified
//! prefixes, each after `creator_info` and published once, confirmed by saved `status/fetch`
//! waits; and media, privacy levels and an unaudited app's posts refused with the reason.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tests::{
    Fake, Mode, TestApp,
    fake_tiktok::{MediaKind, MediaSource},
    media_server::expected_sha256,
};

const FINAL: &[&str] = &["posted", "failed", "unknown"];
/// How long a post may take: a few seconds on an idle machine, but the dispatcher's and queue's
/// latency grows under load.
const PATIENCE: Duration = Duration::from_secs(60);
/// The media server listens on 127.0.0.1: its URLs are verified, the same files by `localhost`
/// are not.
const VERIFIED: &str = "http://127.0.0.1:";

fn unverified(url: &str) -> String {
    url.replacen("127.0.0.1", "localhost", 1)
}

use tests::error_message as message;

use tests::posting_error as error;

async fn schedule(app: &TestApp, user: &str, media: Vec<String>, content: &str, options: Value) -> (u16, Value) {
    app.schedule_media(user, "tiktok", content, media, options).await
}

async fn publish_as(app: &TestApp, user: &str, media: Vec<String>, content: &str, options: Value) -> Value {
    let (status, body) = schedule(app, user, media, content, options).await;
    assert_eq!(status, 201, "{body}");
    let id = body["posts"][0]["id"].as_str().expect("id").to_owned();
    app.wait_for_post(user, &id, FINAL, PATIENCE).await
}

async fn publish(app: &TestApp, media: Vec<String>, content: &str, options: Value) -> Value {
    publish_as(app, "alice", media, content, options).await
}

/// The Content Posting calls TikTok received since the `skip` first, by endpoint.
fn steps(app: &TestApp, skip: usize) -> Vec<String> {
    let requests = app.tiktok.requests().into_iter().filter(|r| r.path.starts_with("/v2/post/") || r.method == "PUT");
    requests.skip(skip).map(|r| r.path.trim_start_matches("/v2/post/publish/").trim_matches('/').to_owned()).collect()
}

async fn verified_app(mode: Mode) -> TestApp {
    let app = TestApp::spawn_with(mode, |env| {
        env.insert("TIKTOK_VERIFIED_URL_PREFIXES".into(), VERIFIED.into());
    })
    .await;
    app.tiktok.set_verified_prefixes(&[VERIFIED]);
    app.tiktok.set_polls_before_complete(0);
    app.connect("alice", "tiktok").await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_is_uploaded_in_chunks_and_published_once() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect("alice", "tiktok").await;
    app.tiktok.set_polls_before_complete(1);

    // 26 MB, not under a verified prefix: FILE_UPLOAD in two chunks, the second taking the rest.
    let video = app.media.media_url("clip.mp4", 26_000_000);
    let post = publish(&app, vec![video.clone()], "a clip", Value::Null).await;
    assert_eq!(post["status"], "posted", "{post}");
    let publishes = app.tiktok.publishes();
    assert_eq!(publishes.len(), 1, "one init");
    let upload = &publishes[0];
    assert_eq!((upload.kind, upload.source), (MediaKind::Video, MediaSource::FileUpload));
    let plan = &upload.source_info;
    assert_eq!(
        (&plan["video_size"], &plan["chunk_size"], &plan["total_chunk_count"]),
        (&json!(26_000_000), &json!(10_485_760), &json!(2))
    );
    assert_eq!((upload.chunks_received, upload.bytes_received), (2, 26_000_000));
    assert_eq!(upload.sha256, expected_sha256(&video), "the bytes TikTok received are the file's");
    assert_eq!((upload.privacy_level.as_str(), upload.title.as_str()), ("PUBLIC_TO_EVERYONE", "a clip"));
    let post_id = upload.post_id.expect("a public post's id").to_string();
    assert_eq!(post["platform_post_id"].as_str(), Some(post_id.as_str()));
    assert_eq!(
        steps(&app, 0),
        ["creator_info/query", "video/init", "video/upload", "video/upload", "status/fetch", "status/fetch"],
        "the chunks after the init, the status after the chunks"
    );
    let puts = app.tiktok.requests().into_iter().filter(|r| r.method == "PUT").collect::<Vec<_>>();
    let upload_id = upload.upload_id.clone().expect("upload id");
    let ranges = [("bytes 0-10485759/26000000", "10485760"), ("bytes 10485760-25999999/26000000", "15514240")];
    for (put, (range, length)) in puts.iter().zip(ranges) {
        assert_eq!((put.headers["content-range"].as_str(), put.headers["content-length"].as_str()), (range, length));
        assert_eq!(put.headers["content-type"], "video/mp4");
        assert!(put.query.contains(&format!("upload_id={upload_id}")), "{}", put.query);
    }
    for poll in app.tiktok.requests_to("/v2/post/publish/status/fetch/") {
        assert_eq!(serde_json::from_str::<Value>(&poll.body).expect("json")["publish_id"], json!(upload.publish_id));
    }

    // A video TikTok fails to process fails with TikTok's reason, and is not sent again.
    app.tiktok.set_polls_before_complete(0);
    app.tiktok.fail_next_publish("file_format_check_failed");
    let post = publish(&app, vec![app.media.media_url("bad.mp4", 1_000_000)], "broken", Value::Null).await;
    assert_eq!((&post["status"], &post["error_kind"]), (&json!("failed"), &json!("rejected")), "{post}");
    assert!(error(&post).contains("TikTok could not publish the post: file_format_check_failed"), "{post}");
    assert_eq!(app.tiktok.publishes().len(), 2, "each post inited once");
    assert_eq!(app.tiktok.published().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_videos_and_photos_are_published_once() {
    let app = verified_app(Mode::Production).await;

    // A video under a verified prefix: Herald probes its first bytes, TikTok pulls it.
    let video = app.media.media_url("pulled.mp4", 4_000_000);
    let post = publish(&app, vec![video.clone()], "pulled", Value::Null).await;
    assert_eq!(post["status"], "posted", "{post}");
    let pull = app.tiktok.publishes().pop().expect("pull");
    assert_eq!((pull.kind, pull.source), (MediaKind::Video, MediaSource::PullFromUrl));
    assert_eq!(pull.urls, vec![video.clone()]);
    assert_eq!(pull.sha256, expected_sha256(&video), "TikTok pulled the file");
    assert_eq!(post["platform_post_id"].as_str(), Some(pull.post_id.expect("post id").to_string().as_str()));
    assert_eq!(steps(&app, 0), ["creator_info/query", "video/init", "status/fetch"]);
    let herald: Vec<_> = app.media.requests().into_iter().filter(|r| r.headers.contains_key("range")).collect();
    let ranges: Vec<&str> = herald.iter().map(|r| r.headers["range"].as_str()).collect();
    // The first bytes for the type and size, then the boxes for a length: one box, to the end.
    assert_eq!(ranges, ["bytes=0-31", "bytes=0-65535"], "Herald only probed");

    // Three photos, private: pulled in order; TikTok reveals no post id, so the publish id is kept.
    let photos: Vec<String> = ["p1.jpg", "p2.webp", "p3.jpg"].iter().map(|n| app.media.media_url(n, 40_000)).collect();
    let post = publish(&app, photos.clone(), "three photos", json!({"tiktok_privacy_level": "SELF_ONLY"})).await;
    assert_eq!(post["status"], "posted", "{post}");
    let album = app.tiktok.publishes().pop().expect("photos");
    assert_eq!((album.kind, album.privacy_level.as_str()), (MediaKind::Photo, "SELF_ONLY"));
    assert_eq!((album.urls.clone(), album.description.as_str()), (photos.clone(), "three photos"));
    assert_eq!(post["platform_post_id"].as_str(), Some(album.publish_id.as_str()));
    let pulled: Vec<String> =
        app.tiktok.downloads().into_iter().filter(|d| d.publish_id == album.publish_id).map(|d| d.sha256).collect();
    assert_eq!(pulled, photos.iter().map(|p| expected_sha256(p)).collect::<Vec<_>>());
    assert_eq!(steps(&app, 3), ["creator_info/query", "content/init", "status/fetch"]);

    // A privacy level the account does not offer is refused before any init, naming the option.
    app.tiktok.set_privacy_options(&["FOLLOWER_OF_CREATOR", "SELF_ONLY"]);
    let post = publish(&app, vec![video], "not public", Value::Null).await;
    assert_eq!((&post["status"], &post["error_kind"]), (&json!("failed"), &json!("rejected")), "{post}");
    assert!(error(&post).contains("does not offer privacy level PUBLIC_TO_EVERYONE"), "{post}");
    assert!(error(&post).contains("FOLLOWER_OF_CREATOR, SELF_ONLY: set options.tiktok_privacy_level"), "{post}");
    assert_eq!(app.tiktok.publishes().len(), 2, "each post inited once");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_media_is_refused_with_the_reason() {
    let app = verified_app(Mode::Embedded).await;
    let jpg = |n: usize| app.media.media_url(&format!("p{n}.jpg"), 10_000);

    // At schedule time: no media, a format TikTok does not take, a video with photos, too many.
    for (media, says) in [
        (vec![], "tiktok posts need an image or a video"),
        (vec![app.media.media_url("a.png", 1000)], "tiktok does not take image/png"),
        (vec![jpg(1), app.media.media_url("v.mp4", 1000)], "alone"),
        ((0..36).map(jpg).collect(), "send at most 35 media URLs"),
    ] {
        let (status, body) = schedule(&app, "alice", media, "x", Value::Null).await;
        assert_eq!(status, 422, "{body}");
        assert!(message(&body).contains(says), "{says}: {body}");
    }

    // When probed or fetched: photos TikTok cannot pull, a photo over 20 MB, a page, a 5 GB video.
    for (media, says) in [
        (vec![jpg(1), unverified(&jpg(2))], "is not under one of TIKTOK_VERIFIED_URL_PREFIXES (http://127.0.0.1:)"),
        (vec![app.media.media_url("big.jpg", 21_000_000)], "over the limit of 20 MB"),
        (vec![app.media.url("/media/page.html")], "not an image or video"),
        (vec![unverified(&app.media.media_url("huge.mp4", 5_000_000_000))], "over the limit of 4096 MB"),
    ] {
        let post = publish(&app, media, "refused", Value::Null).await;
        assert_eq!((&post["status"], &post["error_kind"]), (&json!("failed"), &json!("rejected")), "{post}");
        assert!(error(&post).contains(says), "{says}: {post}");
    }
    assert!(app.tiktok.publishes().is_empty(), "nothing refused reached TikTok");
    assert!(app.media.bytes_sent_for("huge.mp4") < 10_000_000, "the 5 GB video was not downloaded");

    // An unaudited app: TikTok's refusal of a public post, then a private post goes through.
    app.tiktok.set_unaudited(true);
    app.connect("bob", "tiktok").await;
    let video = app.media.media_url("private.mp4", 2_000_000);
    let post = publish_as(&app, "bob", vec![video.clone()], "public", Value::Null).await;
    assert_eq!((&post["status"], &post["error_kind"]), (&json!("failed"), &json!("rejected")), "{post}");
    assert!(error(&post).contains("unaudited_client_can_only_post_to_private_accounts: Unaudited clients"), "{post}");
    let options = json!({"tiktok_privacy_level": "SELF_ONLY"});
    let post = publish_as(&app, "bob", vec![video], "private", options).await;
    assert_eq!(post["status"], "posted", "{post}");
    assert_eq!(app.tiktok.published().len(), 1);
    app.stop().await;
}

/// A video longer than the creator may post (`max_video_post_duration_sec`), its length read from
/// the movie header after its media by ranged reads, is refused before any init, uploaded or
/// pulled; one within it is published. A video that tells no length is left to TikTok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_longer_than_the_creator_may_post_is_refused_before_any_init() {
    let app = verified_app(Mode::Embedded).await;
    app.tiktok.set_max_video_seconds(60);
    let long = app.media.url("/media/long.mp4?bytes=40000000&seconds=61");
    for url in [unverified(&long), long.clone()] {
        let post = publish(&app, vec![url.clone()], "too long", Value::Null).await;
        assert_eq!((&post["status"], &post["error_kind"]), (&json!("failed"), &json!("rejected")), "{post}");
        let says = format!("{url} is 61.0 s long, and this TikTok account can post videos of up to 60 s");
        assert!(error(&post).contains(&says), "{says}: {post}");
    }
    assert!(app.tiktok.requests_to("/v2/post/publish/video/init/").is_empty(), "no init for a video too long");
    assert!(app.media.bytes_sent_for("long.mp4") < 20_000_000, "the length was read without the media");
    for url in [app.media.url("/media/short.mp4?bytes=2000000&seconds=60"), app.media.media_url("plain.mp4", 2_000_000)]
    {
        let post = publish(&app, vec![unverified(&url)], "fits", Value::Null).await;
        assert_eq!(post["status"], "posted", "{post}");
    }
    assert_eq!(app.tiktok.published().len(), 2);
    app.stop().await;
}

/// A worker that dies while the chunks go up (`sending` saved): TikTok's status says whether the
/// upload finished. Finished, the post is confirmed; unfinished, nothing will publish, so it is
/// uploaded again from a new init.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_the_upload_is_resolved_by_tiktoks_status() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect("alice", "tiktok").await;
    app.tiktok.set_polls_before_complete(0);
    for (landed, content) in [(true, "uploaded before the crash"), (false, "crashed before the upload")] {
        if landed {
            app.tiktok.hold_reply("PUT", "/video/upload/")
        } else {
            app.tiktok.hold("PUT", "/video/upload/")
        }
        let video = app.media.media_url(&format!("{landed}.mp4"), 1_500_000);
        let (status, body) = schedule(&app, "alice", vec![video.clone()], content, Value::Null).await;
        assert_eq!(status, 201, "{body}");
        let id = body["posts"][0]["id"].as_str().expect("id").to_owned();
        app.tiktok.wait_held(Duration::from_secs(15)).await;
        // The attempt is gone: its claim is another's, and the row is due for a takeover.
        app.exec(&format!(
            "UPDATE scheduled_posts SET claim_token = 'dead-{id}', due_at = '{}', dispatched_at = NULL WHERE id = '{id}'",
            Utc::now().to_rfc3339()
        ))
        .await;
        let post = app.wait_for_post("alice", &id, FINAL, PATIENCE).await;
        assert_eq!(post["status"], "posted", "{post}");
        let mine: Vec<_> = app.tiktok.publishes().into_iter().filter(|p| p.title == content).collect();
        // Unfinished: the first init's upload is abandoned (the held chunk is let through below
        // only so the dead attempt ends; a dead worker sends nothing more), and a second one posts.
        assert_eq!(mine.len(), if landed { 1 } else { 2 }, "{mine:?}");
        let posted = mine.last().expect("publish");
        assert_eq!(posted.sha256, expected_sha256(&video));
        assert_eq!(post["platform_post_id"].as_str(), Some(posted.post_id.expect("id").to_string().as_str()));
        app.tiktok.release_all();
    }
    assert_eq!(app.tiktok.published().len(), 2, "each post published once");
    app.stop().await;
}
