//! Scheduling posts through Herald's public API, as a frontend would.
//!
//! Used twice: to measure the API scheduling rate (how fast `POST /api/v1/posts/schedule` accepts
//! posts, with a bounded number in flight), and, with `--via-api`, to put a herd in place on a
//! tree that enqueues posts only when they are scheduled through the API. Bearer tokens are HS256
//! JWTs signed with the run's `AUTH_JWT_SECRET`, one per user, exactly what an identity provider
//! would issue.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::{
    database::{OTHER_USER, user_id},
    harness::{Harness, Stage},
    herald::{Process, free_port},
};

/// How long an api may take to answer `/readyz` after it starts.
const API_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts `api serve` on the stage and returns a client with a token for each of `users` bench
/// users (indexes `0..users`) and for [`OTHER_USER`] (index `users`).
pub async fn start_api(harness: &Harness, stage: &mut Stage, users: u64, name: &str) -> anyhow::Result<ApiClient> {
    let port = free_port()?;
    let mut api = stage.deployment.spawn_api(name, port)?;
    let mut ids: Vec<String> = (1..=users).map(user_id).collect();
    ids.push(OTHER_USER.to_owned());
    let client = ApiClient::new(port, &harness.secrets.jwt, &ids)?;
    let ready = client.wait_ready(&mut api, API_START_TIMEOUT).await;
    stage.api = Some(api);
    ready.map(|()| client)
}

/// A client of one running api.
#[derive(Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    /// Bearer token of each user, in user order.
    tokens: Vec<String>,
}

/// One post to schedule.
#[derive(Debug, Clone)]
pub struct Item {
    /// Index of its user in the client's token list.
    pub user: usize,
    /// Its text.
    pub content: String,
    /// Its `scheduled_time`.
    pub at: DateTime<Utc>,
}

/// What scheduling a batch of posts achieved.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// Posts the api accepted (201).
    pub accepted: u64,
    /// Posts it refused or that failed in transit.
    pub failed: u64,
    /// The first failure, for the report.
    pub first_failure: Option<String>,
    /// Wall time of the whole batch.
    pub elapsed: Duration,
}

impl Scheduled {
    /// Accepted posts per second.
    pub fn rate(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: i64,
    exp: i64,
}

/// A bearer token for `user_id`, valid for `ttl`.
pub fn bearer_token(secret: &str, user_id: &str, ttl: chrono::Duration) -> anyhow::Result<String> {
    let now = Utc::now().timestamp();
    let claims = Claims { sub: user_id, iat: now, exp: now + ttl.num_seconds() };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("cannot sign a bearer token")
}

#[derive(Serialize)]
struct ScheduleBody<'a> {
    campaign_id: &'a str,
    platforms: [&'a str; 1],
    content: &'a str,
    scheduled_time: String,
}

impl ApiClient {
    /// A client of the api on `port`, with one token per user id.
    pub fn new(port: u16, secret: &str, user_ids: &[String]) -> anyhow::Result<Self> {
        let tokens = user_ids
            .iter()
            .map(|id| bearer_token(secret, id, chrono::Duration::hours(6)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, base: format!("http://127.0.0.1:{port}"), tokens })
    }

    /// The api's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The bearer token of user `user` (in the client's user order).
    pub fn token(&self, user: usize) -> Option<&str> {
        self.tokens.get(user).map(String::as_str)
    }

    /// Waits until `GET /readyz` answers 200 (database and Redis reachable), or fails with the
    /// api's log when it exits or takes longer than `timeout`.
    pub async fn wait_ready(&self, api: &mut Process, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = api.exited() {
                bail!("the api exited ({status}) before it was ready; see {}", api.log().display());
            }
            let ready = self.http.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the api was not ready after {timeout:?}; see {}", api.log().display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Schedules every item, `in_flight` requests at a time, reporting progress on stderr.
    pub async fn schedule_all(&self, items: Vec<Item>, in_flight: usize) -> Scheduled {
        let total = items.len();
        let started = Instant::now();
        let mut results = futures::stream::iter(items).map(|item| self.schedule(item)).buffer_unordered(in_flight);
        let (mut accepted, mut failed, mut first_failure) = (0u64, 0u64, None);
        let mut reported = Instant::now();
        while let Some(result) = results.next().await {
            match result {
                Ok(()) => accepted += 1,
                Err(error) => {
                    failed += 1;
                    first_failure.get_or_insert_with(|| format!("{error:#}"));
                }
            }
            if reported.elapsed() >= Duration::from_secs(5) {
                reported = Instant::now();
                eprintln!("herd:   scheduled {}/{total} through the api ({failed} failed)", accepted + failed);
            }
        }
        Scheduled { accepted, failed, first_failure, elapsed: started.elapsed() }
    }

    /// `GET path` as user `user`; the status and how long the answer took.
    pub async fn get(&self, user: usize, path: &str) -> anyhow::Result<(u16, Duration)> {
        let token = self.tokens.get(user).context("no token for that user")?;
        let started = Instant::now();
        let answer = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.context("GET")?;
        let status = answer.status().as_u16();
        answer.bytes().await.context("GET body")?;
        Ok((status, started.elapsed()))
    }

    /// Sends one schedule body as user `user`; the status and how long the answer took.
    pub async fn post_raw(&self, user: usize, body: &serde_json::Value) -> anyhow::Result<(u16, Duration)> {
        let token = self.tokens.get(user).context("no token for that user")?;
        let started = Instant::now();
        let answer = self
            .http
            .post(format!("{}/api/v1/posts/schedule", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .context("POST /api/v1/posts/schedule")?;
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        if status != 201 {
            bail!("POST /api/v1/posts/schedule answered {status}: {}", text.chars().take(300).collect::<String>());
        }
        Ok((status, started.elapsed()))
    }

    async fn schedule(&self, item: Item) -> anyhow::Result<()> {
        let token = self.tokens.get(item.user).context("no token for that user")?;
        let body = ScheduleBody {
            campaign_id: crate::database::CAMPAIGN,
            platforms: ["twitter"],
            content: &item.content,
            scheduled_time: item.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        };
        let answer = self
            .http
            .post(format!("{}/api/v1/posts/schedule", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .context("POST /api/v1/posts/schedule")?;
        let status = answer.status();
        if status.as_u16() != 201 {
            let text = answer.text().await.unwrap_or_default();
            bail!("POST /api/v1/posts/schedule answered {status}: {}", text.chars().take(300).collect::<String>());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hs256_with_sub_and_exp() -> anyhow::Result<()> {
        let secret = "s".repeat(32);
        let token = bearer_token(&secret, "bench-user-000001", chrono::Duration::hours(1))?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        )?;
        assert_eq!(decoded.claims["sub"], "bench-user-000001");
        Ok(())
    }
}
