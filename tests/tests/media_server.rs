//! The test media server serves what `expected_sha256` predicts, streamed.

use sha2::{Digest, Sha256};
use std::time::Duration;

use tests::{
    Fake,
    media_server::{self, MediaServer},
};

/// Downloads `url` chunk by chunk; returns the status, headers, length, first 64 bytes and SHA-256.
async fn fetch(url: &str) -> (u16, reqwest::header::HeaderMap, u64, Vec<u8>, String) {
    let mut response = reqwest::get(url).await.expect("GET media");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let (mut len, mut head, mut hasher) = (0u64, Vec::new(), Sha256::new());
    while let Some(chunk) = response.chunk().await.expect("body chunk") {
        if head.len() < 64 {
            head.extend_from_slice(&chunk[..chunk.len().min(64 - head.len())]);
        }
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (status, headers, len, head, format!("{:x}", hasher.finalize()))
}

#[tokio::test]
async fn media_server_serves_generated_files() {
    let media = MediaServer::start().await;

    let path = "/media/photo.jpg";
    let (status, headers, len, head, sha) = fetch(&media.url(path)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(headers["content-length"], "50000");
    assert_eq!(len, 50_000);
    assert_eq!(&head[..11], b"\xFF\xD8\xFF\xE0\x00\x10JFIF\0");
    assert_eq!(media_server::expected_range(path, 49_998, 2), [0xFF, 0xD9]);
    assert_eq!(sha, media_server::expected_sha256(path));

    let path = "/media/clip.mp4?bytes=20000000";
    let (status, headers, len, head, sha) = fetch(&media.url(path)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "video/mp4");
    assert_eq!(headers["content-length"], "20000000");
    assert_eq!(len, 20_000_000);
    assert_eq!(&head[..32], b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41");
    assert_eq!(&head[32..40], [&(20_000_000u32 - 32).to_be_bytes()[..], b"mdat"].concat());
    assert!(head[40..].iter().any(|b| *b != 0), "padding is not all zeros");
    assert_eq!(sha, media_server::expected_sha256(&media.url(path)));
    assert_eq!(media.served().last().expect("served").bytes_sent, 20_000_000);

    // Chunked when asked, and HEAD has the headers without a body.
    let (_, headers, len, _, sha) = fetch(&media.url("/media/clip.mp4?bytes=20000000&length=none")).await;
    assert!(headers.get("content-length").is_none());
    assert_eq!((len, sha), (20_000_000, media_server::expected_sha256(path)));
    let head = reqwest::Client::new().head(media.url(path)).send().await.expect("HEAD");
    assert_eq!(head.headers()["content-length"], "20000000");
    assert_eq!(head.bytes().await.expect("empty").len(), 0);

    // A held request is recorded, then answered only after release_all.
    media.hold("GET", "/held.gif");
    let url = media.url("/media/held.gif?bytes=1000");
    let pending = tokio::spawn(async move { reqwest::get(url).await.expect("held GET").bytes().await.expect("body") });
    let held = media.wait_held(Duration::from_secs(5)).await;
    assert_eq!((held.path.as_str(), held.body_len), ("/media/held.gif", 0));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished(), "a held request is not answered");
    media.release_all();
    let body = tokio::time::timeout(Duration::from_secs(5), pending).await.expect("released").expect("task");
    assert_eq!(&body[..6], b"GIF89a");
    assert_eq!(body.len(), 1000);

    // A long body is recorded by its first 64 KiB and its full length, even when left unread
    // (no POST route: 405).
    let answer = reqwest::Client::new().post(media.url("/status/200")).body(vec![b'x'; 250_000]).send().await;
    assert_eq!(answer.expect("POST").status().as_u16(), 405);
    let posted = media.requests_to("/status/200").pop().expect("recorded");
    assert_eq!((posted.body.len(), posted.body_len), (tests::RECORDED_BODY_LIMIT, 250_000));
}
