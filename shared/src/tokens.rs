//! Valid access tokens for stored connections: refreshed ahead of expiry, one refresh at a time
//! per connection across every process, rotated refresh tokens stored with the access token.

use chrono::Utc;

use crate::{
    App,
    db::{connections, entities::connection::Model},
    domain::{ConnectionStatus, Platform},
    platforms::{PlatformClient, PlatformError},
};

/// Why no usable token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The connection is gone or unusable; the user must reconnect.
    #[error("{0}")]
    NotConnected(String),
    /// Refreshing failed for a reason that may pass (network, outage, lock busy).
    #[error("{0}")]
    Transient(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sea_orm::DbErr),
}

/// A decrypted access token and the row it came from.
#[derive(Debug)]
pub struct AccessToken {
    /// The plaintext token; never logged.
    pub token: String,
    /// The connection row (ciphertext columns).
    pub connection: Model,
}

/// The token of a connection row already read, when it can be used as it is (the connection is
/// active and its token outside the platform's refresh margin): no read and no lock. `None` when
/// [`access_token`] must decide.
pub fn without_refresh(app: &App, row: &Model) -> Option<AccessToken> {
    let client = app.platforms.get(row.platform)?;
    check_usable(row).ok()?;
    if expiring(client.as_ref(), row) {
        return None;
    }
    decrypted(app, row.clone()).ok()
}

/// Whether the row's access token expires within the platform's refresh margin.
fn expiring(client: &dyn PlatformClient, row: &Model) -> bool {
    row.token_expires_at.is_some_and(|at| at <= Utc::now() + client.refresh_margin())
}

/// Returns a usable access token for a connection, refreshing it when it expires within the
/// platform's margin, or unconditionally with `force` (after the platform refused it). `seen` is
/// the access-token ciphertext the caller already tried, so a forced refresh that another
/// process already did is not repeated.
pub async fn access_token(
    app: &App,
    connection_id: i64,
    force: bool,
    seen: Option<&str>,
) -> Result<AccessToken, TokenError> {
    let row = connections::find_by_id(&app.db, connection_id)
        .await?
        .ok_or_else(|| TokenError::NotConnected("the account is not connected".into()))?;
    let platform = row.platform;
    let client = app
        .platforms
        .get(platform)
        .ok_or_else(|| TokenError::NotConnected(format!("{platform} is not configured on this server")))?;
    check_usable(&row)?;
    let fresh = |row: &Model| {
        let refreshed_elsewhere = seen.is_some_and(|seen| seen != row.access_token);
        (!force && !expiring(client.as_ref(), row)) || (force && refreshed_elsewhere)
    };
    if fresh(&row) {
        return decrypted(app, row);
    }

    let guard = app.locks.lock(connection_id).await.map_err(|e| TokenError::Transient(e.to_string()))?;
    let result = refresh_locked(app, connection_id, platform, &fresh).await;
    guard.release().await;
    result
}

async fn refresh_locked(
    app: &App,
    connection_id: i64,
    platform: Platform,
    fresh: &(dyn Fn(&Model) -> bool + Sync),
) -> Result<AccessToken, TokenError> {
    // Re-read under the lock: another process may have refreshed while we waited.
    let row = connections::find_by_id(&app.db, connection_id)
        .await?
        .ok_or_else(|| TokenError::NotConnected("the account is not connected".into()))?;
    check_usable(&row)?;
    if fresh(&row) {
        return decrypted(app, row);
    }
    let client =
        app.platforms.get(platform).ok_or_else(|| TokenError::NotConnected(format!("{platform} is not configured")))?;
    // Instagram refreshes the access token itself; the others trade a refresh token.
    let refresh_with =
        if client.refreshes_access_token() { Some(row.access_token.clone()) } else { row.refresh_token.clone() };
    let Some(refresh_cipher) = refresh_with else {
        if row.token_expires_at.is_some_and(|at| at <= Utc::now()) {
            let message =
                format!("the {platform} token expired and the platform issued no refresh token; reconnect the account");
            connections::mark(&app.db, row.id, ConnectionStatus::Expired, &message).await?;
            return Err(TokenError::NotConnected(message));
        }
        return decrypted(app, row);
    };
    let refresh_token = app.cipher.decrypt(&refresh_cipher).map_err(|e| TokenError::NotConnected(e.to_string()))?;
    match client.refresh(&refresh_token).await {
        Ok(tokens) => {
            let access = app.cipher.encrypt(&tokens.access_token);
            let refresh = tokens.refresh_token.as_deref().map(|t| app.cipher.encrypt(t));
            let row = connections::store_refreshed(
                &app.db,
                row,
                access,
                refresh,
                tokens.expires_at,
                tokens.refresh_expires_at,
            )
            .await?;
            app.metrics.refresh(platform.as_str(), "refreshed");
            tracing::info!(connection.id = connection_id, platform = %platform, "token refreshed");
            Ok(AccessToken { token: tokens.access_token, connection: row })
        }
        Err(error @ (PlatformError::Rejected(_) | PlatformError::Unauthorized(_) | PlatformError::Revoked(_))) => {
            let message =
                format!("{platform} refused to refresh the token ({}); reconnect the account", error.message());
            let status = if matches!(error, PlatformError::Revoked(_)) {
                ConnectionStatus::Revoked
            } else {
                ConnectionStatus::Expired
            };
            connections::mark(&app.db, row.id, status, &message).await?;
            app.metrics.refresh(platform.as_str(), "refused");
            tracing::warn!(connection.id = connection_id, platform = %platform, error = %error.message(), "token refresh refused");
            Err(TokenError::NotConnected(message))
        }
        Err(error) => {
            app.metrics.refresh(platform.as_str(), "transient");
            tracing::warn!(connection.id = connection_id, platform = %platform, error = %error.message(), "token refresh failed, will retry");
            Err(TokenError::Transient(format!("{platform} token refresh failed: {}", error.message())))
        }
    }
}

fn check_usable(row: &Model) -> Result<(), TokenError> {
    if row.connection_status == ConnectionStatus::Active {
        return Ok(());
    }
    Err(TokenError::NotConnected(
        row.last_error
            .clone()
            .unwrap_or_else(|| format!("the {} connection is {}", row.platform, row.connection_status)),
    ))
}

fn decrypted(app: &App, row: Model) -> Result<AccessToken, TokenError> {
    let token = app.cipher.decrypt(&row.access_token).map_err(|e| TokenError::NotConnected(e.to_string()))?;
    Ok(AccessToken { token, connection: row })
}
