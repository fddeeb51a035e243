//! A fake X that speaks X's OAuth 2.0 and API v2 wire format (PLATFORMS.md §2): the authorize
//! redirect, the token endpoint with Basic client auth, PKCE S256, 30-second codes and single-use
//! refresh tokens, `GET /2/users/me` and `POST /2/tweets`. It records every request so tests can
//! assert what X received, and can be told to fail the next tweets.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use poem::{
    Body, EndpointExt, IntoResponse, Request, Response, Route, handler,
    http::{StatusCode, header},
    web::Data,
};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{Recorder, serve_fake};

/// The client credentials the fake accepts.
pub const CLIENT_ID: &str = "fake-x-client-id";
/// The client secret the fake accepts.
pub const CLIENT_SECRET: &str = "fake-x-client-secret";
/// The X user every consent logs in as.
pub const USER_ID: &str = "2244994945";
/// Its username.
pub const USERNAME: &str = "heraldtest";

/// A scripted answer for the next `POST /2/tweets`.
#[derive(Debug, Clone)]
pub struct Scripted {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: serde_json::Value,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Delay before answering (to provoke client timeouts).
    pub delay: Duration,
}

#[derive(Debug)]
struct Code {
    challenge: String,
    method: String,
    redirect_uri: String,
    issued_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct State {
    codes: HashMap<String, Code>,
    access_tokens: HashMap<String, DateTime<Utc>>,
    refresh_tokens: HashMap<String, ()>,
    spent_refresh_tokens: Vec<String>,
    issued: Vec<String>,
    tweets: Vec<(String, String)>,
    /// The texts in `tweets`, for X's duplicate check at herd sizes.
    texts: std::collections::HashSet<String>,
    /// How long every `POST /2/tweets` takes to answer.
    tweet_delay: Duration,
    scripted: VecDeque<Scripted>,
    scripted_tokens: VecDeque<(u16, String, String, Duration)>,
    deny_next_consent: bool,
    clock_offset: chrono::Duration,
    access_ttl_secs: i64,
    next_id: u64,
    revoke_fails: bool,
    account: Option<(String, String)>,
}

impl State {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    fn mint(&mut self) -> String {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        self.issued.push(token.clone());
        token
    }
}

/// The fake X server.
#[derive(Debug, Clone)]
pub struct FakeX {
    /// `http://127.0.0.1:{port}`.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    recorder: Recorder,
}

fn json(status: u16, body: serde_json::Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("valid status"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
}

fn unauthorized() -> Response {
    json(
        401,
        serde_json::json!({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}),
    )
}

fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

impl FakeX {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            access_ttl_secs: 7200,
            next_id: 1_445_880_548_472_328_192,
            ..State::default()
        }));
        let recorder = Recorder::default();
        let routes = Route::new()
            .at("/i/oauth2/authorize", poem::get(authorize))
            .at("/2/oauth2/token", poem::post(token_endpoint))
            .at("/2/users/me", poem::get(users_me))
            .at("/2/tweets", poem::post(tweets))
            .at("/2/oauth2/revoke", poem::post(revoke))
            .data(state.clone());
        let base_url = serve_fake(routes, recorder.clone()).await;
        Self { base_url, state, recorder }
    }

    /// The settings that point Herald at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("TWITTER_CLIENT_ID".into(), CLIENT_ID.into()),
            ("TWITTER_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("TWITTER_AUTH_URL".into(), format!("{}/i/oauth2/authorize", self.base_url)),
            ("TWITTER_TOKEN_URL".into(), format!("{}/2/oauth2/token", self.base_url)),
            ("TWITTER_API_BASE".into(), self.base_url.clone()),
        ]
    }

    /// Every token the fake ever issued (access and refresh), to look for leaks.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.lock().expect("fake state").issued.clone()
    }

    /// Refresh tokens already rotated away.
    pub fn spent_refresh_tokens(&self) -> Vec<String> {
        self.state.lock().expect("fake state").spent_refresh_tokens.clone()
    }

    /// Tweets created: (id, text).
    pub fn tweets(&self) -> Vec<(String, String)> {
        self.state.lock().expect("fake state").tweets.clone()
    }

    /// Every text `POST /2/tweets` received (created or refused), with how many times: the check
    /// that nothing was sent twice.
    pub fn texts_received(&self) -> HashMap<String, usize> {
        let mut texts = HashMap::new();
        for request in crate::Fake::requests_to(self, "/2/tweets") {
            let body: serde_json::Value = serde_json::from_str(&request.body).expect("tweet body");
            *texts.entry(body["text"].as_str().expect("text").to_owned()).or_insert(0) += 1;
        }
        texts
    }

    /// Moves the fake's clock forward (codes and tokens age).
    pub fn advance(&self, by: chrono::Duration) {
        self.state.lock().expect("fake state").clock_offset += by;
    }

    /// Makes every access token issued so far invalid, as if two hours had passed.
    pub fn expire_access_tokens(&self) {
        let mut state = self.state.lock().expect("fake state");
        let past = state.now() - chrono::Duration::seconds(1);
        for expiry in state.access_tokens.values_mut() {
            *expiry = past;
        }
    }

    /// Logs the next consents in as another X account (id, username).
    pub fn sign_in_as(&self, id: &str, username: &str) {
        self.state.lock().expect("fake state").account = Some((id.to_owned(), username.to_owned()));
    }

    /// Queues a canned answer for the next call of the token endpoint (recorded, not processed).
    pub fn script_token(&self, status: u16, body: String, content_type: &str, delay: Duration) {
        self.state.lock().expect("fake state").scripted_tokens.push_back((
            status,
            body,
            content_type.to_owned(),
            delay,
        ));
    }

    /// The next consent redirects back with `error=access_denied`, as when the user cancels.
    pub fn deny_next_consent(&self) {
        self.state.lock().expect("fake state").deny_next_consent = true;
    }

    /// Makes `POST /2/oauth2/revoke` answer 503 from now on.
    pub fn fail_revocation(&self) {
        self.state.lock().expect("fake state").revoke_fails = true;
    }

    /// Whether X still accepts this token (access or refresh).
    pub fn token_is_live(&self, token: &str) -> bool {
        let state = self.state.lock().expect("fake state");
        state.access_tokens.contains_key(token) || state.refresh_tokens.contains_key(token)
    }

    /// Makes every later `POST /2/tweets` take `delay` to answer (a slow X keeps posts in flight).
    pub fn set_tweet_delay(&self, delay: Duration) {
        self.state.lock().expect("fake state").tweet_delay = delay;
    }

    /// Queues a scripted answer for the next `POST /2/tweets`.
    pub fn script_tweet(&self, status: u16, body: serde_json::Value, headers: Vec<(String, String)>, delay: Duration) {
        self.state.lock().expect("fake state").scripted.push_back(Scripted { status, body, headers, delay });
    }
}

/// The consent page: X shows it to the user; the fake consents at once and redirects back with
/// a code, as X does after the user clicks "Authorize app".
#[handler]
fn authorize(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    let bad = |m: &str| Response::builder().status(StatusCode::BAD_REQUEST).body(m.to_owned());
    if get("response_type") != "code" || get("client_id") != CLIENT_ID {
        return bad("Something went wrong: invalid client or response type");
    }
    if get("code_challenge").is_empty() || !matches!(get("code_challenge_method").as_str(), "S256" | "plain") {
        return bad("Something went wrong: PKCE is required");
    }
    let scopes: Vec<String> = get("scope").split(' ').map(str::to_owned).collect();
    if !scopes.iter().any(|s| s == "offline.access") || !scopes.iter().any(|s| s == "tweet.write") {
        return bad("Something went wrong: scopes");
    }
    let state_param = get("state");
    if state_param.is_empty() || state_param.len() > 500 {
        return bad("Something went wrong: state");
    }
    let redirect_uri = get("redirect_uri");
    let mut state = state.lock().expect("fake state");
    if std::mem::take(&mut state.deny_next_consent) {
        let mut location = url::Url::parse(&redirect_uri).expect("redirect uri");
        location
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user denied the request")
            .append_pair("state", &state_param);
        return Response::builder().status(StatusCode::FOUND).header(header::LOCATION, location.as_str()).finish();
    }
    let code = state.mint();
    let issued_at = state.now();
    state.codes.insert(
        code.clone(),
        Code {
            challenge: get("code_challenge"),
            method: get("code_challenge_method"),
            redirect_uri: redirect_uri.clone(),
            issued_at,
        },
    );
    let mut location = url::Url::parse(&redirect_uri).expect("redirect uri");
    location.query_pairs_mut().append_pair("state", &state_param).append_pair("code", &code);
    Response::builder().status(StatusCode::FOUND).header(header::LOCATION, location.as_str()).finish()
}

fn client_authenticated(req: &Request) -> bool {
    let expected = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

fn client_unauthorized() -> Response {
    json(
        401,
        serde_json::json!({"error": "unauthorized_client", "error_description": "Missing valid authorization header"}),
    )
}

/// `POST /2/oauth2/revoke`: RFC 7009, confidential client.
#[handler]
async fn revoke(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    if !client_authenticated(req) {
        return client_unauthorized();
    }
    let params = form(&body.into_string().await.unwrap_or_default());
    let mut state = state.lock().expect("fake state");
    if state.revoke_fails {
        return json(
            503,
            serde_json::json!({"title": "Service Unavailable", "detail": "Service Unavailable", "status": 503}),
        );
    }
    let token = params.get("token").cloned().unwrap_or_default();
    state.access_tokens.remove(&token);
    state.refresh_tokens.remove(&token);
    json(200, serde_json::json!({"revoked": true}))
}

#[handler]
async fn token_endpoint(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let scripted = state.lock().expect("fake state").scripted_tokens.pop_front();
    if let Some((status, body, content_type, delay)) = scripted {
        tokio::time::sleep(delay).await;
        return Response::builder()
            .status(StatusCode::from_u16(status).expect("status"))
            .header(header::CONTENT_TYPE, content_type)
            .body(body);
    }
    if !client_authenticated(req) {
        return client_unauthorized();
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return json(
            400,
            serde_json::json!({"error": "invalid_request", "error_description": "Content-Type must be form encoded"}),
        );
    }
    let params = form(&body.into_string().await.unwrap_or_default());
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let mut state = state.lock().expect("fake state");
    let invalid = |what: &str| {
        json(
            400,
            serde_json::json!({"error": "invalid_request", "error_description": format!("Value passed for the {what} was invalid.")}),
        )
    };
    match get("grant_type").as_str() {
        "authorization_code" => {
            let Some(code) = state.codes.remove(&get("code")) else {
                return invalid("authorization code");
            };
            if state.now() - code.issued_at > chrono::Duration::seconds(30) || code.redirect_uri != get("redirect_uri")
            {
                return invalid("authorization code");
            }
            let verifier = get("code_verifier");
            let computed = match code.method.as_str() {
                "S256" => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
                _ => verifier,
            };
            if computed != code.challenge {
                return invalid("code_verifier");
            }
        }
        "refresh_token" => {
            let old = get("refresh_token");
            if state.refresh_tokens.remove(&old).is_none() {
                return invalid("token");
            }
            state.spent_refresh_tokens.push(old);
        }
        _ => return json(400, serde_json::json!({"error": "unsupported_grant_type"})),
    }
    let access = state.mint();
    let refresh = state.mint();
    let expiry = state.now() + chrono::Duration::seconds(state.access_ttl_secs);
    state.access_tokens.insert(access.clone(), expiry);
    state.refresh_tokens.insert(refresh.clone(), ());
    json(
        200,
        serde_json::json!({
            "token_type": "bearer",
            "expires_in": state.access_ttl_secs,
            "access_token": access,
            "scope": "tweet.read tweet.write users.read media.write offline.access",
            "refresh_token": refresh,
        }),
    )
}

fn bearer_valid(req: &Request, state: &State) -> bool {
    let token =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    token.and_then(|t| state.access_tokens.get(t)).is_some_and(|expiry| *expiry > state.now())
}

#[handler]
fn users_me(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    let state = state.lock().expect("fake state");
    if !bearer_valid(req, &state) {
        return unauthorized();
    }
    let (id, username) = state.account.clone().unwrap_or_else(|| (USER_ID.into(), USERNAME.into()));
    json(200, serde_json::json!({"data": {"id": id, "name": "Herald Test", "username": username}}))
}

#[handler]
async fn tweets(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let (scripted, delay) = {
        let mut state = state.lock().expect("fake state");
        if !bearer_valid(req, &state) {
            return unauthorized();
        }
        (state.scripted.pop_front(), state.tweet_delay)
    };
    tokio::time::sleep(delay).await;
    if let Some(scripted) = scripted {
        tokio::time::sleep(scripted.delay).await;
        let mut response = json(scripted.status, scripted.body);
        for (name, value) in scripted.headers {
            response.headers_mut().insert(
                poem::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                value.parse().expect("header value"),
            );
        }
        return response;
    }
    let body: serde_json::Value = match serde_json::from_str(&body.into_string().await.unwrap_or_default()) {
        Ok(v) => v,
        Err(_) => {
            return json(
                400,
                serde_json::json!({"title": "Invalid Request", "detail": "body is not JSON", "status": 400}),
            );
        }
    };
    let Some(text) = body.get("text").and_then(|t| t.as_str()).map(str::to_owned) else {
        return json(
            400,
            serde_json::json!({"title": "Invalid Request", "detail": "text or media is required", "status": 400}),
        );
    };
    let mut state = state.lock().expect("fake state");
    if !state.texts.insert(text.clone()) {
        return json(
            403,
            serde_json::json!({"detail": "You are not allowed to create a Tweet with duplicate content.", "type": "about:blank", "title": "Forbidden", "status": 403}),
        );
    }
    state.next_id += 1;
    let id = state.next_id.to_string();
    state.tweets.push((id.clone(), text.clone()));
    json(201, serde_json::json!({"data": {"id": id, "text": text}})).into_response()
}

impl crate::Fake for FakeX {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}
