//! `/api/v1/auth/social/*`: connect platform accounts through OAuth and report on them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, param::Query, payload::Html, payload::Json};
use shared::{
    App,
    connect::{self, CallbackError, CallbackParams, State},
    db::entities::connection,
    domain::Platform,
};

use super::Tag;
use crate::text::Text;
use crate::{auth::BearerAuth, error::ApiError};

/// Social auth routes.
#[derive(Debug)]
pub struct SocialAuthApi;

/// Start connecting a platform.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, skip_serializing_if_is_none)]
pub struct InitiateRequest {
    /// `linkedin`, `twitter` (or `x`), `instagram`, `facebook` or `tiktok`.
    pub platform: Text,
    /// Optional: `{BACKEND_URL}/api/v1/auth/social/callback/{platform}`, or that path on one of the
    /// `FRONTEND_ORIGIN` origins (a frontend that proxies `/api`); it becomes the `redirect_uri`.
    pub callback_url: Option<Text>,
}

/// Where to send the user.
#[derive(Debug, Object)]
pub struct InitiateResponse {
    /// The platform's consent page; open it in a popup.
    pub oauth_url: String,
    /// The single-use state in that URL.
    pub state: String,
    /// When the state stops being accepted (10 minutes).
    pub expires_at: DateTime<Utc>,
    /// The platform.
    pub platform: String,
}

/// A connected account. Tokens are never returned.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Connection {
    /// Connection id.
    pub id: i64,
    /// The platform.
    pub platform: String,
    /// The account's id on the platform.
    pub platform_user_id: String,
    /// The account's username on the platform.
    pub platform_username: Option<String>,
    /// `active`, `expired`, `revoked` or `error`.
    pub connection_status: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When the access token expires.
    pub token_expires_at: Option<DateTime<Utc>>,
    /// The last problem with this connection.
    pub last_error: Option<String>,
    /// The Page posts go to (Facebook).
    pub page_id: Option<String>,
    /// Its name.
    pub page_name: Option<String>,
    /// When it was first connected.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<connection::Model> for Connection {
    fn from(row: connection::Model) -> Self {
        Self {
            id: row.id,
            platform: row.platform.as_str().to_owned(),
            platform_user_id: row.platform_user_id,
            platform_username: row.platform_username,
            connection_status: row.connection_status.as_str().to_owned(),
            scopes: serde_json::from_value(row.scopes).unwrap_or_default(),
            token_expires_at: row.token_expires_at,
            last_error: row.last_error,
            page_id: row.page_id,
            page_name: row.page_name,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The user's connections.
#[derive(Debug, Object)]
pub struct Connections {
    /// One per connected platform.
    pub connections: Vec<Connection>,
}

/// One platform's state for the user.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PlatformStatus {
    /// The platform.
    pub platform: String,
    /// `not_configured`, `disconnected`, `active`, `expiring`, `expired`, `revoked` or `error`.
    pub status: String,
    /// The connected username.
    pub username: Option<String>,
    /// When the access token expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// The last problem.
    pub last_error: Option<String>,
    /// The Page posts go to (Facebook).
    pub page_name: Option<String>,
}

/// Every platform's state for the user.
#[derive(Debug, Object)]
pub struct StatusResponse {
    /// All five platforms, in a fixed order.
    pub platforms: Vec<PlatformStatus>,
}

/// Whether a platform can be connected on this server.
#[derive(Debug, Object)]
pub struct PlatformAvailability {
    /// The platform.
    pub platform: String,
    /// Whether the server has credentials for it.
    pub configured: bool,
}

/// Health of the social auth service.
#[derive(Debug, Object)]
pub struct HealthResponse {
    /// `ok`, or `degraded` when the database does not answer.
    pub status: String,
    /// Platforms and whether they are configured.
    pub platforms: Vec<PlatformAvailability>,
}

/// A Page the connected account manages.
#[derive(Debug, Object)]
pub struct PageDto {
    /// The Page id.
    pub id: String,
    /// The Page name.
    pub name: String,
    /// Whether posts go to it.
    pub selected: bool,
}

impl From<connect::PageInfo> for PageDto {
    fn from(page: connect::PageInfo) -> Self {
        Self { id: page.id, name: page.name, selected: page.selected }
    }
}

/// The Pages of a connection.
#[derive(Debug, Object)]
pub struct PagesResponse {
    /// The platform.
    pub platform: String,
    /// Every Page the account manages now.
    pub pages: Vec<PageDto>,
}

/// Choose the Page posts go to.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct SelectPageRequest {
    /// One of the ids listed by `GET pages/{platform}`.
    pub page_id: Text,
}

/// The chosen Page.
#[derive(Debug, Object)]
pub struct SelectPageResponse {
    /// The platform.
    pub platform: String,
    /// The Page posts now go to.
    pub page: PageDto,
}

/// The result of a disconnect.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DisconnectResponse {
    /// The platform.
    pub platform: String,
    /// Always true: the stored tokens are gone.
    pub disconnected: bool,
    /// `revoked`, `not_supported` (the platform has no revocation endpoint; the user can remove
    /// the app in the platform's settings) or `failed` (the tokens were deleted anyway).
    pub revocation: String,
    /// Why revocation failed.
    pub revocation_error: Option<String>,
    /// Waiting posts of this platform that were failed with `not_connected`.
    pub posts_failed: u64,
}

/// The popup page the platform redirects to.
#[derive(Debug, ApiResponse)]
pub enum CallbackPage {
    /// Connected; the page tells the opener and closes.
    #[oai(status = 200)]
    Connected(Html<String>),
    /// The authorization was refused or its state is invalid; the page tells the opener.
    #[oai(status = 400)]
    Refused(Html<String>),
    /// The platform failed during the exchange.
    #[oai(status = 502)]
    PlatformFailed(Html<String>),
    /// Herald failed.
    #[oai(status = 500)]
    Failed(Html<String>),
}

#[OpenApi(prefix_path = "/api/v1/auth/social", tag = "Tag::SocialAuth")]
impl SocialAuthApi {
    /// Start connecting a platform: returns the consent URL to open in a popup.
    #[oai(path = "/initiate", method = "post")]
    async fn initiate(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        body: Json<InitiateRequest>,
    ) -> Result<Json<InitiateResponse>, ApiError> {
        let platform = connect::parse_platform(&body.platform)?;
        let started =
            connect::initiate(&app, &auth.0.id, platform, body.callback_url.as_deref().map(String::as_str)).await?;
        Ok(Json(InitiateResponse {
            oauth_url: started.oauth_url,
            state: started.state,
            expires_at: started.expires_at,
            platform: platform.as_str().to_owned(),
        }))
    }

    /// Where the platform sends the user back. Unauthenticated: the state identifies the user.
    /// Answers an HTML page that posts the result to `FRONTEND_ORIGIN` and closes.
    #[oai(path = "/callback/:platform", method = "get")]
    async fn callback(
        &self,
        app: Data<&Arc<App>>,
        platform: Path<String>,
        code: Query<Option<String>>,
        state: Query<Option<String>>,
        error: Query<Option<String>>,
        error_description: Query<Option<String>>,
    ) -> CallbackPage {
        let page = |platform: &str, result: Result<&connect::Connected, (&str, String)>| {
            crate::popup::render(&app.settings, platform, result)
        };
        let Some(parsed) = Platform::parse(&platform) else {
            return CallbackPage::Refused(Html(page(&platform, Err(("unknown_platform", "unknown platform".into())))));
        };
        let params =
            CallbackParams { code: code.0, state: state.0, error: error.0, error_description: error_description.0 };
        let name = parsed.as_str();
        match connect::callback(&app, parsed, params).await {
            Ok(done) => CallbackPage::Connected(Html(page(name, Ok(&done)))),
            Err(CallbackError::InvalidState(message)) => {
                tracing::info!(platform = name, reason = %message, "oauth callback refused");
                CallbackPage::Refused(Html(page(name, Err(("invalid_state", message)))))
            }
            Err(CallbackError::Denied { code, message }) => {
                tracing::info!(platform = name, error.code = %code, "oauth consent not granted");
                CallbackPage::Refused(Html(page(name, Err((code.as_str(), message)))))
            }
            Err(CallbackError::Upstream(message)) => {
                tracing::warn!(platform = name, error = %message, "oauth exchange failed");
                CallbackPage::PlatformFailed(Html(page(name, Err(("platform_error", message)))))
            }
            Err(CallbackError::Internal(error)) => {
                tracing::error!(platform = name, error = %error, "oauth callback failed");
                CallbackPage::Failed(Html(page(name, Err(("internal_error", "internal error".into())))))
            }
        }
    }

    /// Disconnect a platform: revoke Herald's access there where the platform allows it, delete
    /// the stored tokens (even when revocation fails), and fail the platform's waiting posts.
    #[oai(path = "/disconnect/:platform", method = "delete")]
    async fn disconnect(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        platform: Path<String>,
    ) -> Result<Json<DisconnectResponse>, ApiError> {
        let platform = connect::parse_platform(&platform)?;
        let done = connect::disconnect(&app, &auth.0.id, platform).await?;
        Ok(Json(DisconnectResponse {
            platform: platform.as_str().to_owned(),
            disconnected: true,
            revocation: done.revocation.as_str().to_owned(),
            revocation_error: match done.revocation {
                connect::Revocation::Failed(message) => Some(message),
                _ => None,
            },
            posts_failed: done.posts_failed,
        }))
    }

    /// The Pages the connected account manages (Facebook), read from the platform now, with the
    /// one posts go to marked `selected`. A login that returned exactly one Page selected it.
    #[oai(path = "/pages/:platform", method = "get")]
    async fn pages(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        platform: Path<String>,
    ) -> Result<Json<PagesResponse>, ApiError> {
        let platform = connect::parse_platform(&platform)?;
        let pages = connect::list_pages(&app, &auth.0.id, platform).await?;
        Ok(Json(PagesResponse {
            platform: platform.as_str().to_owned(),
            pages: pages.into_iter().map(PageDto::from).collect(),
        }))
    }

    /// Choose the Page posts go to (Facebook).
    #[oai(path = "/pages/:platform", method = "post")]
    async fn select_page(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        platform: Path<String>,
        body: Json<SelectPageRequest>,
    ) -> Result<Json<SelectPageResponse>, ApiError> {
        let platform = connect::parse_platform(&platform)?;
        let page = connect::select_page(&app, &auth.0.id, platform, &body.page_id).await?;
        Ok(Json(SelectPageResponse { platform: platform.as_str().to_owned(), page: page.into() }))
    }

    /// The user's connected accounts.
    #[oai(path = "/connections", method = "get")]
    async fn connections(&self, app: Data<&Arc<App>>, auth: BearerAuth) -> Result<Json<Connections>, ApiError> {
        let rows = connect::list(&app, &auth.0.id).await?;
        Ok(Json(Connections { connections: rows.into_iter().map(Connection::from).collect() }))
    }

    /// Every platform's state for the user, including platforms the server has not configured.
    #[oai(path = "/status", method = "get")]
    async fn status(&self, app: Data<&Arc<App>>, auth: BearerAuth) -> Result<Json<StatusResponse>, ApiError> {
        let lines = connect::status(&app, &auth.0.id).await?;
        let platforms = lines
            .into_iter()
            .map(|line| {
                let connection = line.connection.filter(|_| line.state != State::NotConfigured);
                PlatformStatus {
                    platform: line.platform.as_str().to_owned(),
                    status: line.state.as_str().to_owned(),
                    username: connection.as_ref().and_then(|c| c.platform_username.clone()),
                    expires_at: connection.as_ref().and_then(|c| c.token_expires_at),
                    page_name: connection.as_ref().and_then(|c| c.page_name.clone()),
                    last_error: connection.and_then(|c| c.last_error),
                }
            })
            .collect();
        Ok(Json(StatusResponse { platforms }))
    }

    /// Health of the social auth service: database reachable, platforms configured.
    #[oai(path = "/health", method = "get")]
    async fn health(&self, app: Data<&Arc<App>>) -> Json<HealthResponse> {
        let status = if app.db.ping().await.is_ok() { "ok" } else { "degraded" };
        let platforms = Platform::ALL
            .into_iter()
            .map(|p| PlatformAvailability {
                platform: p.as_str().to_owned(),
                configured: app.platforms.get(p).is_some(),
            })
            .collect();
        Json(HealthResponse { status: status.to_owned(), platforms })
    }
}
