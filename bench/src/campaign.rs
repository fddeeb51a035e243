//! `herd --scheduling`: how fast `POST /api/v1/posts/schedule` stores a campaign (issue 8).
//!
//! On a fresh PostgreSQL database whose users are connected to X, LinkedIn and a Facebook Page,
//! the real `api serve` takes (1) one request of 1,000 posts × 3 platforms (3,000 rows, one
//! transaction), three times, and (2) 100 concurrent requests of 10 posts × 3 platforms, each
//! from its own user. Rows stored per second and latency percentiles are printed as a table.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::{harness::Harness, schedule};

/// Users, one per concurrent request.
const USERS: u64 = 100;
const PLATFORMS: [&str; 3] = ["twitter", "linkedin", "facebook"];

fn body(posts: usize, tag: &str) -> Value {
    let at = (Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let posts: Vec<Value> = (0..posts)
        .map(|i| {
            json!({"content": format!("{tag} post {i}: campaign copy with a link https://example.com/{i}"),
            "platforms": PLATFORMS, "scheduled_time": at, "hashtags": ["#launch"]})
        })
        .collect();
    json!({"campaign_id": "bench-campaign", "posts": posts})
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs both measurements and renders the table.
pub async fn run(harness: &Harness) -> anyhow::Result<String> {
    let mut stage = harness.stage().await?;
    let result = async {
        for platform in PLATFORMS {
            stage.db.connect_platform(USERS, platform, &harness.cipher).await?;
        }
        let client = schedule::start_api(harness, &mut stage, USERS, "scheduling").await?;
        let mut large = Vec::new();
        for round in 0..3 {
            let (_, elapsed) = client.post_raw(0, &body(1000, &format!("large{round}"))).await?;
            eprintln!("herd: scheduling: 1,000 posts × 3 platforms in {elapsed:?}");
            large.push(elapsed);
        }
        let started = Instant::now();
        let answers: Vec<anyhow::Result<(u16, Duration)>> = futures::stream::iter(0..100usize)
            .map(|i| {
                let client = &client;
                async move { client.post_raw(i % USERS as usize, &body(10, &format!("small{i}"))).await }
            })
            .buffer_unordered(100)
            .collect()
            .await;
        let wall = started.elapsed();
        let mut small = Vec::new();
        for answer in answers {
            small.push(answer?.1);
        }
        small.sort();
        large.sort();
        anyhow::Ok((large, small, wall))
    }
    .await;
    stage.teardown(harness).await;
    let (large, small, wall) = result?;
    let rows = |posts: usize| (posts * PLATFORMS.len()) as f64;
    let mut out = String::from(
        "\n## scheduling: PostgreSQL, release api, rows = posts × 3 platforms\n\n\
         | load | rows | wall s | rows/s | p50 s | p99 s | max s |\n|---|---|---|---|---|---|---|\n",
    );
    let mut row = |load: &str, wall: Duration, latencies: &[Duration]| {
        out.push_str(&format!(
            "| {load} | 3000 | {:.2} | {:.0} | {:.3} | {:.3} | {:.3} |\n",
            wall.as_secs_f64(),
            rows(1000) / wall.as_secs_f64(),
            percentile(latencies, 0.5).as_secs_f64(),
            percentile(latencies, 0.99).as_secs_f64(),
            latencies[latencies.len() - 1].as_secs_f64()
        ));
    };
    row("1 request of 1,000 posts (best of 3)", large[0], &large);
    row("100 concurrent requests of 10 posts", wall, &small);
    Ok(out)
}
