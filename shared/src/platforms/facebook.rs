//! Facebook Pages: Facebook Login and the Graph API at `GRAPH_API_VERSION` (default v26.0;
//! PLATFORMS.md §4).
//!
//! - Consent at `{FACEBOOK_AUTH_URL}` with `pages_show_list,pages_read_engagement,pages_manage_posts`.
//! - The code becomes a short-lived user token (`GET {FACEBOOK_TOKEN_URL}`), which is exchanged
//!   at once for a long-lived one (`grant_type=fb_exchange_token`, about 60 days). Facebook issues
//!   no refresh token.
//! - `GET /me/accounts` lists the Pages with their Page tokens; Page tokens obtained from a
//!   long-lived user token do not expire. The user picks one Page; posts go to
//!   `POST /{page-id}/feed` with that Page's token.
//! - Disconnect revokes with `DELETE /{user-id}/permissions`.

use async_trait::async_trait;
use chrono::Duration;
use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;

use super::{
    Account, Authorization, Grant, Identity, Page, PlatformClient, PlatformError, Published, TokenSet,
    http::{Dialect, Effect, RawToken, RegisteredApp, classify_status, error_message, json, send},
};
use crate::domain::{Platform, PostContent};

const SCOPES: &str = "pages_show_list,pages_read_engagement,pages_manage_posts";

/// The Facebook Pages client.
#[derive(Debug)]
pub struct FacebookClient {
    app: RegisteredApp,
    /// `{FACEBOOK_API_BASE}/{version}`.
    graph: String,
    /// `{FACEBOOK_VIDEO_API_BASE}/{version}`, where Page videos are posted.
    #[allow(dead_code)]
    graph_video: String,
}

impl FacebookClient {
    /// A client for a registered app; Graph calls go to `{FACEBOOK_API_BASE}/{version}`, videos
    /// to `{video_base}/{version}`.
    pub(crate) fn new(app: RegisteredApp, version: &str, video_base: &str) -> Self {
        let graph = format!("{}/{version}", app.api_base);
        Self { app, graph, graph_video: format!("{video_base}/{version}") }
    }

    /// Facebook's token endpoint takes GET with the app credentials in the query.
    async fn token(&self, params: &[(&str, &str)]) -> Result<RawToken, PlatformError> {
        let mut query =
            vec![("client_id", self.app.client_id.as_str()), ("client_secret", self.app.client_secret.expose())];
        query.extend_from_slice(params);
        let response = send::<Graph>(self.app.http.get(self.app.token_url.clone()).query(&query), Effect::Read).await?;
        json::<Graph, RawToken>(response, "the token request", Effect::Read).await
    }
}

/// The Graph API error object: `{"error": {"message", "type", "code", "error_subcode"}}`.
pub(crate) struct Graph;

#[derive(Deserialize, Default)]
struct GraphErrorBody {
    #[serde(default)]
    error: GraphError,
}

#[derive(Deserialize, Default)]
struct GraphError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: i64,
    #[serde(default)]
    error_subcode: i64,
}

impl Dialect for Graph {
    const NAME: &'static str = "Facebook";

    fn classify(status: StatusCode, _headers: &HeaderMap, body: &str, effect: Effect) -> PlatformError {
        // Graph's error object; anything else (a proxy's page, an OAuth-shaped body) falls back to
        // the shared reading.
        let error = serde_json::from_str::<GraphErrorBody>(body).map(|b| b.error).unwrap_or_default();
        let message = Some(error.message)
            .filter(|m| !m.is_empty())
            .or_else(|| error_message(body))
            .unwrap_or_else(|| format!("Graph API answered HTTP {}", status.as_u16()));
        match (error.code, error.error_subcode) {
            // The user removed the app (458) or Facebook invalidated the session for good (459,
            // 464): access was withdrawn.
            (190, 458 | 459 | 464) => PlatformError::Revoked(message),
            // Otherwise an invalid or expired token.
            (190 | 102, _) => PlatformError::Unauthorized(message),
            // Throttling: application, user, page, custom and business-use-case limits.
            (4 | 17 | 32 | 341 | 613 | 80001..=80014, _) => PlatformError::RateLimited { message, retry_at: None },
            // "An unknown error occurred" and "service temporarily unavailable".
            (1 | 2, _) => PlatformError::Transient(message),
            (0, _) => classify_status(status, message, effect),
            _ => PlatformError::Rejected(message),
        }
    }
}

#[derive(Deserialize)]
struct Me {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Accounts {
    data: Vec<AccountEntry>,
}

#[derive(Deserialize)]
struct AccountEntry {
    id: String,
    name: String,
    access_token: String,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[async_trait]
impl PlatformClient for FacebookClient {
    fn id(&self) -> Platform {
        Platform::Facebook
    }

    fn authorize(&self, state: &str, redirect_uri: &str) -> Authorization {
        self.app.authorization(&[
            ("client_id", &self.app.client_id),
            ("redirect_uri", redirect_uri),
            ("state", state),
            ("response_type", "code"),
            ("scope", SCOPES),
        ])
    }

    async fn exchange_code(
        &self,
        code: &str,
        _pkce_verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        let short = self.token(&[("redirect_uri", redirect_uri), ("code", code)]).await?;
        let long =
            self.token(&[("grant_type", "fb_exchange_token"), ("fb_exchange_token", &short.access_token)]).await?;
        Ok(long.into_token_set())
    }

    async fn identity(&self, access_token: &str) -> Result<Identity, PlatformError> {
        let request =
            self.app.http.get(format!("{}/me", self.graph)).query(&[("fields", "id,name")]).bearer_auth(access_token);
        let me: Me = json::<Graph, _>(send::<Graph>(request, Effect::Read).await?, "/me", Effect::Read).await?;
        Ok(Identity { user_id: me.id, username: me.name })
    }

    async fn refresh(&self, _refresh_token: &str) -> Result<TokenSet, PlatformError> {
        Err(PlatformError::Rejected("Facebook issues no refresh token; log in again".into()))
    }

    fn refresh_margin(&self) -> chrono::Duration {
        Duration::days(7)
    }

    fn needs_page(&self) -> bool {
        true
    }

    async fn pages(&self, access_token: &str) -> Result<Vec<Page>, PlatformError> {
        let request = self
            .app
            .http
            .get(format!("{}/me/accounts", self.graph))
            .query(&[("fields", "id,name,access_token"), ("limit", "100")])
            .bearer_auth(access_token);
        let accounts: Accounts =
            json::<Graph, _>(send::<Graph>(request, Effect::Read).await?, "/me/accounts", Effect::Read).await?;
        Ok(accounts.data.into_iter().map(|a| Page { id: a.id, name: a.name, access_token: a.access_token }).collect())
    }

    /// `DELETE /{user-id}/permissions` de-authorizes the app, Page tokens included.
    async fn revoke(&self, grant: &Grant) -> Result<bool, PlatformError> {
        let request = self
            .app
            .http
            .delete(format!("{}/{}/permissions", self.graph, grant.platform_user_id))
            .bearer_auth(&grant.access_token);
        send::<Graph>(request, Effect::Read).await?;
        Ok(true)
    }

    /// `POST /{page-id}/feed` with the Page token (the caller passes it as `access_token`).
    async fn publish(
        &self,
        access_token: &str,
        account: &Account,
        content: &PostContent,
    ) -> Result<Published, PlatformError> {
        let page_id =
            account.page_id.as_deref().ok_or_else(|| PlatformError::Rejected("no Facebook Page is selected".into()))?;
        let message = content.rendered();
        let request = self
            .app
            .http
            .post(format!("{}/{page_id}/feed", self.graph))
            .bearer_auth(access_token)
            .form(&[("message", message.as_str())]);
        let created: Created =
            json::<Graph, _>(send::<Graph>(request, Effect::Write).await?, "/feed", Effect::Write).await?;
        Ok(Published { platform_post_id: created.id })
    }
}
