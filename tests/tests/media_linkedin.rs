//! Media to LinkedIn (DESIGN §10, §12; PLATFORMS.md §1.4) against the fake LinkedIn and the test
//! media server: each image registered and `PUT` whole, its URN saved before the next; one video
//! registered with its size, `PUT` in its parts, finalized with their ETags and polled as saved
//! `processing` waits until `AVAILABLE`; the post carrying the URNs (`content.media` or
//! `content.multiImage`) made once; and media refused at schedule time and when fetched.

use chrono::Utc;
use serde_json::{Value, json};
use tests::{
    Fake, Mode, TestApp,
    fake_linkedin::{USER_ID, VIDEO_PART_BYTES},
    media_server::expected_sha256,
};

use tests::error_message as message;

use tests::posting_error as error;

async fn schedule(app: &TestApp, media: Vec<String>, content: &str) -> (u16, Value) {
    app.schedule_media("alice", "linkedin", content, media, Value::Null).await
}

async fn publish(app: &TestApp, media: Vec<String>, content: &str) -> Value {
    app.publish_media("alice", "linkedin", content, media, Value::Null).await
}

/// The media calls LinkedIn received from the `from`-th request on, by name, with their times.
fn steps(app: &TestApp, from: usize) -> Vec<(String, chrono::DateTime<Utc>)> {
    let name = |path: &str, query: &str| -> Option<&'static str> {
        Some(match path {
            "/rest/images" if query.contains("initializeUpload") => "image init",
            "/rest/videos" if query.contains("initializeUpload") => "video init",
            "/rest/videos" if query.contains("finalizeUpload") => "finalize",
            "/rest/posts" => "post",
            p if p.starts_with("/upload/images/") => "image put",
            p if p.starts_with("/upload/videos/") => "part put",
            p if p.starts_with("/rest/videos/urn%3Ali%3Avideo%3A") => "status",
            _ => return None,
        })
    };
    let requests = app.linkedin.requests().into_iter().skip(from);
    requests.filter_map(|r| name(&r.path, &r.query).map(|n| (n.to_owned(), r.at))).collect()
}

fn names(steps: &[(String, chrono::DateTime<Utc>)]) -> Vec<&str> {
    steps.iter().map(|(name, _)| name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_and_a_video_go_to_linkedin_in_order() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect("alice", "linkedin").await;
    let owner = format!("urn:li:person:{USER_ID}");

    // Two images: each registered and uploaded whole, then one multiImage post in their order.
    let images = vec![app.media.media_url("a.jpg", 60_000), app.media.media_url("b.png", 70_000)];
    let post = publish(&app, images.clone(), "two pictures").await;
    assert_eq!(post["status"], "posted", "{post}");
    let uploaded = app.linkedin.images();
    assert_eq!(uploaded.len(), 2);
    for (image, url) in uploaded.iter().zip(&images) {
        assert_eq!(image.sha256.as_deref(), Some(expected_sha256(url).as_str()), "LinkedIn got the file's bytes");
        assert_eq!((image.uploads, image.owner.as_str()), (1, owner.as_str()));
    }
    let posts = app.linkedin.created_posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].media, vec![uploaded[0].urn.clone(), uploaded[1].urn.clone()], "URNs linked in order");
    assert!(posts[0].body["content"]["multiImage"]["images"].is_array(), "{}", posts[0].body);
    assert_eq!(posts[0].body["commentary"], "two pictures");
    assert_eq!(post["platform_post_id"].as_str(), Some(posts[0].urn.as_str()));
    assert_eq!(names(&steps(&app, 0)), ["image init", "image put", "image init", "image put", "post"]);

    // One image: `content.media.id`.
    let from = app.linkedin.requests().len();
    let gif = app.media.media_url("c.gif", 40_000);
    let post = publish(&app, vec![gif.clone()], "one picture").await;
    assert_eq!(post["status"], "posted", "{post}");
    let image = app.linkedin.images().into_iter().last().expect("image");
    assert_eq!(image.sha256, Some(expected_sha256(&gif)));
    let created = app.linkedin.created_posts().into_iter().last().expect("post");
    assert_eq!(created.body["content"], json!({"media": {"id": image.urn}}));
    assert_eq!(names(&steps(&app, from)), ["image init", "image put", "post"]);

    // A 9 MB video: initialize with its size, three parts, finalize, status polls, post.
    app.linkedin.set_processing_polls(1);
    let from = app.linkedin.requests().len();
    let clip = app.media.media_url("clip.mp4", 9_000_000);
    let post = publish(&app, vec![clip.clone()], "a clip").await;
    assert_eq!(post["status"], "posted", "{post}");
    let video = app.linkedin.videos().into_iter().last().expect("video");
    assert_eq!((video.file_size_bytes, video.owner.as_str()), (9_000_000, owner.as_str()));
    assert_eq!(video.parts.len(), 9_000_000_u64.div_ceil(VIDEO_PART_BYTES) as usize);
    assert!(video.parts.iter().all(|p| p.uploads == 1), "each part once");
    assert_eq!(video.sha256, Some(expected_sha256(&clip)), "the parts, in order, are the file");
    let etags: Vec<String> = video.etags().into_iter().map(|e| e.expect("etag")).collect();
    assert_eq!(video.finalized_part_ids, Some(etags), "finalized with each part's ETag, in order");
    let created = app.linkedin.created_posts().into_iter().last().expect("post");
    assert_eq!(created.body["content"], json!({"media": {"id": video.urn}}));
    assert_eq!(post["platform_post_id"].as_str(), Some(created.urn.as_str()));
    let taken = steps(&app, from);
    assert_eq!(
        names(&taken),
        ["video init", "part put", "part put", "part put", "finalize", "status", "status", "post"]
    );
    // Each poll is a saved wait with a due time (1 s, then 2 s), not a loop in the worker.
    let polls: Vec<_> = taken.iter().filter(|(n, _)| n == "status").map(|(_, at)| *at).collect();
    assert!(polls[1] - polls[0] >= chrono::Duration::milliseconds(900), "{polls:?}");
    assert_eq!(app.linkedin.created_posts().len(), 3, "each post made once");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_media_is_refused_with_the_reason() {
    let app = TestApp::spawn(Mode::Embedded).await;
    app.connect("alice", "linkedin").await;
    let jpg = |n: usize| app.media.media_url(&format!("p{n}.jpg"), 10_000);

    // At schedule time: too many images, a video with an image, two videos, kinds LinkedIn refuses.
    let (status, body) = schedule(&app, (0..21).map(jpg).collect(), "21").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(message(&body), "posts[0].media_urls (linkedin): linkedin takes at most 20 images in one post");
    for media in [
        vec![app.media.media_url("v.mp4", 1000), jpg(1)],
        vec![app.media.media_url("v.mp4", 1000), app.media.media_url("w.mp4", 1000)],
    ] {
        let (status, body) = schedule(&app, media, "mixed").await;
        assert_eq!(status, 422, "{body}");
        assert!(message(&body).contains("takes a video alone"), "{body}");
    }
    for (name, mime) in [("v.mov", "video/quicktime"), ("p.webp", "image/webp")] {
        let (status, body) = schedule(&app, vec![app.media.media_url(name, 1000)], "kind").await;
        assert_eq!(status, 422, "{body}");
        assert!(message(&body).contains(&format!("linkedin does not take {mime}")), "{body}");
    }

    // When fetched: bytes that are no image, a WebP behind a redirect, an image over 5 MB, a video
    // over 500 MB (by its Content-Length, before reading it), a video of unknown size.
    let webp = app.media.redirect_url(&app.media.media_url("p.webp", 10_000));
    let big_video = app.media.media_url("huge.mp4", 600 * 1024 * 1024);
    let unsized_video = app.media.media_url("v.mp4", 1_000_000) + "&length=none";
    for (media, says) in [
        (app.media.url("/media/mislabelled.jpg"), "not an image or video"),
        (webp, "is image/webp, which this platform does not take"),
        (app.media.media_url("big.jpg", 6_000_000), "over the limit of 5 MB"),
        (big_video.clone(), "over the limit of 500 MB"),
        (unsized_video, "has no Content-Length"),
    ] {
        let post = publish(&app, vec![media.clone()], &format!("refused {says}")).await;
        assert_eq!(
            (post["status"].as_str(), post["error_kind"].as_str()),
            (Some("failed"), Some("rejected")),
            "{post}"
        );
        assert!(error(&post).contains(says), "{media}: {post}");
    }
    assert!(app.media.bytes_sent_for("huge.mp4") < 10 * 1024 * 1024, "the huge video was not read");
    let nothing = app.linkedin.images().is_empty() && app.linkedin.videos().is_empty();
    assert!(nothing && app.linkedin.created_posts().is_empty(), "nothing refused reached LinkedIn");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_processing_failures_fail_with_linkedins_words() {
    let app = TestApp::spawn(Mode::Production).await;
    app.connect("alice", "linkedin").await;

    // A video LinkedIn cannot process: failed with `processingFailureReason`, never posted.
    app.linkedin.set_processing_polls(1);
    app.linkedin.fail_next_video_processing("Video codec is not supported");
    let post = publish(&app, vec![app.media.media_url("bad.mp4", 2_000_000)], "broken clip").await;
    assert_eq!((post["status"].as_str(), post["error_kind"].as_str()), (Some("failed"), Some("rejected")), "{post}");
    assert_eq!(error(&post), "LinkedIn could not process the video: Video codec is not supported");
    let video = app.linkedin.videos().into_iter().last().expect("video");
    assert!(video.finalized_part_ids.is_some() && video.status_polls == 2, "{video:?}");

    // An image LinkedIn could not process: the post is refused with LinkedIn's 422 message.
    app.linkedin.fail_next_image_processing("Image dimensions exceed 36152320 pixels");
    let post = publish(&app, vec![app.media.media_url("wide.png", 30_000)], "broken picture").await;
    assert_eq!((post["status"].as_str(), post["error_kind"].as_str()), (Some("failed"), Some("rejected")), "{post}");
    assert!(error(&post).contains("failed processing: Image dimensions exceed 36152320 pixels"), "{post}");
    assert!(app.linkedin.created_posts().is_empty(), "no post made");
    assert_eq!(app.linkedin.requests_to("/rest/posts").len(), 1, "the refused post was not sent again");
    app.stop().await;
}
