//! The OAuth 2.0 authorization-code flow shared by platforms that follow RFC 6749, on the oauth2
//! crate with Herald's outbound HTTP client.
//!
//! oauth2 reads every non-200 answer as an OAuth error body, so a 503 HTML page from a token
//! endpoint would surface as a parse error, indistinguishable from a garbled 400. Herald's HTTP
//! adapter therefore turns 5xx answers into transport errors first: a refresh that fails that way
//! is transient and leaves the connection as it is, while a refusal in OAuth's error shape is
//! final.

use chrono::Utc;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
    basic::{BasicClient, BasicErrorResponse, BasicTokenResponse},
    http,
};

use super::{Authorization, PlatformError, TokenSet, http::RegisteredApp};

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ClientAuth {
    /// `Authorization: Basic base64(id:secret)` (X confidential clients).
    Basic,
}

/// How a platform runs the authorization-code flow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flow {
    /// Client authentication at the token endpoint.
    pub auth: ClientAuth,
    /// Scopes requested at consent.
    pub scopes: &'static [&'static str],
    /// Whether to send a PKCE S256 challenge.
    pub pkce: bool,
}

/// A configured OAuth client of one platform.
#[derive(Debug)]
pub(crate) struct OAuthApp {
    client: Client,
    http: Http,
    scopes: &'static [&'static str],
    pkce: bool,
}

/// Why a call to a token endpoint did not produce a usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("token endpoint answered HTTP {0}")]
    Status(u16),
    #[error("token endpoint unreachable: {0}")]
    Network(String),
}

impl OAuthApp {
    pub(crate) fn new(app: &RegisteredApp, flow: Flow) -> Self {
        // The URLs were parsed as URLs by the settings; oauth2's newtypes only re-wrap them.
        let client = BasicClient::new(ClientId::new(app.client_id.clone()))
            .set_client_secret(ClientSecret::new(app.client_secret.expose().to_owned()))
            .set_auth_uri(AuthUrl::from_url(app.auth_url.clone()))
            .set_token_uri(TokenUrl::from_url(app.token_url.clone()))
            .set_auth_type(match flow.auth {
                ClientAuth::Basic => AuthType::BasicAuth,
            });
        Self { client, http: Http(app.http.clone()), scopes: flow.scopes, pkce: flow.pkce }
    }

    /// `redirect_uri` was checked by `connect::initiate` (the backend's callback, or the same path
    /// on a `FRONTEND_ORIGIN` origin), so it is a valid URL.
    pub(crate) fn authorize(&self, state: &str, redirect_uri: &str) -> Authorization {
        let state = state.to_owned();
        let mut request = self
            .client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.scopes.iter().map(|s| Scope::new((*s).to_owned())));
        if let Ok(redirect) = RedirectUrl::new(redirect_uri.to_owned()) {
            request = request.set_redirect_uri(std::borrow::Cow::Owned(redirect));
        }
        let mut pkce_verifier = None;
        if self.pkce {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            pkce_verifier = Some(verifier.secret().to_owned());
        }
        let (url, _) = request.url();
        Authorization { url: url.to_string(), pkce_verifier }
    }

    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        let mut request = self.client.exchange_code(AuthorizationCode::new(code.to_owned()));
        if let Ok(redirect) = RedirectUrl::new(redirect_uri.to_owned()) {
            request = request.set_redirect_uri(std::borrow::Cow::Owned(redirect));
        }
        if let Some(verifier) = pkce_verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()));
        }
        request.request_async(&self.http).await.map(token_set).map_err(classify)
    }

    pub(crate) async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, PlatformError> {
        let token = RefreshToken::new(refresh_token.to_owned());
        self.client.exchange_refresh_token(&token).request_async(&self.http).await.map(token_set).map_err(classify)
    }
}

/// Herald's outbound client as oauth2's HTTP client (see the module docs for why not oauth2's own
/// reqwest adapter).
#[derive(Debug)]
struct Http(reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<http::Response<Vec<u8>>, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: http::Request<Vec<u8>>) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

async fn send(client: &reqwest::Client, request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, HttpError> {
    let request = reqwest::Request::try_from(request).map_err(|e| HttpError::Network(e.to_string()))?;
    let response = client.execute(request).await.map_err(|e| HttpError::Network(without_url(&e)))?;
    let status = response.status();
    if status.is_server_error() {
        return Err(HttpError::Status(status.as_u16()));
    }
    let mut builder = http::Response::builder().status(status.as_u16());
    for (name, value) in response.headers() {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    let body = response.bytes().await.map_err(|e| HttpError::Network(without_url(&e)))?;
    builder.body(body.to_vec()).map_err(|e| HttpError::Network(e.to_string()))
}

/// A reqwest error without its URL: token endpoint URLs carry no secrets, but API URLs may carry
/// query parameters, so no error text built here ever includes one.
pub(crate) fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "response body could not be read"
    } else {
        "request failed"
    };
    kind.to_owned()
}

fn token_set(response: BasicTokenResponse) -> TokenSet {
    let now = Utc::now();
    TokenSet {
        access_token: response.access_token().secret().to_owned(),
        refresh_token: response.refresh_token().map(|t| t.secret().to_owned()),
        // A lifetime past chrono's range is read as no stated expiry (see `RawToken`).
        expires_at: response
            .expires_in()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .and_then(|d| now.checked_add_signed(d)),
        refresh_expires_at: None,
        scopes: response.scopes().map(|s| s.iter().map(|s| s.to_string()).collect()).unwrap_or_default(),
    }
}

/// A 2xx token answer read as oauth2 reads it, then as [`OAuthApp`] keeps it (the fuzz targets'
/// entry; `None` where oauth2 reports a parse error).
pub(super) fn read_token_answer(body: &[u8]) -> Option<TokenSet> {
    serde_json::from_slice::<BasicTokenResponse>(body).ok().map(token_set)
}

/// An OAuth error body read as oauth2 reads it, then classified (the fuzz targets' entry).
pub(super) fn read_error_answer(body: &[u8]) -> Option<PlatformError> {
    serde_json::from_slice::<BasicErrorResponse>(body).ok().map(|r| classify(RequestTokenError::ServerResponse(r)))
}

fn classify(error: RequestTokenError<HttpError, BasicErrorResponse>) -> PlatformError {
    match error {
        RequestTokenError::ServerResponse(response) => {
            let mut message = response.error().to_string();
            if let Some(description) = response.error_description() {
                message = format!("{message}: {description}");
            }
            PlatformError::Rejected(message)
        }
        RequestTokenError::Request(e) => PlatformError::Transient(e.to_string()),
        RequestTokenError::Parse(_, _) => PlatformError::Transient(
            "token endpoint answered with an unexpected body (not an OAuth token response)".into(),
        ),
        RequestTokenError::Other(message) => PlatformError::Transient(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_lifetime_is_no_stated_expiry() {
        // Found by the `platform_answers` fuzz target: adding it to now overflowed and panicked.
        let body = br#"{"access_token":"a","token_type":"bearer","expires_in":99999999999999}"#;
        let tokens = read_token_answer(body).expect("a token answer");
        assert_eq!(tokens.expires_at, None);
        let body = br#"{"access_token":"a","token_type":"bearer","expires_in":7200}"#;
        assert!(read_token_answer(body).expect("a token answer").expires_at.is_some());
    }
}
