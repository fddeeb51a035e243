//! A fake TikTok that speaks TikTok's Login Kit v2 (web, no PKCE) and Display API wire format
//! (PLATFORMS.md §5): the authorize redirect with `client_key` and comma-separated scopes, the token
//! endpoint with the client secret in the form body, 5-minute single-use codes, 2-hour access tokens
//! and rotating 180-day refresh tokens, `POST /v2/oauth/revoke/` and `GET /v2/user/info/`. It
//! records every request so tests can assert what TikTok received, and can be told to deny consent,
//! to fail revocation or to answer the next token call with a scripted response.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use poem::{
    Body, EndpointExt, Request, Response, Route, handler,
    http::{StatusCode, header},
    web::Data,
};
use rand::{Rng, distr::Alphanumeric};
use serde_json::{Value, json};

use crate::{Recorder, serve_fake};

/// The client key the fake accepts (TikTok's name for the client id).
pub const CLIENT_ID: &str = "fakettclientkey";
/// The client secret the fake accepts.
pub const CLIENT_SECRET: &str = "fake-tiktok-client-secret";
/// The TikTok user every consent logs in as (its `open_id`).
pub const USER_ID: &str = "-000OqJ_1cHn3oRb4YnqDwfbNnNDPThn1LIQ";
/// The user's display name (`display_name` of `/v2/user/info/`).
pub const DISPLAY_NAME: &str = "Herald Test";
/// The user's handle (`username` of `/v2/user/info/`, served only with `user.info.profile`).
pub const USERNAME: &str = "heraldtest";

/// `expires_in` of every access token: 2 hours.
const ACCESS_TTL_SECS: i64 = 7200;
/// Lifetime of a refresh token chain, counted from the code exchange: 180 days.
const REFRESH_TTL_SECS: i64 = 15_552_000;
/// How long an authorization code can be exchanged.
const CODE_TTL_SECS: i64 = 5 * 60;
/// The scopes the authorize request must ask for.
const REQUIRED_SCOPES: [&str; 2] = ["user.info.basic", "video.publish"];

/// A scripted answer for the next call of the token endpoint.
#[derive(Debug, Clone)]
pub struct ScriptedToken {
    /// HTTP status.
    pub status: u16,
    /// Raw body (need not be JSON).
    pub body: String,
    /// `Content-Type` of the body.
    pub content_type: String,
    /// Delay before answering (to provoke client timeouts).
    pub delay: Duration,
}

#[derive(Debug)]
struct Code {
    redirect_uri: String,
    scope: String,
    issued_at: DateTime<Utc>,
}

/// An access or refresh token: when it dies, which authorization it belongs to, what it grants.
#[derive(Debug, Clone)]
struct Token {
    expiry: DateTime<Utc>,
    grant: u64,
    scope: String,
}

#[derive(Debug, Default)]
struct State {
    codes: HashMap<String, Code>,
    access_tokens: HashMap<String, Token>,
    refresh_tokens: HashMap<String, Token>,
    spent_refresh_tokens: Vec<String>,
    issued: Vec<String>,
    scripted_tokens: VecDeque<ScriptedToken>,
    clock_offset: chrono::Duration,
    next_grant: u64,
    deny_next_consent: bool,
    revoke_fails: bool,
}

impl State {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    fn live_access(&self, token: &str) -> Option<&Token> {
        self.access_tokens.get(token).filter(|t| t.expiry > self.now())
    }

    fn live_refresh(&self, token: &str) -> Option<&Token> {
        self.refresh_tokens.get(token).filter(|t| t.expiry > self.now())
    }

    /// Mints an access token and a refresh token for `grant`; returns the token response.
    fn issue(&mut self, grant: u64, scope: String, refresh_expiry: DateTime<Utc>) -> Value {
        let now = self.now();
        let access = format!("act.{}", random_string(60));
        let refresh = format!("rft.{}", random_string(60));
        self.issued.push(access.clone());
        self.issued.push(refresh.clone());
        let access_token =
            Token { expiry: now + chrono::Duration::seconds(ACCESS_TTL_SECS), grant, scope: scope.clone() };
        self.access_tokens.insert(access.clone(), access_token);
        self.refresh_tokens.insert(refresh.clone(), Token { expiry: refresh_expiry, grant, scope: scope.clone() });
        json!({
            "access_token": access,
            "expires_in": ACCESS_TTL_SECS,
            "open_id": USER_ID,
            "refresh_expires_in": secs_until(refresh_expiry, now),
            "refresh_token": refresh,
            "scope": scope,
            "token_type": "Bearer",
        })
    }
}

/// The fake TikTok server.
#[derive(Debug, Clone)]
pub struct FakeTiktok {
    /// `http://127.0.0.1:{port}`.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    recorder: Recorder,
}

fn random_string(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

fn log_id() -> String {
    format!("{}{}", Utc::now().format("%Y%m%d%H%M%S"), random_string(18).to_ascii_uppercase())
}

/// Whole seconds from `now` to `expiry`, rounded (so the wall-clock time a request takes does not
/// show as one second less).
fn secs_until(expiry: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    ((expiry - now).num_milliseconds() + 500).div_euclid(1000)
}

fn json(status: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("valid status"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
}

fn bad_request_text(message: &str) -> Response {
    Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(message.to_owned())
}

/// An OAuth endpoint error (`error`, `error_description`, `log_id`).
fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    json(status, json!({"error": error, "error_description": description, "log_id": log_id()}))
}

/// An API error in TikTok's `{"data":{},"error":{…}}` envelope.
fn api_error(status: u16, code: &str, message: &str) -> Response {
    json(status, json!({"data": {}, "error": {"code": code, "message": message, "log_id": log_id()}}))
}

fn invalid_client() -> Response {
    oauth_error(400, "invalid_client", "Client key or secret is incorrect.")
}

fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

fn header_str<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

impl FakeTiktok {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let recorder = Recorder::default();
        let routes = Route::new()
            .at("/v2/auth/authorize/", poem::get(authorize))
            .at("/v2/oauth/token/", poem::post(token_endpoint))
            .at("/v2/oauth/revoke/", poem::post(revoke))
            .at("/v2/user/info/", poem::get(user_info))
            .data(state.clone());
        let base_url = serve_fake(routes, recorder.clone()).await;
        Self { base_url, state, recorder }
    }

    /// The settings that point Herald at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("TIKTOK_CLIENT_ID".into(), CLIENT_ID.into()),
            ("TIKTOK_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("TIKTOK_AUTH_URL".into(), format!("{}/v2/auth/authorize/", self.base_url)),
            ("TIKTOK_TOKEN_URL".into(), format!("{}/v2/oauth/token/", self.base_url)),
            ("TIKTOK_API_BASE".into(), self.base_url.clone()),
        ]
    }

    /// Every access and refresh token the fake ever issued, to look for leaks.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.lock().expect("fake state").issued.clone()
    }

    /// Refresh tokens already rotated away.
    pub fn spent_refresh_tokens(&self) -> Vec<String> {
        self.state.lock().expect("fake state").spent_refresh_tokens.clone()
    }

    /// Whether TikTok still accepts this token (a known, unexpired, unrevoked access or refresh
    /// token).
    pub fn token_is_live(&self, token: &str) -> bool {
        let state = self.state.lock().expect("fake state");
        state.live_access(token).is_some() || state.live_refresh(token).is_some()
    }

    /// Moves the fake's clock forward (codes and tokens age).
    pub fn advance(&self, by: chrono::Duration) {
        self.state.lock().expect("fake state").clock_offset += by;
    }

    /// Makes every access token issued so far invalid, as if two hours had passed.
    pub fn expire_access_tokens(&self) {
        let mut state = self.state.lock().expect("fake state");
        let past = state.now() - chrono::Duration::seconds(1);
        for token in state.access_tokens.values_mut() {
            token.expiry = past;
        }
    }

    /// The next authorize request redirects back with `error=access_denied` instead of a code, as
    /// when the user clicks "Cancel".
    pub fn deny_next_consent(&self) {
        self.state.lock().expect("fake state").deny_next_consent = true;
    }

    /// Makes `POST /v2/oauth/revoke/` answer 500 `internal_error` from now on.
    pub fn fail_revocation(&self) {
        self.state.lock().expect("fake state").revoke_fails = true;
    }

    /// Queues a canned answer for the next call of the token endpoint (which is still recorded but
    /// otherwise not processed: no code is consumed, no token minted).
    pub fn script_token(&self, status: u16, body: String, content_type: &str, delay: Duration) {
        self.state.lock().expect("fake state").scripted_tokens.push_back(ScriptedToken {
            status,
            body,
            content_type: content_type.to_owned(),
            delay,
        });
    }
}

/// The consent page: TikTok shows it to the user; the fake consents at once (granting every
/// requested scope) and redirects back with a code, as TikTok does after the user clicks
/// "Authorize".
#[handler]
fn authorize(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    let query = form(req.uri().query().unwrap_or(""));
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code" {
        return bad_request_text("Something went wrong: response_type must be code");
    }
    if get("client_key") != CLIENT_ID {
        return bad_request_text("Something went wrong: client_key");
    }
    let state_param = get("state");
    if state_param.is_empty() {
        return bad_request_text("Something went wrong: state");
    }
    let scopes: Vec<String> = get("scope").split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    if let Some(missing) = REQUIRED_SCOPES.iter().find(|s| !scopes.iter().any(|g| g == *s)) {
        return bad_request_text(&format!("Something went wrong: scope {missing} was not requested"));
    }
    let redirect_uri = get("redirect_uri");
    let Ok(mut location) = url::Url::parse(&redirect_uri) else {
        return bad_request_text("Something went wrong: redirect_uri");
    };
    let mut state = state.lock().expect("fake state");
    let extra = if std::mem::take(&mut state.deny_next_consent) {
        format!("error=access_denied&error_description={}&state={}", encode("The user denied"), encode(&state_param))
    } else {
        let code = random_string(64);
        let issued_at = state.now();
        let scope = scopes.join(",");
        state.codes.insert(code.clone(), Code { redirect_uri, scope, issued_at });
        // Scopes come back comma-separated, commas left as they are.
        let scopes = scopes.iter().map(|s| encode(s)).collect::<Vec<_>>().join(",");
        format!("code={}&scopes={scopes}&state={}", encode(&code), encode(&state_param))
    };
    let query = match location.query() {
        Some(existing) if !existing.is_empty() => format!("{existing}&{extra}"),
        _ => extra,
    };
    location.set_query(Some(&query));
    Response::builder().status(StatusCode::FOUND).header(header::LOCATION, location.as_str()).finish()
}

/// `POST /v2/oauth/token/`: `authorization_code` and rotating `refresh_token` grants, client
/// credentials in the form body.
#[handler]
async fn token_endpoint(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let scripted = state.lock().expect("fake state").scripted_tokens.pop_front();
    if let Some(scripted) = scripted {
        tokio::time::sleep(scripted.delay).await;
        return Response::builder()
            .status(StatusCode::from_u16(scripted.status).expect("valid status"))
            .header(header::CONTENT_TYPE, scripted.content_type)
            .body(scripted.body);
    }
    let is_form = header_str(req, header::CONTENT_TYPE.as_str())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded.");
    }
    let params = form(&body.into_string().await.unwrap_or_default());
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    if get("client_key") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        return invalid_client();
    }
    let mut state = state.lock().expect("fake state");
    let now = state.now();
    match get("grant_type").as_str() {
        "authorization_code" => {
            let Some(code) = state.codes.remove(&get("code")) else {
                return oauth_error(400, "invalid_grant", "Authorization code is expired.");
            };
            if now - code.issued_at > chrono::Duration::seconds(CODE_TTL_SECS)
                || code.redirect_uri != get("redirect_uri")
            {
                return oauth_error(400, "invalid_grant", "Authorization code is expired.");
            }
            state.next_grant += 1;
            let grant = state.next_grant;
            json(200, state.issue(grant, code.scope, now + chrono::Duration::seconds(REFRESH_TTL_SECS)))
        }
        "refresh_token" => {
            let old = get("refresh_token");
            let Some(previous) = state.live_refresh(&old).cloned() else {
                return oauth_error(400, "invalid_grant", "Refresh token is invalid or expired.");
            };
            state.refresh_tokens.remove(&old);
            state.spent_refresh_tokens.push(old);
            // The new refresh token replaces the old one but keeps its lifetime.
            json(200, state.issue(previous.grant, previous.scope, previous.expiry))
        }
        "" => oauth_error(400, "invalid_request", "grant_type is required."),
        other => oauth_error(400, "unsupported_grant_type", &format!("Grant type {other} is not supported.")),
    }
}

/// `POST /v2/oauth/revoke/`: ends the authorization the token belongs to, so the token and every
/// access and refresh token of the same authorization stop working.
#[handler]
async fn revoke(body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let params = form(&body.into_string().await.unwrap_or_default());
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    if get("client_key") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        return invalid_client();
    }
    let mut state = state.lock().expect("fake state");
    if state.revoke_fails {
        return oauth_error(500, "internal_error", "Internal error");
    }
    let token = get("token");
    let grant = state.access_tokens.get(&token).or_else(|| state.refresh_tokens.get(&token)).map(|t| t.grant);
    if let Some(grant) = grant {
        state.access_tokens.retain(|_, t| t.grant != grant);
        state.refresh_tokens.retain(|_, t| t.grant != grant);
    }
    json(200, json!({}))
}

/// `GET /v2/user/info/?fields=…`: the requested fields of the token's user.
#[handler]
fn user_info(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    let state = state.lock().expect("fake state");
    let token = header_str(req, header::AUTHORIZATION.as_str()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token.and_then(|t| state.live_access(t)) else {
        return api_error(401, "access_token_invalid", "The access token is invalid or not found in the request.");
    };
    let query = form(req.uri().query().unwrap_or(""));
    let fields: Vec<&str> = query
        .get("fields")
        .map(|f| f.split(',').map(str::trim).filter(|f| !f.is_empty()).collect())
        .unwrap_or_default();
    if fields.is_empty() {
        return api_error(400, "invalid_params", "The fields parameter is required.");
    }
    let granted: Vec<&str> = token.scope.split(',').collect();
    let mut user = serde_json::Map::new();
    for field in fields {
        let (value, scope) = match field {
            "open_id" => (USER_ID, "user.info.basic"),
            "union_id" => ("u-1", "user.info.basic"),
            "avatar_url" => ("https://example.invalid/a.jpg", "user.info.basic"),
            "display_name" => (DISPLAY_NAME, "user.info.basic"),
            "username" => (USERNAME, "user.info.profile"),
            _ => continue,
        };
        if !granted.contains(&scope) {
            return api_error(
                401,
                "scope_not_authorized",
                "The user did not authorize the scope required for completing this request.",
            );
        }
        user.insert(field.to_owned(), json!(value));
    }
    json(200, json!({"data": {"user": user}, "error": {"code": "ok", "message": "", "log_id": log_id()}}))
}

impl crate::Fake for FakeTiktok {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}
