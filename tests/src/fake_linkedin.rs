//! A fake LinkedIn that speaks LinkedIn's OAuth 2.0 (Sign In with LinkedIn using OpenID Connect +
//! Share on LinkedIn) and REST wire format (PLATFORMS.md §1): the authorize redirect, the token
//! endpoint with the client secret in the form body (no PKCE), 30-minute single-use codes, 60-day
//! access tokens, optional programmatic refresh tokens whose 365-day lifetime does not extend on
//! refresh, `GET /v2/userinfo` and `POST /rest/posts` with its versioning headers, 422 validation
//! and duplicate errors and the post URN in `x-restli-id`. It records every request so tests can
//! assert what LinkedIn received, and can be told to deny consent or to answer the next token or
//! post call with a scripted response.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use poem::{
    Body, EndpointExt, Request, Response, Route, handler,
    http::{HeaderName, StatusCode, header},
    web::Data,
};
use rand::RngCore;
use serde_json::{Value, json};

use crate::{Recorder, serve_fake};

/// The client id the fake accepts.
pub const CLIENT_ID: &str = "fake-linkedin-client-id";
/// The client secret the fake accepts.
pub const CLIENT_SECRET: &str = "fake-linkedin-client-secret";
/// The LinkedIn member every consent logs in as (`sub` of `/v2/userinfo`; author
/// `urn:li:person:{USER_ID}`).
pub const USER_ID: &str = "yrZCpj2Z12";
/// The member's display name (`name` of `/v2/userinfo`).
pub const DISPLAY_NAME: &str = "Herald Test";
/// LinkedIn shows no handle to self-serve apps, so the name is all Herald can display.
pub const USERNAME: &str = DISPLAY_NAME;

/// `expires_in` of every access token: 60 days.
const ACCESS_TTL_SECS: i64 = 5_184_000;
/// Lifetime of a refresh token chain, counted from the first one: 365 days.
const REFRESH_TTL_SECS: i64 = 31_536_000;
/// How long an authorization code can be exchanged.
const CODE_TTL_SECS: i64 = 30 * 60;
/// The scopes the authorize request must ask for.
const REQUIRED_SCOPES: [&str; 3] = ["openid", "profile", "w_member_social"];

const INVALID_GRANT: &str = "The provided authorization grant or refresh token is invalid, expired or revoked.";
const INVALID_CODE: &str = "Unable to retrieve access token: appid/redirect uri/code verifier does not match authorization code. Or authorization code expired.";

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

/// A scripted answer for the next `POST /rest/posts`.
#[derive(Debug, Clone)]
pub struct ScriptedPost {
    /// HTTP status.
    pub status: u16,
    /// JSON body; `Value::Null` sends an empty body, as LinkedIn does on 201.
    pub body: Value,
    /// Extra headers (e.g. `x-restli-id`).
    pub headers: Vec<(String, String)>,
    /// Delay before answering (to provoke client timeouts).
    pub delay: Duration,
}

#[derive(Debug)]
struct Code {
    redirect_uri: String,
    issued_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct State {
    codes: HashMap<String, Code>,
    /// Access token → expiry.
    access_tokens: HashMap<String, DateTime<Utc>>,
    /// Refresh token → expiry (of the whole chain, fixed at the first issue).
    refresh_tokens: HashMap<String, DateTime<Utc>>,
    spent_refresh_tokens: Vec<String>,
    issued: Vec<String>,
    posts: Vec<(String, Value)>,
    scripted_tokens: VecDeque<ScriptedToken>,
    scripted_posts: VecDeque<ScriptedPost>,
    clock_offset: chrono::Duration,
    next_id: u64,
    deny_next_consent: bool,
    issue_refresh_tokens: bool,
}

impl State {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    /// A fresh token-looking string; recorded in `issued` when `record`.
    fn mint(&mut self, prefix: &str, record: bool) -> String {
        let token = format!("{prefix}{}", random_b64(48));
        if record {
            self.issued.push(token.clone());
        }
        token
    }

    fn access_live(&self, token: &str) -> bool {
        self.access_tokens.get(token).is_some_and(|expiry| *expiry > self.now())
    }

    fn refresh_live(&self, token: &str) -> bool {
        self.refresh_tokens.get(token).is_some_and(|expiry| *expiry > self.now())
    }
}

/// The fake LinkedIn server.
#[derive(Debug, Clone)]
pub struct FakeLinkedin {
    /// `http://127.0.0.1:{port}`.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    recorder: Recorder,
}

fn random_b64(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
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

fn invalid_token() -> Response {
    json(401, json!({"serviceErrorCode": 65600, "message": "Invalid access token", "status": 401}))
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    json(status, json!({"error": error, "error_description": description}))
}

fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

fn query(req: &Request) -> HashMap<String, String> {
    form(req.uri().query().unwrap_or(""))
}

fn header_str<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn bearer(req: &Request) -> Option<&str> {
    header_str(req, header::AUTHORIZATION.as_str()).and_then(|v| v.strip_prefix("Bearer "))
}

/// A syntactically JWT-shaped OIDC ID token (unsigned dummy signature).
fn id_token(now: DateTime<Utc>) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"typ": "JWT", "alg": "RS256", "kid": "fake-linkedin"}).to_string());
    let claims = json!({
        "iss": "https://www.linkedin.com/oauth",
        "aud": CLIENT_ID,
        "iat": now.timestamp(),
        "exp": now.timestamp() + 3600,
        "sub": USER_ID,
        "name": DISPLAY_NAME,
        "given_name": "Herald",
        "family_name": "Test",
    });
    format!("{header}.{}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()), random_b64(64))
}

impl FakeLinkedin {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State { next_id: 7_263_495_017_338_732_544, ..State::default() }));
        let recorder = Recorder::default();
        let routes = Route::new()
            .at("/oauth/v2/authorization", poem::get(authorize))
            .at("/oauth/v2/accessToken", poem::post(token_endpoint))
            .at("/v2/userinfo", poem::get(userinfo))
            .at("/rest/posts", poem::post(create_post))
            .data(state.clone());
        let base_url = serve_fake(routes, recorder.clone()).await;
        Self { base_url, state, recorder }
    }

    /// The settings that point Herald at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LINKEDIN_CLIENT_ID".into(), CLIENT_ID.into()),
            ("LINKEDIN_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("LINKEDIN_AUTH_URL".into(), format!("{}/oauth/v2/authorization", self.base_url)),
            ("LINKEDIN_TOKEN_URL".into(), format!("{}/oauth/v2/accessToken", self.base_url)),
            ("LINKEDIN_API_BASE".into(), self.base_url.clone()),
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

    /// Posts created: (URN as sent in `x-restli-id`, request body).
    pub fn posts(&self) -> Vec<(String, Value)> {
        self.state.lock().expect("fake state").posts.clone()
    }

    /// Whether LinkedIn still accepts this token (a known, unexpired access or refresh token).
    pub fn token_is_live(&self, token: &str) -> bool {
        let state = self.state.lock().expect("fake state");
        state.access_live(token) || state.refresh_live(token)
    }

    /// Moves the fake's clock forward (codes and tokens age).
    pub fn advance(&self, by: chrono::Duration) {
        self.state.lock().expect("fake state").clock_offset += by;
    }

    /// Makes every access token issued so far invalid, as if 60 days had passed.
    pub fn expire_access_tokens(&self) {
        let mut state = self.state.lock().expect("fake state");
        let past = state.now() - chrono::Duration::seconds(1);
        for expiry in state.access_tokens.values_mut() {
            *expiry = past;
        }
    }

    /// Whether code exchanges also return a refresh token (as for approved MDP partners). Off by
    /// default, as for self-serve apps.
    pub fn issue_refresh_tokens(&self, issue: bool) {
        self.state.lock().expect("fake state").issue_refresh_tokens = issue;
    }

    /// The next authorize request redirects back with `error=user_cancelled_authorize` instead of
    /// a code, as when the member clicks "Cancel".
    pub fn deny_next_consent(&self) {
        self.state.lock().expect("fake state").deny_next_consent = true;
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

    /// Queues a scripted answer for the next `POST /rest/posts` that passes the header and token
    /// checks. A `Value::Null` body is sent empty.
    pub fn script_post(&self, status: u16, body: Value, headers: Vec<(String, String)>, delay: Duration) {
        self.state.lock().expect("fake state").scripted_posts.push_back(ScriptedPost { status, body, headers, delay });
    }
}

/// The consent page: LinkedIn shows it to the member; the fake consents at once and redirects
/// back with a code, as LinkedIn does after the member clicks "Allow".
#[handler]
fn authorize(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    let query = query(req);
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code" {
        return bad_request_text("Invalid response_type: expected code");
    }
    if get("client_id") != CLIENT_ID {
        return bad_request_text("The passed in client_id is invalid");
    }
    let state_param = get("state");
    if state_param.is_empty() {
        return bad_request_text("Missing state parameter");
    }
    let scopes: Vec<String> = get("scope").split(' ').map(str::to_owned).collect();
    if let Some(missing) = REQUIRED_SCOPES.iter().find(|s| !scopes.iter().any(|g| g == *s)) {
        return bad_request_text(&format!("Scope \"{missing}\" is required but was not requested"));
    }
    let redirect_uri = get("redirect_uri");
    let Ok(mut location) = url::Url::parse(&redirect_uri) else {
        return bad_request_text("Invalid redirect_uri");
    };
    let mut state = state.lock().expect("fake state");
    if std::mem::take(&mut state.deny_next_consent) {
        location
            .query_pairs_mut()
            .append_pair("error", "user_cancelled_authorize")
            .append_pair("error_description", "The user cancelled the authorization")
            .append_pair("state", &state_param);
    } else {
        let code = state.mint("AQT", false);
        let issued_at = state.now();
        state.codes.insert(code.clone(), Code { redirect_uri, issued_at });
        location.query_pairs_mut().append_pair("code", &code).append_pair("state", &state_param);
    }
    Response::builder().status(StatusCode::FOUND).header(header::LOCATION, location.as_str()).finish()
}

/// `POST /oauth/v2/accessToken`: `authorization_code` and `refresh_token` grants, client
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
        return oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded");
    }
    let params = form(&body.into_string().await.unwrap_or_default());
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        return oauth_error(401, "invalid_client", "Client authentication failed");
    }
    let mut state = state.lock().expect("fake state");
    let now = state.now();
    match get("grant_type").as_str() {
        "authorization_code" => {
            let Some(code) = state.codes.remove(&get("code")) else {
                return oauth_error(400, "invalid_request", INVALID_CODE);
            };
            if now - code.issued_at > chrono::Duration::seconds(CODE_TTL_SECS)
                || code.redirect_uri != get("redirect_uri")
            {
                return oauth_error(400, "invalid_request", INVALID_CODE);
            }
            let access = state.mint("AQV", true);
            state.access_tokens.insert(access.clone(), now + chrono::Duration::seconds(ACCESS_TTL_SECS));
            let mut body = json!({
                "access_token": access,
                "expires_in": ACCESS_TTL_SECS,
                "scope": "openid,profile,w_member_social",
                "token_type": "Bearer",
                "id_token": id_token(now),
            });
            if state.issue_refresh_tokens {
                let refresh = state.mint("AQX", true);
                state.refresh_tokens.insert(refresh.clone(), now + chrono::Duration::seconds(REFRESH_TTL_SECS));
                body["refresh_token"] = json!(refresh);
                body["refresh_token_expires_in"] = json!(REFRESH_TTL_SECS);
            }
            json(200, body)
        }
        "refresh_token" => {
            let old = get("refresh_token");
            if !state.refresh_live(&old) {
                return oauth_error(400, "invalid_request", INVALID_GRANT);
            }
            let expiry = state.refresh_tokens.remove(&old).expect("live refresh token");
            state.spent_refresh_tokens.push(old);
            let access = state.mint("AQV", true);
            state.access_tokens.insert(access.clone(), now + chrono::Duration::seconds(ACCESS_TTL_SECS));
            // Refreshing does not extend the refresh token's lifetime: the new one inherits it.
            let refresh = state.mint("AQX", true);
            state.refresh_tokens.insert(refresh.clone(), expiry);
            json(
                200,
                json!({
                    "access_token": access,
                    "expires_in": ACCESS_TTL_SECS,
                    "refresh_token": refresh,
                    "refresh_token_expires_in": secs_until(expiry, now),
                    "scope": "openid,profile,w_member_social",
                }),
            )
        }
        other => oauth_error(400, "unsupported_grant_type", &format!("Unsupported grant type: {other}")),
    }
}

#[handler]
fn userinfo(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    let state = state.lock().expect("fake state");
    if !bearer(req).is_some_and(|t| state.access_live(t)) {
        return invalid_token();
    }
    json(
        200,
        json!({
            "sub": USER_ID,
            "name": DISPLAY_NAME,
            "given_name": "Herald",
            "family_name": "Test",
            "locale": {"country": "US", "language": "en"},
        }),
    )
}

/// `POST /rest/posts`: versioned Posts API, text posts as a member.
#[handler]
async fn create_post(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    match header_str(req, "linkedin-version") {
        None => {
            return json(
                400,
                json!({"message": "A version must be present. Please specify a version by adding the LinkedIn-Version header.", "status": 400}),
            );
        }
        Some(version) if version.len() != 6 || !version.bytes().all(|b| b.is_ascii_digit()) => {
            return json(
                400,
                json!({"message": format!("Invalid LinkedIn-Version header value \"{version}\": expected YYYYMM"), "status": 400}),
            );
        }
        Some(_) => {}
    }
    if header_str(req, "x-restli-protocol-version") != Some("2.0.0") {
        return json(400, json!({"message": "The X-Restli-Protocol-Version header must be 2.0.0", "status": 400}));
    }
    let scripted = {
        let mut state = state.lock().expect("fake state");
        if !bearer(req).is_some_and(|t| state.access_live(t)) {
            return invalid_token();
        }
        state.scripted_posts.pop_front()
    };
    if let Some(scripted) = scripted {
        tokio::time::sleep(scripted.delay).await;
        let mut response = if scripted.body.is_null() {
            Response::builder().status(StatusCode::from_u16(scripted.status).expect("valid status")).finish()
        } else {
            json(scripted.status, scripted.body)
        };
        for (name, value) in scripted.headers {
            response.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                value.parse().expect("header value"),
            );
        }
        return response;
    }
    let post: Value = match serde_json::from_str(&body.into_string().await.unwrap_or_default()) {
        Ok(value @ Value::Object(_)) => value,
        _ => return json(400, json!({"message": "Unable to parse the request body as a JSON object", "status": 400})),
    };
    let required = ["author", "commentary", "visibility", "distribution", "lifecycleState"];
    if let Some(missing) = required.iter().find(|f| post.get(**f).is_none_or(Value::is_null)) {
        return json(
            422,
            json!({"message": format!("ERROR :: /{missing} :: field is required but not found and has no default value"), "status": 422}),
        );
    }
    if post["author"] != json!(format!("urn:li:person:{USER_ID}")) {
        return json(
            403,
            json!({"serviceErrorCode": 100, "message": "Not enough permissions to access: partnerApiPostsExternal.CREATE.20260301", "status": 403}),
        );
    }
    let mut state = state.lock().expect("fake state");
    if let Some((urn, _)) = state.posts.iter().find(|(_, p)| p["commentary"] == post["commentary"]) {
        return json(
            422,
            json!({
                "errorDetailType": "com.linkedin.common.error.BadRequest",
                "message": format!("Content is a duplicate of {urn}"),
                "errorDetails": {"inputErrors": [{"description": "Duplicate post is detected", "input": {}, "code": "DUPLICATE_POST"}]},
                "status": 422,
            }),
        );
    }
    state.next_id += 1;
    let urn = format!("urn:li:share:{}", state.next_id);
    state.posts.push((urn.clone(), post));
    Response::builder().status(StatusCode::CREATED).header("x-restli-id", urn).finish()
}

impl crate::Fake for FakeLinkedin {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}
