//! LinkedIn member posting: Sign In with LinkedIn using OpenID Connect plus Share on LinkedIn
//! (PLATFORMS.md §1), Posts API with `LinkedIn-Version` from `LINKEDIN_API_VERSION`
//! (default 202603).
//!
//! - Consent at `{LINKEDIN_AUTH_URL}` with `openid profile w_member_social`; no PKCE (LinkedIn
//!   offers it only to native apps); the client secret goes in the token request's form body.
//! - Self-serve apps get no refresh token: the connection records its expiry (60 days) and the
//!   status reports `expiring`, then `expired`. Apps approved for programmatic refresh tokens get
//!   one, and it is used.
//! - Identity from `GET /v2/userinfo` (`sub`, the member id; the author URN is
//!   `urn:li:person:{sub}`); posts with `POST /rest/posts`, whose id is the `x-restli-id` header.
//! - LinkedIn documents no revocation endpoint, so disconnect deletes the tokens only.

use async_trait::async_trait;
use chrono::{Duration, Utc};
use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;

use super::{
    Account, Authorization, Identity, PlatformClient, PlatformError, Published, TokenSet,
    http::{Dialect, Effect, RegisteredApp, classify_status, error_message, json, send},
};
use crate::domain::{Platform, PostContent};

const SCOPES: &str = "openid profile w_member_social";

/// The LinkedIn client.
#[derive(Debug)]
pub struct LinkedinClient {
    app: RegisteredApp,
    version: String,
}

impl LinkedinClient {
    /// A client for a registered app, sending `LinkedIn-Version: {version}`.
    pub(crate) fn new(app: RegisteredApp, version: String) -> Self {
        Self { app, version }
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<TokenSet, PlatformError> {
        let mut fields = form.to_vec();
        fields.extend([("client_id", self.app.client_id.as_str()), ("client_secret", self.app.client_secret.expose())]);
        self.app.post_token::<Linkedin>(&fields).await
    }
}

/// LinkedIn's error dialect: `{"message", "serviceErrorCode", "status"}` from the API and OAuth's
/// `{"error", "error_description"}` from the token endpoint.
struct Linkedin;

impl Dialect for Linkedin {
    const NAME: &'static str = "LinkedIn";

    fn classify(status: StatusCode, _headers: &HeaderMap, body: &str, effect: Effect) -> PlatformError {
        let message = error_message(body).unwrap_or_else(|| format!("LinkedIn answered HTTP {}", status.as_u16()));
        if status == StatusCode::TOO_MANY_REQUESTS {
            // LinkedIn's limits are daily and reset at midnight UTC; it sends no reset header.
            let tomorrow = (Utc::now() + Duration::days(1)).date_naive().and_hms_opt(0, 0, 0).map(|t| t.and_utc());
            return PlatformError::RateLimited { message, retry_at: tomorrow };
        }
        classify_status(status, message, effect)
    }
}

#[derive(Deserialize)]
struct UserInfo {
    sub: String,
    #[serde(default)]
    name: Option<String>,
}

/// Escapes text for the Posts API's "little" text format, where these characters are markup:
/// unescaped, LinkedIn silently truncates the post at the first one.
fn little_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '|' | '{' | '}' | '@' | '[' | ']' | '(' | ')' | '<' | '>' | '#' | '*' | '_' | '~') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The commentary of a post: escaped text, then the hashtags as little-format hashtag templates.
fn commentary(content: &PostContent) -> String {
    let tags: Vec<String> = content.hashtags().iter().map(|t| format!("{{hashtag|\\#|{}}}", little_text(t))).collect();
    match (content.text().is_empty(), tags.is_empty()) {
        (_, true) => little_text(content.text()),
        (true, false) => tags.join(" "),
        (false, false) => format!("{}\n\n{}", little_text(content.text()), tags.join(" ")),
    }
}

#[async_trait]
impl PlatformClient for LinkedinClient {
    fn id(&self) -> Platform {
        Platform::Linkedin
    }

    fn authorize(&self, state: &str, redirect_uri: &str) -> Authorization {
        self.app.authorization(&[
            ("response_type", "code"),
            ("client_id", &self.app.client_id),
            ("redirect_uri", redirect_uri),
            ("state", state),
            ("scope", SCOPES),
        ])
    }

    async fn exchange_code(
        &self,
        code: &str,
        _pkce_verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        self.token(&[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)]).await
    }

    async fn identity(&self, access_token: &str) -> Result<Identity, PlatformError> {
        let request = self.app.http.get(format!("{}/v2/userinfo", self.app.api_base)).bearer_auth(access_token);
        let response = send::<Linkedin>(request, Effect::Read).await?;
        let user: UserInfo = json::<Linkedin, _>(response, "/v2/userinfo", Effect::Read).await?;
        Ok(Identity { user_id: user.sub, username: user.name })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, PlatformError> {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    fn refresh_margin(&self) -> chrono::Duration {
        // Tokens live 60 days; with a refresh token, renew a week ahead.
        Duration::days(7)
    }

    async fn publish(
        &self,
        access_token: &str,
        account: &Account,
        content: &PostContent,
    ) -> Result<Published, PlatformError> {
        let body = serde_json::json!({
            "author": format!("urn:li:person:{}", account.platform_user_id),
            "commentary": commentary(content),
            "visibility": "PUBLIC",
            "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [], "thirdPartyDistributionChannels": []},
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": false,
        });
        let request = self
            .app
            .http
            .post(format!("{}/rest/posts", self.app.api_base))
            .bearer_auth(access_token)
            .header("LinkedIn-Version", &self.version)
            .header("X-Restli-Protocol-Version", "2.0.0")
            .json(&body);
        let response = send::<Linkedin>(request, Effect::Write).await?;
        let urn = response.headers().get("x-restli-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        urn.map(|platform_post_id| Published { platform_post_id })
            .ok_or_else(|| PlatformError::Unknown("LinkedIn accepted the post but sent no x-restli-id".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commentary_escapes_little_format_markup() {
        let content = PostContent::parse(Platform::Linkedin, "Hi (all) #1 @you", &["rust_lang".into()]).expect("valid");
        assert_eq!(commentary(&content), "Hi \\(all\\) \\#1 \\@you\n\n{hashtag|\\#|rust\\_lang}");
    }
}
