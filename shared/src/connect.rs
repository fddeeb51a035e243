//! Connecting platform accounts: the OAuth authorization-code flow from `initiate` to the
//! callback, and what the API reports about stored connections.
//!
//! State is single use and expires after ten minutes; the redirect URI is always Herald's own
//! callback, so a client cannot turn the flow into an open redirect. Tokens are encrypted before
//! they are stored and are never returned.

use chrono::{DateTime, Duration, Utc};

use crate::{
    App, Error,
    db::{
        connections::{self, NewConnection, StoredPage, Upserted},
        entities::{connection, oauth_state},
        oauth_states,
    },
    domain::ValidationError,
    domain::{ConnectionStatus, Platform, WebhookEvent},
};

/// How long an authorization may take.
pub const STATE_TTL_MINUTES: i64 = 10;
/// A connection is reported `expiring` this close to the end of what keeps it alive.
const EXPIRING_WITHIN_DAYS: i64 = 7;

/// The start of an authorization.
#[derive(Debug)]
pub struct Initiated {
    /// Where to send the user.
    pub oauth_url: String,
    /// The state value in that URL.
    pub state: String,
    /// When the state stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// Parses a platform name from a request.
pub fn parse_platform(name: &str) -> Result<Platform, Error> {
    Platform::parse(name).ok_or_else(|| Error::BadRequest {
        code: "unknown_platform",
        message: format!("`{name}` is not a platform; use linkedin, twitter, instagram, facebook or tiktok"),
    })
}

/// Starts connecting `platform` for `user_id`.
pub async fn initiate(
    app: &App,
    user_id: &str,
    platform: Platform,
    callback_url: Option<&str>,
) -> Result<Initiated, Error> {
    let client = app.platforms.get(platform).ok_or_else(|| Error::Conflict {
        code: "platform_not_configured",
        message: format!("{platform} is not configured on this server"),
    })?;
    // The backend's own callback, or the same path on a frontend origin (its dev server or edge
    // proxies `/api` to the backend); whichever is accepted is the `redirect_uri` the platform
    // sees, so it must be registered there. Anything else is refused: no open redirects.
    let own = app.settings.redirect_uri(platform);
    let path = format!("/api/v1/auth/social/callback/{}", platform.as_str());
    let allowed =
        |url: &str| url == own || app.settings.frontend_origins.iter().any(|origin| url == format!("{origin}{path}"));
    let redirect_uri = match callback_url {
        None => own,
        Some(url) if allowed(url) => url.to_owned(),
        Some(_) => {
            let mut choices = vec![own.clone()];
            choices.extend(app.settings.frontend_origins.iter().map(|origin| format!("{origin}{path}")));
            let message = format!("must be one of {}", choices.join(", "));
            return Err(ValidationError::new("callback_url", message).into());
        }
    };
    let now = Utc::now();
    oauth_states::purge_expired(&app.db, now).await?;
    let issued = app.states.issue();
    let authorization = client.authorize(&issued.value, &redirect_uri);
    let expires_at = now + Duration::minutes(STATE_TTL_MINUTES);
    oauth_states::insert(
        &app.db,
        oauth_state::Model {
            state_hash: issued.hash,
            user_id: user_id.to_owned(),
            platform,
            pkce_verifier: authorization.pkce_verifier.as_deref().map(|v| app.cipher.encrypt(v)),
            redirect_uri,
            created_at: now,
            expires_at,
        },
    )
    .await?;
    Ok(Initiated { oauth_url: authorization.url, state: issued.value, expires_at })
}

/// Query parameters of a callback.
#[derive(Debug, Default)]
pub struct CallbackParams {
    /// The authorization code.
    pub code: Option<String>,
    /// The state issued by `initiate`.
    pub state: Option<String>,
    /// The platform's error code (`access_denied` when the user declined).
    pub error: Option<String>,
    /// The platform's error text.
    pub error_description: Option<String>,
}

/// A completed connection.
#[derive(Debug)]
pub struct Connected {
    /// The platform username.
    pub username: Option<String>,
    /// Whether the row was created, refreshed or replaced.
    pub outcome: Upserted,
    /// For platforms that publish to a Page: the Pages the user can choose from.
    pub pages: Option<Vec<PageInfo>>,
}

/// A Page the user can publish to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageInfo {
    /// The Page id.
    pub id: String,
    /// The Page name.
    pub name: String,
    /// Whether posts go to it.
    pub selected: bool,
}

/// Why a callback failed; the message is shown to the user in the popup.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// Missing, forged, expired, replayed, or for another platform.
    #[error("{0}")]
    InvalidState(String),
    /// The user declined, or the platform reported an error on the redirect.
    #[error("{code}: {message}")]
    Denied {
        /// The platform's error code.
        code: String,
        /// The platform's text.
        message: String,
    },
    /// The platform failed during the exchange or the profile call.
    #[error("{0}")]
    Upstream(String),
    /// Herald failed.
    #[error(transparent)]
    Internal(#[from] Error),
}

impl From<sea_orm::DbErr> for CallbackError {
    fn from(e: sea_orm::DbErr) -> Self {
        CallbackError::Internal(e.into())
    }
}

/// Completes an authorization: consumes the state, exchanges the code, reads the identity and
/// stores the connection.
pub async fn callback(app: &App, platform: Platform, params: CallbackParams) -> Result<Connected, CallbackError> {
    let state =
        params.state.as_deref().ok_or_else(|| CallbackError::InvalidState("the callback has no state".into()))?;
    let hash = app
        .states
        .verify(state)
        .ok_or_else(|| CallbackError::InvalidState("the state is not one Herald issued".into()))?;
    // Consumed before anything else, so a state works once whatever happens next.
    let pending = oauth_states::consume(&app.db, &hash)
        .await?
        .ok_or_else(|| CallbackError::InvalidState("the state was already used or never issued; start again".into()))?;
    if pending.expires_at < Utc::now() {
        return Err(CallbackError::InvalidState("the authorization took longer than 10 minutes; start again".into()));
    }
    if pending.platform != platform {
        return Err(CallbackError::InvalidState(format!(
            "the state was issued for {}, not {platform}",
            pending.platform
        )));
    }
    if let Some(code) = params.error {
        let message = params.error_description.unwrap_or_else(|| "the authorization was not granted".into());
        return Err(CallbackError::Denied { code, message });
    }
    let code = params.code.ok_or_else(|| CallbackError::Upstream(format!("{platform} sent no authorization code")))?;
    let client = app
        .platforms
        .get(platform)
        .ok_or_else(|| CallbackError::Upstream(format!("{platform} is not configured on this server")))?;
    let verifier = pending.pkce_verifier.as_deref().map(|v| app.cipher.decrypt(v)).transpose().map_err(Error::from)?;
    let tokens = client
        .exchange_code(&code, verifier.as_deref(), &pending.redirect_uri)
        .await
        .map_err(|e| CallbackError::Upstream(format!("{platform} token exchange failed: {}", e.message())))?;
    let identity = client
        .identity(&tokens.access_token)
        .await
        .map_err(|e| CallbackError::Upstream(format!("{platform} profile lookup failed: {}", e.message())))?;
    let mut tokens = tokens;
    let pages = if client.needs_page() {
        let pages = client
            .pages(&tokens.access_token)
            .await
            .map_err(|e| CallbackError::Upstream(format!("{platform} Page lookup failed: {}", e.message())))?;
        // Posts use the Page token, which does not expire when it comes from a long-lived user
        // token; the user token's own expiry does not limit the connection.
        tokens.expires_at = None;
        Some(
            pages
                .into_iter()
                .map(|p| StoredPage { id: p.id, name: p.name, token: app.cipher.encrypt(&p.access_token) })
                .collect::<Vec<_>>(),
        )
    } else {
        None
    };
    let (row, outcome) = connections::upsert(
        &app.db,
        NewConnection {
            user_id: pending.user_id,
            platform,
            platform_user_id: identity.user_id,
            platform_username: identity.username,
            access_token: app.cipher.encrypt(&tokens.access_token),
            refresh_token: tokens.refresh_token.as_deref().map(|t| app.cipher.encrypt(t)),
            token_expires_at: tokens.expires_at,
            refresh_expires_at: tokens.refresh_expires_at,
            scopes: tokens.scopes,
            pages: pages.clone(),
        },
    )
    .await?;
    let pages = pages.map(|pages| page_infos(&row, pages.into_iter().map(|p| (p.id, p.name))));
    tracing::info!(connection.id = row.id, platform = %platform, outcome = ?outcome, "account connected");
    Ok(Connected { username: row.platform_username, outcome, pages })
}

/// What `status` reports for one platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The server has no credentials for the platform.
    NotConfigured,
    /// The user has not connected it.
    Disconnected,
    /// Usable.
    Active,
    /// Within 7 days of the end: the access token when there is no refresh token, otherwise the
    /// refresh token.
    Expiring,
    /// Expired; reconnect.
    Expired,
    /// Revoked; reconnect.
    Revoked,
    /// Another problem; see the error.
    Error,
}

impl State {
    /// The name returned by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::NotConfigured => "not_configured",
            State::Disconnected => "disconnected",
            State::Active => "active",
            State::Expiring => "expiring",
            State::Expired => "expired",
            State::Revoked => "revoked",
            State::Error => "error",
        }
    }
}

/// One platform's line of `status`.
#[derive(Debug)]
pub struct PlatformStatus {
    /// The platform.
    pub platform: Platform,
    /// Its state.
    pub state: State,
    /// The connection, when there is one.
    pub connection: Option<connection::Model>,
}

/// The state of a stored connection at `now`.
pub fn connection_state(row: &connection::Model, now: DateTime<Utc>) -> State {
    match row.connection_status {
        ConnectionStatus::Expired => return State::Expired,
        ConnectionStatus::Revoked => return State::Revoked,
        ConnectionStatus::Error => return State::Error,
        ConnectionStatus::Active => {}
    }
    // What limits the connection: the access token when nothing can renew it, otherwise the
    // refresh token's own lifetime (TikTok's 180 days, LinkedIn's 365).
    let limit = match &row.refresh_token {
        None => row.token_expires_at,
        Some(_) => row.refresh_expires_at,
    };
    match limit {
        Some(at) if at <= now => State::Expired,
        Some(at) if at <= now + Duration::days(EXPIRING_WITHIN_DAYS) => State::Expiring,
        _ => State::Active,
    }
}

/// The user's status on every platform.
pub async fn status(app: &App, user_id: &str) -> Result<Vec<PlatformStatus>, Error> {
    let rows = connections::list_for_user(&app.db, user_id).await?;
    let now = Utc::now();
    Ok(Platform::ALL
        .into_iter()
        .map(|platform| {
            let connection = rows.iter().find(|r| r.platform == platform).cloned();
            let state = match (&connection, app.platforms.get(platform)) {
                (_, None) => State::NotConfigured,
                (None, Some(_)) => State::Disconnected,
                (Some(_), Some(client))
                    if client.needs_page() && connection.as_ref().is_some_and(|r| r.page_id.is_none()) =>
                {
                    State::Error
                }
                (Some(row), Some(_)) => connection_state(row, now),
            };
            let connection = connection.map(|mut row| {
                if state == State::Error && row.last_error.is_none() {
                    row.last_error = Some(format!("choose which {platform} Page to publish to"));
                }
                row
            });
            PlatformStatus { platform, state, connection }
        })
        .collect())
}

/// The user's connections.
pub async fn list(app: &App, user_id: &str) -> Result<Vec<connection::Model>, Error> {
    Ok(connections::list_for_user(&app.db, user_id).await?)
}

/// What revoking at the platform did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The platform revoked Herald's access.
    Revoked,
    /// The platform has no revocation endpoint; the user can remove the app in its settings.
    NotSupported,
    /// Revocation failed; the stored tokens were deleted anyway.
    Failed(String),
}

/// The result of a disconnect.
#[derive(Debug)]
pub struct Disconnected {
    /// What the platform said.
    pub revocation: Revocation,
    /// Waiting posts that were failed as `not_connected`.
    pub posts_failed: u64,
}

/// Disconnects a platform: revokes at the platform where it can, then deletes the stored tokens
/// (even when revocation failed) and fails the platform's waiting posts, in one transaction.
pub async fn disconnect(app: &App, user_id: &str, platform: Platform) -> Result<Disconnected, Error> {
    let row = connections::find(&app.db, user_id, platform).await?.ok_or(Error::NotFound("connection"))?;
    let revocation = match app.platforms.get(platform) {
        None => {
            Revocation::Failed(format!("{platform} is not configured on this server, so it was not asked to revoke"))
        }
        Some(client) => match grant(app, &row) {
            Err(error) => Revocation::Failed(error.to_string()),
            Ok(grant) => match client.revoke(&grant).await {
                Ok(true) => Revocation::Revoked,
                Ok(false) => Revocation::NotSupported,
                Err(error) => Revocation::Failed(error.message().to_owned()),
            },
        },
    };
    let message = format!("the {platform} account was disconnected");
    let txn = sea_orm::TransactionTrait::begin(&app.db).await?;
    let posts_failed = crate::db::posts::fail_waiting_for_connection(&txn, row.id, &message).await?;
    // The user took Herald's access away: the app hears it as `connection.revoked`.
    let revoked = connection::Model {
        connection_status: ConnectionStatus::Revoked,
        last_error: Some(message.clone()),
        updated_at: chrono::Utc::now(),
        ..row.clone()
    };
    let payload = crate::db::webhooks::connection_payload(&revoked);
    crate::db::webhooks::record_events(&txn, [(row.user_id.clone(), WebhookEvent::ConnectionRevoked, payload)]).await?;
    connections::delete(&txn, row.id).await?;
    txn.commit().await?;
    tracing::info!(connection.id = row.id, platform = %platform, revocation = revocation.as_str(), posts_failed, "account disconnected");
    Ok(Disconnected { revocation, posts_failed })
}

fn grant(app: &App, row: &connection::Model) -> Result<crate::platforms::Grant, Error> {
    Ok(crate::platforms::Grant {
        access_token: app.cipher.decrypt(&row.access_token)?,
        refresh_token: row.refresh_token.as_deref().map(|t| app.cipher.decrypt(t)).transpose()?,
        platform_user_id: row.platform_user_id.clone(),
    })
}

impl Revocation {
    /// The name returned by the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Revocation::Revoked => "revoked",
            Revocation::NotSupported => "not_supported",
            Revocation::Failed(_) => "failed",
        }
    }
}

async fn page_connection(
    app: &App,
    user_id: &str,
    platform: Platform,
) -> Result<(connection::Model, Vec<crate::platforms::Page>), Error> {
    let client = app.platforms.get(platform).ok_or_else(|| Error::Conflict {
        code: "platform_not_configured",
        message: format!("{platform} is not configured on this server"),
    })?;
    if !client.needs_page() {
        return Err(ValidationError::new("platform", format!("{platform} posts do not go to a Page")).into());
    }
    let row = connections::find(&app.db, user_id, platform).await?.ok_or(Error::NotFound("connection"))?;
    let user_token = app.cipher.decrypt(&row.access_token)?;
    let pages = client.pages(&user_token).await.map_err(|e| match e {
        crate::platforms::PlatformError::Unauthorized(message) | crate::platforms::PlatformError::Revoked(message) => {
            Error::Conflict {
                code: "reconnect_required",
                message: format!("{platform} refused the stored token ({message}); reconnect the account"),
            }
        }
        other => Error::Upstream(format!("{platform} Page lookup failed: {}", other.message())),
    })?;
    Ok((row, pages))
}

/// Pages as the API lists them, the connection's own marked `selected`.
fn page_infos(row: &connection::Model, pages: impl Iterator<Item = (String, String)>) -> Vec<PageInfo> {
    pages.map(|(id, name)| PageInfo { selected: row.page_id.as_deref() == Some(id.as_str()), id, name }).collect()
}

/// The Pages the connected account manages, read from the platform now.
pub async fn list_pages(app: &App, user_id: &str, platform: Platform) -> Result<Vec<PageInfo>, Error> {
    let (row, pages) = page_connection(app, user_id, platform).await?;
    Ok(page_infos(&row, pages.into_iter().map(|p| (p.id, p.name))))
}

/// Chooses the Page posts go to; it must be one the account manages now.
pub async fn select_page(app: &App, user_id: &str, platform: Platform, page_id: &str) -> Result<PageInfo, Error> {
    let (row, pages) = page_connection(app, user_id, platform).await?;
    let page = pages.into_iter().find(|p| p.id == page_id).ok_or(Error::NotFound("page"))?;
    let stored =
        StoredPage { id: page.id.clone(), name: page.name.clone(), token: app.cipher.encrypt(&page.access_token) };
    connections::set_page(&app.db, row, stored).await?;
    tracing::info!(platform = %platform, page.id = %page.id, "page selected");
    Ok(PageInfo { id: page.id, name: page.name, selected: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(expires: Option<i64>, refresh: bool, refresh_expires: Option<i64>) -> connection::Model {
        let now = Utc::now();
        connection::Model {
            id: 1,
            user_id: "u".into(),
            platform: Platform::Tiktok,
            platform_user_id: "p".into(),
            platform_username: None,
            access_token: "c".into(),
            refresh_token: refresh.then(|| "r".into()),
            token_expires_at: expires.map(|d| now + Duration::days(d)),
            refresh_expires_at: refresh_expires.map(|d| now + Duration::days(d)),
            scopes: serde_json::json!([]),
            connection_status: ConnectionStatus::Active,
            last_error: None,
            page_id: None,
            page_name: None,
            page_access_token: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn state_follows_what_keeps_the_connection_alive() {
        let now = Utc::now();
        assert_eq!(connection_state(&row(Some(30), false, None), now), State::Active);
        assert_eq!(connection_state(&row(Some(3), false, None), now), State::Expiring);
        assert_eq!(connection_state(&row(Some(-1), false, None), now), State::Expired);
        // A refresh token renews the access token; its own expiry is what counts.
        assert_eq!(connection_state(&row(Some(-1), true, Some(100)), now), State::Active);
        assert_eq!(connection_state(&row(Some(1), true, Some(5)), now), State::Expiring);
        assert_eq!(connection_state(&row(Some(1), true, Some(-1)), now), State::Expired);
        assert_eq!(connection_state(&row(Some(1), true, None), now), State::Active);
    }
}
