//! Video is streamed, never held whole (DESIGN §10): a real `worker` process posts a 200 MB video
//! to the fake X (fetched from the test media server in 4 MiB segments) and its peak resident
//! memory (`VmHWM`) stays under 100 MB.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tests::{TestApp, media_server::expected_sha256};

const VIDEO_BYTES: u64 = 200 * 1024 * 1024;
const CEILING_KB: u64 = 100 * 1024;

fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse().ok()).expect("kB")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_video_is_posted_in_under_100_mb_of_memory() {
    let app = TestApp::spawn_api_only(|env| {
        env.insert("PLATFORM_HTTP_TIMEOUT_SECS".into(), "60".into());
    })
    .await;
    app.connect_x("alice").await;
    let video = app.media.media_url("big.mp4", VIDEO_BYTES);
    let body = json!({"campaign_id": "rss", "platforms": ["twitter"], "content": "a big one",
        "media_urls": [video], "scheduled_time": Utc::now().to_rfc3339()});
    let (status, answer) = app.post("alice", "/api/v1/posts/schedule", &body).await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["posts"][0]["id"].as_str().expect("id").to_owned();
    let mut worker = tests::worker_process(&app, env!("CARGO_BIN_EXE_worker"), "media-memory", &[]);
    let started = std::time::Instant::now();
    let post = app.wait_for_post("alice", &id, &["posted", "failed", "unknown"], Duration::from_secs(240)).await;
    let elapsed = started.elapsed();
    let peak = peak_rss_kb(worker.id());
    worker.kill().expect("stop the worker");
    worker.wait().expect("reap it");
    assert_eq!(post["status"], "posted", "{post}");
    let upload = app.x.uploads().into_iter().last().expect("upload");
    assert_eq!(upload.total_bytes, VIDEO_BYTES);
    assert_eq!(upload.sha256, expected_sha256(&video), "X received the file's bytes");
    eprintln!(
        "200 MB video posted in {:.1} s; worker peak RSS {} MB = {:.2} of the {} MB ceiling",
        elapsed.as_secs_f64(),
        peak / 1024,
        peak as f64 / CEILING_KB as f64,
        CEILING_KB / 1024
    );
    assert!(peak < CEILING_KB, "peak RSS {peak} kB");
    app.stop().await;
}
