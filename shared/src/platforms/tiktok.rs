//! TikTok: Login Kit v2 for web and the Content Posting API (PLATFORMS.md §5, docs of 2026-11).
//!
//! - Consent at `{TIKTOK_AUTH_URL}` with `client_key` (TikTok's name for the client id) and the
//!   comma-separated scopes `user.info.basic,video.publish`; web apps use no PKCE.
//! - Tokens at `{TIKTOK_TOKEN_URL}` with `client_key` and `client_secret` in the form. Access
//!   tokens live 2 hours, refresh tokens 180 days, and refresh tokens rotate: the previous one
//!   stops working once a new one is issued. Lifetimes are read from each answer, not assumed.
//! - Identity from `GET /v2/user/info/` (`open_id`, `display_name`); revocation with
//!   `POST /v2/oauth/revoke/`. Every API answer carries `error.code`, `"ok"` on success.
//! - TikTok posts are videos or photos: text alone cannot be published.

use async_trait::async_trait;
use chrono::Duration;
use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;

use super::{
    Account, Authorization, Grant, Identity, PlatformClient, PlatformError, Published, TokenSet,
    http::{Dialect, Effect, RegisteredApp, classify_status, error_message, json, send},
};
use crate::domain::{Platform, PostContent};

const SCOPES: &str = "user.info.basic,video.publish";

/// The TikTok client.
#[derive(Debug)]
pub struct TiktokClient {
    app: RegisteredApp,
    /// URL prefixes verified for `PULL_FROM_URL` (`TIKTOK_VERIFIED_URL_PREFIXES`).
    #[allow(dead_code)]
    verified_prefixes: Vec<String>,
}

impl TiktokClient {
    /// A client for a registered app; its client id is TikTok's `client_key`.
    pub(crate) fn new(app: RegisteredApp, verified_prefixes: Vec<String>) -> Self {
        Self { app, verified_prefixes }
    }

    fn credentials(&self) -> [(&str, &str); 2] {
        [("client_key", self.app.client_id.as_str()), ("client_secret", self.app.client_secret.expose())]
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<TokenSet, PlatformError> {
        let mut fields = self.credentials().to_vec();
        fields.extend_from_slice(form);
        self.app.post_token::<Tiktok>(&fields).await
    }
}

/// TikTok's error dialect: `{"error": {"code", "message", "log_id"}}` from the API, OAuth's
/// `{"error", "error_description"}` from the token endpoint.
struct Tiktok;

impl Dialect for Tiktok {
    const NAME: &'static str = "TikTok";

    fn classify(status: StatusCode, _headers: &HeaderMap, body: &str, effect: Effect) -> PlatformError {
        let message = error_message(body).unwrap_or_else(|| format!("TikTok answered HTTP {}", status.as_u16()));
        classify_status(status, message, effect)
    }
}

#[derive(Deserialize)]
struct UserInfoResponse {
    data: UserInfoData,
    error: ApiError,
}

#[derive(Deserialize)]
struct UserInfoData {
    user: User,
}

#[derive(Deserialize)]
struct User {
    open_id: String,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct ApiError {
    code: String,
    #[serde(default)]
    message: String,
}

#[async_trait]
impl PlatformClient for TiktokClient {
    fn id(&self) -> Platform {
        Platform::Tiktok
    }

    fn authorize(&self, state: &str, redirect_uri: &str) -> Authorization {
        self.app.authorization(&[
            ("client_key", &self.app.client_id),
            ("scope", SCOPES),
            ("redirect_uri", redirect_uri),
            ("state", state),
            ("response_type", "code"),
        ])
    }

    async fn exchange_code(
        &self,
        code: &str,
        _pkce_verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        self.token(&[("code", code), ("grant_type", "authorization_code"), ("redirect_uri", redirect_uri)]).await
    }

    async fn identity(&self, access_token: &str) -> Result<Identity, PlatformError> {
        let request = self
            .app
            .http
            .get(format!("{}/v2/user/info/", self.app.api_base))
            .query(&[("fields", "open_id,union_id,avatar_url,display_name")])
            .bearer_auth(access_token);
        let response = send::<Tiktok>(request, Effect::Read).await?;
        let info: UserInfoResponse = json::<Tiktok, _>(response, "/v2/user/info/", Effect::Read).await?;
        // TikTok reports some failures with HTTP 200 and a non-"ok" code.
        if info.error.code != "ok" {
            return Err(PlatformError::Rejected(format!("{}: {}", info.error.code, info.error.message)));
        }
        Ok(Identity { user_id: info.data.user.open_id, username: info.data.user.display_name })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, PlatformError> {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    fn refresh_margin(&self) -> chrono::Duration {
        // Access tokens live two hours; refresh in the last ten minutes.
        Duration::minutes(10)
    }

    /// `POST /v2/oauth/revoke/` with the access token ends the grant.
    async fn revoke(&self, grant: &Grant) -> Result<bool, PlatformError> {
        let mut fields = self.credentials().to_vec();
        fields.push(("token", grant.access_token.as_str()));
        let request = self.app.http.post(format!("{}/v2/oauth/revoke/", self.app.api_base)).form(&fields);
        send::<Tiktok>(request, Effect::Read).await?;
        Ok(true)
    }

    async fn publish(
        &self,
        _access_token: &str,
        _account: &Account,
        _content: &PostContent,
    ) -> Result<Published, PlatformError> {
        // Scheduling refuses TikTok posts without media; this answers rows stored otherwise.
        Err(PlatformError::Rejected(
            "TikTok posts need a video or photos, and media publishing is not available yet".into(),
        ))
    }
}
