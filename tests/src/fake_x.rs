//! A fake X that speaks X's OAuth 2.0 and API v2 wire format (PLATFORMS.md §2): the authorize
//! redirect, the token endpoint with Basic client auth, PKCE S256, 30-second codes and single-use
//! refresh tokens, `GET /2/users/me`, `POST /2/tweets` (text and media), and the v2 media upload
//! endpoints: the one-request `POST /2/media/upload` for images, the chunked
//! `initialize` / `{id}/append` / `{id}/finalize` flow for videos and GIFs, and
//! `GET /2/media/upload?command=STATUS` whose processing advances one step per poll. Uploaded
//! bytes are counted and hashed as they stream in, never kept. It records every request so tests
//! can assert what X received, and can be told to fail the next tweets, media steps or processing.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use poem::{
    Body, EndpointExt, FromRequest, IntoResponse, Request, Response, Route, handler,
    http::{StatusCode, header},
    web::{Data, Multipart, RequestBody},
};
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::{Recorder, Serve, hex, serve_fake_with};

/// The client credentials the fake accepts.
pub const CLIENT_ID: &str = "fake-x-client-id";
/// The client secret the fake accepts.
pub const CLIENT_SECRET: &str = "fake-x-client-secret";
/// The X user every consent logs in as.
pub const USER_ID: &str = "2244994945";
/// Its username.
pub const USERNAME: &str = "heraldtest";
/// The largest image (or GIF) `POST /2/media/upload` accepts: 5 MB.
pub const MAX_IMAGE_BYTES: u64 = 5 * 1024 * 1024;
/// The largest chunk one `append` accepts: 5 MiB.
pub const MAX_CHUNK_BYTES: u64 = 5 * 1024 * 1024;
/// The largest `total_bytes` for a `tweet_video`: 512 MB.
pub const MAX_VIDEO_BYTES: u64 = 512 * 1024 * 1024;
/// The largest `total_bytes` for a chunked `tweet_gif`: 15 MB.
pub const MAX_GIF_BYTES: u64 = 15 * 1024 * 1024;
/// How long an uploaded media id stays usable.
const MEDIA_TTL_SECS: i64 = 86_400;

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

/// A media endpoint whose next answer a test can script with [`FakeX::script_media`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaStep {
    /// `POST /2/media/upload` (simple upload).
    Upload,
    /// `POST /2/media/upload/initialize`.
    Initialize,
    /// `POST /2/media/upload/{id}/append`.
    Append,
    /// `POST /2/media/upload/{id}/finalize`.
    Finalize,
    /// `GET /2/media/upload?command=STATUS`.
    Status,
}

/// A media upload as the fake holds it (simple or chunked), for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// `data.id`, a numeric string.
    pub id: String,
    /// `data.media_key` (`3_{id}` for simple uploads, `7_{id}` for chunked ones).
    pub media_key: String,
    /// `media_category`: `tweet_image`, `tweet_gif` or `tweet_video`.
    pub category: String,
    /// `media_type` as declared (simple uploads: declared, else the part's type, else sniffed).
    pub media_type: String,
    /// Whether it came through initialize / append / finalize.
    pub chunked: bool,
    /// `total_bytes` declared at initialize (simple uploads: the bytes received).
    pub total_bytes: u64,
    /// Bytes accepted so far.
    pub appended_bytes: u64,
    /// The size of each accepted segment, in `segment_index` order.
    pub segments: Vec<u64>,
    /// SHA-256 (lower-case hex) of the bytes accepted so far, in order.
    pub sha256: String,
    /// Whether it was finalized (simple uploads are at once).
    pub finalized: bool,
    /// `processing_info.state`: `None` for media X does not process (images), else `pending`,
    /// `in_progress`, `succeeded` or `failed`.
    pub processing: Option<String>,
    /// How many STATUS polls it was asked about.
    pub status_polls: u32,
}

#[derive(Debug)]
struct Media {
    info: Upload,
    hasher: Sha256,
    /// "in_progress" answers still to give before the final state.
    polls_left: u32,
    /// Whether processing ends in `failed`.
    fail: bool,
    created_at: DateTime<Utc>,
}

#[derive(Debug)]
struct Tweet {
    id: String,
    text: String,
    media_ids: Vec<String>,
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
    tweets: Vec<Tweet>,
    /// The texts in `tweets`, for X's duplicate check at herd sizes.
    texts: HashSet<String>,
    /// Every media upload, in creation order.
    media: Vec<Media>,
    /// How many STATUS polls answer `in_progress` before the final state.
    processing_polls: u32,
    /// `check_after_secs` in processing answers.
    check_after_secs: u64,
    /// The next finalized video/GIF ends processing in `failed`.
    fail_next_processing: bool,
    scripted_media: HashMap<MediaStep, VecDeque<(u16, Value)>>,
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

    fn media_mut(&mut self, id: &str) -> Option<&mut Media> {
        let now = self.now();
        self.media.iter_mut().find(|m| m.info.id == id && !m.expired(now))
    }

    fn next_media_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
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
        Self::start_with(Serve::default()).await
    }

    /// Starts it where and as `serve` says (the sandbox's fixed ports and wrapping).
    pub async fn start_with(serve: Serve) -> Self {
        let state = Arc::new(Mutex::new(State {
            access_ttl_secs: 7200,
            next_id: 1_445_880_548_472_328_192,
            processing_polls: 2,
            check_after_secs: 1,
            ..State::default()
        }));
        let recorder = Recorder::default();
        let routes = Route::new()
            .at("/i/oauth2/authorize", poem::get(authorize))
            .at("/2/oauth2/token", poem::post(token_endpoint))
            .at("/2/users/me", poem::get(users_me))
            .at("/2/tweets", poem::post(tweets))
            .at("/2/media/upload", poem::get(media_status).post(media_upload))
            .at("/2/media/upload/initialize", poem::post(media_initialize))
            .at("/2/media/upload/:id/append", poem::post(media_append))
            .at("/2/media/upload/:id/finalize", poem::post(media_finalize))
            .at("/2/oauth2/revoke", poem::post(revoke))
            .data(state.clone());
        let base_url = serve_fake_with(routes, recorder.clone(), serve).await;
        Self { base_url, state, recorder }
    }

    /// The settings that point Herald at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        Self::env_at(&self.base_url)
    }

    /// The settings that point Herald at this fake served at `base_url`.
    pub fn env_at(base_url: &str) -> Vec<(String, String)> {
        vec![
            ("TWITTER_CLIENT_ID".into(), CLIENT_ID.into()),
            ("TWITTER_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("TWITTER_AUTH_URL".into(), format!("{base_url}/i/oauth2/authorize")),
            ("TWITTER_TOKEN_URL".into(), format!("{base_url}/2/oauth2/token")),
            ("TWITTER_API_BASE".into(), base_url.to_owned()),
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

    /// Tweets created: (id, text); a media tweet sent without text has text "".
    pub fn tweets(&self) -> Vec<(String, String)> {
        self.state.lock().expect("fake state").tweets.iter().map(|t| (t.id.clone(), t.text.clone())).collect()
    }

    /// Tweets created with media, in order: (tweet id, text, media ids as sent).
    pub fn media_tweets(&self) -> Vec<(String, String, Vec<String>)> {
        let state = self.state.lock().expect("fake state");
        state
            .tweets
            .iter()
            .filter(|t| !t.media_ids.is_empty())
            .map(|t| (t.id.clone(), t.text.clone(), t.media_ids.clone()))
            .collect()
    }

    /// Every media upload (simple and chunked), in creation order, with its current state.
    pub fn uploads(&self) -> Vec<Upload> {
        self.state.lock().expect("fake state").media.iter().map(|m| m.info.clone()).collect()
    }

    /// One media upload by its id.
    pub fn upload(&self, id: &str) -> Option<Upload> {
        self.state.lock().expect("fake state").media.iter().find(|m| m.info.id == id).map(|m| m.info.clone())
    }

    /// How many STATUS polls answer `in_progress` before the final state (default 2; affects
    /// uploads finalized later).
    pub fn set_processing_polls(&self, polls: u32) {
        self.state.lock().expect("fake state").processing_polls = polls;
    }

    /// The `check_after_secs` that finalize and STATUS answers carry (default 1).
    pub fn set_check_after_secs(&self, secs: u64) {
        self.state.lock().expect("fake state").check_after_secs = secs;
    }

    /// The next video/GIF finalized ends processing in `failed` (`InvalidMedia`).
    pub fn fail_next_processing(&self) {
        self.state.lock().expect("fake state").fail_next_processing = true;
    }

    /// Queues a canned answer for the next call of one media endpoint (recorded, not processed:
    /// an appended chunk is not counted).
    pub fn script_media(&self, step: MediaStep, status: u16, body: serde_json::Value) {
        self.state.lock().expect("fake state").scripted_media.entry(step).or_default().push_back((status, body));
    }

    /// Every text `POST /2/tweets` received (created or refused), with how many times: the check
    /// that nothing was sent twice. Requests without a text (media only) are not counted.
    pub fn texts_received(&self) -> HashMap<String, usize> {
        let mut texts = HashMap::new();
        for request in crate::Fake::requests_to(self, "/2/tweets") {
            let Ok(body) = serde_json::from_str::<serde_json::Value>(&request.body) else { continue };
            if let Some(text) = body.get("text").and_then(|t| t.as_str()) {
                *texts.entry(text.to_owned()).or_insert(0) += 1;
            }
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
    let text = match body.get("text") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => return invalid_request("text must be a string"),
    };
    let media = body.get("media").filter(|m| !m.is_null());
    if text.is_none() && media.is_none() {
        return json(
            400,
            serde_json::json!({"title": "Invalid Request", "detail": "text or media is required", "status": 400}),
        );
    }
    let mut state = state.lock().expect("fake state");
    let media_ids = match media {
        None => Vec::new(),
        Some(media) => match tweet_media(&state, media) {
            Some(ids) => ids,
            None => return invalid_media_ids(),
        },
    };
    let text = text.unwrap_or_default();
    // A media tweet without text duplicates nothing; every other text goes through X's check.
    let checked = !text.is_empty() || media_ids.is_empty();
    if checked && !state.texts.insert(text.clone()) {
        return json(
            403,
            serde_json::json!({"detail": "You are not allowed to create a Tweet with duplicate content.", "type": "about:blank", "title": "Forbidden", "status": 403}),
        );
    }
    state.next_id += 1;
    let id = state.next_id.to_string();
    state.tweets.push(Tweet { id: id.clone(), text: text.clone(), media_ids });
    json(201, serde_json::json!({"data": {"id": id, "text": text}})).into_response()
}

/// The ids of `media` (`{"media_ids":[…]}`) if X would attach them: 1 to 4 distinct ids of live,
/// finalized media whose processing (if any) succeeded; one video or GIF alone, or 1–4 images.
fn tweet_media(state: &State, media: &Value) -> Option<Vec<String>> {
    let ids = media.get("media_ids")?.as_array()?;
    if ids.is_empty() || ids.len() > 4 {
        return None;
    }
    let now = state.now();
    let mut seen = HashSet::new();
    let mut motion = 0;
    for id in ids {
        let id = id.as_str()?;
        if !seen.insert(id) {
            return None;
        }
        let media = state.media.iter().find(|m| m.info.id == id && !m.expired(now))?;
        let ready = media.info.finalized && media.info.processing.as_deref().is_none_or(|s| s == "succeeded");
        if !ready {
            return None;
        }
        if media.info.category != "tweet_image" {
            motion += 1;
        }
    }
    if motion > 0 && ids.len() > 1 {
        return None;
    }
    Some(ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
}

impl Media {
    fn expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.created_at + chrono::Duration::seconds(MEDIA_TTL_SECS)
    }

    /// Seconds until the id expires.
    fn expires_after_secs(&self, now: DateTime<Utc>) -> i64 {
        (self.created_at + chrono::Duration::seconds(MEDIA_TTL_SECS) - now).num_seconds().max(0)
    }

    /// `processing_info` as X shows it now, if the media is processed.
    fn processing_info(&self, check_after_secs: u64) -> Option<Value> {
        Some(match self.info.processing.as_deref()? {
            "succeeded" => serde_json::json!({"state": "succeeded", "progress_percent": 100}),
            "failed" => serde_json::json!({
                "state": "failed",
                "error": {"code": 1, "name": "InvalidMedia", "message": "Your media file is not supported"},
            }),
            "in_progress" => {
                serde_json::json!({"state": "in_progress", "check_after_secs": check_after_secs, "progress_percent": 50})
            }
            state => serde_json::json!({"state": state, "check_after_secs": check_after_secs}),
        })
    }
}

/// X's 400 problem for a request it refuses.
fn invalid_request(detail: &str) -> Response {
    json(
        400,
        serde_json::json!({"title": "Invalid Request", "detail": detail, "type": "https://api.x.com/2/problems/invalid-request", "status": 400}),
    )
}

/// X's 400 for `media.media_ids` it will not attach.
fn invalid_media_ids() -> Response {
    json(
        400,
        serde_json::json!({
            "errors": [{"message": "Your media IDs are invalid."}],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.x.com/2/problems/invalid-request",
            "status": 400,
        }),
    )
}

/// Reads (and discards) the rest of a request body, then answers `response`: a client still
/// sending a large upload gets the answer rather than a reset connection.
async fn drained(body: Body, response: Response) -> Response {
    drain(body).await;
    response
}

/// Reads and discards a request body.
async fn drain(body: Body) {
    let mut stream = body.into_bytes_stream();
    while let Some(Ok(_)) = stream.next().await {}
}

/// Checks the bearer token and pops a scripted answer for `step`: `Err` is the answer to give.
async fn media_gate(req: &Request, body: Body, state: &Arc<Mutex<State>>, step: MediaStep) -> Result<Body, Response> {
    let scripted = {
        let mut state = state.lock().expect("fake state");
        if !bearer_valid(req, &state) {
            None
        } else {
            Some(state.scripted_media.get_mut(&step).and_then(VecDeque::pop_front))
        }
    };
    match scripted {
        None => Err(drained(body, unauthorized()).await),
        Some(Some((status, reply))) => Err(drained(body, json(status, reply)).await),
        Some(None) => Ok(body),
    }
}

/// The `media` part of a multipart body: counted and hashed, not kept.
#[derive(Debug)]
struct MediaPart {
    size: u64,
    hasher: Sha256,
    content_type: Option<String>,
    /// The first bytes, to recognise the image format.
    head: Vec<u8>,
}

/// A multipart body: its small text fields, and the `media` part streamed into a clone of `base`
/// (the upload's running hash, so an appended chunk continues it).
#[derive(Debug)]
struct Parts {
    fields: HashMap<String, String>,
    media: Option<MediaPart>,
}

async fn read_multipart(req: &Request, body: Body, base: Sha256) -> Result<Parts, Response> {
    let malformed = || invalid_request("The request body is not valid multipart/form-data.");
    if !req.content_type().is_some_and(|ct| ct.starts_with("multipart/form-data")) {
        return Err(drained(body, invalid_request("Content-Type must be multipart/form-data.")).await);
    }
    let Ok(mut multipart) = Multipart::from_request(req, &mut RequestBody::new(body)).await else {
        return Err(malformed());
    };
    let mut parts = Parts { fields: HashMap::new(), media: None };
    let mut twice = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(_) => return Err(malformed()),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let content_type = field.content_type().map(str::to_owned);
        let is_media = name == "media";
        let mut part = MediaPart { size: 0, hasher: base.clone(), content_type, head: Vec::new() };
        let mut text = Vec::new();
        let mut reader = std::pin::pin!(field.into_async_read());
        loop {
            let n = reader.read(&mut buf).await.map_err(|_| malformed())?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            if is_media {
                part.size += n as u64;
                part.hasher.update(chunk);
                let room = 16usize.saturating_sub(part.head.len());
                part.head.extend_from_slice(&chunk[..room.min(n)]);
            } else if text.len() < 4096 {
                text.extend_from_slice(chunk);
            }
        }
        if is_media {
            twice |= parts.media.is_some();
            parts.media = Some(part);
        } else {
            parts.fields.insert(name, String::from_utf8_lossy(&text).trim().to_owned());
        }
    }
    if twice {
        return Err(invalid_request("media must be given once."));
    }
    Ok(parts)
}

/// The image type the first bytes of a file show, if any.
fn sniff_image(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(b"\x89PNG") {
        Some("image/png")
    } else if head.starts_with(b"GIF8") {
        Some("image/gif")
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// `POST /2/media/upload`: the one-request upload of an image (or a small GIF), multipart fields
/// `media`, `media_category`, optional `media_type`.
#[handler]
async fn media_upload(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let body = match media_gate(req, body, &state, MediaStep::Upload).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let parts = match read_multipart(req, body, Sha256::new()).await {
        Ok(parts) => parts,
        Err(answer) => return answer,
    };
    let Some(media) = parts.media else {
        return invalid_request("media is required.");
    };
    let category = parts.fields.get("media_category").cloned().unwrap_or_default();
    if !matches!(category.as_str(), "tweet_image" | "tweet_gif") {
        return invalid_request(
            "media_category must be tweet_image or tweet_gif for this endpoint; use initialize for videos.",
        );
    }
    if media.size == 0 {
        return invalid_request("media is empty.");
    }
    if media.size > MAX_IMAGE_BYTES {
        return invalid_request(&format!(
            "File size exceeds {MAX_IMAGE_BYTES} bytes: {} bytes (use the chunked upload).",
            media.size
        ));
    }
    let declared = parts.fields.get("media_type").filter(|t| !t.is_empty()).cloned();
    let media_type = declared
        .or_else(|| media.content_type.clone().filter(|t| t.starts_with("image/")))
        .or_else(|| sniff_image(&media.head).map(str::to_owned))
        .unwrap_or_else(|| "image/jpeg".to_owned());
    if !matches!(media_type.as_str(), "image/jpeg" | "image/png" | "image/gif" | "image/webp") {
        return invalid_request(&format!("media_type {media_type} is not supported for {category}."));
    }
    if category == "tweet_gif" && media_type != "image/gif" {
        return invalid_request("media_type must be image/gif for tweet_gif.");
    }
    let mut state = state.lock().expect("fake state");
    let id = state.next_media_id();
    let created_at = state.now();
    let sha256 = hex(&media.hasher.clone().finalize());
    let info = Upload {
        id: id.clone(),
        media_key: format!("3_{id}"),
        category,
        media_type: media_type.clone(),
        chunked: false,
        total_bytes: media.size,
        appended_bytes: media.size,
        segments: vec![media.size],
        sha256,
        finalized: true,
        processing: None,
        status_polls: 0,
    };
    let answer = serde_json::json!({"data": {
        "id": id,
        "media_key": info.media_key,
        "size": media.size,
        "expires_after_secs": MEDIA_TTL_SECS,
        "image": {"image_type": media_type, "w": 1, "h": 1},
    }});
    state.media.push(Media { info, hasher: media.hasher, polls_left: 0, fail: false, created_at });
    json(200, answer)
}

/// `POST /2/media/upload/initialize`: JSON `media_type`, `total_bytes`, `media_category`
/// (`tweet_video` or `tweet_gif`).
#[handler]
async fn media_initialize(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let body = match media_gate(req, body, &state, MediaStep::Initialize).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let Ok(body) = serde_json::from_str::<Value>(&body.into_string().await.unwrap_or_default()) else {
        return invalid_request("The request body is not valid JSON.");
    };
    let category = body.get("media_category").and_then(Value::as_str).unwrap_or_default().to_owned();
    let media_type = body.get("media_type").and_then(Value::as_str).unwrap_or_default().to_owned();
    let Some(total_bytes) = body.get("total_bytes").and_then(Value::as_u64).filter(|n| *n > 0) else {
        return invalid_request("total_bytes is required and must be a positive integer.");
    };
    let limit = match category.as_str() {
        "tweet_video" if media_type.starts_with("video/") => MAX_VIDEO_BYTES,
        "tweet_gif" if media_type == "image/gif" => MAX_GIF_BYTES,
        "tweet_video" | "tweet_gif" => {
            return invalid_request(&format!("media_type {media_type:?} does not match media_category {category}."));
        }
        _ => return invalid_request("media_category must be tweet_video or tweet_gif."),
    };
    if total_bytes > limit {
        return invalid_request(&format!("File size exceeds {limit} bytes for {category}: {total_bytes} bytes."));
    }
    let mut state = state.lock().expect("fake state");
    let id = state.next_media_id();
    let created_at = state.now();
    let info = Upload {
        id: id.clone(),
        media_key: format!("7_{id}"),
        category,
        media_type,
        chunked: true,
        total_bytes,
        appended_bytes: 0,
        segments: Vec::new(),
        sha256: hex(&Sha256::new().finalize()),
        finalized: false,
        processing: None,
        status_polls: 0,
    };
    let answer = serde_json::json!({"data": {
        "id": id,
        "media_key": info.media_key,
        "expires_after_secs": MEDIA_TTL_SECS,
    }});
    state.media.push(Media { info, hasher: Sha256::new(), polls_left: 0, fail: false, created_at });
    json(200, answer)
}

/// `POST /2/media/upload/{id}/append`: multipart `media` (one chunk ≤ 5 MiB) and `segment_index`
/// (the next one: 0, 1, 2, … ≤ 999).
#[handler]
async fn media_append(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let body = match media_gate(req, body, &state, MediaStep::Append).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let id = req.raw_path_param("id").unwrap_or_default().to_owned();
    let start = {
        let mut state = state.lock().expect("fake state");
        match state.media_mut(&id) {
            None => Err(invalid_request(&format!("media_id {id} was not found or has expired."))),
            Some(media) if !media.info.chunked || media.info.finalized => {
                Err(invalid_request(&format!("media_id {id} is already finalized; it takes no more segments.")))
            }
            Some(media) => Ok((media.hasher.clone(), media.info.segments.len())),
        }
    };
    let (base, expected) = match start {
        Ok(start) => start,
        Err(answer) => return drained(body, answer).await,
    };
    let parts = match read_multipart(req, body, base).await {
        Ok(parts) => parts,
        Err(answer) => return answer,
    };
    let Some(index) = parts.fields.get("segment_index").and_then(|i| i.parse::<usize>().ok()) else {
        return invalid_request("segment_index is required and must be an integer between 0 and 999.");
    };
    if index > 999 {
        return invalid_request("segment_index must be between 0 and 999.");
    }
    let Some(chunk) = parts.media else {
        return invalid_request("media is required.");
    };
    if chunk.size == 0 {
        return invalid_request("media is empty.");
    }
    if chunk.size > MAX_CHUNK_BYTES {
        return invalid_request(&format!("A segment may not exceed {MAX_CHUNK_BYTES} bytes: {} bytes.", chunk.size));
    }
    let mut state = state.lock().expect("fake state");
    let Some(media) = state.media_mut(&id) else {
        return invalid_request(&format!("media_id {id} was not found or has expired."));
    };
    if media.info.finalized {
        return invalid_request(&format!("media_id {id} is already finalized; it takes no more segments."));
    }
    let next = media.info.segments.len();
    if next != expected || index != next {
        return invalid_request(&format!("segment_index must be {next}, the next segment; got {index}."));
    }
    media.hasher = chunk.hasher;
    media.info.appended_bytes += chunk.size;
    media.info.segments.push(chunk.size);
    media.info.sha256 = hex(&media.hasher.clone().finalize());
    let expires_at = (media.created_at + chrono::Duration::seconds(MEDIA_TTL_SECS)).timestamp();
    json(200, serde_json::json!({"data": {"expires_at": expires_at}}))
}

/// `POST /2/media/upload/{id}/finalize`: the segments must add up to `total_bytes`; videos and
/// GIFs then start processing.
#[handler]
async fn media_finalize(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let body = match media_gate(req, body, &state, MediaStep::Finalize).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    drain(body).await;
    let id = req.raw_path_param("id").unwrap_or_default().to_owned();
    let mut state = state.lock().expect("fake state");
    let now = state.now();
    let (polls, check_after_secs) = (state.processing_polls, state.check_after_secs);
    let fail_next = state.fail_next_processing;
    let Some(media) = state.media_mut(&id) else {
        return invalid_request(&format!("media_id {id} was not found or has expired."));
    };
    if !media.info.chunked || media.info.finalized {
        return invalid_request(&format!("media_id {id} is already finalized."));
    }
    if media.info.appended_bytes != media.info.total_bytes {
        return invalid_request(&format!(
            "The appended segments total {} bytes but total_bytes was {}.",
            media.info.appended_bytes, media.info.total_bytes
        ));
    }
    media.info.finalized = true;
    let processed = media.info.category != "tweet_image";
    if processed {
        media.info.processing = Some("pending".to_owned());
        media.polls_left = polls;
        media.fail = fail_next;
    }
    let mut data = serde_json::json!({
        "id": media.info.id,
        "media_key": media.info.media_key,
        "size": media.info.total_bytes,
        "expires_after_secs": media.expires_after_secs(now),
    });
    if let Some(info) = media.processing_info(check_after_secs) {
        data["processing_info"] = info;
    }
    if processed {
        state.fail_next_processing = false;
    }
    json(200, serde_json::json!({"data": data}))
}

/// `GET /2/media/upload?command=STATUS&media_id={id}`: each poll of a processing upload moves it
/// one step: `in_progress` for the configured number of polls, then `succeeded` (or `failed`).
#[handler]
async fn media_status(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    if let Err(answer) = media_gate(req, body, &state, MediaStep::Status).await {
        return answer;
    }
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    if query.get("command").map(String::as_str) != Some("STATUS") {
        return invalid_request("command must be STATUS.");
    }
    let Some(id) = query.get("media_id").filter(|id| !id.is_empty()).cloned() else {
        return invalid_request("media_id is required.");
    };
    let mut state = state.lock().expect("fake state");
    let check_after_secs = state.check_after_secs;
    let Some(media) = state.media_mut(&id) else {
        return invalid_request(&format!("media_id {id} was not found or has expired."));
    };
    if !media.info.finalized {
        return invalid_request(&format!("media_id {id} has not been finalized."));
    }
    media.info.status_polls += 1;
    if matches!(media.info.processing.as_deref(), Some("pending" | "in_progress")) {
        let next = if media.polls_left > 0 {
            media.polls_left -= 1;
            "in_progress"
        } else if media.fail {
            "failed"
        } else {
            "succeeded"
        };
        media.info.processing = Some(next.to_owned());
    }
    let mut data = serde_json::json!({"id": media.info.id, "media_key": media.info.media_key});
    if let Some(info) = media.processing_info(check_after_secs) {
        data["processing_info"] = info;
    }
    json(200, serde_json::json!({"data": data}))
}

impl crate::Fake for FakeX {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}
