//! Media to Instagram (DESIGN §10, §12; PLATFORMS.md §3.5–3.7) against the fake Instagram and the
//! test media server: the publishing quota read first, a container per image, reel or story (one
//! per carousel item, then the parent), status polls as saved `processing` waits, `media_publish`
//! once; media refused at schedule time and when probed; a spent quota rescheduling the post; and
//! a crash at `media_publish` resolved by asking the container.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tests::{
    Fake, Mode, TestApp,
    fake_instagram::{ContainerStatus, MediaKind},
    media_server::expected_sha256,
};

const FINAL: &[&str] = &["posted", "failed", "unknown"];

use tests::error_message as message;

use tests::posting_error as error;

async fn schedule(app: &TestApp, media: Vec<String>, content: &str, share_as: Option<&str>) -> (u16, Value) {
    let options = share_as.map_or(Value::Null, |share_as| json!({ "instagram_share_as": share_as }));
    app.schedule_media("alice", "instagram", content, media, options).await
}

async fn scheduled(app: &TestApp, media: Vec<String>, content: &str, share_as: Option<&str>) -> String {
    let (status, body) = schedule(app, media, content, share_as).await;
    assert_eq!(status, 201, "{body}");
    body["posts"][0]["id"].as_str().expect("id").to_owned()
}

async fn publish(app: &TestApp, media: Vec<String>, content: &str, share_as: Option<&str>) -> Value {
    let id = scheduled(app, media, content, share_as).await;
    app.wait_for_post("alice", &id, FINAL, Duration::from_secs(90)).await
}

/// The publishing calls Instagram received, in order; repeated status polls shown once.
fn steps(app: &TestApp) -> Vec<String> {
    let mut steps: Vec<String> = Vec::new();
    for r in app.instagram.requests() {
        let form = r.form();
        let step = match (r.method.as_str(), r.path.rsplit('/').next().unwrap_or_default()) {
            ("GET", "content_publishing_limit") => "limit".to_owned(),
            ("POST", "media") => {
                let kind = form.get("media_type").map_or("IMAGE", String::as_str);
                if form.contains_key("is_carousel_item") { format!("item {kind}") } else { kind.to_owned() }
            }
            ("POST", "media_publish") => format!("publish {}", form["creation_id"]),
            ("GET", _) if r.query.contains("status_code") => "status".to_owned(),
            _ => continue,
        };
        if step != "status" || steps.last().is_none_or(|last| last != "status") {
            steps.push(step);
        }
    }
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_a_reel_a_carousel_and_a_story_are_published_once_in_order() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect("alice", "instagram").await;
    let ig = &app.instagram;
    ig.set_polls_before_finished(1);
    let image = app.media.media_url("a.jpg", 60_000);
    let video = app.media.media_url("clip.mp4", 2_000_000);
    let second = app.media.media_url("b.png", 70_000);

    let post = publish(&app, vec![image.clone()], "one picture", None).await;
    assert_eq!(post["status"], "posted", "{post}");
    let reel = publish(&app, vec![video.clone()], "a reel", None).await;
    assert_eq!(reel["status"], "posted", "{reel}");
    let album = publish(&app, vec![image.clone(), video.clone(), second.clone()], "an album", None).await;
    assert_eq!(album["status"], "posted", "{album}");
    let story = publish(&app, vec![video.clone()], "not shown", Some("story")).await;
    assert_eq!(story["status"], "posted", "{story}");

    let containers = ig.containers();
    let kinds: Vec<(MediaKind, bool)> = containers.iter().map(|c| (c.kind, c.is_carousel_item)).collect();
    use MediaKind::*;
    let want = [(Image, false), (Reels, false), (Image, true), (Video, true), (Image, true), (Carousel, false)];
    assert_eq!(kinds, [&want[..], &[(Stories, false)]].concat());
    let urls: Vec<Option<&str>> = containers.iter().map(|c| c.url.as_deref()).collect();
    let want = [Some(&image), Some(&video), Some(&image), Some(&video), Some(&second), None, Some(&video)];
    assert_eq!(urls, want.map(|u| u.map(String::as_str)), "each URL handed over as given");
    let captions: Vec<Option<&str>> = containers.iter().map(|c| c.caption.as_deref()).collect();
    assert_eq!(captions, [Some("one picture"), Some("a reel"), None, None, None, Some("an album"), None]);
    let items: Vec<String> = containers[2..5].iter().map(|c| c.id.clone()).collect();
    assert_eq!(containers[5].children, items, "the parent links the items in the post's order");
    assert!(containers[6].is_video, "a video story");
    for c in containers.iter().filter(|c| c.kind != Carousel) {
        let url = c.url.as_deref().expect("url");
        assert_eq!(c.downloads[0].sha256, expected_sha256(url), "Instagram fetched the file's bytes");
    }
    assert!(containers.iter().all(|c| c.status == ContainerStatus::Published));

    let published = ig.published_media();
    assert_eq!(published.len(), 4, "each post published once");
    assert_eq!(published[3].media_product_type(), "STORY");
    for (post, (media, container)) in [&post, &reel, &album, &story].iter().zip(published.iter().zip([0, 1, 5, 6])) {
        assert_eq!(post["platform_post_id"].as_str(), Some(media.media_id.as_str()));
        assert_eq!(media.container_id, containers[container].id);
    }
    let [first, reel_id, parent, story_id] = [0, 1, 5, 6].map(|i| &containers[i].id);
    let expected = format!(
        "limit, IMAGE, status, publish {first}, limit, REELS, status, publish {reel_id}, \
         limit, item IMAGE, item VIDEO, item IMAGE, CAROUSEL, status, publish {parent}, \
         limit, STORIES, status, publish {story_id}"
    );
    assert_eq!(steps(&app).join(", "), expected);
    assert!(containers[0].polls >= 2, "the image was polled until FINISHED: {}", containers[0].polls);
    assert_eq!(ig.versions_seen(), ["v26.0"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_instagram_does_not_take_is_refused_with_the_reason() {
    let app = TestApp::spawn(Mode::Embedded).await;
    app.connect("alice", "instagram").await;
    let ig = &app.instagram;
    let jpg = |n: usize| app.media.media_url(&format!("p{n}.jpg"), 10_000);

    // At schedule time: too many, none, a story of two, a format Instagram does not take.
    let (status, body) = schedule(&app, (0..11).map(jpg).collect(), "eleven", None).await;
    assert_eq!(
        (status, message(&body)),
        (422, "posts[0].media_urls (instagram): instagram takes at most 10 media in one post")
    );
    let (status, body) = schedule(&app, vec![], "text only", None).await;
    assert_eq!(status, 422, "{body}");
    assert!(message(&body).contains("need an image or a video"), "{body}");
    let (status, body) = schedule(&app, vec![jpg(1), jpg(2)], "two stories", Some("story")).await;
    assert_eq!(status, 422, "{body}");
    assert!(message(&body).contains("an Instagram story is one image or one video"), "{body}");
    let (status, body) = schedule(&app, vec![app.media.media_url("a.gif", 1000)], "gif", None).await;
    assert_eq!(status, 422, "{body}");
    assert!(message(&body).contains("does not take image/gif"), "{body}");

    // When probed: not an image, over Instagram's 8 MB, missing; an album stops at its bad item.
    for (media, says) in [
        (vec![app.media.url("/media/mislabelled.jpg")], "not an image or video"),
        (vec![app.media.media_url("big.jpg", 9_000_000)], "over the limit of 8 MB"),
        (vec![app.media.url("/status/404")], "HTTP 404"),
        (vec![jpg(1), app.media.url("/status/404")], "HTTP 404"),
    ] {
        let post = publish(&app, media, "refused", None).await;
        assert_eq!((post["status"].as_str(), post["error_kind"].as_str()), (Some("failed"), Some("rejected")));
        assert!(error(&post).contains(says), "{post}");
    }
    let probes = app.media.served().iter().filter(|s| s.path_and_query.contains("big.jpg")).count();
    assert_eq!((probes, app.media.bytes_sent_for("big.jpg") < 1000), (1, true), "probed, never downloaded");
    assert_eq!(ig.containers().len(), 1, "only the album's first item reached Instagram");
    assert!(ig.published_media().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_container_fails_with_instagrams_words_and_a_spent_quota_waits() {
    let app = TestApp::spawn(Mode::Embedded).await;
    app.connect("alice", "instagram").await;
    let ig = &app.instagram;
    // ERROR at the first look.
    ig.set_polls_before_finished(0);
    ig.fail_next_container("Error: Unsupported image format. (2207005)");
    let post = publish(&app, vec![app.media.media_url("bad.jpg", 40_000)], "broken", None).await;
    assert_eq!((post["status"].as_str(), post["error_kind"].as_str()), (Some("failed"), Some("rejected")));
    assert!(error(&post).contains("Error: Unsupported image format. (2207005)"), "{post}");

    // The quota is read before any container: a spent one reschedules the post an hour on.
    ig.set_quota_usage(50);
    let id = scheduled(&app, vec![app.media.media_url("a.jpg", 10_000)], "over quota", None).await;
    let post =
        app.wait_for_post("alice", &id, &["retrying", "posted", "failed", "unknown"], Duration::from_secs(90)).await;
    assert_eq!((post["status"].as_str(), post["error_kind"].as_str()), (Some("retrying"), Some("rate_limited")));
    assert!(error(&post).contains("50 of 50"), "{post}");
    let next: chrono::DateTime<Utc> = post["next_attempt_at"].as_str().expect("next").parse().expect("time");
    assert!(next > Utc::now() + chrono::Duration::minutes(55), "{post}");
    assert_eq!(ig.containers().len(), 1, "no container for the post over quota");
    assert!(ig.published_media().is_empty());
    app.stop().await;
}

/// A worker that died at `media_publish` (its row says `sending`): the container tells the attempt
/// that takes over whether Instagram published it (found by caption) or it is safe to send again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_media_publish_is_resolved_by_the_container() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect("alice", "instagram").await;
    let ig = &app.instagram;
    ig.set_polls_before_finished(1);
    for (answered, content) in [(true, "published before the crash"), (false, "crashed before publishing")] {
        let before = ig.published_media().len();
        if answered {
            ig.hold_reply("POST", "/media_publish")
        } else {
            ig.hold("POST", "/media_publish")
        }
        let id = scheduled(&app, vec![app.media.media_url("c.jpg", 20_000)], content, None).await;
        ig.wait_held(Duration::from_secs(15)).await;
        tests::wait_until(Duration::from_secs(5), "the publish", || async {
            (ig.published_media().len() == before + usize::from(answered)).then_some(())
        })
        .await;
        // The attempt is gone: its claim is another's, and the row is due for a takeover.
        app.exec(&format!(
            "UPDATE scheduled_posts SET claim_token = 'dead-{id}', due_at = '{}', dispatched_at = NULL WHERE id = '{id}'",
            Utc::now().to_rfc3339()
        ))
        .await;
        let post = app.wait_for_post("alice", &id, FINAL, Duration::from_secs(90)).await;
        assert_eq!(post["status"], "posted", "{post}");
        let published = ig.published_media();
        assert_eq!(published.len(), before + 1, "published once");
        let media = published.last().expect("media");
        assert_eq!(
            (media.caption.as_deref(), post["platform_post_id"].as_str()),
            (Some(content), Some(media.media_id.as_str()))
        );
        ig.release_all();
    }
    assert_eq!(ig.containers().len(), 2, "the same container each time");
    app.stop().await;
}
