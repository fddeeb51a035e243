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
use chrono::{TimeZone, Utc};
use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;

use super::{
    Account, Authorization, Grant, Identity, PlatformClient, PlatformError, Published, TokenSet,
    http::{Dialect, Effect, RegisteredApp, classify_status, json, send},
    oauth::{ClientAuth, Flow, OAuthApp},
};
use crate::domain::{Platform, PostContent};

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
    app: RegisteredApp,
}

impl XClient {
    /// A client for a registered app.
    pub(crate) fn new(app: RegisteredApp) -> Self {
        Self { oauth: OAuthApp::new(&app, FLOW), app }
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

/// X's error dialect.
struct X;

impl Dialect for X {
    const NAME: &'static str = "X";

    fn classify(status: StatusCode, headers: &HeaderMap, body: &str, effect: Effect) -> PlatformError {
        let problem: Problem = serde_json::from_str(body).unwrap_or_default();
        let message = problem
            .detail
            .or_else(|| problem.errors.into_iter().find_map(|e| e.message))
            .or(problem.title)
            .unwrap_or_else(|| format!("X answered HTTP {}", status.as_u16()));
        if status == StatusCode::TOO_MANY_REQUESTS {
            // `x-rate-limit-reset` is the Unix second the window reopens.
            let retry_at = headers
                .get("x-rate-limit-reset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(|secs| Utc.timestamp_opt(secs, 0).single());
            return PlatformError::RateLimited { message, retry_at };
        }
        classify_status(status, message, effect)
    }
}

#[async_trait]
impl PlatformClient for XClient {
    fn id(&self) -> Platform {
        Platform::Twitter
    }

    fn authorize(&self, state: &str, redirect_uri: &str) -> Authorization {
        self.oauth.authorize(state, redirect_uri)
    }

    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        self.oauth.exchange_code(code, pkce_verifier, redirect_uri).await
    }

    async fn identity(&self, access_token: &str) -> Result<Identity, PlatformError> {
        let request = self.app.http.get(format!("{}/2/users/me", self.app.api_base)).bearer_auth(access_token);
        let response = send::<X>(request, Effect::Read).await?;
        let user: Envelope<User> = json::<X, _>(response, "/2/users/me", Effect::Read).await?;
        Ok(Identity { user_id: user.data.id, username: Some(user.data.username) })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, PlatformError> {
        self.oauth.refresh(refresh_token).await
    }

    fn refresh_margin(&self) -> chrono::Duration {
        // Access tokens live two hours; refresh in the last ten minutes.
        chrono::Duration::minutes(10)
    }

    /// `POST /2/oauth2/revoke` for the refresh token (which ends the grant) and the access token.
    async fn revoke(&self, grant: &Grant) -> Result<bool, PlatformError> {
        let tokens =
            [(grant.refresh_token.as_deref(), "refresh_token"), (Some(grant.access_token.as_str()), "access_token")];
        for (token, hint) in tokens {
            let Some(token) = token else { continue };
            let request = self
                .app
                .http
                .post(format!("{}/2/oauth2/revoke", self.app.api_base))
                .basic_auth(&self.app.client_id, Some(self.app.client_secret.expose()))
                .form(&[("token", token), ("token_type_hint", hint)]);
            send::<X>(request, Effect::Read).await?;
        }
        Ok(true)
    }

    async fn publish(
        &self,
        access_token: &str,
        _account: &Account,
        content: &PostContent,
    ) -> Result<Published, PlatformError> {
        let request = self
            .app
            .http
            .post(format!("{}/2/tweets", self.app.api_base))
            .bearer_auth(access_token)
            .json(&serde_json::json!({ "text": content.rendered() }));
        let response = send::<X>(request, Effect::Write).await?;
        // X answered 2xx, so the post exists; a body we cannot read leaves its id unknown.
        let tweet: Envelope<Tweet> = json::<X, _>(response, "/2/tweets", Effect::Write).await?;
        Ok(Published { platform_post_id: tweet.data.id })
    }
}
