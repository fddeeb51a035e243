//! A fake Facebook that speaks Facebook Login and the Pages Graph API wire format (PLATFORMS.md §4):
//! the versioned login dialog (redirecting with `#_=_` appended), the code and `fb_exchange_token`
//! exchanges at `/v{N}.0/oauth/access_token`, `GET /me`, `GET /me/accounts` with Page tokens,
//! `DELETE /{user-id}/permissions`, `POST /{page-id}/feed` (text, link, or `attached_media` of
//! unpublished photos), `POST /{page-id}/photos` (the fake downloads `url`), `POST
//! /{page-id}/videos` (graph-video's endpoint, served on the same base URL; the fake downloads
//! `file_url`) and `GET /{video-id}?fields=status`, failing with the Graph error object.
//! Downloads are counted and hashed as they stream, never stored. A video's status answers
//! `processing` for a configurable number of polls before its final state. Any `v<digits>.0`
//! version is accepted and remembered. It records every request so tests can assert what Facebook
//! received, and can be told to deny consent or fail the next calls.

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

use crate::{
    Recorder, Serve,
    graph::{access_token, hmac_sha256_hex, params, query},
    serve_fake_with,
};

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

/// The largest photo `POST /{page-id}/photos` accepts, in bytes (4 MB).
pub const MAX_PHOTO_BYTES: u64 = 4 * 1024 * 1024;
/// How many status polls answer `processing` before a video's final state, unless
/// [`FakeFacebook::set_video_processing_polls`] changes it.
pub const DEFAULT_PROCESSING_POLLS: u32 = 2;

/// How long the fake waits for a media download (`url`, `file_url`).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

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

/// Which endpoint created a Page post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostKind {
    /// `POST /{page-id}/feed`: text, link, or `attached_media` photos.
    Feed,
    /// `POST /{page-id}/photos` with `published` true: a single-photo post.
    Photo,
    /// `POST /{page-id}/videos`: a video post.
    Video,
}

/// A post the fake created on a Page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagePost {
    /// What the API answered as the post id: `{page-id}_{post-id}` (a video post: the video id).
    pub id: String,
    /// The Page it is on.
    pub page_id: String,
    /// Its text: `message` (a photo's `message` or `caption`, a video's `description`).
    pub message: String,
    /// Which endpoint created it.
    pub kind: PostKind,
    /// The photo ids it carries, in order (`attached_media`, or the single published photo).
    pub photo_ids: Vec<String>,
    /// The video id, for a video post.
    pub video_id: Option<String>,
}

/// A photo `POST /{page-id}/photos` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Photo {
    /// The photo id the API answered.
    pub id: String,
    /// The Page it was uploaded to.
    pub page_id: String,
    /// The `url` the fake downloaded it from.
    pub url: String,
    /// Its `message` (or `caption`).
    pub message: String,
    /// Whether it was uploaded with `published` true (a post of its own).
    pub published: bool,
    /// The post that carries it: its own post when published, the feed post it was attached to.
    pub attached_to: Option<String>,
    /// Bytes downloaded.
    pub bytes: u64,
    /// SHA-256 of those bytes, lower-case hex.
    pub sha256: String,
}

/// Where a video's processing is, as `status.video_status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoStatus {
    /// `processing`: the next polls answer this until the configured number is used up.
    Processing,
    /// `ready`: processed and published.
    Ready,
    /// `error`: processing failed (scripted with [`FakeFacebook::fail_next_video_processing`]).
    Error,
}

/// A video `POST /{page-id}/videos` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    /// The video id the API answered.
    pub id: String,
    /// The Page it was uploaded to.
    pub page_id: String,
    /// The `file_url` the fake downloaded it from.
    pub file_url: String,
    /// Its `title`, if sent.
    pub title: Option<String>,
    /// Its `description` (empty if not sent).
    pub description: String,
    /// Bytes downloaded.
    pub bytes: u64,
    /// SHA-256 of those bytes, lower-case hex.
    pub sha256: String,
    /// Its processing state now.
    pub status: VideoStatus,
    /// How many `status` polls it has answered.
    pub polls: u32,
    processing_polls: u32,
    fails: bool,
}

/// A download the fake made of a `url` or `file_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The URL.
    pub url: String,
    /// The HTTP status it answered; `None` when the request failed (connect error, bad URL).
    pub status: Option<u16>,
    /// Body bytes received (0 for a non-2xx answer, whose body is not read).
    pub bytes: u64,
    /// SHA-256 of those bytes, lower-case hex.
    pub sha256: String,
    /// Whether the body arrived to its end (false: failed, non-2xx, or cut off mid-body).
    pub complete: bool,
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
    posts: Vec<PagePost>,
    photos: Vec<Photo>,
    videos: Vec<Video>,
    downloads: Vec<Download>,
    scripted_tokens: VecDeque<Scripted>,
    scripted_exchanges: VecDeque<Scripted>,
    scripted_posts: VecDeque<Scripted>,
    scripted_photos: VecDeque<Scripted>,
    scripted_videos: VecDeque<Scripted>,
    processing_polls: u32,
    fail_next_processing: bool,
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

    /// A fresh numeric Graph object id (posts, photos and videos share the sequence).
    fn next_id(&mut self) -> String {
        self.next_post += 1;
        self.next_post.to_string()
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
        Self::start_with(Serve::default()).await
    }

    /// Starts it where and as `serve` says (the sandbox's fixed ports and wrapping).
    pub async fn start_with(serve: Serve) -> Self {
        let state = Arc::new(Mutex::new(State {
            pages: DEFAULT_PAGES.iter().map(|(id, name)| ((*id).to_owned(), (*name).to_owned())).collect(),
            next_post: 122_100_000_000_000_000,
            processing_polls: DEFAULT_PROCESSING_POLLS,
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
            .at("/:version/:id/photos", poem::post(photos_endpoint))
            .at("/:version/:id/videos", poem::post(videos_endpoint))
            .at("/:version/:id", poem::get(video_node))
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
            ("FACEBOOK_APP_ID".into(), APP_ID.into()),
            ("FACEBOOK_APP_SECRET".into(), APP_SECRET.into()),
            ("FACEBOOK_AUTH_URL".into(), format!("{base_url}/v26.0/dialog/oauth")),
            ("FACEBOOK_TOKEN_URL".into(), format!("{base_url}/v26.0/oauth/access_token")),
            ("FACEBOOK_API_BASE".into(), base_url.to_owned()),
            ("FACEBOOK_VIDEO_API_BASE".into(), base_url.to_owned()),
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

    /// Posts created, every kind (feed, photo, video): (id, page id, message).
    pub fn posts(&self) -> Vec<(String, String, String)> {
        let state = self.state.lock().expect("fake state");
        state.posts.iter().map(|p| (p.id.clone(), p.page_id.clone(), p.message.clone())).collect()
    }

    /// Posts created, in order, with the kind and the photo or video ids each carries.
    pub fn page_posts(&self) -> Vec<PagePost> {
        self.state.lock().expect("fake state").posts.clone()
    }

    /// Photos uploaded (published or not), in order, with the post that carries each.
    pub fn photos(&self) -> Vec<Photo> {
        self.state.lock().expect("fake state").photos.clone()
    }

    /// Videos uploaded, in order, with their processing state.
    pub fn videos(&self) -> Vec<Video> {
        self.state.lock().expect("fake state").videos.clone()
    }

    /// Every download the fake made of a `url` or `file_url`, failed ones included, in order.
    pub fn downloads(&self) -> Vec<Download> {
        self.state.lock().expect("fake state").downloads.clone()
    }

    /// Queues a canned JSON answer for the next `POST /{page-id}/photos` that carries that Page's
    /// token (nothing is downloaded). The request is still recorded.
    pub fn script_photo(&self, status: u16, body: serde_json::Value, delay: Duration) {
        let scripted =
            Scripted { status, body: body.to_string(), content_type: "application/json; charset=UTF-8".into(), delay };
        self.state.lock().expect("fake state").scripted_photos.push_back(scripted);
    }

    /// Queues a canned JSON answer for the next `POST /{page-id}/videos` that carries that Page's
    /// token (nothing is downloaded). The request is still recorded.
    pub fn script_video(&self, status: u16, body: serde_json::Value, delay: Duration) {
        let scripted =
            Scripted { status, body: body.to_string(), content_type: "application/json; charset=UTF-8".into(), delay };
        self.state.lock().expect("fake state").scripted_videos.push_back(scripted);
    }

    /// Sets how many `status` polls of videos uploaded from now on answer `processing` (0: final
    /// at once).
    pub fn set_video_processing_polls(&self, polls: u32) {
        self.state.lock().expect("fake state").processing_polls = polls;
    }

    /// Makes the next uploaded video's processing fail: its status ends in `error`.
    pub fn fail_next_video_processing(&self) {
        self.state.lock().expect("fake state").fail_next_processing = true;
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

/// The checks every Page publishing call makes: a known version, a live token, a valid proof,
/// and a Page token of the Page in the path (or `me`); answers that Page's id.
fn page_publisher(
    req: &Request,
    params: &HashMap<String, String>,
    version: &str,
    id: &str,
    edge: &str,
    state: &mut State,
) -> Result<String, Box<Response>> {
    state.saw_version(version, &format!("{id}/{edge}"))?;
    let token = access_token(req, params);
    let caller = state.authenticate(token.as_deref())?;
    check_proof(params, token.as_deref().unwrap_or_default())?;
    match caller.kind {
        TokenKind::Page(page_id) if page_id == id || id == "me" => Ok(page_id),
        _ => Err(Box::new(graph_error(400, NOT_PAGE_ADMIN, 200, None))),
    }
}

/// `POST /{version}/{page-id}/feed`: a text, link or multi-photo (`attached_media`) post on a
/// Page, with that Page's token.
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
        let page_id = match page_publisher(req, &params, &version, &id, "feed", &mut state) {
            Ok(page_id) => page_id,
            Err(response) => return *response,
        };
        match state.scripted_posts.pop_front() {
            Some(scripted) => scripted,
            None => return create_post(&mut state, &page_id, &params),
        }
    };
    scripted_answer(scripted).await
}

fn create_post(state: &mut State, page_id: &str, params: &HashMap<String, String>) -> Response {
    let photo_ids = match attached_media(params) {
        Ok(ids) => ids,
        Err(response) => return *response,
    };
    let message = params.get("message").cloned().unwrap_or_default();
    if message.is_empty() && params.get("link").is_none_or(String::is_empty) && photo_ids.is_empty() {
        return graph_error(400, "(#100) Missing message or attachment", 100, None);
    }
    for (index, photo_id) in photo_ids.iter().enumerate() {
        let problem = if photo_ids[..index].contains(photo_id) {
            Some(format!("photo {photo_id} is attached more than once"))
        } else {
            match state.photos.iter().find(|p| p.id == *photo_id) {
                None => Some(format!("{photo_id} is not a valid photo id")),
                Some(photo) if photo.page_id != page_id => Some(format!("photo {photo_id} belongs to another Page")),
                Some(photo) if photo.published => {
                    Some(format!("photo {photo_id} is published; upload it with published=false"))
                }
                Some(Photo { attached_to: Some(post), .. }) => {
                    Some(format!("photo {photo_id} is already attached to post {post}"))
                }
                Some(_) => None,
            }
        };
        if let Some(problem) = problem {
            return graph_error(
                400,
                &format!("(#100) attached_media[{index}] has an invalid media_fbid: {problem}"),
                100,
                None,
            );
        }
    }
    let duplicate =
        state.posts.iter().any(|p| p.kind == PostKind::Feed && p.page_id == page_id && p.message == message);
    if !message.is_empty() && duplicate {
        return graph_error(400, "(#506) Duplicate status message", 506, None);
    }
    let id = format!("{page_id}_{}", state.next_id());
    for photo in state.photos.iter_mut().filter(|p| photo_ids.contains(&p.id)) {
        photo.attached_to = Some(id.clone());
    }
    state.posts.push(PagePost {
        id: id.clone(),
        page_id: page_id.to_owned(),
        message,
        kind: PostKind::Feed,
        photo_ids,
        video_id: None,
    });
    json(200, serde_json::json!({ "id": id }))
}

/// The photo ids of `attached_media`: form fields `attached_media[0]`, `attached_media[1]`, ...
/// each a JSON object, or one `attached_media` field holding a JSON array of them.
fn attached_media(params: &HashMap<String, String>) -> Result<Vec<String>, Box<Response>> {
    let invalid = |what: &str| Box::new(graph_error(400, &format!("(#100) {what}"), 100, None));
    let mut indexed = Vec::new();
    for (key, value) in params {
        let Some(rest) = key.strip_prefix("attached_media[") else { continue };
        let Some(index) = rest.strip_suffix(']').and_then(|i| i.parse::<usize>().ok()) else {
            return Err(invalid(&format!("param {key} is not a valid parameter; use attached_media[N] = JSON object")));
        };
        indexed.push((index, value.clone()));
    }
    indexed.sort_by_key(|(index, _)| *index);
    let items: Vec<serde_json::Value> = match params.get("attached_media") {
        Some(_) if !indexed.is_empty() => {
            return Err(invalid("param attached_media must be sent once: as attached_media or attached_media[N]"));
        }
        Some(whole) => match serde_json::from_str(whole) {
            Ok(serde_json::Value::Array(items)) => items,
            _ => return Err(invalid("param attached_media must be an array.")),
        },
        None => {
            let mut items = Vec::new();
            for (position, (index, value)) in indexed.into_iter().enumerate() {
                if index != position {
                    return Err(invalid(&format!("param attached_media[{position}] is missing")));
                }
                match serde_json::from_str(&value) {
                    Ok(item) => items.push(item),
                    Err(_) => return Err(invalid(&format!("param attached_media[{index}] must be a JSON object"))),
                }
            }
            items
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item.get("media_fbid") {
            Some(serde_json::Value::String(id)) if !id.is_empty() => Ok(id.clone()),
            Some(serde_json::Value::Number(id)) => Ok(id.to_string()),
            _ => Err(invalid(&format!("param attached_media[{index}] must be an object with a media_fbid"))),
        })
        .collect()
}

/// A Graph boolean parameter (`true`/`false`/`1`/`0`), `default` when absent.
fn boolean(params: &HashMap<String, String>, name: &str, default: bool) -> Result<bool, Box<Response>> {
    match params.get(name).map(String::as_str) {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(_) => Err(Box::new(graph_error(400, &format!("(#100) Param {name} must be a boolean"), 100, None))),
    }
}

/// Downloads `url` with a plain client, counting and hashing the body as it streams.
async fn download(url: &str) -> Download {
    let client = reqwest::Client::builder().timeout(DOWNLOAD_TIMEOUT).build().expect("download client");
    let fetched = crate::fetch_streamed(&client, url, |_| {}).await;
    Download {
        url: url.to_owned(),
        status: fetched.status,
        bytes: fetched.bytes,
        sha256: fetched.sha256,
        complete: fetched.error.is_none(),
    }
}

/// The start of a Page upload (`/photos`, `/videos`): its parameters and the Page, once the Page
/// token is checked; or the answer to give instead (a refusal, or the scripted one `scripted`
/// takes from the state).
async fn page_upload(
    req: &Request,
    body: Body,
    version: &str,
    id: &str,
    endpoint: &str,
    state: &Arc<Mutex<State>>,
    scripted: impl FnOnce(&mut State) -> Option<Scripted>,
) -> Result<(HashMap<String, String>, String), Response> {
    let params = params(req, &body.into_string().await.unwrap_or_default());
    let answer = {
        let mut state = state.lock().expect("fake state");
        let page_id = page_publisher(req, &params, version, id, endpoint, &mut state).map_err(|response| *response)?;
        scripted(&mut state).ok_or(page_id)
    };
    match answer {
        Ok(scripted) => Err(scripted_answer(scripted).await),
        Err(page_id) => Ok((params, page_id)),
    }
}

/// `POST /{version}/{page-id}/photos` with `url`: the fake downloads it; a post unless
/// `published=false` (then an unpublished photo, for a later `attached_media`).
#[handler]
async fn photos_endpoint(
    req: &Request,
    Path((version, id)): Path<(String, String)>,
    body: Body,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    let (params, page_id) = match page_upload(req, body, &version, &id, "photos", &state, |state| {
        state.scripted_photos.pop_front()
    })
    .await
    {
        Ok(found) => found,
        Err(response) => return response,
    };
    let published = match boolean(&params, "published", true) {
        Ok(published) => published,
        Err(response) => return *response,
    };
    let Some(url) = params.get("url").filter(|u| !u.is_empty()) else {
        return graph_error(400, "(#324) Requires upload file", 324, None);
    };
    let fetched = download(url).await;
    let mut state = state.lock().expect("fake state");
    state.downloads.push(fetched.clone());
    if !fetched.complete || fetched.bytes == 0 {
        return graph_error(400, "Missing or invalid image file", 324, None);
    }
    if fetched.bytes > MAX_PHOTO_BYTES {
        return graph_error(
            400,
            "Your photos couldn't be uploaded. Photos should be smaller than 4 MB and saved as JPG, PNG, GIF, TIFF, HEIF or WebP files.",
            100,
            Some(1_366_046),
        );
    }
    let message = params.get("message").or_else(|| params.get("caption")).cloned().unwrap_or_default();
    let photo_id = state.next_id();
    let post_id = published.then(|| format!("{page_id}_{}", state.next_id()));
    state.photos.push(Photo {
        id: photo_id.clone(),
        page_id: page_id.clone(),
        url: url.clone(),
        message: message.clone(),
        published,
        attached_to: post_id.clone(),
        bytes: fetched.bytes,
        sha256: fetched.sha256,
    });
    match post_id {
        Some(post_id) => {
            state.posts.push(PagePost {
                id: post_id.clone(),
                page_id,
                message,
                kind: PostKind::Photo,
                photo_ids: vec![photo_id.clone()],
                video_id: None,
            });
            json(200, serde_json::json!({"id": photo_id, "post_id": post_id}))
        }
        None => json(200, serde_json::json!({ "id": photo_id })),
    }
}

/// `POST /{version}/{page-id}/videos` with `file_url` (graph-video.facebook.com in production):
/// the fake downloads it and records a video post whose status then advances per poll.
#[handler]
async fn videos_endpoint(
    req: &Request,
    Path((version, id)): Path<(String, String)>,
    body: Body,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    let (params, page_id) = match page_upload(req, body, &version, &id, "videos", &state, |state| {
        state.scripted_videos.pop_front()
    })
    .await
    {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(file_url) = params.get("file_url").filter(|u| !u.is_empty()) else {
        return graph_error(400, "(#100) Requires one of the params: file_url, source, upload_phase", 100, None);
    };
    let fetched = download(file_url).await;
    let mut state = state.lock().expect("fake state");
    state.downloads.push(fetched.clone());
    if fetched.status.is_some_and(|s| (200..300).contains(&s)) && !fetched.complete {
        return graph_error(
            400,
            "There was a problem uploading your video file. Please try again with another file.",
            6000,
            None,
        );
    }
    if !fetched.complete || fetched.bytes == 0 {
        return graph_error(
            400,
            "There was a problem with your video file. Please try again with another file.",
            351,
            None,
        );
    }
    let processing_polls = state.processing_polls;
    let fails = std::mem::take(&mut state.fail_next_processing);
    let status = match (processing_polls, fails) {
        (0, false) => VideoStatus::Ready,
        (0, true) => VideoStatus::Error,
        _ => VideoStatus::Processing,
    };
    let video_id = state.next_id();
    let description = params.get("description").cloned().unwrap_or_default();
    state.videos.push(Video {
        id: video_id.clone(),
        page_id: page_id.clone(),
        file_url: file_url.clone(),
        title: params.get("title").cloned(),
        description: description.clone(),
        bytes: fetched.bytes,
        sha256: fetched.sha256,
        status,
        polls: 0,
        processing_polls,
        fails,
    });
    state.posts.push(PagePost {
        id: video_id.clone(),
        page_id,
        message: description,
        kind: PostKind::Video,
        photo_ids: Vec::new(),
        video_id: Some(video_id.clone()),
    });
    json(200, serde_json::json!({ "id": video_id }))
}

/// Graph's answer for an object the caller cannot see.
fn unsupported_get(id: &str) -> Response {
    graph_error(
        400,
        &format!(
            "Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
        ),
        100,
        Some(33),
    )
}

/// A video's `status` field as Graph reports it.
fn video_status(video: &Video) -> serde_json::Value {
    let uploading = serde_json::json!({"status": "complete", "bytes_transferred": video.bytes});
    match video.status {
        VideoStatus::Processing => {
            let progress = (video.polls * 100 / (video.processing_polls + 1)).min(99);
            serde_json::json!({
                "video_status": "processing",
                "processing_progress": progress,
                "uploading_phase": uploading,
                "processing_phase": {"status": "in_progress"},
                "publishing_phase": {"status": "not_started"},
            })
        }
        VideoStatus::Ready => serde_json::json!({
            "video_status": "ready",
            "processing_progress": 100,
            "uploading_phase": uploading,
            "processing_phase": {"status": "complete"},
            "publishing_phase": {"status": "complete", "publish_status": "published"},
        }),
        VideoStatus::Error => serde_json::json!({
            "video_status": "error",
            "processing_progress": 0,
            "uploading_phase": uploading,
            "processing_phase": {"status": "error", "errors": [{
                "code": 1_363_008,
                "message": "Video Processing Error: there was a problem processing your video file. Please try again with another file.",
            }]},
            "publishing_phase": {"status": "not_started"},
        }),
    }
}

/// `GET /{version}/{video-id}?fields=id,status,...` with the owning Page's token; each read of
/// `status` is one poll, advancing processing.
#[handler]
fn video_node(req: &Request, Path((version, id)): Path<(String, String)>, state: Data<&Arc<Mutex<State>>>) -> Response {
    let params = params(req, "");
    let mut state = state.lock().expect("fake state");
    let caller = match authorized_get(req, &params, &version, &id, &mut state) {
        Ok(caller) => caller,
        Err(response) => return *response,
    };
    let Some(video) = state
        .videos
        .iter_mut()
        .find(|v| v.id == id && matches!(&caller.kind, TokenKind::Page(page) if *page == v.page_id))
    else {
        return unsupported_get(&id);
    };
    let fields = params.get("fields").cloned().unwrap_or_else(|| "id,description".into());
    let fields: Vec<&str> = fields.split(',').map(str::trim).filter(|f| !f.is_empty()).collect();
    if let Some(other) = fields.iter().find(|f| !matches!(**f, "id" | "title" | "description" | "status")) {
        return graph_error(
            400,
            &format!("(#100) Tried accessing nonexisting field ({other}) on node type (Video)"),
            100,
            None,
        );
    }
    if fields.contains(&"status") {
        video.polls += 1;
        if video.status == VideoStatus::Processing && video.polls > video.processing_polls {
            video.status = if video.fails { VideoStatus::Error } else { VideoStatus::Ready };
        }
    }
    let mut answer = serde_json::Map::new();
    for field in fields {
        let value = match field {
            "id" => serde_json::json!(video.id),
            "title" => serde_json::json!(video.title),
            "description" => serde_json::json!(video.description),
            _ => video_status(video),
        };
        answer.insert(field.to_owned(), value);
    }
    answer.entry("id").or_insert_with(|| serde_json::json!(video.id));
    json(200, serde_json::Value::Object(answer))
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

    /// A plain-http media server: `/bytes/{n}` answers n bytes, anything else 404.
    async fn media_server() -> String {
        #[handler]
        fn bytes(Path(n): Path<usize>) -> Vec<u8> {
            (0..n).map(|i| u8::try_from(i % 251).expect("byte")).collect()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind media");
        let addr = listener.local_addr().expect("media addr");
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).expect("acceptor");
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(Route::new().at("/bytes/:n", poem::get(bytes))));
        format!("http://{addr}")
    }

    fn sha256_of(n: usize) -> String {
        let data: Vec<u8> = (0..n).map(|i| u8::try_from(i % 251).expect("byte")).collect();
        crate::hex(&<sha2::Sha256 as sha2::Digest>::digest(&data))
    }

    #[tokio::test]
    async fn photos_attached_media_and_videos() {
        let fb = FakeFacebook::start().await;
        let media = media_server().await;
        let base = &fb.base_url;
        let (page, other, user) = {
            let mut state = fb.state.lock().expect("state");
            (
                state.mint_token(TokenKind::Page("101".into()), USER_ID, None),
                state.mint_token(TokenKind::Page("102".into()), USER_ID, None),
                state.mint_token(TokenKind::LongLivedUser, USER_ID, None),
            )
        };
        let client = reqwest::Client::new();
        let call = |edge: &str, token: &str, form: Vec<(&str, String)>| {
            let request = client.post(format!("{base}/v26.0/101/{edge}")).bearer_auth(token).form(&form);
            async move {
                let response = request.send().await.expect("post");
                let status = response.status().as_u16();
                (status, response.json::<serde_json::Value>().await.expect("json"))
            }
        };
        let photo = |n: usize, published: &str| {
            vec![("url", format!("{media}/bytes/{n}")), ("published", published.to_owned())]
        };

        let (status, body) = call("photos", &user, photo(10, "false")).await;
        assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(200)), "{body}");
        let (_, body) = call("photos", &page, photo(10, "false")).await;
        let first = body["id"].as_str().expect("id").to_owned();
        assert!(body.get("post_id").is_none(), "{body}");
        let (_, body) = call("photos", &page, photo(2000, "false")).await;
        let second = body["id"].as_str().expect("id").to_owned();
        let mut single = photo(30, "true");
        single.push(("caption", "one".into()));
        let (_, body) = call("photos", &page, single).await;
        let published = body["id"].as_str().expect("id").to_owned();
        assert!(body["post_id"].as_str().expect("post id").starts_with("101_"), "{body}");
        let (status, body) = call("photos", &page, vec![("url", format!("{media}/nothing"))]).await;
        assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(324)), "{body}");
        let too_big = usize::try_from(MAX_PHOTO_BYTES).expect("size") + 1;
        let (_, body) = call("photos", &page, photo(too_big, "false")).await;
        assert_eq!(body["error"]["error_subcode"], 1_366_046, "{body}");
        let (_, body) = call("photos", &page, vec![("message", "no url".into())]).await;
        assert_eq!(body["error"]["code"], 324, "{body}");

        let attach = |ids: &[&str]| {
            let mut form = vec![("message", "two".to_owned())];
            let keys = ["attached_media[0]", "attached_media[1]", "attached_media[2]"];
            for (key, id) in keys.iter().zip(ids) {
                form.push((key, serde_json::json!({ "media_fbid": id }).to_string()));
            }
            form
        };
        for bad in [vec![published.as_str()], vec!["999"], vec![first.as_str(), first.as_str()]] {
            let (status, body) = call("feed", &page, attach(&bad)).await;
            assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(100)), "{bad:?}: {body}");
        }
        let (status, body) = call("feed", &page, attach(&[&first, &second])).await;
        assert_eq!(status, 200, "{body}");
        let post = body["id"].as_str().expect("id").to_owned();
        let (_, body) = call("feed", &page, attach(&[&first])).await;
        assert_eq!(body["error"]["code"], 100, "{body}");
        let (_, body) = call("photos", &page, photo(5, "false")).await;
        let third = body["id"].as_str().expect("id").to_owned();
        let array = serde_json::json!([{ "media_fbid": third }]).to_string();
        let (status, body) = call("feed", &page, vec![("attached_media", array)]).await;
        assert_eq!(status, 200, "{body}");

        let posts = fb.page_posts();
        assert_eq!(posts.len(), 3);
        assert_eq!((posts[0].kind, &posts[0].photo_ids), (PostKind::Photo, &vec![published.clone()]));
        assert_eq!((posts[1].id.as_str(), &posts[1].photo_ids), (post.as_str(), &vec![first.clone(), second.clone()]));
        let photos = fb.photos();
        let second_photo = photos.iter().find(|p| p.id == second).expect("second photo");
        assert_eq!((second_photo.bytes, second_photo.sha256.clone()), (2000, sha256_of(2000)));
        assert_eq!(second_photo.attached_to.as_deref(), Some(post.as_str()));
        assert!(!second_photo.published);
        assert_eq!(fb.downloads().len(), 6);

        let video = vec![("file_url", format!("{media}/bytes/5000")), ("description", "clip".to_owned())];
        let (status, body) = call("videos", &page, video.clone()).await;
        assert_eq!(status, 200, "{body}");
        let video_id = body["id"].as_str().expect("id").to_owned();
        let poll = |token: &str| {
            let request = client.get(format!("{base}/v26.0/{video_id}?fields=id,status")).bearer_auth(token);
            async move { request.send().await.expect("poll").json::<serde_json::Value>().await.expect("json") }
        };
        assert_eq!(poll(&other).await["error"]["error_subcode"], 33);
        assert_eq!(poll(&page).await["status"]["video_status"], "processing");
        assert_eq!(poll(&page).await["status"]["video_status"], "processing");
        assert_eq!(poll(&page).await["status"]["video_status"], "ready");
        fb.set_video_processing_polls(0);
        fb.fail_next_video_processing();
        let (_, body) = call("videos", &page, video).await;
        let failed = body["id"].as_str().expect("id").to_owned();
        let (status, body) =
            call("videos", &page, vec![("file_url", format!("{media}/gone")), ("description", "x".into())]).await;
        assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(351)), "{body}");
        let videos = fb.videos();
        assert_eq!(videos.len(), 2);
        assert_eq!(
            (videos[0].bytes, videos[0].sha256.clone(), videos[0].status),
            (5000, sha256_of(5000), VideoStatus::Ready)
        );
        assert_eq!((videos[1].id.as_str(), videos[1].status), (failed.as_str(), VideoStatus::Error));
        assert_eq!(fb.page_posts()[3].video_id.as_deref(), Some(video_id.as_str()));
        assert_eq!(fb.posts().len(), 5);
    }
}
