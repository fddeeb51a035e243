//! Platform clients: one [`PlatformClient`] trait, one module per platform.
//!
//! Each module owns its platform's wire formats (paths, bodies, error shapes) and keeps them
//! private; callers see only [`TokenSet`], [`Identity`], [`Published`] and the classified
//! [`PlatformError`]. No caller matches on a platform's status codes. Every URL comes from
//! [`PlatformSettings`](crate::config::PlatformSettings), so tests and sandboxes point elsewhere.

pub mod facebook;
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod instagram;
pub mod linkedin;
mod oauth;
pub mod tiktok;
pub mod x;

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use serde_json::Value;

use crate::{
    config::Settings,
    domain::{ErrorKind, Platform, PostContent, PostOptions, PublishPhase},
    media::MediaFetcher,
};

/// Tokens returned by a platform's token endpoint.
#[derive(Clone)]
pub struct TokenSet {
    /// The access token.
    pub access_token: String,
    /// The refresh token, when the platform issued one.
    pub refresh_token: Option<String>,
    /// When the access token expires, when the platform said.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the refresh token expires, when the platform said.
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_at", &self.expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Who the token belongs to on the platform.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The platform's stable user id.
    pub user_id: String,
    /// The handle or display name shown to the user.
    pub username: Option<String>,
}

/// Where to send the user, and the PKCE verifier to keep for the callback.
#[derive(Debug)]
pub struct Authorization {
    /// The platform's consent URL.
    pub url: String,
    /// The PKCE verifier, for platforms that use PKCE.
    pub pkce_verifier: Option<String>,
}

/// What a connection holds, for revocation (plaintext, never logged).
pub struct Grant {
    /// The access token.
    pub access_token: String,
    /// The refresh token, when there is one.
    pub refresh_token: Option<String>,
    /// The platform user id.
    pub platform_user_id: String,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant").field("platform_user_id", &self.platform_user_id).finish_non_exhaustive()
    }
}

/// A Page the user manages (Facebook), with its Page token.
#[derive(Clone)]
pub struct Page {
    /// The Page id.
    pub id: String,
    /// The Page name.
    pub name: String,
    /// The Page access token (plaintext; never logged).
    pub access_token: String,
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

/// A post the platform accepted.
#[derive(Debug, Clone)]
pub struct Published {
    /// The platform's id of the post.
    pub platform_post_id: String,
}

/// The account a post goes to.
#[derive(Debug, Clone)]
pub struct Account {
    /// The platform user id stored at connect time.
    pub platform_user_id: String,
    /// The selected Page, for platforms that publish to one.
    pub page_id: Option<String>,
    /// The username stored at connect time.
    pub username: Option<String>,
}

/// A platform failure, classified once by the platform's module (DESIGN §5).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlatformError {
    /// The token was refused: refresh once, then the connection is expired.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The user or the platform withdrew Herald's access: no refresh helps; reconnect.
    #[error("revoked: {0}")]
    Revoked(String),
    /// Rate limited; try again at `retry_at` when the platform said.
    #[error("rate limited: {message}")]
    RateLimited {
        /// The platform's message.
        message: String,
        /// The platform's reset time.
        retry_at: Option<DateTime<Utc>>,
    },
    /// Did not reach the platform or it had an outage: safe to retry.
    #[error("transient: {0}")]
    Transient(String),
    /// The platform refused the request for good.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The request may have been applied: never re-send automatically.
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

impl PlatformError {
    /// The platform's message, without the classification prefix.
    pub fn message(&self) -> &str {
        match self {
            PlatformError::Unauthorized(m)
            | PlatformError::Revoked(m)
            | PlatformError::Transient(m)
            | PlatformError::Rejected(m)
            | PlatformError::Unknown(m)
            | PlatformError::RateLimited { message: m, .. } => m,
        }
    }

    /// The stored error kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PlatformError::Unauthorized(_) | PlatformError::Revoked(_) => ErrorKind::Unauthorized,
            PlatformError::RateLimited { .. } => ErrorKind::RateLimited,
            PlatformError::Transient(_) => ErrorKind::Transient,
            PlatformError::Rejected(_) => ErrorKind::Rejected,
            PlatformError::Unknown(_) => ErrorKind::Unknown,
        }
    }
}

/// One social platform: OAuth, identity, refresh and publishing.
#[async_trait]
pub trait PlatformClient: Send + Sync + fmt::Debug {
    /// Which platform this is.
    fn id(&self) -> Platform;

    /// Builds the consent URL for `state`.
    fn authorize(&self, state: &str, redirect_uri: &str) -> Authorization;

    /// Exchanges an authorization code for tokens.
    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError>;

    /// Reads who the token belongs to.
    async fn identity(&self, access_token: &str) -> Result<Identity, PlatformError>;

    /// Trades a refresh token for new tokens.
    async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, PlatformError>;

    /// How long before expiry a token is refreshed.
    fn refresh_margin(&self) -> chrono::Duration;

    /// Whether the platform refreshes the access token itself instead of issuing a refresh token
    /// (Instagram's `ig_refresh_token`).
    fn refreshes_access_token(&self) -> bool {
        false
    }

    /// Whether posts go to a Page the user picks after connecting (Facebook).
    fn needs_page(&self) -> bool {
        false
    }

    /// The Pages the user can publish to, with their Page tokens.
    async fn pages(&self, _access_token: &str) -> Result<Vec<Page>, PlatformError> {
        Ok(Vec::new())
    }

    /// Revokes Herald's access at the platform. `Ok(false)` when the platform has no revocation
    /// endpoint.
    async fn revoke(&self, _grant: &Grant) -> Result<bool, PlatformError> {
        Ok(false)
    }

    /// Publishes a text post.
    async fn publish(
        &self,
        access_token: &str,
        account: &Account,
        content: &PostContent,
    ) -> Result<Published, PlatformError>;

    /// Takes the next step of a media post (DESIGN §12) from the saved `phase` and `state`. The
    /// step that makes the post public is taken only when `phase` is `Sending`, which the module
    /// asks for with `Step::Next { phase: Sending, .. }` (the caller saves it first).
    async fn step(
        &self,
        _post: &MediaPost<'_>,
        _phase: Option<PublishPhase>,
        _state: &Value,
    ) -> Result<Step, PlatformError> {
        Err(PlatformError::Rejected(format!("Herald does not publish media to {}", self.id())))
    }

    /// After a crash at the point of no return (`phase` `Sending` saved, no outcome), asks the
    /// platform what became of the post, where it can answer.
    async fn recover(&self, _post: &MediaPost<'_>, _state: &Value) -> Result<Recovery, PlatformError> {
        Ok(Recovery::Unknown)
    }
}

/// A media post as a platform module sees it.
#[derive(Debug)]
pub struct MediaPost<'a> {
    /// The token to call with (the Page token for Facebook).
    pub token: &'a str,
    /// The account it goes to.
    pub account: &'a Account,
    /// Text and hashtags.
    pub content: &'a PostContent,
    /// The media URLs, in order.
    pub media: &'a [String],
    /// The user's per-platform choices.
    pub options: &'a PostOptions,
    /// Fetches media under the address rules.
    pub fetcher: &'a MediaFetcher,
}

/// What a step of a media post came to.
#[derive(Debug, Clone)]
pub enum Step {
    /// Save `phase` and `state`, then take the next step at once.
    Next {
        /// The phase reached.
        phase: PublishPhase,
        /// The platform's handles so far.
        state: Value,
    },
    /// Save `phase` and `state` and look again after `after` (the platform is processing).
    Wait {
        /// `Processing` before the point of no return, `Confirming` after it.
        phase: PublishPhase,
        /// The platform's handles so far.
        state: Value,
        /// When to look again, when the platform said.
        after: Option<Duration>,
        /// What the platform says it is doing, in its words.
        status: String,
    },
    /// Published.
    Done(Published),
}

/// What the platform says of a post whose attempt crashed at the point of no return.
#[derive(Debug, Clone)]
pub enum Recovery {
    /// It is on the platform.
    Published(Published),
    /// It never got there: safe to send again from `state`.
    NotSent {
        /// The handles still usable (an Instagram container that is still `FINISHED`).
        state: Value,
    },
    /// It is on its way: keep looking (`Confirming`).
    Pending {
        /// The handles to look with.
        state: Value,
    },
    /// The platform cannot say.
    Unknown,
}

/// The platforms this server can connect: those with credentials and an implementation.
#[derive(Debug, Clone, Default)]
pub struct Platforms {
    clients: HashMap<Platform, Arc<dyn PlatformClient>>,
}

impl Platforms {
    /// Builds a client for every configured platform, sharing one HTTP client.
    pub fn from_settings(settings: &Settings) -> Self {
        let http = http_client(settings.platform_timeout);
        let mut clients: HashMap<Platform, Arc<dyn PlatformClient>> = HashMap::new();
        for platform in Platform::ALL {
            let config = settings.platform(platform);
            let Some((id, secret)) = config.credentials() else { continue };
            let app = http::RegisteredApp::new(config, id, secret, http.clone());
            let client: Arc<dyn PlatformClient> = match platform {
                Platform::Twitter => Arc::new(x::XClient::new(app)),
                Platform::Linkedin => {
                    Arc::new(linkedin::LinkedinClient::new(app, settings.linkedin_api_version.clone()))
                }
                Platform::Tiktok => Arc::new(tiktok::TiktokClient::new(app, settings.tiktok_verified_prefixes.clone())),
                Platform::Facebook => Arc::new(facebook::FacebookClient::new(
                    app,
                    &settings.graph_api_version,
                    &settings.facebook_video_api_base,
                )),
                Platform::Instagram => Arc::new(instagram::InstagramClient::new(app, &settings.graph_api_version)),
            };
            clients.insert(platform, client);
        }
        Self { clients }
    }

    /// The client of a platform, when configured.
    pub fn get(&self, platform: Platform) -> Option<&Arc<dyn PlatformClient>> {
        self.clients.get(&platform)
    }
}

/// The outbound HTTP client: rustls, a total timeout, and no redirects (a platform API never
/// needs one, and following them would let a response steer requests elsewhere).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a rustls client with static settings builds")
}
