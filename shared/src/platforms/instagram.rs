//! Instagram professional accounts: the Instagram API with Instagram Login at `GRAPH_API_VERSION`
//! (default v26.0; PLATFORMS.md §3). Instagram Basic Display is gone and not implemented.
//!
//! - Consent at `{INSTAGRAM_AUTH_URL}` with `instagram_business_basic,instagram_business_content_publish`.
//! - The code becomes a short-lived token at `{INSTAGRAM_TOKEN_URL}` (form with the client
//!   credentials), exchanged at once for a 60-day token (`GET /access_token`,
//!   `grant_type=ig_exchange_token`). There is no refresh token: the long-lived token refreshes
//!   itself (`GET /refresh_access_token`, `grant_type=ig_refresh_token`) once it is a day old,
//!   which the refresh sweep does ten days before expiry.
//! - Identity from `GET /{version}/me?fields=user_id,username`.
//! - Instagram documents no revocation endpoint; posts need an image or a video.

use async_trait::async_trait;
use chrono::Duration;
use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;

use super::{
    Account, Authorization, Identity, PlatformClient, PlatformError, Published, TokenSet,
    http::{Dialect, Effect, RawToken, RegisteredApp, classify_status, error_message, json, send},
};
use crate::domain::{Platform, PostContent};

const SCOPES: &str = "instagram_business_basic,instagram_business_content_publish";

/// The Instagram client.
#[derive(Debug)]
pub struct InstagramClient {
    app: RegisteredApp,
    version: String,
}

impl InstagramClient {
    /// A client for a registered app, calling Graph `version`.
    pub(crate) fn new(app: RegisteredApp, version: &str) -> Self {
        Self { app, version: version.to_owned() }
    }
}

/// Instagram's dialects: the Graph error object from the API, and
/// `{"error_type", "code", "error_message"}` from the code exchange.
struct Instagram;

impl Dialect for Instagram {
    const NAME: &'static str = "Instagram";

    fn classify(status: StatusCode, _headers: &HeaderMap, body: &str, effect: Effect) -> PlatformError {
        let message = error_message(body).unwrap_or_else(|| format!("Instagram answered HTTP {}", status.as_u16()));
        let value = serde_json::from_str::<serde_json::Value>(body).ok();
        let field = |name: &str| value.as_ref().and_then(|v| v.get("error")?.get(name)?.as_i64());
        match (field("code"), field("error_subcode")) {
            // The user removed the app: access was withdrawn.
            (Some(190), Some(458)) => PlatformError::Revoked(message),
            (Some(190), _) => PlatformError::Unauthorized(message),
            (Some(4 | 17 | 32 | 613), _) => PlatformError::RateLimited { message, retry_at: None },
            (Some(1 | 2), _) => PlatformError::Transient(message),
            _ => classify_status(status, message, effect),
        }
    }
}

/// The code exchange's answer: `user_id` is a JSON number.
#[derive(Deserialize)]
struct ShortToken {
    access_token: String,
}

#[derive(Deserialize)]
struct Me {
    user_id: serde_json::Value,
    #[serde(default)]
    username: Option<String>,
}

#[async_trait]
impl PlatformClient for InstagramClient {
    fn id(&self) -> Platform {
        Platform::Instagram
    }

    fn authorize(&self, state: &str, redirect_uri: &str) -> Authorization {
        self.app.authorization(&[
            ("client_id", &self.app.client_id),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("scope", SCOPES),
            ("state", state),
        ])
    }

    async fn exchange_code(
        &self,
        code: &str,
        _pkce_verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        // Instagram appends `#_` to the redirect; a client that kept it would send it back.
        let code = code.trim_end_matches("#_");
        let form = [
            ("client_id", self.app.client_id.as_str()),
            ("client_secret", self.app.client_secret.expose()),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect_uri),
            ("code", code),
        ];
        let response =
            send::<Instagram>(self.app.http.post(self.app.token_url.clone()).form(&form), Effect::Read).await?;
        let short: ShortToken = json::<Instagram, _>(response, "the code exchange", Effect::Read).await?;
        let query = [
            ("grant_type", "ig_exchange_token"),
            ("client_secret", self.app.client_secret.expose()),
            ("access_token", short.access_token.as_str()),
        ];
        let request = self.app.http.get(format!("{}/access_token", self.app.api_base)).query(&query);
        let long: RawToken =
            json::<Instagram, _>(send::<Instagram>(request, Effect::Read).await?, "the token exchange", Effect::Read)
                .await?;
        Ok(long.into_token_set())
    }

    async fn identity(&self, access_token: &str) -> Result<Identity, PlatformError> {
        let request = self
            .app
            .http
            .get(format!("{}/{}/me", self.app.api_base, self.version))
            .query(&[("fields", "user_id,username")])
            .bearer_auth(access_token);
        let me: Me = json::<Instagram, _>(send::<Instagram>(request, Effect::Read).await?, "/me", Effect::Read).await?;
        let user_id = match me.user_id {
            serde_json::Value::String(id) => id,
            other => other.to_string(),
        };
        Ok(Identity { user_id, username: me.username })
    }

    /// Refreshes the long-lived access token itself.
    async fn refresh(&self, access_token: &str) -> Result<TokenSet, PlatformError> {
        let query = [("grant_type", "ig_refresh_token"), ("access_token", access_token)];
        let request = self.app.http.get(format!("{}/refresh_access_token", self.app.api_base)).query(&query);
        let token: RawToken =
            json::<Instagram, _>(send::<Instagram>(request, Effect::Read).await?, "the refresh", Effect::Read).await?;
        Ok(token.into_token_set())
    }

    fn refreshes_access_token(&self) -> bool {
        true
    }

    fn refresh_margin(&self) -> chrono::Duration {
        // 60-day tokens, refreshable from day 1: renew ten days ahead, before `expiring` shows.
        Duration::days(10)
    }

    async fn publish(
        &self,
        _access_token: &str,
        _account: &Account,
        _content: &PostContent,
    ) -> Result<Published, PlatformError> {
        // Scheduling refuses Instagram posts without media; this answers rows stored otherwise.
        Err(PlatformError::Rejected(
            "Instagram posts need an image or a video, and media publishing is not available yet".into(),
        ))
    }
}
