//! Calls to platform APIs: send, classify the failure once with the platform's dialect, read the
//! JSON answer. Every platform module uses these, so network failures and timeouts are treated
//! the same way everywhere.

use reqwest::{RequestBuilder, Response, StatusCode, header::HeaderMap};
use serde::de::DeserializeOwned;

use super::{PlatformError, oauth::without_url};

/// Whether a request that failed may have been applied by the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// A read, or a write that is safe to repeat: failing it changes nothing.
    Read,
    /// A write: a timeout or an ambiguous 5xx may mean the platform has it.
    Write,
}

/// How one platform reports errors.
pub(crate) trait Dialect {
    /// The platform's name in messages.
    const NAME: &'static str;

    /// Classifies a non-2xx answer.
    fn classify(status: StatusCode, headers: &HeaderMap, body: &str, effect: Effect) -> PlatformError;
}

/// The classification every platform shares for statuses its error body does not decide.
pub(crate) fn classify_status(status: StatusCode, message: String, effect: Effect) -> PlatformError {
    match status.as_u16() {
        401 => PlatformError::Unauthorized(message),
        429 => PlatformError::RateLimited { message, retry_at: None },
        // A gateway that could not reach the platform, or the platform saying it is unavailable:
        // nothing was applied.
        502 | 503 => PlatformError::Transient(message),
        // An internal error or a gateway timeout on a write may have applied it.
        500..=599 if effect == Effect::Write => PlatformError::Unknown(message),
        500..=599 => PlatformError::Transient(message),
        _ => PlatformError::Rejected(message),
    }
}

/// A transport failure: a connect failure never reached the platform; anything after the request
/// was sent might have been applied.
pub(crate) fn network_error<D: Dialect>(error: &reqwest::Error, effect: Effect) -> PlatformError {
    let message = format!("{} request {}", D::NAME, without_url(error));
    if error.is_connect() || effect == Effect::Read {
        PlatformError::Transient(message)
    } else {
        PlatformError::Unknown(message)
    }
}

/// Sends a request; a transport failure or a non-2xx answer comes back classified.
pub(crate) async fn send<D: Dialect>(request: RequestBuilder, effect: Effect) -> Result<Response, PlatformError> {
    let response = request.send().await.map_err(|e| network_error::<D>(&e, effect))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    Err(D::classify(status, &headers, &body, effect))
}

/// Reads a 2xx JSON answer; a body that does not parse is transient for reads and unknown for
/// writes (the platform accepted something we cannot read).
pub(crate) async fn json<D: Dialect, T: DeserializeOwned>(
    response: Response,
    what: &str,
    effect: Effect,
) -> Result<T, PlatformError> {
    let body = response.bytes().await.map_err(|e| network_error::<D>(&e, effect))?;
    decode::<D, T>(&body, what, effect)
}

/// The pure half of [`json`]: a 2xx body read as `T`, with the same classification when it does
/// not parse.
pub(crate) fn decode<D: Dialect, T: DeserializeOwned>(
    body: &[u8],
    what: &str,
    effect: Effect,
) -> Result<T, PlatformError> {
    serde_json::from_slice(body).map_err(|_| {
        let message = format!("{} answered {what} with an unexpected body", D::NAME);
        match effect {
            Effect::Read => PlatformError::Transient(message),
            Effect::Write => PlatformError::Unknown(message),
        }
    })
}

/// The message of an error body in any of the shapes the platforms use: OAuth
/// (`error` + `error_description`), Graph and TikTok (`error.message`), LinkedIn (`message`),
/// Instagram's token endpoint (`error_message`), X (`detail`, `title`).
pub(crate) fn error_message(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let text = |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    if let Some(error) = value.get("error") {
        if let Some(code) = text(error) {
            return Some(match value.get("error_description").and_then(text) {
                Some(description) => format!("{code}: {description}"),
                None => code,
            });
        }
        if let Some(message) = error.get("message").and_then(text) {
            return Some(message);
        }
    }
    ["error_message", "message", "detail", "title"].iter().find_map(|k| value.get(*k).and_then(text))
}

/// A token endpoint's answer in the fields the platforms share.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RawToken {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
    /// LinkedIn's name; TikTok's is `refresh_expires_in`.
    #[serde(default, alias = "refresh_expires_in")]
    pub refresh_token_expires_in: Option<i64>,
    /// Space- or comma-separated.
    #[serde(default)]
    pub scope: Option<String>,
}

impl RawToken {
    /// The token set, with lifetimes turned into instants.
    pub fn into_token_set(self) -> super::TokenSet {
        let now = chrono::Utc::now();
        // A lifetime past chrono's range (millions of years) is read as no stated expiry, as
        // adding it would overflow.
        let at = |secs: Option<i64>| {
            secs.filter(|s| *s > 0).and_then(chrono::Duration::try_seconds).and_then(|d| now.checked_add_signed(d))
        };
        super::TokenSet {
            expires_at: at(self.expires_in),
            refresh_expires_at: at(self.refresh_token_expires_in),
            scopes: self
                .scope
                .map(|s| s.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default(),
            access_token: self.access_token,
            refresh_token: self.refresh_token.filter(|t| !t.is_empty()),
        }
    }
}

/// A URL with query parameters appended.
pub(crate) fn with_query(base: &url::Url, params: &[(&str, &str)]) -> url::Url {
    let mut url = base.clone();
    url.query_pairs_mut().extend_pairs(params);
    url
}

/// An app registered with a platform: its credentials, its endpoints and Herald's redirect URI.
/// The modules that run the OAuth flow by hand (all but X) are built on one.
#[derive(Debug)]
pub(crate) struct RegisteredApp {
    pub http: reqwest::Client,
    pub auth_url: url::Url,
    pub token_url: url::Url,
    /// `{P}_API_BASE` without a trailing slash.
    pub api_base: String,
    pub client_id: String,
    pub client_secret: crate::config::Secret,
}

impl RegisteredApp {
    pub fn new(
        settings: &crate::config::PlatformSettings,
        client_id: &str,
        client_secret: &crate::config::Secret,
        http: reqwest::Client,
    ) -> Self {
        Self {
            http,
            auth_url: settings.auth_url.clone(),
            token_url: settings.token_url.clone(),
            api_base: settings.api_base.as_str().trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.clone(),
        }
    }

    /// The consent URL with these query parameters (no PKCE).
    pub fn authorization(&self, params: &[(&str, &str)]) -> super::Authorization {
        super::Authorization { url: with_query(&self.auth_url, params).to_string(), pkce_verifier: None }
    }

    /// POSTs a form to the token endpoint and reads the token answer.
    pub async fn post_token<D: Dialect>(&self, fields: &[(&str, &str)]) -> Result<super::TokenSet, PlatformError> {
        let response = send::<D>(self.http.post(self.token_url.clone()).form(fields), Effect::Read).await?;
        Ok(json::<D, RawToken>(response, "the token request", Effect::Read).await?.into_token_set())
    }
}

/// A media failure as a platform failure: a refused file is final, an unavailable one retried.
pub(crate) fn media_failure(error: crate::media::MediaError) -> PlatformError {
    match error {
        crate::media::MediaError::Refused(message) => PlatformError::Rejected(message),
        crate::media::MediaError::Unavailable(message) => PlatformError::Transient(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_lifetime_is_no_stated_expiry() {
        // Found by the `platform_answers` fuzz target: adding it to now overflowed and panicked.
        for lifetime in [99_999_999_999_999_i64, i64::MAX] {
            let body =
                format!(r#"{{"access_token":"a","expires_in":{lifetime},"refresh_token_expires_in":{lifetime}}}"#);
            let raw: RawToken = serde_json::from_str(&body).expect("a token answer");
            let tokens = raw.into_token_set();
            assert_eq!((tokens.expires_at, tokens.refresh_expires_at), (None, None));
        }
        let raw: RawToken = serde_json::from_str(r#"{"access_token":"a","expires_in":3600}"#).expect("a token answer");
        assert!(raw.into_token_set().expires_at.is_some());
    }
}
