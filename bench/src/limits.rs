//! `herd --limits`: what the API's rate limiter costs per request (issue 12).
//!
//! On one fresh PostgreSQL database and Redis prefix, the real `api serve` answers the same
//! authenticated `GET /api/v1/auth/social/connections` from 20 users, 32 in flight, twice: with
//! the limiter off (`RATE_LIMIT_PER_MIN=0`, the ceiling) and on (one Redis bucket per user,
//! limits high enough never to refuse). Off and on alternate three times each, and the best of
//! each is kept, because the machine is shared. The table gives requests per second, latency,
//! the ratio to the ceiling and the cost per request.

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::{harness::Harness, schedule};

const USERS: u64 = 20;
const REQUESTS: usize = 20_000;
const IN_FLIGHT: usize = 32;
const ROUNDS: usize = 3;
const PATH: &str = "/api/v1/auth/social/connections";

/// One measured round.
#[derive(Debug, Clone, Copy)]
struct Round {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn measure(harness: &Harness, stage: &mut crate::harness::Stage, limiter: bool) -> anyhow::Result<Round> {
    let env = &mut stage.deployment.extra_env;
    env.retain(|(key, _)| key != "RATE_LIMIT_PER_MIN");
    if !limiter {
        env.push(("RATE_LIMIT_PER_MIN".into(), "0".into()));
    }
    let name = if limiter { "limits-on" } else { "limits-off" };
    let client = schedule::start_api(harness, stage, USERS, name).await?;
    // Warm the connection pool and the buckets.
    for user in 0..USERS as usize {
        client.get(user, PATH).await?;
    }
    let started = Instant::now();
    let answers: Vec<anyhow::Result<(u16, Duration)>> = futures::stream::iter(0..REQUESTS)
        .map(|i| {
            let client = &client;
            async move { client.get(i % USERS as usize, PATH).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let wall = started.elapsed();
    if let Some(mut api) = stage.api.take() {
        api.stop().await;
    }
    let mut latencies = Vec::with_capacity(answers.len());
    for answer in answers {
        let (status, took) = answer?;
        anyhow::ensure!(status == 200, "{PATH} answered {status}");
        latencies.push(took);
    }
    latencies.sort();
    let round = Round {
        rate: REQUESTS as f64 / wall.as_secs_f64(),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
    };
    eprintln!("herd: limits: limiter {}: {:.0} requests/s", if limiter { "on" } else { "off" }, round.rate);
    Ok(round)
}

/// Runs the rounds and renders the table.
pub async fn run(harness: &Harness) -> anyhow::Result<String> {
    let mut stage = harness.stage().await?;
    let result = async {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            off.push(measure(harness, &mut stage, false).await?);
            on.push(measure(harness, &mut stage, true).await?);
        }
        anyhow::Ok((off, on))
    }
    .await;
    stage.teardown(harness).await;
    let (off, on) = result?;
    let best = |rounds: &[Round]| rounds.iter().copied().max_by(|a, b| a.rate.total_cmp(&b.rate)).expect("rounds");
    let (off, on) = (best(&off), best(&on));
    // With the api saturated, the machine's time per request: what the limiter adds to each.
    let cost_us = (1.0 / on.rate - 1.0 / off.rate) * 1e6;
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    let mut table = format!(
        "**rate limiter:** PostgreSQL + Redis, release api, {REQUESTS} authenticated GETs from {USERS} users, \
         {IN_FLIGHT} in flight, best of {ROUNDS}\n\n\
         | limiter | requests/s | p50 ms | p99 ms | ratio to ceiling |\n|---|---|---|---|---|\n"
    );
    for (name, round) in [("off (ceiling)", off), ("on: a Redis bucket per user", on)] {
        table.push_str(&format!(
            "| {name} | {:.0} | {} | {} | {:.2} |\n",
            round.rate,
            ms(round.p50),
            ms(round.p99),
            round.rate / off.rate
        ));
    }
    table.push_str(&format!(
        "\nCost per request: {cost_us:.1} µs of the saturated machine's time (1/on − 1/off), p50 {:+.2} ms.\n",
        (on.p50.as_secs_f64() - off.p50.as_secs_f64()) * 1000.0
    ));
    Ok(table)
}
