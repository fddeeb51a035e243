//! Crash safety of a media post (DESIGN §12) with real `worker` processes: the fake platform holds
//! the request of one step while the test SIGKILLs the worker making it, then another worker
//! starts. Before the point of no return (the tweet, the LinkedIn post, the Facebook feed post,
//! Instagram's `media_publish`, TikTok's chunks or pull init) the post is resumed from its last
//! saved step, or started again when it died before saving one, and published once. At it, the
//! platform is asked where it can say (an Instagram container's status, a TikTok `publish_id`);
//! X, LinkedIn and Facebook cannot be asked, so the post becomes `unknown`: never two posts.
//! While a step is held, its row says `sending` exactly when the step is the point of no return.
//! Every check that something did not happen is made once the second worker has written the
//! post's final status, after anything it could have sent.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tests::{Fake, RecordedRequest, Recorder, TestApp, wait_until};

const FINAL: &[&str] = &["posted", "failed", "unknown"];
/// How long a worker may take to reach the held step, and the second one to finish the post: a
/// job pickup takes up to this long on a loaded machine, and a held step may come after a wait.
const PATIENCE: Duration = Duration::from_secs(90);
/// TikTok pulls what is under this prefix: the media server listens on 127.0.0.1.
const VERIFIED: &str = "http://127.0.0.1:";

/// How the platform answers the held step.
#[derive(Clone, Copy, PartialEq)]
enum Hold {
    /// The platform never sees the request.
    Request,
    /// The platform acts on it; the answer never comes back.
    Reply,
}

/// Where the post goes.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// A 6 MB video to X.
    X,
    /// A JPEG and a PNG to X, each one upload request.
    XImages,
    /// A 9 MB video (three parts) to LinkedIn.
    Linkedin,
    /// Two images to LinkedIn (an image upload each, then one `multiImage` post).
    LinkedinImages,
    /// Three photos to a Facebook Page (unpublished photos, then one feed post).
    Facebook,
    /// A 3 MB video to a Facebook Page (`/videos`, then its processing awaited).
    FacebookVideo,
    /// One image to Instagram.
    InstagramImage,
    /// A carousel of two images to Instagram (an item container each, then the parent).
    InstagramCarousel,
    /// One image as an Instagram story (which the media list does not show).
    InstagramStory,
    /// A 2 MB video as an Instagram reel (a `REELS` container, processed before it can publish).
    InstagramReel,
    /// A 21 MB video to TikTok, uploaded (`FILE_UPLOAD`) in two chunks.
    TiktokUpload,
    /// A 4 MB video under a verified prefix, pulled by TikTok (`PULL_FROM_URL`).
    TiktokPull,
    /// Two photos under a verified prefix, pulled by TikTok (`content/init`).
    TiktokPhotos,
}

impl Target {
    fn platform(self) -> &'static str {
        match self {
            Self::X | Self::XImages => "twitter",
            Self::Linkedin | Self::LinkedinImages => "linkedin",
            Self::Facebook | Self::FacebookVideo => "facebook",
            Self::InstagramImage | Self::InstagramCarousel | Self::InstagramStory | Self::InstagramReel => "instagram",
            Self::TiktokUpload | Self::TiktokPull | Self::TiktokPhotos => "tiktok",
        }
    }

    /// Connects `alice` and readies the fake; the post's media and options.
    async fn prepare(self, app: &TestApp) -> (Vec<String>, Value) {
        app.connect("alice", self.platform()).await;
        let image = |name: &str| app.media.media_url(name, 40_000);
        match self {
            Self::X => (vec![app.media.media_url("clip.mp4", 6_000_000)], Value::Null),
            Self::XImages => (vec![image("first.jpg"), image("second.png")], Value::Null),
            Self::Linkedin => (vec![app.media.media_url("clip.mp4", 9_000_000)], Value::Null),
            Self::LinkedinImages => (vec![image("first.jpg"), image("second.png")], Value::Null),
            Self::Facebook | Self::FacebookVideo => {
                let (status, body) =
                    app.post("alice", "/api/v1/auth/social/pages/facebook", &json!({"page_id": "101"})).await;
                assert_eq!(status, 200, "{body}");
                let media = if self == Self::Facebook {
                    (0..3).map(|i| image(&format!("p{i}.jpg"))).collect()
                } else {
                    vec![app.media.media_url("clip.mp4", 3_000_000)]
                };
                (media, Value::Null)
            }
            Self::InstagramImage => (vec![image("a.jpg")], Value::Null),
            Self::InstagramCarousel => (vec![image("c0.jpg"), image("c1.jpg")], Value::Null),
            Self::InstagramStory => (vec![image("s.jpg")], json!({"instagram_share_as": "story"})),
            Self::InstagramReel => (vec![app.media.media_url("reel.mp4", 2_000_000)], Value::Null),
            Self::TiktokUpload | Self::TiktokPull | Self::TiktokPhotos => {
                app.tiktok.set_polls_before_complete(0);
                app.tiktok.set_verified_prefixes(&[VERIFIED]);
                // Only a pull's URL (and the photos') is under the prefix Herald is told is verified.
                let media = match self {
                    Self::TiktokPhotos => vec![image("t0.jpg"), image("t1.jpg")],
                    Self::TiktokPull => vec![app.media.media_url("clip.mp4", 4_000_000)],
                    _ => vec![app.media.media_url("clip.mp4", 21_000_000)],
                };
                (media, Value::Null)
            }
        }
    }

    fn fake(self, app: &TestApp) -> &Recorder {
        match self {
            Self::X | Self::XImages => app.x.recorder(),
            Self::Linkedin | Self::LinkedinImages => app.linkedin.recorder(),
            Self::Facebook | Self::FacebookVideo => app.facebook.recorder(),
            Self::InstagramImage | Self::InstagramCarousel | Self::InstagramStory | Self::InstagramReel => {
                app.instagram.recorder()
            }
            Self::TiktokUpload | Self::TiktokPull | Self::TiktokPhotos => app.tiktok.recorder(),
        }
    }

    /// The ids of the posts on the platform (TikTok: every publish whose media all arrived, by its
    /// post id once a status look gave one, else by its `publish_id`).
    fn posts(self, app: &TestApp) -> Vec<String> {
        match self {
            Self::X | Self::XImages => app.x.media_tweets().into_iter().map(|(id, ..)| id).collect(),
            Self::Linkedin | Self::LinkedinImages => app.linkedin.created_posts().into_iter().map(|p| p.urn).collect(),
            Self::Facebook | Self::FacebookVideo => app.facebook.page_posts().into_iter().map(|p| p.id).collect(),
            Self::InstagramImage | Self::InstagramCarousel | Self::InstagramStory | Self::InstagramReel => {
                app.instagram.published_media().into_iter().map(|m| m.media_id).collect()
            }
            Self::TiktokUpload | Self::TiktokPull | Self::TiktokPhotos => app
                .tiktok
                .posts_made()
                .into_iter()
                .map(|p| p.post_id.map_or(p.publish_id, |id| id.to_string()))
                .collect(),
        }
    }
}

/// The step whose request the fake holds.
#[derive(Clone, Copy)]
struct At {
    /// Names the step in the post's text and the workers' log files.
    name: &'static str,
    method: &'static str,
    /// The end of its path.
    path: &'static str,
    /// What else tells it from the other requests to that path (its query, body or headers).
    also: fn(&RecordedRequest) -> bool,
    /// Whether it is the point of no return, which the row says (`sending`) before the request.
    sending: bool,
}

impl At {
    /// The next `method` request whose path ends with `path`, a step before the point of no return.
    fn path(method: &'static str, path: &'static str) -> Self {
        Self { name: path, method, path, also: |_| true, sending: false }
    }

    /// The next `method` request whose path ends with `path`, the point of no return.
    fn point_of_no_return(method: &'static str, path: &'static str) -> Self {
        Self { sending: true, ..Self::path(method, path) }
    }

    /// Of those, the next one `also` accepts; `name` names the step.
    fn and(self, name: &'static str, also: fn(&RecordedRequest) -> bool) -> Self {
        Self { name, also, ..self }
    }
}

/// Schedules the target's media post, holds the request of step `at` at its fake, kills the worker
/// holding it, starts another; returns the post once final: the second worker is done with it.
async fn kill_at(target: Target, at: At, hold: Hold) -> (TestApp, Value) {
    let app = TestApp::spawn_api_only(|env| {
        env.insert("PUBLISH_STALE_AFTER_SECS".into(), "2".into());
        env.insert("PLATFORM_HTTP_TIMEOUT_SECS".into(), "30".into());
        if matches!(target, Target::TiktokPull | Target::TiktokPhotos) {
            env.insert("TIKTOK_VERIFIED_URL_PREFIXES".into(), VERIFIED.into());
        }
    })
    .await;
    let (media, options) = target.prepare(&app).await;
    let fake = target.fake(&app);
    let matches = move |r: &RecordedRequest| {
        r.method.eq_ignore_ascii_case(at.method) && r.path.ends_with(at.path) && (at.also)(r)
    };
    match hold {
        Hold::Request => fake.hold_where(matches),
        Hold::Reply => fake.hold_reply_where(matches),
    }
    let content = format!("killed at {}", at.name);
    let platform = target.platform();
    let (status, answer) = app.schedule_media("alice", platform, &content, media, options).await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["posts"][0]["id"].as_str().expect("id").to_owned();

    let bin = env!("CARGO_BIN_EXE_worker");
    let name: String =
        format!("{platform}-{}", at.name).chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let mut first = tests::worker_process(&app, bin, &format!("media-kill-first-{name}"), &[]);
    fake.wait_held(PATIENCE).await;
    first.kill().expect("SIGKILL the worker");
    first.wait().expect("reap it");
    let (_, held) = app.get("alice", &format!("/api/v1/posts/{id}")).await;
    assert_eq!(held["status"], "publishing", "{held}");
    let sending = held["publish_phase"] == "sending";
    assert_eq!(sending, at.sending, "{}: the row says `sending` at the point of no return only: {held}", at.name);

    let mut second = tests::worker_process(&app, bin, &format!("media-kill-second-{name}"), &[]);
    let post = app.wait_for_post("alice", &id, FINAL, PATIENCE).await;
    second.kill().expect("stop the second worker");
    second.wait().expect("reap it");
    (app, post)
}

/// The post ended `posted`, as the one post on the platform, with that post's id.
fn published_once(target: Target, app: &TestApp, post: &Value) {
    assert_eq!(post["status"], "posted", "{post}");
    let posts = target.posts(app);
    assert_eq!(posts.len(), 1, "one post on the platform: {posts:?}");
    assert_eq!(post["platform_post_id"].as_str(), Some(posts[0].as_str()), "{post}");
}

/// The post ended `unknown` (nobody can say whether it is out), and the platform has it once at
/// most.
fn unknown_never_twice(target: Target, app: &TestApp, post: &Value) {
    assert_eq!((&post["status"], &post["error_kind"]), (&json!("unknown"), &json!("unknown")), "{post}");
    let posts = target.posts(app);
    assert!(posts.len() <= 1, "never two posts: {posts:?}");
}

/// Resumed from the step it died in: one tweet, carrying the video that finished processing.
async fn resumed_once(method: &'static str, path_suffix: &'static str) {
    let (app, post) = kill_at(Target::X, At::path(method, path_suffix), Hold::Request).await;
    published_once(Target::X, &app, &post);
    let tweets = app.x.media_tweets();
    let ready: Vec<_> = app.x.uploads().into_iter().filter(|u| u.processing.as_deref() == Some("succeeded")).collect();
    assert_eq!(ready.len(), 1, "one upload finished");
    assert_eq!(tweets[0].2, vec![ready[0].id.clone()], "the tweet carries the finished upload");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_initialize() {
    resumed_once("POST", "/2/media/upload/initialize").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_append() {
    resumed_once("POST", "/append").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_finalize() {
    resumed_once("POST", "/finalize").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_asking_for_the_processing_status() {
    resumed_once("GET", "/2/media/upload").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_the_tweet_is_unknown_and_never_tweeted_twice() {
    for hold in [Hold::Request, Hold::Reply] {
        let (app, post) = kill_at(Target::X, At::point_of_no_return("POST", "/2/tweets"), hold).await;
        unknown_never_twice(Target::X, &app, &post);
        let expected = usize::from(hold == Hold::Reply);
        assert_eq!(app.x.media_tweets().len(), expected, "X acted on the held tweet only when told to");
        assert_eq!(app.x.requests_to("/2/tweets").len(), 1, "the tweet was never sent again");
        app.stop().await;
    }
}

/// X, killed once X stored the second image but its answer (the media id) was lost: the first
/// image's id was saved, so only the second is uploaded again; one tweet carries the first and the
/// second's new upload, never the orphan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_killed_at_the_second_image_uploads_it_again() {
    let second = At::path("POST", "/2/media/upload").and("second-image", |r| r.body.contains("image/png"));
    let (app, post) = kill_at(Target::XImages, second, Hold::Reply).await;
    published_once(Target::XImages, &app, &post);
    let uploads: Vec<String> = app.x.uploads().into_iter().map(|u| u.id).collect();
    assert_eq!(uploads.len(), 3, "the second image uploaded twice: {uploads:?}");
    assert_eq!(app.x.media_tweets()[0].2, [uploads[0].clone(), uploads[2].clone()], "the tweet's media");
    app.stop().await;
}

/// LinkedIn, killed at `at` before the post: published once, carrying the video LinkedIn finished
/// processing, after `inits` video initializations (`POST /rest/videos?action=initializeUpload`).
async fn linkedin_resumed(at: At, hold: Hold, inits: usize) {
    let (app, post) = kill_at(Target::Linkedin, at, hold).await;
    published_once(Target::Linkedin, &app, &post);
    let available: Vec<_> =
        app.linkedin.videos().into_iter().filter(|v| v.status.as_str() == "AVAILABLE").map(|v| v.urn).collect();
    assert_eq!(app.linkedin.created_posts()[0].media, available, "the post carries the finished video");
    let videos = app.linkedin.requests_to("/rest/videos").into_iter();
    assert_eq!(videos.filter(|r| r.query.contains("action=initializeUpload")).count(), inits, "video inits");
    app.stop().await;
}

/// LinkedIn, killed while initializing the video upload and while sending its second part, once
/// before LinkedIn had the part and once after it stored the part but its answer (the part's ETag)
/// was lost: started again (the upload is one step, saved once finalized), one post carrying the
/// video whose parts all arrived; killed at the post: unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_killed_at_each_step() {
    for (method, suffix, hold) in
        [("POST", "/rest/videos", Hold::Request), ("PUT", "/1", Hold::Request), ("PUT", "/1", Hold::Reply)]
    {
        linkedin_resumed(At::path(method, suffix), hold, 2).await;
    }
    let (app, post) = kill_at(Target::Linkedin, At::point_of_no_return("POST", "/rest/posts"), Hold::Reply).await;
    unknown_never_twice(Target::Linkedin, &app, &post);
    assert_eq!(app.linkedin.requests_to("/rest/posts").len(), 1, "the post was never sent again");
    app.stop().await;
}

/// LinkedIn, killed at `finalizeUpload`: the upload (initialize, parts, finalize) is one step that
/// saved nothing yet, so the claim went stale with no phase and the video is uploaded again; the
/// unfinished first one is never posted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_killed_at_finalize_upload_uploads_the_video_again() {
    let finalize =
        At::path("POST", "/rest/videos").and("finalizeUpload", |r| r.query.contains("action=finalizeUpload"));
    linkedin_resumed(finalize, Hold::Request, 2).await;
}

/// LinkedIn, killed while asking for the video's processing status: the saved wait is resumed,
/// the video not uploaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_killed_while_asking_for_the_video_status_resumes_the_wait() {
    let status = At::path("GET", "").and("video-status", |r| r.path.starts_with("/rest/videos/"));
    linkedin_resumed(status, Hold::Request, 1).await;
}

/// LinkedIn images, killed once LinkedIn stored the second image's bytes but the answer was lost:
/// the first image's URN was saved, so the second is registered and uploaded again; one
/// `multiImage` post carries the first and the new second, never the orphan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_killed_at_the_second_image_uploads_it_again() {
    let (app, post) = kill_at(Target::LinkedinImages, At::path("PUT", "/upload/images/2"), Hold::Reply).await;
    published_once(Target::LinkedinImages, &app, &post);
    let images = app.linkedin.images();
    assert_eq!(images.len(), 3, "the second image registered twice: {images:?}");
    assert_eq!(images.iter().map(|i| i.uploads).collect::<Vec<_>>(), [1, 1, 1], "each upload URL used once");
    assert_eq!(app.linkedin.created_posts()[0].media, [images[0].urn.clone(), images[2].urn.clone()]);
    app.stop().await;
}

/// A Facebook video, killed at `/videos` after Facebook took it (the answer lost): the point of no
/// return, which Facebook cannot be asked about, so `unknown` and never sent again; killed while
/// asking for the video's status: the saved video id is followed until `ready`, not posted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facebook_video_killed_at_each_step() {
    let (app, post) = kill_at(Target::FacebookVideo, At::point_of_no_return("POST", "/videos"), Hold::Reply).await;
    unknown_never_twice(Target::FacebookVideo, &app, &post);
    assert_eq!(app.facebook.requests_ending_with("/videos").len(), 1, "the video was never sent again");
    assert_eq!(app.facebook.videos().len(), 1, "Facebook took it once");
    app.stop().await;
    let status = At::path("GET", "").and("video-status", |r| r.query.contains("fields=status"));
    let (app, post) = kill_at(Target::FacebookVideo, status, Hold::Request).await;
    published_once(Target::FacebookVideo, &app, &post);
    let videos = app.facebook.videos();
    assert_eq!(videos.len(), 1, "one video");
    assert_eq!(post["platform_post_id"].as_str(), Some(videos[0].id.as_str()), "{post}");
    assert_eq!(app.facebook.requests_ending_with("/videos").len(), 1, "posted once");
    app.stop().await;
}

/// Facebook, killed while uploading the first unpublished photo: resumed, one feed post with
/// three photos; killed at the feed post: unknown, never posted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facebook_killed_at_each_step() {
    let (app, post) = kill_at(Target::Facebook, At::path("POST", "/photos"), Hold::Request).await;
    published_once(Target::Facebook, &app, &post);
    assert_eq!(app.facebook.page_posts()[0].photo_ids.len(), 3);
    app.stop().await;
    let (app, post) = kill_at(Target::Facebook, At::point_of_no_return("POST", "/feed"), Hold::Reply).await;
    unknown_never_twice(Target::Facebook, &app, &post);
    assert_eq!(app.facebook.requests_ending_with("/feed").len(), 1, "the feed post was never sent again");
    assert_eq!(app.facebook.page_posts().len(), 1);
    app.stop().await;
}

/// `POST /{ig-user-id}/media`, a container's creation.
fn container(at_name: &'static str, also: fn(&RecordedRequest) -> bool) -> At {
    At::path("POST", "/media").and(at_name, also)
}

/// Instagram, killed at `at` before the point of no return: published once, from the `parent`-th
/// of the `made` containers Instagram ended with, with the `items`-th as its carousel items.
async fn instagram_resumed(target: Target, at: At, hold: Hold, made: usize, parent: usize, items: &[usize]) {
    let (app, post) = kill_at(target, at, hold).await;
    published_once(target, &app, &post);
    let containers: Vec<String> = app.instagram.containers().into_iter().map(|c| c.id).collect();
    assert_eq!(containers.len(), made, "containers made: {containers:?}");
    let published = &app.instagram.published_media()[0];
    let items: Vec<String> = items.iter().map(|&i| containers[i].clone()).collect();
    assert_eq!((&published.container_id, &published.children), (&containers[parent], &items), "published from");
    app.stop().await;
}

/// Instagram, killed while Instagram made the image's container (its answer lost): nothing was
/// saved, so the post starts again with a new container; the first one is never published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instagram_killed_at_the_container_makes_another() {
    instagram_resumed(Target::InstagramImage, container("container", |_| true), Hold::Reply, 2, 1, &[]).await;
}

/// Instagram, killed while making a carousel's second item: resumed with the first item, which is
/// not made again; then the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instagram_killed_at_a_carousel_item_keeps_the_items_made() {
    let second_item = container("second-item", |r| r.body.contains("c1.jpg"));
    instagram_resumed(Target::InstagramCarousel, second_item, Hold::Request, 3, 2, &[0, 1]).await;
}

/// Instagram, killed while Instagram made the carousel's parent (its answer lost): resumed with the
/// saved items under a new parent; the lost parent is never published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instagram_killed_at_the_carousel_parent_keeps_its_items() {
    let parent = container("carousel-parent", |r| r.body.contains("media_type=CAROUSEL"));
    instagram_resumed(Target::InstagramCarousel, parent, Hold::Reply, 4, 3, &[0, 1]).await;
}

/// Instagram, killed while asking for the container's `status_code`: the saved container is
/// polled again and published, not made again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instagram_killed_while_polling_the_container_resumes_it() {
    let poll = At::path("GET", "").and("status-code", |r| r.query.contains("status_code"));
    instagram_resumed(Target::InstagramImage, poll, Hold::Request, 1, 0, &[]).await;
}

/// Instagram, killed at `media_publish`, the point of no return: the container says what became of
/// it. Never reached Instagram: still `FINISHED`, published from it now; published: found in the
/// account's media by caption, with its id, and not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instagram_killed_at_media_publish_asks_the_container() {
    for hold in [Hold::Request, Hold::Reply] {
        let (app, post) = kill_at(Target::InstagramImage, At::point_of_no_return("POST", "/media_publish"), hold).await;
        published_once(Target::InstagramImage, &app, &post);
        let sent = app.instagram.requests_ending_with("/media_publish").len();
        assert_eq!(sent, if hold == Hold::Request { 2 } else { 1 }, "sent again only when Instagram never had it");
        assert_eq!(app.instagram.containers().len(), 1, "from the one container");
        app.stop().await;
    }
}

/// An Instagram story killed at `media_publish` after Instagram published it: the container says
/// `PUBLISHED`, but stories are not in the media list, so Herald cannot tell which post is this
/// one: `unknown`, never published twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instagram_story_killed_at_media_publish_is_unknown() {
    let (app, post) =
        kill_at(Target::InstagramStory, At::point_of_no_return("POST", "/media_publish"), Hold::Reply).await;
    unknown_never_twice(Target::InstagramStory, &app, &post);
    assert_eq!(app.instagram.published_media().len(), 1, "Instagram published it once");
    assert_eq!(app.instagram.requests_ending_with("/media_publish").len(), 1, "never sent again");
    app.stop().await;
}

/// An Instagram reel (a `REELS` video container, which Instagram processes before it can publish),
/// killed at each step: at its container's creation (the answer lost), started again with a new
/// container; while polling its `status_code`, resumed with the saved container; at
/// `media_publish` after Instagram published it, found by the container's status and the caption,
/// not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instagram_reel_killed_at_each_step() {
    let reel = container("reel-container", |r| r.body.contains("media_type=REELS"));
    instagram_resumed(Target::InstagramReel, reel, Hold::Reply, 2, 1, &[]).await;
    let poll = At::path("GET", "").and("reel-status-code", |r| r.query.contains("status_code"));
    instagram_resumed(Target::InstagramReel, poll, Hold::Request, 1, 0, &[]).await;
    let (app, post) =
        kill_at(Target::InstagramReel, At::point_of_no_return("POST", "/media_publish"), Hold::Reply).await;
    published_once(Target::InstagramReel, &app, &post);
    assert_eq!(app.instagram.requests_ending_with("/media_publish").len(), 1, "never sent again");
    let containers = app.instagram.containers();
    assert_eq!(containers.len(), 1, "from the one container");
    assert!(containers[0].is_video, "a video container");
    app.stop().await;
}

/// TikTok, killed at `at` where it may be started again or followed: published once; one publish
/// per init TikTok accepted, which took `chunks` chunks each.
async fn tiktok_resumed(at: At, hold: Hold, chunks: &[u64]) -> TestApp {
    let (app, post) = kill_at(Target::TiktokUpload, at, hold).await;
    published_once(Target::TiktokUpload, &app, &post);
    let received: Vec<u64> = app.tiktok.publishes().iter().map(|p| p.chunks_received).collect();
    assert_eq!(received, chunks, "chunks received by each upload TikTok inited");
    app
}

/// TikTok, killed at `creator_info/query`: nothing saved, so the post starts again; one upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_killed_at_creator_info_starts_again() {
    let app = tiktok_resumed(At::path("POST", "/creator_info/query/"), Hold::Request, &[2]).await;
    assert_eq!(app.tiktok.requests_to("/v2/post/publish/creator_info/query/").len(), 2, "asked again");
    app.stop().await;
}

/// TikTok, killed while TikTok accepted the upload's init (its answer lost): an init publishes
/// nothing, so the post starts again with a new one; the first upload never gets a byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_killed_at_the_upload_init_inits_again() {
    tiktok_resumed(At::path("POST", "/video/init/"), Hold::Reply, &[0, 2]).await.stop().await;
}

/// The `PUT` of a TikTok upload's second chunk.
fn second_chunk() -> At {
    let second =
        |r: &RecordedRequest| r.headers.get("content-range").is_some_and(|range| !range.starts_with("bytes 0-"));
    At::point_of_no_return("PUT", "/video/upload/").and("second-chunk", second)
}

/// TikTok, killed while sending the upload's last chunk, which never arrived: TikTok's status (by
/// the saved `publish_id`) shows half the bytes, so nothing will publish, and the post is uploaded
/// again from a new init.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_killed_at_an_unfinished_upload_uploads_again() {
    tiktok_resumed(second_chunk(), Hold::Request, &[1, 2]).await.stop().await;
}

/// TikTok, killed after TikTok took the last chunk (its answer lost): the status shows every byte,
/// so the publish is followed to its end, not uploaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_killed_at_the_last_chunk_follows_the_publish() {
    tiktok_resumed(second_chunk(), Hold::Reply, &[2]).await.stop().await;
}

/// TikTok, killed while asking `status/fetch` how the publish goes: the saved wait is resumed by
/// its `publish_id` and ends with the post's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_killed_while_asking_for_the_status_follows_the_publish() {
    tiktok_resumed(At::path("POST", "/status/fetch/"), Hold::Request, &[2]).await.stop().await;
}

/// TikTok, killed at a pull's init, the point of no return: no `publish_id` was saved to ask with,
/// so the post is `unknown` and the init is never sent again, whether TikTok got it or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_killed_at_the_pull_init_is_unknown() {
    for hold in [Hold::Request, Hold::Reply] {
        let (app, post) = kill_at(Target::TiktokPull, At::point_of_no_return("POST", "/video/init/"), hold).await;
        unknown_never_twice(Target::TiktokPull, &app, &post);
        let inits = app.tiktok.requests_to("/v2/post/publish/video/init/").len();
        assert_eq!(inits, 1, "the pull was never sent again");
        assert_eq!(app.tiktok.publishes().len(), usize::from(hold == Hold::Reply), "TikTok took it when told to");
        app.stop().await;
    }
}

/// TikTok photos, killed at `content/init`, the point of no return: like a pull, no `publish_id`
/// was saved to ask with, so the post is `unknown` and the init never sent again; killed while
/// asking `status/fetch`, the saved wait is resumed and ends with the post's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_photos_killed_at_each_step() {
    const INIT: &str = "/v2/post/publish/content/init/";
    for hold in [Hold::Request, Hold::Reply] {
        let (app, post) = kill_at(Target::TiktokPhotos, At::point_of_no_return("POST", "/content/init/"), hold).await;
        unknown_never_twice(Target::TiktokPhotos, &app, &post);
        assert_eq!(app.tiktok.requests_to(INIT).len(), 1, "the photos' init was never sent again");
        assert_eq!(app.tiktok.publishes().len(), usize::from(hold == Hold::Reply), "TikTok took it when told to");
        app.stop().await;
    }
    let (app, post) = kill_at(Target::TiktokPhotos, At::path("POST", "/status/fetch/"), Hold::Request).await;
    published_once(Target::TiktokPhotos, &app, &post);
    assert_eq!(app.tiktok.requests_to(INIT).len(), 1, "the photos were pulled once");
    assert_eq!(app.tiktok.publishes()[0].urls.len(), 2, "both photos");
    app.stop().await;
}

/// Two worker processes publish what `due` makes due, until `posted` posts are out and `held` are
/// held back by the account's budget; then they are stopped. Returns each held-back post's error
/// and due time.
async fn paced(
    app: &TestApp,
    tag: &str,
    due: impl Future<Output = ()>,
    posted: i64,
    held: usize,
) -> Vec<(String, chrono::DateTime<Utc>)> {
    let bin = env!("CARGO_BIN_EXE_worker");
    let workers = [
        tests::worker_process(app, bin, &format!("{tag}-a"), &[]),
        tests::worker_process(app, bin, &format!("{tag}-b"), &[]),
    ];
    due.await;
    let statuses = wait_until(PATIENCE, &format!("{posted} posted and {held} held back"), || async {
        let statuses = app.posts_by_status().await;
        let waiting =
            app.query("SELECT id FROM scheduled_posts WHERE status = 'pending' AND error_kind = 'rate_limited'").await;
        (statuses.get("posted") == Some(&posted) && waiting.len() == held).then_some(statuses)
    })
    .await;
    // Dropping a worker process kills and reaps it.
    drop(workers);
    assert_eq!(statuses.len(), 2, "only posted and held back: {statuses:?}");
    let rows = app.query("SELECT posting_error, due_at FROM scheduled_posts WHERE status = 'pending'").await;
    rows.iter()
        .map(|row| (row.try_get("", "posting_error").expect("error"), row.try_get("", "due_at").expect("due")))
        .collect()
}

/// Pacing across two worker processes: TikTok takes 6 post inits per user per minute, counted in
/// Redis for every worker. Of seven videos due at once on one account, six are published and the
/// seventh is held back (rescheduled, not failed) until the minute frees; TikTok never refuses an
/// init for the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_keep_one_accounts_tiktok_init_budget() {
    let app = TestApp::spawn_api_only(|_| {}).await;
    app.connect("alice", "tiktok").await;
    app.tiktok.set_polls_before_complete(0);
    let due = async {
        for i in 0..7 {
            let video = vec![app.media.media_url(&format!("v{i}.mp4"), 1_000_000)];
            let (status, body) = app.schedule_media("alice", "tiktok", &format!("video {i}"), video, Value::Null).await;
            assert_eq!(status, 201, "{body}");
        }
    };
    let held = paced(&app, "tiktok-pace", due, 6, 1).await;
    let inits = app.tiktok.requests_to("/v2/post/publish/video/init/").len();
    assert_eq!(inits, 6, "TikTok was never asked for a 7th init");
    let (error, due) = &held[0];
    assert!(error.contains("takes 6 posts per account every minute"), "{error}");
    let first = app.tiktok.init_times()[0];
    assert!(
        *due > first + chrono::Duration::seconds(45),
        "held back until the minute frees: {due}, first init {first}"
    );
    app.stop().await;
}

/// Pacing across two worker processes: X takes 100 posts per user per 15 minutes, counted in
/// Redis for every worker. The 101st post of one account is held back (rescheduled, not failed)
/// and X never answers 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_keep_one_accounts_x_budget() {
    let app = TestApp::spawn_api_only(|env| {
        env.insert("X_POSTS_PER_15_MIN".into(), "100".into());
    })
    .await;
    app.connect_x("pace").await;
    let due = app.insert_x_posts("pace", 103, Utc::now() + chrono::Duration::seconds(2), 0);
    let held = paced(&app, "pace", due, 100, 3).await;
    assert_eq!(app.x.requests_to("/2/tweets").len(), 100, "X was never asked for a 101st post");
    for (error, due) in &held {
        assert!(error.contains("takes 100 posts per account every 15 minutes"), "{error}");
        assert!(*due > Utc::now() + chrono::Duration::minutes(14), "held back until the window frees: {due}");
    }
    app.stop().await;
}
