//! A fake Facebook that speaks Facebook Login and the Pages Graph API wire format (PLATFORMS.md §4):
//! the versioned login dialog (redirecting with `#_=_` appended), the code and `fb_exchange_token`
//! exchanges at `/v{N}.0/oauth/access_token`, `GET /me`, `GET /me/accounts` with Page tokens,
//! `DELETE /{user-id}/permissions` and `POST /{page-id}/feed`, failing with the Graph error object.
//! Any `v<digits>.0` version is accepted and remembered. It records every request so tests can
//! assert what Facebook received, and can be told to deny consent or fail the next calls.

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

/// The app id the fake accepts.
pub const APP_ID: &str = "1234567890123456";
/// The app secret the fake accepts.
pub const APP_SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// The Facebook user every consent logs in as.
pub const USER_ID: &str = "10160000000000001";
/// Its name.
pub const USER_NAME: &str = "Herald Test";
/// The Pages the user manages until [`FakeFacebook::set_pages`] changes them: (id, name).
pub const DEFAULT_PAGES: [(&str, &str); 2] = [("101", "Herald Cafe"), ("102", "Herald Books")];
/// The scopes the login dialog requires (comma-separated in `scope`).
pub const REQUIRED_SCOPES: [&str; 3] = ["pages_show_list", "pages_read_engagement", "pages_manage_posts"];
/// Lifetime of a short-lived user token (and of a Page token minted from one), in seconds.
pub const SHORT_LIVED_SECS: i64 = 3600;
/// Lifetime of a long-lived user token, in seconds.
pub const LONG_LIVED_SECS: i64 = 5_183_944;
/// Lifetime of an authorization code, in seconds.
pub const CODE_LIFETIME_SECS: i64 = 600;

/// The message Facebook answers when a token may not post to a Page.
const NOT_PAGE_ADMIN: &str = "(#200) If posting to a page, requires both pages_read_engagement and pages_manage_posts as an admin with sufficient administrative permission";

/// What kind of token a string is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// A short-lived user token from the code exchange.
    ShortLivedUser,
    /// A long-lived user token from `fb_exchange_token`.
    LongLivedUser,
    /// A Page token from `GET /me/accounts`, for the Page with this id.
    Page(String),
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
    issued_at: DateTime<Utc>,
    used: bool,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    user_id: String,
    expires_at: Option<DateTime<Utc>>,
    revoked: bool,
}

#[derive(Debug, Default)]
struct State {
    codes: HashMap<String, Code>,
    tokens: HashMap<String, Token>,
    issued: Vec<String>,
    issued_codes: Vec<String>,
    versions: Vec<String>,
    pages: Vec<(String, String)>,
    posts: Vec<(String, String, String)>,
    scripted_tokens: VecDeque<Scripted>,
    scripted_exchanges: VecDeque<Scripted>,
    scripted_posts: VecDeque<Scripted>,
    clock_offset: chrono::Duration,
    next_post: u64,
    deny_next: bool,
    revoke_fails: bool,
}

impl State {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    /// Remembers the version segment of a Graph path; an error unless it is `v<digits>.0`.
    fn saw_version(&mut self, version: &str, rest: &str) -> Result<(), Box<Response>> {
        if !self.versions.iter().any(|v| v == version) {
            self.versions.push(version.to_owned());
        }
        if version_ok(version) {
            Ok(())
        } else {
            Err(Box::new(graph_error(400, &format!("Unknown path components: /{version}/{rest}"), 2500, None)))
        }
    }

    fn mint_code(&mut self, redirect_uri: String) -> String {
        let mut bytes = [0u8; 96];
        rand::rng().fill_bytes(&mut bytes);
        let code = format!("AQ{}", URL_SAFE_NO_PAD.encode(bytes));
        let issued_at = self.now();
        self.codes.insert(code.clone(), Code { redirect_uri, issued_at, used: false });
        self.issued_codes.push(code.clone());
        code
    }

    fn mint_token(&mut self, kind: TokenKind, user_id: &str, lifetime_secs: Option<i64>) -> String {
        let token = format!("EAAR{}", random_alphanumeric(160));
        let expires_at = lifetime_secs.map(|secs| self.now() + chrono::Duration::seconds(secs));
        self.tokens.insert(token.clone(), Token { kind, user_id: user_id.to_owned(), expires_at, revoked: false });
        self.issued.push(token.clone());
        token
    }

    fn is_live(&self, token: &Token) -> bool {
        !token.revoked && token.expires_at.is_none_or(|expiry| expiry > self.now())
    }

    /// The token a request carries, if Facebook would accept it; otherwise the Graph error.
    fn authenticate(&self, token: Option<&str>) -> Result<Token, Box<Response>> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(Box::new(graph_error(400, "An access token is required to request this resource.", 104, None)));
        };
        let Some(found) = self.tokens.get(token) else {
            return Err(Box::new(graph_error(
                400,
                "Invalid OAuth access token - Cannot parse access token",
                190,
                None,
            )));
        };
        if found.revoked {
            return Err(Box::new(graph_error(
                400,
                &format!("Error validating access token: The user has not authorized application {APP_ID}."),
                190,
                Some(458),
            )));
        }
        if let Some(expiry) = found.expires_at
            && expiry <= self.now()
        {
            return Err(Box::new(graph_error(400, &expired_message(expiry, self.now()), 190, Some(463))));
        }
        Ok(found.clone())
    }

    fn page_name(&self, page_id: &str) -> String {
        self.pages.iter().find(|(id, _)| id == page_id).map(|(_, name)| name.clone()).unwrap_or_default()
    }
}

/// The fake Facebook server.
#[derive(Debug, Clone)]
pub struct FakeFacebook {
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

/// Query parameters merged with the body's (form-encoded or JSON), the body winning.
fn params(req: &Request, body: &str) -> HashMap<String, String> {
    let mut params = query(req);
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body) {
            for (key, value) in map {
                let value = match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                params.insert(key, value);
            }
        }
    } else {
        params.extend(url::form_urlencoded::parse(body.as_bytes()).into_owned());
    }
    params
}

/// The access token of a Graph call: `Authorization: Bearer` (or `OAuth`), else `access_token`.
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

/// An `appsecret_proof`, when sent, must be the HMAC of the token with the app secret.
fn check_proof(params: &HashMap<String, String>, token: &str) -> Result<(), Box<Response>> {
    match params.get("appsecret_proof") {
        Some(proof) if *proof != hmac_sha256_hex(APP_SECRET.as_bytes(), token.as_bytes()) => {
            Err(Box::new(graph_error(400, "Invalid appsecret_proof provided in the API argument", 100, None)))
        }
        _ => Ok(()),
    }
}

async fn scripted_answer(scripted: Scripted) -> Response {
    tokio::time::sleep(scripted.delay).await;
    Response::builder()
        .status(StatusCode::from_u16(scripted.status).expect("valid status"))
        .header(header::CONTENT_TYPE, scripted.content_type)
        .body(scripted.body)
}

impl FakeFacebook {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            pages: DEFAULT_PAGES.iter().map(|(id, name)| ((*id).to_owned(), (*name).to_owned())).collect(),
            next_post: 122_100_000_000_000_000,
            ..State::default()
        }));
        let recorder = Recorder::default();
        let routes = Route::new()
            .at("/:version/dialog/oauth", poem::get(dialog))
            .at("/:version/oauth/access_token", poem::get(access_token_endpoint).post(access_token_endpoint))
            .at("/:version/me", poem::get(me))
            .at("/:version/me/accounts", poem::get(accounts))
            .at("/:version/:id/permissions", poem::delete(permissions))
            .at("/:version/:id/feed", poem::post(feed))
            .data(state.clone());
        let base_url = serve_fake(routes, recorder.clone()).await;
        Self { base_url, state, recorder }
    }

    /// The settings that point Herald at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("FACEBOOK_APP_ID".into(), APP_ID.into()),
            ("FACEBOOK_APP_SECRET".into(), APP_SECRET.into()),
            ("FACEBOOK_AUTH_URL".into(), format!("{}/v26.0/dialog/oauth", self.base_url)),
            ("FACEBOOK_TOKEN_URL".into(), format!("{}/v26.0/oauth/access_token", self.base_url)),
            ("FACEBOOK_API_BASE".into(), self.base_url.clone()),
        ]
    }

    /// The Graph versions (`v26.0`, ...) requests used, each once, in order of first use.
    pub fn versions_seen(&self) -> Vec<String> {
        self.state.lock().expect("fake state").versions.clone()
    }

    /// Every token the fake ever minted (short and long user tokens, Page tokens), to look for
    /// leaks.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.lock().expect("fake state").issued.clone()
    }

    /// Every authorization code the dialog handed out.
    pub fn issued_codes(&self) -> Vec<String> {
        self.state.lock().expect("fake state").issued_codes.clone()
    }

    /// What kind of token this is, if the fake minted it.
    pub fn token_kind(&self, token: &str) -> Option<TokenKind> {
        self.state.lock().expect("fake state").tokens.get(token).map(|t| t.kind.clone())
    }

    /// Whether Facebook still accepts this token (minted, unexpired, not revoked).
    pub fn token_is_live(&self, token: &str) -> bool {
        let state = self.state.lock().expect("fake state");
        state.tokens.get(token).is_some_and(|t| state.is_live(t))
    }

    /// Makes every token minted so far expired, Page tokens included (Graph answers code 190,
    /// subcode 463).
    pub fn expire_access_tokens(&self) {
        let mut state = self.state.lock().expect("fake state");
        let past = state.now() - chrono::Duration::seconds(1);
        for token in state.tokens.values_mut() {
            token.expires_at = Some(past);
        }
    }

    /// Makes every user token minted so far expired; Page tokens keep their own expiry.
    pub fn expire_user_tokens(&self) {
        let mut state = self.state.lock().expect("fake state");
        let past = state.now() - chrono::Duration::seconds(1);
        for token in state.tokens.values_mut().filter(|t| !matches!(t.kind, TokenKind::Page(_))) {
            token.expires_at = Some(past);
        }
    }

    /// Moves the fake's clock forward (codes and tokens age).
    pub fn advance(&self, by: chrono::Duration) {
        self.state.lock().expect("fake state").clock_offset += by;
    }

    /// Makes the next login dialog redirect back with `error=access_denied`, as when the user
    /// clicks "Cancel".
    pub fn deny_next_consent(&self) {
        self.state.lock().expect("fake state").deny_next = true;
    }

    /// Queues a canned answer for the next code exchange at `/oauth/access_token` (a call
    /// without `grant_type=fb_exchange_token`). The request is still recorded.
    pub fn script_token(&self, status: u16, body: String, content_type: &str, delay: Duration) {
        let scripted = Scripted { status, body, content_type: content_type.to_owned(), delay };
        self.state.lock().expect("fake state").scripted_tokens.push_back(scripted);
    }

    /// Queues a canned answer for the next `grant_type=fb_exchange_token` call. The request is
    /// still recorded.
    pub fn script_exchange(&self, status: u16, body: String, content_type: &str, delay: Duration) {
        let scripted = Scripted { status, body, content_type: content_type.to_owned(), delay };
        self.state.lock().expect("fake state").scripted_exchanges.push_back(scripted);
    }

    /// Queues a canned JSON answer for the next `POST /{page-id}/feed` that carries that Page's
    /// token.
    pub fn script_post(&self, status: u16, body: serde_json::Value, delay: Duration) {
        let scripted =
            Scripted { status, body: body.to_string(), content_type: "application/json; charset=UTF-8".into(), delay };
        self.state.lock().expect("fake state").scripted_posts.push_back(scripted);
    }

    /// Makes `DELETE /{user-id}/permissions` answer 500 (Graph code 2) from now on.
    pub fn fail_revocation(&self) {
        self.state.lock().expect("fake state").revoke_fails = true;
    }

    /// Replaces the Pages the user manages: (id, name).
    pub fn set_pages(&self, pages: Vec<(String, String)>) {
        self.state.lock().expect("fake state").pages = pages;
    }

    /// Posts created: (id, page id, message).
    pub fn posts(&self) -> Vec<(String, String, String)> {
        self.state.lock().expect("fake state").posts.clone()
    }
}

/// The login dialog: Facebook shows it to the user; the fake consents at once and redirects back
/// with a code, as Facebook does after the user clicks "Continue".
#[handler]
fn dialog(req: &Request, Path(version): Path<String>, state: Data<&Arc<Mutex<State>>>) -> Response {
    let query = query(req);
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    let bad = |m: &str| Response::builder().status(StatusCode::BAD_REQUEST).body(m.to_owned());
    let mut state = state.lock().expect("fake state");
    if state.saw_version(&version, "dialog/oauth").is_err() {
        return bad("Sorry, this content isn't available right now");
    }
    if get("client_id") != APP_ID {
        return bad("Invalid App ID: The provided app ID does not look like a valid app ID.");
    }
    let Ok(redirect_uri) = url::Url::parse(&get("redirect_uri")) else {
        return bad("URL blocked: redirect_uri is missing or not absolute");
    };
    if !matches!(redirect_uri.scheme(), "http" | "https") {
        return bad("URL blocked: redirect_uri must be http or https");
    }
    if !matches!(query.get("response_type").map(String::as_str), None | Some("code")) {
        return bad("Invalid response_type: this fake speaks the code flow only");
    }
    let scope = get("scope");
    let scopes: Vec<&str> = scope.split(',').map(str::trim).collect();
    if let Some(missing) = REQUIRED_SCOPES.iter().find(|s| !scopes.contains(s)) {
        return bad(&format!("Invalid scopes: {missing} is missing (scope must be comma-separated)"));
    }
    let state_param = get("state");
    if state_param.is_empty() {
        return bad("The state parameter is required");
    }
    let mut location = redirect_uri.clone();
    if std::mem::take(&mut state.deny_next) {
        location
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_code", "200")
            .append_pair("error_description", "Permissions error")
            .append_pair("error_reason", "user_denied")
            .append_pair("state", &state_param);
    } else {
        let code = state.mint_code(redirect_uri.to_string());
        location.query_pairs_mut().append_pair("code", &code).append_pair("state", &state_param);
    }
    location.set_fragment(Some("_=_"));
    Response::builder().status(StatusCode::FOUND).header(header::LOCATION, location.as_str()).finish()
}

/// `GET|POST /{version}/oauth/access_token`: the code exchange, or `grant_type=fb_exchange_token`.
#[handler]
async fn access_token_endpoint(
    req: &Request,
    Path(version): Path<String>,
    body: Body,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    let params = params(req, &body.into_string().await.unwrap_or_default());
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let exchange = get("grant_type") == "fb_exchange_token";
    let scripted = {
        let mut state = state.lock().expect("fake state");
        if let Err(response) = state.saw_version(&version, "oauth/access_token") {
            return *response;
        }
        let queue = if exchange { &mut state.scripted_exchanges } else { &mut state.scripted_tokens };
        match queue.pop_front() {
            Some(scripted) => scripted,
            None if exchange => return exchange_token(&mut state, &params),
            None => return exchange_code(&mut state, &params),
        }
    };
    scripted_answer(scripted).await
}

fn client_error(params: &HashMap<String, String>) -> Option<Response> {
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    if get("client_id").is_empty() {
        return Some(graph_error(400, "Missing client_id parameter.", 101, None));
    }
    if get("client_id") != APP_ID {
        return Some(graph_error(400, "Error validating application. Invalid application ID.", 101, None));
    }
    if get("client_secret") != APP_SECRET {
        return Some(graph_error(400, "Error validating client secret.", 1, None));
    }
    None
}

fn token_answer(token: &str, expires_in: i64) -> Response {
    json(200, serde_json::json!({"access_token": token, "token_type": "bearer", "expires_in": expires_in}))
}

fn exchange_code(state: &mut State, params: &HashMap<String, String>) -> Response {
    if let Some(error) = client_error(params) {
        return error;
    }
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    if !matches!(get("grant_type").as_str(), "" | "authorization_code") {
        return graph_error(400, "Unsupported grant_type.", 100, None);
    }
    if get("redirect_uri").is_empty() {
        return graph_error(400, "Missing redirect_uri parameter.", 100, None);
    }
    if get("code").is_empty() {
        return graph_error(400, "Missing authorization code.", 100, None);
    }
    let now = state.now();
    let Some(code) = state.codes.get_mut(&get("code")) else {
        return graph_error(400, "Invalid verification code format.", 100, Some(36007));
    };
    if code.used {
        return graph_error(400, "This authorization code has been used.", 100, Some(36009));
    }
    if now - code.issued_at > chrono::Duration::seconds(CODE_LIFETIME_SECS) {
        return graph_error(400, "This authorization code has expired.", 100, Some(36007));
    }
    if code.redirect_uri != get("redirect_uri") {
        return graph_error(
            400,
            "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
            100,
            Some(36008),
        );
    }
    code.used = true;
    let token = state.mint_token(TokenKind::ShortLivedUser, USER_ID, Some(SHORT_LIVED_SECS));
    token_answer(&token, SHORT_LIVED_SECS)
}

fn exchange_token(state: &mut State, params: &HashMap<String, String>) -> Response {
    if let Some(error) = client_error(params) {
        return error;
    }
    let Some(short) = params.get("fb_exchange_token") else {
        return graph_error(400, "Missing fb_exchange_token parameter.", 100, None);
    };
    let user = match state.authenticate(Some(short)) {
        Ok(token) => token,
        Err(response) => return *response,
    };
    if matches!(user.kind, TokenKind::Page(_)) {
        return graph_error(400, "Invalid OAuth access token - Cannot parse access token", 190, None);
    }
    let token = state.mint_token(TokenKind::LongLivedUser, &user.user_id, Some(LONG_LIVED_SECS));
    token_answer(&token, LONG_LIVED_SECS)
}

/// The checks every authorized `GET` makes: a known version, a live token, a valid proof.
fn authorized_get(
    req: &Request,
    params: &HashMap<String, String>,
    version: &str,
    path: &str,
    state: &mut State,
) -> Result<Token, Box<Response>> {
    state.saw_version(version, path)?;
    let token = access_token(req, params);
    let caller = state.authenticate(token.as_deref())?;
    check_proof(params, token.as_deref().unwrap_or_default())?;
    Ok(caller)
}

/// `GET /{version}/me`: the user, or the Page when called with a Page token.
#[handler]
fn me(req: &Request, Path(version): Path<String>, state: Data<&Arc<Mutex<State>>>) -> Response {
    let params = params(req, "");
    let mut state = state.lock().expect("fake state");
    let caller = match authorized_get(req, &params, &version, "me", &mut state) {
        Ok(caller) => caller,
        Err(response) => return *response,
    };
    let (id, name, node) = match &caller.kind {
        TokenKind::Page(page_id) => (page_id.clone(), state.page_name(page_id), "Page"),
        _ => (caller.user_id.clone(), USER_NAME.to_owned(), "User"),
    };
    let fields = params.get("fields").cloned().unwrap_or_else(|| "id,name".into());
    let mut answer = serde_json::Map::new();
    for field in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let value = match field {
            "id" => serde_json::json!(id),
            "name" => serde_json::json!(name),
            "picture" => serde_json::json!({"data": {
                "height": 50, "is_silhouette": false, "width": 50,
                "url": format!("https://platform-lookaside.fbsbx.com/platform/profilepic/?asid={id}"),
            }}),
            other => {
                return graph_error(
                    400,
                    &format!("(#100) Tried accessing nonexisting field ({other}) on node type ({node})"),
                    100,
                    None,
                );
            }
        };
        answer.insert(field.to_owned(), value);
    }
    answer.entry("id").or_insert_with(|| serde_json::json!(id));
    json(200, serde_json::Value::Object(answer))
}

/// `GET /{version}/me/accounts`: the user's Pages, each with a freshly minted Page token.
#[handler]
fn accounts(req: &Request, Path(version): Path<String>, state: Data<&Arc<Mutex<State>>>) -> Response {
    let params = params(req, "");
    let mut state = state.lock().expect("fake state");
    let caller = match authorized_get(req, &params, &version, "me/accounts", &mut state) {
        Ok(caller) => caller,
        Err(response) => return *response,
    };
    let lifetime = match caller.kind {
        TokenKind::LongLivedUser => None,
        TokenKind::ShortLivedUser => Some(SHORT_LIVED_SECS),
        TokenKind::Page(_) => {
            return graph_error(
                400,
                "(#100) Tried accessing nonexisting field (accounts) on node type (Page)",
                100,
                None,
            );
        }
    };
    let pages = state.pages.clone();
    let data: Vec<serde_json::Value> = pages
        .into_iter()
        .map(|(id, name)| {
            let page_token = state.mint_token(TokenKind::Page(id.clone()), &caller.user_id, lifetime);
            serde_json::json!({
                "id": id,
                "name": name,
                "access_token": page_token,
                "category": "Software",
                "category_list": [{"id": "2211", "name": "Software"}],
                "tasks": ["ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"],
            })
        })
        .collect();
    json(
        200,
        serde_json::json!({
            "data": data,
            "paging": {"cursors": {"before": URL_SAFE_NO_PAD.encode("before"), "after": URL_SAFE_NO_PAD.encode("after")}},
        }),
    )
}

/// `DELETE /{version}/{user-id}/permissions`: de-authorizes the app; every token of the user,
/// Page tokens included, stops working.
#[handler]
async fn permissions(
    req: &Request,
    Path((version, id)): Path<(String, String)>,
    body: Body,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    let params = params(req, &body.into_string().await.unwrap_or_default());
    let mut state = state.lock().expect("fake state");
    if let Err(response) = state.saw_version(&version, &format!("{id}/permissions")) {
        return *response;
    }
    let token = access_token(req, &params).unwrap_or_default();
    let app_token = format!("{APP_ID}|{APP_SECRET}");
    let user_id = if token == app_token {
        id.clone()
    } else {
        let caller = match state.authenticate(Some(&token)) {
            Ok(caller) => caller,
            Err(response) => return *response,
        };
        if let Err(response) = check_proof(&params, &token) {
            return *response;
        }
        if matches!(caller.kind, TokenKind::Page(_)) || (id != "me" && id != caller.user_id) {
            return graph_error(
                400,
                &format!(
                    "Unsupported delete request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
                ),
                100,
                Some(33),
            );
        }
        caller.user_id
    };
    if state.revoke_fails {
        return graph_error(500, "An unexpected error has occurred. Please retry your request later.", 2, None);
    }
    for token in state.tokens.values_mut().filter(|t| t.user_id == user_id) {
        token.revoked = true;
    }
    json(200, serde_json::json!({"success": true}))
}

/// `POST /{version}/{page-id}/feed`: a text (or link) post on a Page, with that Page's token.
#[handler]
async fn feed(
    req: &Request,
    Path((version, id)): Path<(String, String)>,
    body: Body,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    let params = params(req, &body.into_string().await.unwrap_or_default());
    let scripted = {
        let mut state = state.lock().expect("fake state");
        if let Err(response) = state.saw_version(&version, &format!("{id}/feed")) {
            return *response;
        }
        let token = access_token(req, &params);
        let caller = match state.authenticate(token.as_deref()) {
            Ok(caller) => caller,
            Err(response) => return *response,
        };
        if let Err(response) = check_proof(&params, token.as_deref().unwrap_or_default()) {
            return *response;
        }
        let page_id = match caller.kind {
            TokenKind::Page(page_id) if page_id == id || id == "me" => page_id,
            _ => return graph_error(400, NOT_PAGE_ADMIN, 200, None),
        };
        match state.scripted_posts.pop_front() {
            Some(scripted) => scripted,
            None => return create_post(&mut state, &page_id, &params),
        }
    };
    scripted_answer(scripted).await
}

fn create_post(state: &mut State, page_id: &str, params: &HashMap<String, String>) -> Response {
    let message = params.get("message").cloned().unwrap_or_default();
    if message.is_empty() && params.get("link").is_none_or(String::is_empty) {
        return graph_error(400, "(#100) Missing message or attachment", 100, None);
    }
    if !message.is_empty() && state.posts.iter().any(|(_, page, m)| page == page_id && *m == message) {
        return graph_error(400, "(#506) Duplicate status message", 506, None);
    }
    state.next_post += 1;
    let id = format!("{page_id}_{}", state.next_post);
    state.posts.push((id.clone(), page_id.to_owned(), message));
    json(200, serde_json::json!({ "id": id }))
}

impl crate::Fake for FakeFacebook {
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

    #[test]
    fn versions() {
        assert!(version_ok("v26.0"));
        assert!(version_ok("v3.0"));
        assert!(!version_ok("v26.1"));
        assert!(!version_ok("26.0"));
        assert!(!version_ok("v.0"));
        assert!(!version_ok("me"));
    }

    async fn get_json(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
        let response = client.get(url).send().await.expect("GET");
        (response.status().as_u16(), response.json().await.expect("json"))
    }

    #[tokio::test]
    async fn login_pages_post_and_revoke() {
        let fb = FakeFacebook::start().await;
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let base = &fb.base_url;
        let redirect = "http://herald.test/api/v1/auth/social/callback/facebook";
        let mut authorize = url::Url::parse(&format!("{base}/v25.0/dialog/oauth")).expect("url");
        authorize
            .query_pairs_mut()
            .append_pair("client_id", APP_ID)
            .append_pair("redirect_uri", redirect)
            .append_pair("state", "s1")
            .append_pair("response_type", "code")
            .append_pair("scope", "pages_show_list,pages_read_engagement,pages_manage_posts");
        let response = client.get(authorize.as_str()).send().await.expect("dialog");
        assert_eq!(response.status().as_u16(), 302);
        let location = url::Url::parse(response.headers()["location"].to_str().expect("location")).expect("url");
        assert_eq!(location.fragment(), Some("_=_"));
        let pairs: HashMap<String, String> = location.query_pairs().into_owned().collect();
        assert_eq!(pairs["state"], "s1");
        let code = pairs["code"].clone();

        let mut exchange = url::Url::parse(&format!("{base}/v26.0/oauth/access_token")).expect("url");
        exchange
            .query_pairs_mut()
            .append_pair("client_id", APP_ID)
            .append_pair("redirect_uri", redirect)
            .append_pair("client_secret", APP_SECRET)
            .append_pair("code", &code);
        let (status, body) = get_json(&client, exchange.as_str()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["expires_in"], SHORT_LIVED_SECS);
        let short = body["access_token"].as_str().expect("token").to_owned();
        let (status, body) = get_json(&client, exchange.as_str()).await;
        assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(100)), "{body}");

        let mut long_url = url::Url::parse(&format!("{base}/v26.0/oauth/access_token")).expect("url");
        long_url
            .query_pairs_mut()
            .append_pair("grant_type", "fb_exchange_token")
            .append_pair("client_id", APP_ID)
            .append_pair("client_secret", APP_SECRET)
            .append_pair("fb_exchange_token", &short);
        let (status, body) = get_json(&client, long_url.as_str()).await;
        assert_eq!(status, 200, "{body}");
        let long = body["access_token"].as_str().expect("token").to_owned();
        assert_eq!(fb.token_kind(&long), Some(TokenKind::LongLivedUser));

        let (_, who) = get_json(&client, &format!("{base}/v26.0/me?fields=id,name&access_token={long}")).await;
        assert_eq!(who, serde_json::json!({"id": USER_ID, "name": USER_NAME}));
        let response = client
            .get(format!("{base}/v26.0/me/accounts?fields=id,name,access_token"))
            .bearer_auth(&long)
            .send()
            .await
            .expect("accounts");
        let pages: serde_json::Value = response.json().await.expect("json");
        let page_token = pages["data"][0]["access_token"].as_str().expect("page token").to_owned();
        let other_page_token = pages["data"][1]["access_token"].as_str().expect("page token").to_owned();

        let post = |token: String, message: &str| {
            client
                .post(format!("{base}/v26.0/101/feed"))
                .bearer_auth(token)
                .form(&[("message", message.to_owned())])
                .send()
        };
        let response = post(page_token.clone(), "hello").await.expect("post");
        assert_eq!(response.status().as_u16(), 200);
        let posted: serde_json::Value = response.json().await.expect("json");
        assert!(posted["id"].as_str().expect("id").starts_with("101_"));
        let duplicate: serde_json::Value =
            post(page_token.clone(), "hello").await.expect("post").json().await.expect("j");
        assert_eq!(duplicate["error"]["code"], 506);
        let wrong: serde_json::Value = post(other_page_token, "hi").await.expect("post").json().await.expect("j");
        assert_eq!(wrong["error"]["code"], 200);
        let user: serde_json::Value = post(long.clone(), "hi").await.expect("post").json().await.expect("json");
        assert_eq!(user["error"]["code"], 200);
        assert_eq!(fb.posts().len(), 1);

        fb.advance(chrono::Duration::days(70));
        assert!(fb.token_is_live(&page_token));
        assert!(!fb.token_is_live(&long));
        let (status, expired) = get_json(&client, &format!("{base}/v26.0/me?access_token={long}")).await;
        assert_eq!((status, &expired["error"]["error_subcode"]), (400, &serde_json::json!(463)));

        let response = client
            .delete(format!("{base}/v26.0/{USER_ID}/permissions?access_token={APP_ID}|{APP_SECRET}"))
            .send()
            .await
            .expect("revoke");
        assert_eq!(response.status().as_u16(), 200);
        assert!(!fb.token_is_live(&page_token));
        assert_eq!(fb.versions_seen(), vec!["v25.0".to_owned(), "v26.0".to_owned()]);
        assert_eq!(fb.issued_tokens().len(), 4);
    }
}
