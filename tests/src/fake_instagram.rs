//! A fake Instagram that speaks the wire format of the Instagram API with Instagram Login
//! (PLATFORMS.md §3): the authorize redirect (with `#_` appended), the form-encoded code exchange
//! at `POST /oauth/access_token` (Instagram's own error shape, `user_id` as a JSON number), the
//! `ig_exchange_token` and `ig_refresh_token` calls, and `GET /me`, failing with the Graph error
//! object elsewhere. Graph paths are accepted with any `v<digits>.0` version, which is remembered,
//! or without one. It records every request so tests can assert what Instagram received, and can
//! be told to deny consent or answer the next calls with canned responses.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, FixedOffset, Utc};
use poem::{
    Body, EndpointExt, Request, Response, Route, handler,
    http::{StatusCode, header},
    web::{Data, Path},
};
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

use crate::{Recorder, serve_fake};

/// The client id (Instagram app id) the fake accepts.
pub const CLIENT_ID: &str = "987654321098765";
/// The client secret the fake accepts.
pub const CLIENT_SECRET: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
/// The Instagram professional account every consent logs in as (`user_id` in `GET /me`).
pub const USER_ID: &str = "17841400000000001";
/// [`USER_ID`] as the number the code exchange answers with (beyond 2^53: not exact as an f64).
pub const USER_ID_NUMBER: u64 = 17_841_400_000_000_001;
/// Its username.
pub const USERNAME: &str = "heraldgram";
/// Its display name.
pub const NAME: &str = "Herald Gram";
/// The app-scoped id `GET /me` answers as `id`.
pub const APP_SCOPED_ID: &str = "7305000000000001";
/// The scopes the authorize request requires (comma-separated in `scope`).
pub const REQUIRED_SCOPES: [&str; 2] = ["instagram_business_basic", "instagram_business_content_publish"];
/// Lifetime of a short-lived token, in seconds.
pub const SHORT_LIVED_SECS: i64 = 3600;
/// Lifetime of a long-lived token, in seconds.
pub const LONG_LIVED_SECS: i64 = 5_183_944;
/// Lifetime of an authorization code, in seconds.
pub const CODE_LIFETIME_SECS: i64 = 3600;
/// How old a long-lived token must be before it can be refreshed, in seconds.
pub const REFRESH_MIN_AGE_SECS: i64 = 24 * 3600;

/// What kind of token a string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A short-lived token from the code exchange.
    ShortLived,
    /// A long-lived token from `ig_exchange_token` or `ig_refresh_token`.
    LongLived,
}

#[derive(Debug, Clone)]
struct Scripted {
    status: u16,
    body: String,
    content_type: String,
    delay: Duration,
}

#[derive(Debug)]
struct Code {
    redirect_uri: String,
    scopes: String,
    issued_at: DateTime<Utc>,
    used: bool,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct State {
    codes: HashMap<String, Code>,
    tokens: HashMap<String, Token>,
    issued: Vec<String>,
    issued_codes: Vec<String>,
    versions: Vec<String>,
    scripted_tokens: VecDeque<Scripted>,
    scripted_exchanges: VecDeque<Scripted>,
    scripted_refreshes: VecDeque<Scripted>,
    clock_offset: chrono::Duration,
    deny_next: bool,
}

impl State {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    /// Remembers the version segment of a Graph path, if any; an error unless it is `v<digits>.0`.
    fn saw_version(&mut self, version: Option<&str>, rest: &str) -> Result<(), Box<Response>> {
        let Some(version) = version else { return Ok(()) };
        if !self.versions.iter().any(|v| v == version) {
            self.versions.push(version.to_owned());
        }
        if version_ok(version) {
            Ok(())
        } else {
            Err(Box::new(graph_error(400, &format!("Unknown path components: /{version}/{rest}"), 2500, None)))
        }
    }

    fn mint_code(&mut self, redirect_uri: String, scopes: String) -> String {
        let mut bytes = [0u8; 96];
        rand::rng().fill_bytes(&mut bytes);
        let code = format!("AQ{}", URL_SAFE_NO_PAD.encode(bytes));
        let issued_at = self.now();
        self.codes.insert(code.clone(), Code { redirect_uri, scopes, issued_at, used: false });
        self.issued_codes.push(code.clone());
        code
    }

    fn mint_token(&mut self, kind: TokenKind) -> String {
        let token = format!("IGAA{}", random_alphanumeric(160));
        let lifetime = match kind {
            TokenKind::ShortLived => SHORT_LIVED_SECS,
            TokenKind::LongLived => LONG_LIVED_SECS,
        };
        let issued_at = self.now();
        let expires_at = issued_at + chrono::Duration::seconds(lifetime);
        self.tokens.insert(token.clone(), Token { kind, issued_at, expires_at });
        self.issued.push(token.clone());
        token
    }

    /// The token a request carries, if Instagram would accept it; otherwise the Graph error.
    fn authenticate(&self, token: Option<&str>) -> Result<Token, Box<Response>> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(Box::new(graph_error(400, "An access token is required to request this resource.", 104, None)));
        };
        let Some(found) = self.tokens.get(token) else {
            return Err(Box::new(invalid_token()));
        };
        if found.expires_at <= self.now() {
            return Err(Box::new(graph_error(400, &expired_message(found.expires_at, self.now()), 190, Some(463))));
        }
        Ok(found.clone())
    }
}

/// The fake Instagram server.
#[derive(Debug, Clone)]
pub struct FakeInstagram {
    /// `http://127.0.0.1:{port}`.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    recorder: Recorder,
}

fn json(status: u16, body: serde_json::Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("valid status"))
        .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
        .body(body.to_string())
}

/// The Graph error object, with a fresh `fbtrace_id`.
fn graph_error(status: u16, message: &str, code: u32, subcode: Option<u32>) -> Response {
    let mut error = serde_json::json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": random_alphanumeric(23),
    });
    if let Some(subcode) = subcode {
        error["error_subcode"] = subcode.into();
    }
    json(status, serde_json::json!({ "error": error }))
}

fn invalid_token() -> Response {
    graph_error(400, "Invalid OAuth access token - Cannot parse access token", 190, None)
}

/// Instagram's own error shape, used by `api.instagram.com/oauth/*`.
fn instagram_error(message: &str) -> Response {
    json(400, serde_json::json!({"error_type": "OAuthException", "code": 400, "error_message": message}))
}

fn expired_message(expired_at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let pacific = FixedOffset::west_opt(8 * 3600).expect("offset");
    let format = "%A, %d-%b-%y %H:%M:%S PST";
    format!(
        "Error validating access token: Session has expired on {}. The current time is {}.",
        expired_at.with_timezone(&pacific).format(format),
        now.with_timezone(&pacific).format(format),
    )
}

fn random_alphanumeric(len: usize) -> String {
    rand::rng().sample_iter(rand::distr::Alphanumeric).take(len).map(char::from).collect()
}

fn version_ok(version: &str) -> bool {
    version
        .strip_prefix('v')
        .and_then(|rest| rest.strip_suffix(".0"))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

fn query(req: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect()
}

fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

/// The access token of a Graph call: `Authorization: Bearer`, else the `access_token` parameter.
fn access_token(req: &Request, params: &HashMap<String, String>) -> Option<String> {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    header
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("OAuth ")))
        .map(|t| t.trim().to_owned())
        .or_else(|| params.get("access_token").cloned())
}

/// HMAC-SHA256 in lower-case hex, as `appsecret_proof` uses.
fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&inner_pad).chain_update(message).finalize();
    let outer = Sha256::new().chain_update(&outer_pad).chain_update(inner).finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

async fn scripted_answer(scripted: Scripted) -> Response {
    tokio::time::sleep(scripted.delay).await;
    Response::builder()
        .status(StatusCode::from_u16(scripted.status).expect("valid status"))
        .header(header::CONTENT_TYPE, scripted.content_type)
        .body(scripted.body)
}

impl FakeInstagram {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let recorder = Recorder::default();
        let routes = Route::new()
            .at("/oauth/authorize", poem::get(authorize))
            .at("/oauth/access_token", poem::post(code_exchange))
            .at("/access_token", poem::get(exchange_unversioned))
            .at("/:version/access_token", poem::get(exchange_versioned))
            .at("/refresh_access_token", poem::get(refresh_unversioned))
            .at("/:version/refresh_access_token", poem::get(refresh_versioned))
            .at("/me", poem::get(me_unversioned))
            .at("/:version/me", poem::get(me_versioned))
            .data(state.clone());
        let base_url = serve_fake(routes, recorder.clone()).await;
        Self { base_url, state, recorder }
    }

    /// The settings that point Herald at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("INSTAGRAM_CLIENT_ID".into(), CLIENT_ID.into()),
            ("INSTAGRAM_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("INSTAGRAM_AUTH_URL".into(), format!("{}/oauth/authorize", self.base_url)),
            ("INSTAGRAM_TOKEN_URL".into(), format!("{}/oauth/access_token", self.base_url)),
            ("INSTAGRAM_API_BASE".into(), self.base_url.clone()),
        ]
    }

    /// The Graph versions (`v26.0`, ...) versioned requests used, each once, in order of first use.
    pub fn versions_seen(&self) -> Vec<String> {
        self.state.lock().expect("fake state").versions.clone()
    }

    /// Every token the fake ever minted (short- and long-lived), to look for leaks.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.lock().expect("fake state").issued.clone()
    }

    /// Every authorization code the authorize endpoint handed out.
    pub fn issued_codes(&self) -> Vec<String> {
        self.state.lock().expect("fake state").issued_codes.clone()
    }

    /// What kind of token this is, if the fake minted it.
    pub fn token_kind(&self, token: &str) -> Option<TokenKind> {
        self.state.lock().expect("fake state").tokens.get(token).map(|t| t.kind)
    }

    /// Whether Instagram still accepts this token (minted and unexpired on the fake clock).
    pub fn token_is_live(&self, token: &str) -> bool {
        let state = self.state.lock().expect("fake state");
        state.tokens.get(token).is_some_and(|t| t.expires_at > state.now())
    }

    /// Makes every token minted so far expired (Graph answers code 190, subcode 463).
    pub fn expire_access_tokens(&self) {
        let mut state = self.state.lock().expect("fake state");
        let past = state.now() - chrono::Duration::seconds(1);
        for token in state.tokens.values_mut() {
            token.expires_at = past;
        }
    }

    /// Moves the fake's clock forward (codes and tokens age).
    pub fn advance(&self, by: chrono::Duration) {
        self.state.lock().expect("fake state").clock_offset += by;
    }

    /// Makes the next authorize request redirect back with `error=access_denied`, as when the
    /// user clicks "Cancel".
    pub fn deny_next_consent(&self) {
        self.state.lock().expect("fake state").deny_next = true;
    }

    /// Queues a canned answer for the next `POST /oauth/access_token` (the code exchange). The
    /// request is still recorded.
    pub fn script_token(&self, status: u16, body: String, content_type: &str, delay: Duration) {
        let scripted = Scripted { status, body, content_type: content_type.to_owned(), delay };
        self.state.lock().expect("fake state").scripted_tokens.push_back(scripted);
    }

    /// Queues a canned answer for the next `GET /access_token` (`ig_exchange_token`). The request
    /// is still recorded.
    pub fn script_exchange(&self, status: u16, body: String, content_type: &str, delay: Duration) {
        let scripted = Scripted { status, body, content_type: content_type.to_owned(), delay };
        self.state.lock().expect("fake state").scripted_exchanges.push_back(scripted);
    }

    /// Queues a canned answer for the next `GET /refresh_access_token` (`ig_refresh_token`). The
    /// request is still recorded.
    pub fn script_refresh(&self, status: u16, body: String, content_type: &str, delay: Duration) {
        let scripted = Scripted { status, body, content_type: content_type.to_owned(), delay };
        self.state.lock().expect("fake state").scripted_refreshes.push_back(scripted);
    }
}

/// The consent page: Instagram shows it to the user; the fake consents at once and redirects back
/// with a code, as Instagram does after the user clicks "Allow".
#[handler]
fn authorize(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    let query = query(req);
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    if get("client_id") != CLIENT_ID {
        return instagram_error("Invalid platform app");
    }
    let Ok(redirect_uri) = url::Url::parse(&get("redirect_uri")) else {
        return instagram_error("Invalid redirect_uri");
    };
    if !matches!(redirect_uri.scheme(), "http" | "https") {
        return instagram_error("Invalid redirect_uri");
    }
    if get("response_type") != "code" {
        return instagram_error("Invalid response_type: must be code");
    }
    let scope = get("scope");
    let scopes: Vec<&str> = scope.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if let Some(missing) = REQUIRED_SCOPES.iter().find(|s| !scopes.contains(s)) {
        return instagram_error(&format!("Invalid scope: {missing} is missing (scope must be comma-separated)"));
    }
    let state_param = get("state");
    if state_param.is_empty() {
        return instagram_error("The state parameter is required");
    }
    let mut state = state.lock().expect("fake state");
    let mut location = redirect_uri.clone();
    if std::mem::take(&mut state.deny_next) {
        location
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_reason", "user_denied")
            .append_pair("error_description", "The user denied your request.")
            .append_pair("state", &state_param);
    } else {
        let code = state.mint_code(redirect_uri.to_string(), scopes.join(","));
        location.query_pairs_mut().append_pair("code", &code).append_pair("state", &state_param);
        location.set_fragment(Some("_"));
    }
    Response::builder().status(StatusCode::FOUND).header(header::LOCATION, location.as_str()).finish()
}

/// `POST /oauth/access_token`: the form-encoded code exchange for a short-lived token.
#[handler]
async fn code_exchange(body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let params = form(&body.into_string().await.unwrap_or_default());
    let scripted = {
        let mut state = state.lock().expect("fake state");
        match state.scripted_tokens.pop_front() {
            Some(scripted) => scripted,
            None => return exchange_code(&mut state, &params),
        }
    };
    scripted_answer(scripted).await
}

fn exchange_code(state: &mut State, params: &HashMap<String, String>) -> Response {
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    for field in ["client_id", "client_secret", "grant_type", "redirect_uri", "code"] {
        if get(field).is_empty() {
            return instagram_error(&format!("Missing required field {field}"));
        }
    }
    if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        return instagram_error("Invalid platform app");
    }
    if get("grant_type") != "authorization_code" {
        return instagram_error("Invalid grant_type: must be authorization_code");
    }
    let now = state.now();
    let Some(code) = state.codes.get_mut(&get("code")) else {
        return instagram_error("Invalid authorization code");
    };
    if code.used {
        return instagram_error("This authorization code has been used");
    }
    if now - code.issued_at > chrono::Duration::seconds(CODE_LIFETIME_SECS) {
        return instagram_error("This authorization code has expired");
    }
    if code.redirect_uri != get("redirect_uri") {
        return instagram_error(
            "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
        );
    }
    code.used = true;
    let permissions = code.scopes.clone();
    let token = state.mint_token(TokenKind::ShortLived);
    json(200, serde_json::json!({"access_token": token, "user_id": USER_ID_NUMBER, "permissions": permissions}))
}

fn token_answer(token: &str) -> Response {
    json(200, serde_json::json!({"access_token": token, "token_type": "bearer", "expires_in": LONG_LIVED_SECS}))
}

#[handler]
async fn exchange_unversioned(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    exchange(req, None, &state).await
}

#[handler]
async fn exchange_versioned(req: &Request, Path(version): Path<String>, state: Data<&Arc<Mutex<State>>>) -> Response {
    exchange(req, Some(&version), &state).await
}

/// `GET [/{version}]/access_token?grant_type=ig_exchange_token`: short-lived → long-lived.
async fn exchange(req: &Request, version: Option<&str>, state: &Arc<Mutex<State>>) -> Response {
    let params = query(req);
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let scripted = {
        let mut state = state.lock().expect("fake state");
        if let Err(response) = state.saw_version(version, "access_token") {
            return *response;
        }
        if let Some(scripted) = state.scripted_exchanges.pop_front() {
            scripted
        } else {
            if get("grant_type") != "ig_exchange_token" {
                return graph_error(400, "Unsupported grant_type: must be ig_exchange_token", 100, None);
            }
            if get("client_secret") != CLIENT_SECRET {
                return graph_error(400, "Error validating client secret.", 1, None);
            }
            match state.authenticate(access_token(req, &params).as_deref()) {
                Ok(Token { kind: TokenKind::ShortLived, .. }) => {}
                Ok(_) => return invalid_token(),
                Err(response) => return *response,
            }
            let token = state.mint_token(TokenKind::LongLived);
            return token_answer(&token);
        }
    };
    scripted_answer(scripted).await
}

#[handler]
async fn refresh_unversioned(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    refresh(req, None, &state).await
}

#[handler]
async fn refresh_versioned(req: &Request, Path(version): Path<String>, state: Data<&Arc<Mutex<State>>>) -> Response {
    refresh(req, Some(&version), &state).await
}

/// `GET [/{version}]/refresh_access_token?grant_type=ig_refresh_token`: a new long-lived token
/// for one at least 24 hours old; the old one keeps working until its own expiry.
async fn refresh(req: &Request, version: Option<&str>, state: &Arc<Mutex<State>>) -> Response {
    let params = query(req);
    let scripted = {
        let mut state = state.lock().expect("fake state");
        if let Err(response) = state.saw_version(version, "refresh_access_token") {
            return *response;
        }
        if let Some(scripted) = state.scripted_refreshes.pop_front() {
            scripted
        } else {
            if params.get("grant_type").map(String::as_str) != Some("ig_refresh_token") {
                return graph_error(400, "Unsupported grant_type: must be ig_refresh_token", 100, None);
            }
            let old = match state.authenticate(access_token(req, &params).as_deref()) {
                Ok(token) if token.kind == TokenKind::LongLived => token,
                Ok(_) => return invalid_token(),
                Err(response) => return *response,
            };
            if state.now() - old.issued_at < chrono::Duration::seconds(REFRESH_MIN_AGE_SECS) {
                return graph_error(
                    400,
                    "Refresh token too young: a long-lived token can be refreshed once it is at least 24 hours old",
                    100,
                    None,
                );
            }
            let token = state.mint_token(TokenKind::LongLived);
            return token_answer(&token);
        }
    };
    scripted_answer(scripted).await
}

#[handler]
fn me_unversioned(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    me(req, None, &state)
}

#[handler]
fn me_versioned(req: &Request, Path(version): Path<String>, state: Data<&Arc<Mutex<State>>>) -> Response {
    me(req, Some(&version), &state)
}

/// `GET [/{version}]/me?fields=user_id,username`: the account behind the token.
fn me(req: &Request, version: Option<&str>, state: &Arc<Mutex<State>>) -> Response {
    let params = query(req);
    let mut state = state.lock().expect("fake state");
    if let Err(response) = state.saw_version(version, "me") {
        return *response;
    }
    let token = access_token(req, &params);
    if let Err(response) = state.authenticate(token.as_deref()) {
        return *response;
    }
    if let Some(proof) = params.get("appsecret_proof")
        && *proof != hmac_sha256_hex(CLIENT_SECRET.as_bytes(), token.unwrap_or_default().as_bytes())
    {
        return graph_error(400, "Invalid appsecret_proof provided in the API argument", 100, None);
    }
    let fields = params.get("fields").cloned().unwrap_or_default();
    let mut answer = serde_json::Map::new();
    for field in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let value = match field {
            "id" => serde_json::json!(APP_SCOPED_ID),
            "user_id" => serde_json::json!(USER_ID),
            "username" => serde_json::json!(USERNAME),
            "name" => serde_json::json!(NAME),
            "account_type" => serde_json::json!("BUSINESS"),
            "profile_picture_url" => serde_json::json!(format!("https://scontent.cdninstagram.com/v/{USER_ID}.jpg")),
            other => {
                return graph_error(
                    400,
                    &format!("(#100) Tried accessing nonexisting field ({other}) on node type (User)"),
                    100,
                    None,
                );
            }
        };
        answer.insert(field.to_owned(), value);
    }
    answer.entry("id").or_insert_with(|| serde_json::json!(APP_SCOPED_ID));
    json(200, serde_json::Value::Object(answer))
}

impl crate::Fake for FakeInstagram {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    async fn get_json(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
        let response = client.get(url).send().await.expect("GET");
        (response.status().as_u16(), response.json().await.expect("json"))
    }

    #[tokio::test]
    async fn login_exchange_refresh_and_me() {
        let ig = FakeInstagram::start().await;
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let base = &ig.base_url;
        let redirect = "http://herald.test/api/v1/auth/social/callback/instagram";
        let mut authorize_url = url::Url::parse(&format!("{base}/oauth/authorize")).expect("url");
        authorize_url
            .query_pairs_mut()
            .append_pair("client_id", CLIENT_ID)
            .append_pair("redirect_uri", redirect)
            .append_pair("response_type", "code")
            .append_pair("scope", "instagram_business_basic,instagram_business_content_publish")
            .append_pair("state", "s1");
        ig.deny_next_consent();
        let denied = client.get(authorize_url.as_str()).send().await.expect("authorize");
        assert!(denied.headers()["location"].to_str().expect("location").contains("error=access_denied"));
        let response = client.get(authorize_url.as_str()).send().await.expect("authorize");
        assert_eq!(response.status().as_u16(), 302);
        let location = url::Url::parse(response.headers()["location"].to_str().expect("location")).expect("url");
        assert_eq!(location.fragment(), Some("_"));
        let pairs: HashMap<String, String> = location.query_pairs().into_owned().collect();
        let form = [
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect),
            ("code", pairs["code"].as_str()),
        ];
        let response = client.post(format!("{base}/oauth/access_token")).form(&form).send().await.expect("token");
        assert_eq!(response.status().as_u16(), 200);
        let text = response.text().await.expect("text");
        assert!(text.contains(r#""user_id":17841400000000001"#), "{text}");
        let body: serde_json::Value = serde_json::from_str(&text).expect("json");
        let short = body["access_token"].as_str().expect("token").to_owned();
        let again = client.post(format!("{base}/oauth/access_token")).form(&form).send().await.expect("token");
        assert_eq!(again.status().as_u16(), 400);

        let (status, body) = get_json(
            &client,
            &format!(
                "{base}/access_token?grant_type=ig_exchange_token&client_secret={CLIENT_SECRET}&access_token={short}"
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let long = body["access_token"].as_str().expect("token").to_owned();
        assert_eq!(ig.token_kind(&long), Some(TokenKind::LongLived));

        let refresh_url = format!("{base}/refresh_access_token?grant_type=ig_refresh_token&access_token={long}");
        let (status, body) = get_json(&client, &refresh_url).await;
        assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(100)), "{body}");
        ig.advance(chrono::Duration::hours(25));
        assert!(!ig.token_is_live(&short));
        let (status, body) = get_json(&client, &refresh_url).await;
        assert_eq!(status, 200, "{body}");
        let refreshed = body["access_token"].as_str().expect("token").to_owned();
        assert!(ig.token_is_live(&long) && ig.token_is_live(&refreshed));

        let (status, who) =
            get_json(&client, &format!("{base}/v26.0/me?fields=user_id,username&access_token={long}")).await;
        assert_eq!(status, 200);
        assert_eq!(who, serde_json::json!({"user_id": USER_ID, "username": USERNAME, "id": APP_SCOPED_ID}));
        let response =
            client.get(format!("{base}/me?fields=user_id,username")).bearer_auth(&refreshed).send().await.expect("me");
        assert_eq!(response.status().as_u16(), 200);

        ig.expire_access_tokens();
        let (status, body) = get_json(&client, &format!("{base}/v26.0/me?access_token={long}")).await;
        assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(190)));
        assert_eq!(body["error"]["error_subcode"], 463);
        assert_eq!(ig.versions_seen(), vec!["v26.0".to_owned()]);
        assert_eq!(ig.issued_tokens().len(), 3);
    }
}
