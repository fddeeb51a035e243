//! X (formerly Twitter): OAuth 2.0 authorization code with PKCE and X API v2
//! (PLATFORMS.md §2, docs snapshot 2026-08).
//!
//! - Consent at `{TWITTER_AUTH_URL}` (default `https://x.com/i/oauth2/authorize`) with PKCE S256
//!   and the scopes `tweet.read tweet.write users.read media.write offline.access`.
//! - Token exchange and refresh at `{TWITTER_TOKEN_URL}` as a confidential client (Basic auth).
//!   Refresh tokens are single use: each refresh returns a new one, which the caller must store
//!   in the same transaction as the access token.
//! - Identity from `GET {TWITTER_API_BASE}/2/users/me`, posts with `POST /2/tweets`.

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use reqwest::{Response, StatusCode};
use serde::Deserialize;

use super::{
    Account, Authorization, Identity, Platform, PlatformError, Published, TokenSet,
    oauth::{ClientAuth, Flow, OAuthApp, without_url},
};
use crate::{
    config::{PlatformSettings, Secret},
    domain::{self, PostContent},
};

/// Confidential client (Basic auth), PKCE S256, and the minimal scopes for posting text and media
/// and staying connected (`offline.access` is what makes X issue a refresh token).
const FLOW: Flow = Flow {
    auth: ClientAuth::Basic,
    scopes: &["tweet.read", "tweet.write", "users.read", "media.write", "offline.access"],
    pkce: true,
};

/// The X client.
#[derive(Debug)]
pub struct XClient {
    oauth: OAuthApp,
    http: reqwest::Client,
    api_base: String,
}

impl XClient {
    /// A client for the app `client_id`, with endpoints from `settings`.
    pub fn new(
        settings: &PlatformSettings,
        client_id: &str,
        client_secret: &Secret,
        redirect_uri: String,
        http: reqwest::Client,
    ) -> Self {
        Self {
            oauth: OAuthApp::new(settings, client_id, client_secret, redirect_uri, FLOW, http.clone()),
            http,
            api_base: settings.api_base.as_str().trim_end_matches('/').to_owned(),
        }
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct User {
    id: String,
    username: String,
}

#[derive(Deserialize)]
struct Tweet {
    id: String,
}

/// X's two error shapes: the problem format (`title`, `detail`) and the older `errors[]`.
#[derive(Deserialize, Default)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    message: Option<String>,
}

/// Whether a request that failed may have been applied by X.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// A read: failing it never changes anything.
    Read,
    /// A write: a timeout or an ambiguous 5xx may mean X has it.
    Write,
}

async fn classify(response: Response, effect: Effect) -> PlatformError {
    let status = response.status();
    let reset = response
        .headers()
        .get("x-rate-limit-reset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|secs| Utc.timestamp_opt(secs, 0).single());
    let body = response.text().await.unwrap_or_default();
    let problem: Problem = serde_json::from_str(&body).unwrap_or_default();
    let message = problem
        .detail
        .or_else(|| problem.errors.into_iter().find_map(|e| e.message))
        .or(problem.title)
        .unwrap_or_else(|| format!("X answered HTTP {}", status.as_u16()));
    classify_status(status, message, reset, effect)
}

fn classify_status(status: StatusCode, message: String, reset: Option<DateTime<Utc>>, effect: Effect) -> PlatformError {
    match status.as_u16() {
        401 => PlatformError::Unauthorized(message),
        429 => PlatformError::RateLimited { message, retry_at: reset },
        // A gateway that could not reach X, or X saying it is unavailable: nothing was applied.
        502 | 503 => PlatformError::Transient(message),
        // An internal error or a gateway timeout on a write may have created the post.
        500..=599 if effect == Effect::Write => PlatformError::Unknown(message),
        500..=599 => PlatformError::Transient(message),
        _ => PlatformError::Rejected(message),
    }
}

fn network_error(error: &reqwest::Error, effect: Effect) -> PlatformError {
    let message = format!("X request {}", without_url(error));
    // A connect failure never reached X; anything after the request was sent might have.
    if error.is_connect() || effect == Effect::Read {
        PlatformError::Transient(message)
    } else {
        PlatformError::Unknown(message)
    }
}

/// Sends a request to X; a failure or a non-2xx answer comes back classified.
async fn send(request: reqwest::RequestBuilder, effect: Effect) -> Result<Response, PlatformError> {
    let response = request.send().await.map_err(|e| network_error(&e, effect))?;
    if response.status().is_success() { Ok(response) } else { Err(classify(response, effect).await) }
}

#[async_trait]
impl Platform for XClient {
    fn id(&self) -> domain::Platform {
        domain::Platform::Twitter
    }

    fn authorize(&self, state: &str) -> Authorization {
        self.oauth.authorize(state)
    }

    async fn exchange_code(&self, code: &str, pkce_verifier: Option<&str>) -> Result<TokenSet, PlatformError> {
        self.oauth.exchange_code(code, pkce_verifier).await
    }

    async fn identity(&self, access_token: &str) -> Result<Identity, PlatformError> {
        let request = self.http.get(format!("{}/2/users/me", self.api_base)).bearer_auth(access_token);
        let response = send(request, Effect::Read).await?;
        let user: Envelope<User> = response
            .json()
            .await
            .map_err(|_| PlatformError::Transient("X answered /2/users/me with an unexpected body".into()))?;
        Ok(Identity { user_id: user.data.id, username: Some(user.data.username) })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, PlatformError> {
        self.oauth.refresh(refresh_token).await
    }

    fn refresh_margin(&self) -> chrono::Duration {
        // Access tokens live two hours; refresh in the last ten minutes.
        chrono::Duration::minutes(10)
    }

    async fn publish(
        &self,
        access_token: &str,
        _account: &Account,
        content: &PostContent,
    ) -> Result<Published, PlatformError> {
        let request = self
            .http
            .post(format!("{}/2/tweets", self.api_base))
            .bearer_auth(access_token)
            .json(&serde_json::json!({ "text": content.rendered() }));
        let response = send(request, Effect::Write).await?;
        // X answered 2xx, so the post exists; a body we cannot read leaves its id unknown.
        let tweet: Envelope<Tweet> = response
            .json()
            .await
            .map_err(|_| PlatformError::Unknown("X accepted the post but its answer could not be read".into()))?;
        Ok(Published { platform_post_id: tweet.data.id })
    }
}
