//! A fake Instagram that speaks the wire format of the Instagram API with Instagram Login
//! (PLATFORMS.md §3): the authorize redirect (with `#_` appended), the form-encoded code exchange
//! at `POST /oauth/access_token` (Instagram's own error shape, `user_id` as a JSON number), the
//! `ig_exchange_token` and `ig_refresh_token` calls, and `GET /me`, failing with the Graph error
//! object elsewhere. Graph paths are accepted with any `v<digits>.0` version, which is remembered,
//! or without one. It records every request so tests can assert what Instagram received, and can
//! be told to deny consent or answer the next calls with canned responses.
//!
//! It also speaks the container publishing flow (§3.5–3.7), on versioned paths only:
//! `POST /{ig-user-id}/media` (image, reel, story, carousel item, carousel parent; the fake
//! downloads `image_url` at once and `video_url` in the background, streaming, counting and
//! hashing the bytes), `GET /{container-id}?fields=status_code,status` (`IN_PROGRESS` for a
//! configurable number of polls, then `FINISHED`, or a scripted `ERROR`/`EXPIRED`; never
//! wall-clock time, except the 24 h container expiry on the fake clock), `POST
//! /{ig-user-id}/media_publish`, `GET /{ig-user-id}/content_publishing_limit`, `GET
//! /{ig-user-id}/media` and `GET /{media-id}`, with the publishing quota and container limit.

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
/// Posts an account may publish per rolling 24 h until [`FakeInstagram::set_quota_total`] says otherwise.
pub const DEFAULT_QUOTA_TOTAL: u32 = 50;
/// The rolling window of the publishing quota (`config.quota_duration`), in seconds.
pub const QUOTA_DURATION_SECS: i64 = 86_400;
/// Containers an account may create per rolling 24 h until [`FakeInstagram::set_container_limit`] says otherwise.
pub const DEFAULT_CONTAINER_LIMIT: u32 = 400;
/// How long an unpublished container lives before it reports `EXPIRED`, in seconds.
pub const CONTAINER_LIFETIME_SECS: i64 = 86_400;
/// `IN_PROGRESS` answers a container gives before its final state, until
/// [`FakeInstagram::set_polls_before_finished`] says otherwise.
pub const DEFAULT_POLLS_BEFORE_FINISHED: u32 = 2;
/// The longest caption Instagram accepts, in characters.
pub const MAX_CAPTION_CHARS: usize = 2200;
/// A carousel's fewest and most children.
pub const CAROUSEL_CHILDREN: std::ops::RangeInclusive<usize> = 2..=10;
/// The `status` of a container whose video could not be downloaded.
pub const DOWNLOAD_FAILED_STATUS: &str =
    "Error: Media download has failed. The media URI doesn't meet our requirements. (2207052)";
/// The message (and `error_user_msg`) of `media_publish` on a container still `IN_PROGRESS`.
pub const NOT_READY_MESSAGE: &str = "The media is not ready for publishing, please wait for a moment";
/// The message (and `error_user_msg`) of a container creation whose `image_url` could not be fetched.
pub const FETCH_FAILED_MESSAGE: &str = "The media could not be fetched from this URI";
/// The `error_user_msg` of `media_publish` over the publishing quota.
pub const QUOTA_REACHED_MESSAGE: &str =
    "You have reached the maximum number of posts that is allowed to be published by Content Publishing API.";

const CONTAINER_ID_BASE: u64 = 17_900_000_000_000_000;
const MEDIA_ID_BASE: u64 = 18_000_000_000_000_000;

/// What kind of token a string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A short-lived token from the code exchange.
    ShortLived,
    /// A long-lived token from `ig_exchange_token` or `ig_refresh_token`.
    LongLived,
}

/// What a media container holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// A feed image (`image_url`, no `media_type`), or an image carousel item.
    Image,
    /// A reel (`media_type=REELS`, `video_url`).
    Reels,
    /// A story (`media_type=STORIES`) with an `image_url` or a `video_url`.
    Stories,
    /// A video carousel item (`media_type=VIDEO`, `is_carousel_item=true`).
    Video,
    /// A carousel parent (`media_type=CAROUSEL`, `children`).
    Carousel,
}

/// A container's `status_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    /// Still processing (`IN_PROGRESS`).
    InProgress,
    /// Ready for `media_publish` (`FINISHED`).
    Finished,
    /// Processing failed (`ERROR`).
    Error,
    /// Not published within 24 h, or scripted (`EXPIRED`).
    Expired,
    /// Published by `media_publish` (`PUBLISHED`).
    Published,
}

impl ContainerStatus {
    /// The wire value of `status_code`.
    pub fn code(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Finished => "FINISHED",
            Self::Error => "ERROR",
            Self::Expired => "EXPIRED",
            Self::Published => "PUBLISHED",
        }
    }
}

/// One download of a media URL by the fake, as Meta cURLs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The URL.
    pub url: String,
    /// Bytes received.
    pub bytes: u64,
    /// SHA-256 of those bytes, lower-case hex.
    pub sha256: String,
    /// Why it failed (connect error, non-2xx status, broken body), if it did.
    pub error: Option<String>,
}

/// How a container's processing ends once its polls are used up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Finished,
    Error(String),
    Expired,
}

/// A media container created by `POST /{ig-user-id}/media`.
#[derive(Debug, Clone)]
pub struct Container {
    /// The container id (`creation_id` of `media_publish`).
    pub id: String,
    /// What it holds.
    pub kind: MediaKind,
    /// Whether it was created with `is_carousel_item=true`.
    pub is_carousel_item: bool,
    /// Its `image_url` or `video_url` (none for a carousel parent).
    pub url: Option<String>,
    /// Whether `url` is a `video_url`.
    pub is_video: bool,
    /// Its `caption`.
    pub caption: Option<String>,
    /// Its `alt_text`.
    pub alt_text: Option<String>,
    /// Its `share_to_feed`, if given.
    pub share_to_feed: Option<bool>,
    /// A carousel parent's `children` container ids, in order.
    pub children: Vec<String>,
    /// Its `status_code` now (as last settled; a poll may move it on).
    pub status: ContainerStatus,
    /// The `status` text of an `ERROR`.
    pub error: Option<String>,
    /// The status polls (`GET /{container-id}` asking for `status_code` or `status`) it answered.
    pub polls: u32,
    /// The downloads of its URL.
    pub downloads: Vec<Download>,
    /// The media id `media_publish` gave it (a carousel's children get their parent's).
    pub media_id: Option<String>,
    /// When it was created, on the fake clock.
    pub created_at: DateTime<Utc>,
    polls_left: u32,
    downloading: bool,
    outcome: Outcome,
}

impl Container {
    /// The `status` text it answers now.
    pub fn status_text(&self) -> String {
        match self.status {
            ContainerStatus::InProgress => "In Progress: Media is still being processed.".into(),
            ContainerStatus::Finished => "Finished: Media has been uploaded and it is complete.".into(),
            ContainerStatus::Error => self.error.clone().unwrap_or_else(|| "Error: Media processing failed.".into()),
            ContainerStatus::Expired => {
                "Expired: The media container was not published within 24 hours and has expired.".into()
            }
            ContainerStatus::Published => "Published: Media has been published.".into(),
        }
    }
}

/// A media published by `POST /{ig-user-id}/media_publish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedMedia {
    /// The IG media id `media_publish` answered (the post id).
    pub media_id: String,
    /// The `creation_id` it was published from.
    pub container_id: String,
    /// A carousel's children container ids, in order.
    pub children: Vec<String>,
    /// What the container held.
    pub kind: MediaKind,
    /// Whether a story's (or item's) media is a video.
    pub is_video: bool,
    /// The container's caption.
    pub caption: Option<String>,
    /// Its `permalink`.
    pub permalink: String,
    /// When it was published, on the fake clock.
    pub published_at: DateTime<Utc>,
}

impl PublishedMedia {
    /// Its `media_type` (`IMAGE`, `VIDEO`, `CAROUSEL_ALBUM`).
    pub fn media_type(&self) -> &'static str {
        match self.kind {
            MediaKind::Carousel => "CAROUSEL_ALBUM",
            MediaKind::Reels | MediaKind::Video => "VIDEO",
            MediaKind::Stories if self.is_video => "VIDEO",
            MediaKind::Image | MediaKind::Stories => "IMAGE",
        }
    }

    /// Its `media_product_type` (`FEED`, `REELS`, `STORY`).
    pub fn media_product_type(&self) -> &'static str {
        match self.kind {
            MediaKind::Reels => "REELS",
            MediaKind::Stories => "STORY",
            _ => "FEED",
        }
    }
}

/// A validated `POST /{ig-user-id}/media`, before any download.
#[derive(Debug)]
struct Draft {
    kind: MediaKind,
    is_carousel_item: bool,
    url: Option<String>,
    is_video: bool,
    caption: Option<String>,
    alt_text: Option<String>,
    share_to_feed: Option<bool>,
    children: Vec<String>,
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
    containers: Vec<Container>,
    published: Vec<PublishedMedia>,
    downloads: Vec<Download>,
    publish_times: Vec<DateTime<Utc>>,
    next_outcomes: VecDeque<Outcome>,
    scripted_publishes: VecDeque<Scripted>,
    quota_total: Option<u32>,
    container_limit: Option<u32>,
    polls_before_finished: Option<u32>,
    next_id: u64,
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

    fn container(&self, id: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.id == id)
    }

    fn container_mut(&mut self, id: &str) -> Option<&mut Container> {
        self.containers.iter_mut().find(|c| c.id == id)
    }

    fn mint_id(&mut self, base: u64) -> String {
        self.next_id += 1;
        (base + self.next_id).to_string()
    }

    fn quota_total(&self) -> u32 {
        self.quota_total.unwrap_or(DEFAULT_QUOTA_TOTAL)
    }

    /// Posts published within the rolling quota window.
    fn quota_usage(&self) -> u32 {
        let since = self.now() - chrono::Duration::seconds(QUOTA_DURATION_SECS);
        u32::try_from(self.publish_times.iter().filter(|at| **at > since).count()).unwrap_or(u32::MAX)
    }

    /// Containers created within the last 24 h.
    fn containers_today(&self) -> u32 {
        let since = self.now() - chrono::Duration::seconds(CONTAINER_LIFETIME_SECS);
        u32::try_from(self.containers.iter().filter(|c| c.created_at > since).count()).unwrap_or(u32::MAX)
    }

    /// Expires a container 24 h old; ends its processing once its polls are used up, its download
    /// is done and (for a carousel) every child is `FINISHED`; a child that failed fails it.
    fn settle(&mut self, id: &str) {
        let now = self.now();
        let Some(index) = self.containers.iter().position(|c| c.id == id) else { return };
        let children: Vec<(String, Option<ContainerStatus>)> = self.containers[index]
            .children
            .iter()
            .map(|child| (child.clone(), self.container(child).map(|c| c.status)))
            .collect();
        let container = &mut self.containers[index];
        if matches!(container.status, ContainerStatus::InProgress | ContainerStatus::Finished)
            && now - container.created_at >= chrono::Duration::seconds(CONTAINER_LIFETIME_SECS)
        {
            container.status = ContainerStatus::Expired;
            return;
        }
        if container.status != ContainerStatus::InProgress || container.polls_left > 0 || container.downloading {
            return;
        }
        let failed = children
            .iter()
            .find(|(_, status)| !matches!(status, Some(ContainerStatus::InProgress | ContainerStatus::Finished)));
        if let Some((child, _)) = failed {
            container.status = ContainerStatus::Error;
            container.error = Some(format!("Error: Carousel item {child} could not be processed. (2207053)"));
            return;
        }
        if children.iter().any(|(_, status)| *status == Some(ContainerStatus::InProgress)) {
            return;
        }
        match container.outcome.clone() {
            Outcome::Finished => container.status = ContainerStatus::Finished,
            Outcome::Error(text) => {
                container.status = ContainerStatus::Error;
                container.error = Some(text);
            }
            Outcome::Expired => container.status = ContainerStatus::Expired,
        }
    }

    /// One step of processing: settles the container (a carousel's children first, so polling
    /// the parent alone moves them on too), then uses up one of its `IN_PROGRESS` answers.
    fn advance(&mut self, id: &str) {
        let children = self.container(id).map(|c| c.children.clone()).unwrap_or_default();
        for child in &children {
            self.advance(child);
        }
        self.settle(id);
        if let Some(container) = self.container_mut(id)
            && container.status == ContainerStatus::InProgress
            && container.polls_left > 0
        {
            container.polls_left -= 1;
        }
    }

    /// Adds a container for `draft` (taking the next scripted outcome) and returns its id.
    fn add_container(&mut self, draft: Draft, downloads: Vec<Download>, downloading: bool) -> String {
        let id = self.mint_id(CONTAINER_ID_BASE);
        let outcome = self.next_outcomes.pop_front().unwrap_or(Outcome::Finished);
        let container = Container {
            id: id.clone(),
            kind: draft.kind,
            is_carousel_item: draft.is_carousel_item,
            url: draft.url,
            is_video: draft.is_video,
            caption: draft.caption,
            alt_text: draft.alt_text,
            share_to_feed: draft.share_to_feed,
            children: draft.children,
            status: ContainerStatus::InProgress,
            error: None,
            polls: 0,
            downloads,
            media_id: None,
            created_at: self.now(),
            polls_left: self.polls_before_finished.unwrap_or(DEFAULT_POLLS_BEFORE_FINISHED),
            downloading,
            outcome,
        };
        self.containers.push(container);
        self.settle(&id);
        id
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

fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

/// The Graph error object with the `error_user_title` and `error_user_msg` of publishing errors.
fn graph_user_error(
    status: u16,
    message: &str,
    code: u32,
    subcode: Option<u32>,
    title: &str,
    user_msg: &str,
) -> Response {
    let mut error = serde_json::json!({
        "message": message,
        "type": "OAuthException",
        "is_transient": false,
        "code": code,
        "error_user_title": title,
        "error_user_msg": user_msg,
        "fbtrace_id": random_alphanumeric(23),
    });
    if let Some(subcode) = subcode {
        error["error_subcode"] = subcode.into();
    }
    json(status, serde_json::json!({ "error": error }))
}

/// Graph's answer for an id that is not a node this token may use.
fn unsupported(method: &str, id: &str) -> Response {
    graph_error(
        400,
        &format!(
            "Unsupported {method} request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
        ),
        100,
        Some(33),
    )
}

/// The requested `fields`, or `default` when none are.
fn fields(params: &HashMap<String, String>, default: &str) -> Vec<String> {
    let fields = params.get("fields").map(String::as_str).filter(|f| !f.trim().is_empty()).unwrap_or(default);
    fields.split(',').map(str::trim).filter(|f| !f.is_empty()).map(str::to_owned).collect()
}

fn nonexisting_field(field: &str, node: &str) -> Response {
    graph_error(400, &format!("(#100) Tried accessing nonexisting field ({field}) on node type ({node})"), 100, None)
}

/// Instagram's timestamp format (`2026-11-24T10:00:00+0000`).
fn ig_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S+0000").to_string()
}

/// Fetches `url` as Meta cURLs it: streamed, each chunk counted and hashed, nothing kept.
async fn download(client: &reqwest::Client, url: &str) -> Download {
    let fetched = crate::fetch_streamed(client, url, |_| {}).await;
    Download { url: url.to_owned(), bytes: fetched.bytes, sha256: fetched.sha256, error: fetched.error }
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
        Self::start_with(Serve::default()).await
    }

    /// Starts it where and as `serve` says (the sandbox's fixed ports and wrapping).
    pub async fn start_with(serve: Serve) -> Self {
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
            .at("/:version/:id", poem::get(graph_node))
            .at("/:version/:id/media", poem::get(list_media).post(create_media))
            .at("/:version/:id/media_publish", poem::post(media_publish))
            .at("/:version/:id/content_publishing_limit", poem::get(publishing_limit))
            .data(state.clone())
            .data(reqwest::Client::new());
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
            ("INSTAGRAM_CLIENT_ID".into(), CLIENT_ID.into()),
            ("INSTAGRAM_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("INSTAGRAM_AUTH_URL".into(), format!("{base_url}/oauth/authorize")),
            ("INSTAGRAM_TOKEN_URL".into(), format!("{base_url}/oauth/access_token")),
            ("INSTAGRAM_API_BASE".into(), base_url.to_owned()),
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

    /// Every media container created, in order of creation (as last settled).
    pub fn containers(&self) -> Vec<Container> {
        self.state.lock().expect("fake state").containers.clone()
    }

    /// The container with this id, if it exists (as last settled).
    pub fn container(&self, id: &str) -> Option<Container> {
        self.state.lock().expect("fake state").container(id).cloned()
    }

    /// Every media `media_publish` published, in order of publishing.
    pub fn published_media(&self) -> Vec<PublishedMedia> {
        self.state.lock().expect("fake state").published.clone()
    }

    /// Every download of a media URL (failed ones included), in order of completion.
    pub fn downloads(&self) -> Vec<Download> {
        self.state.lock().expect("fake state").downloads.clone()
    }

    /// Sets how many `IN_PROGRESS` answers containers created from now on give before their final state.
    pub fn set_polls_before_finished(&self, polls: u32) {
        self.state.lock().expect("fake state").polls_before_finished = Some(polls);
    }

    /// Makes the next container created end its processing in `ERROR` with this `status` text.
    pub fn fail_next_container(&self, status: &str) {
        self.state.lock().expect("fake state").next_outcomes.push_back(Outcome::Error(status.to_owned()));
    }

    /// Makes the next container created end its processing in `EXPIRED`.
    pub fn expire_next_container(&self) {
        self.state.lock().expect("fake state").next_outcomes.push_back(Outcome::Expired);
    }

    /// Makes an existing container still `IN_PROGRESS` end its processing in `ERROR` with this `status` text.
    pub fn fail_container(&self, id: &str, status: &str) {
        let mut state = self.state.lock().expect("fake state");
        if let Some(container) = state.container_mut(id) {
            container.outcome = Outcome::Error(status.to_owned());
        }
    }

    /// Sets `quota_total`, the posts an account may publish per rolling 24 h.
    pub fn set_quota_total(&self, total: u32) {
        self.state.lock().expect("fake state").quota_total = Some(total);
    }

    /// Sets `quota_usage`: forgets earlier publishes and counts `usage` made just now (fake clock).
    pub fn set_quota_usage(&self, usage: u32) {
        let mut state = self.state.lock().expect("fake state");
        let now = state.now();
        state.publish_times = vec![now; usage as usize];
    }

    /// The current `quota_usage`: posts published within the last 24 h of the fake clock.
    pub fn quota_usage(&self) -> u32 {
        self.state.lock().expect("fake state").quota_usage()
    }

    /// Sets how many containers an account may create per rolling 24 h.
    pub fn set_container_limit(&self, limit: u32) {
        self.state.lock().expect("fake state").container_limit = Some(limit);
    }

    /// Queues a canned JSON answer for the next authenticated `media_publish`; nothing is published.
    pub fn script_publish(&self, status: u16, body: serde_json::Value, delay: Duration) {
        let scripted = Scripted { status, body: body.to_string(), content_type: "application/json".into(), delay };
        self.state.lock().expect("fake state").scripted_publishes.push_back(scripted);
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

/// Checks a publishing call on `/{version}/{path}`: the version, then the token and
/// `appsecret_proof` exactly as `GET /me` checks them.
fn graph_caller(
    req: &Request,
    params: &HashMap<String, String>,
    version: &str,
    path: &str,
    state: &mut State,
) -> Result<(), Box<Response>> {
    state.saw_version(Some(version), path)?;
    let token = access_token(req, params);
    state.authenticate(token.as_deref())?;
    if let Some(proof) = params.get("appsecret_proof")
        && *proof != hmac_sha256_hex(CLIENT_SECRET.as_bytes(), token.unwrap_or_default().as_bytes())
    {
        return Err(Box::new(graph_error(400, "Invalid appsecret_proof provided in the API argument", 100, None)));
    }
    Ok(())
}

/// [`graph_caller`] for `/{version}/{ig-user-id}/{edge}`, whose user must be the token's (or `me`).
fn user_caller(
    req: &Request,
    params: &HashMap<String, String>,
    (version, id, edge): (&str, &str, &str),
    method: &str,
    state: &mut State,
) -> Result<(), Box<Response>> {
    graph_caller(req, params, version, &format!("{id}/{edge}"), state)?;
    if id == USER_ID || id == "me" { Ok(()) } else { Err(Box::new(unsupported(method, id))) }
}

/// A `true`/`false` parameter, if present; a Graph error if it is anything else.
fn bool_param(params: &HashMap<String, String>, name: &str) -> Result<Option<bool>, Box<Response>> {
    match params.get(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(_) => Err(Box::new(graph_error(400, &format!("(#100) Param {name} must be a boolean"), 100, None))),
    }
}

/// Validates the parameters of `POST /{ig-user-id}/media` as Instagram does (the container
/// limit first, then the fields for the `media_type`).
fn draft_container(state: &mut State, params: &HashMap<String, String>) -> Result<Draft, Box<Response>> {
    let err = |message: &str| Box::new(graph_error(400, message, 100, None));
    let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_owned);
    let limit = state.container_limit.unwrap_or(DEFAULT_CONTAINER_LIMIT);
    if state.containers_today() >= limit {
        return Err(Box::new(graph_user_error(
            400,
            "(#4) Application request limit reached",
            4,
            None,
            "Container limit reached",
            &format!("You have reached the maximum of {limit} media containers an account may create in 24 hours."),
        )));
    }
    let is_carousel_item = bool_param(params, "is_carousel_item")?.unwrap_or(false);
    let share_to_feed = bool_param(params, "share_to_feed")?;
    let media_type = get("media_type").unwrap_or_else(|| "IMAGE".into());
    let (image_url, video_url) = (get("image_url"), get("video_url"));
    let required = |name: &str, value: Option<String>| {
        value.ok_or_else(|| err(&format!("(#100) The parameter {name} is required")))
    };
    let (kind, url, is_video) = match media_type.as_str() {
        "IMAGE" => (MediaKind::Image, Some(required("image_url", image_url)?), false),
        "REELS" => (MediaKind::Reels, Some(required("video_url", video_url)?), true),
        "STORIES" => match (image_url, video_url) {
            (Some(url), None) => (MediaKind::Stories, Some(url), false),
            (None, Some(url)) => (MediaKind::Stories, Some(url), true),
            (None, None) => return Err(err("(#100) The parameter image_url or video_url is required")),
            (Some(_), Some(_)) => return Err(err("(#100) Only one of image_url and video_url may be set")),
        },
        "VIDEO" if is_carousel_item => (MediaKind::Video, Some(required("video_url", video_url)?), true),
        "VIDEO" => {
            return Err(err(
                "(#100) The VIDEO media type is only supported for carousel items; publish videos as REELS",
            ));
        }
        "CAROUSEL" => (MediaKind::Carousel, None, false),
        other => {
            return Err(err(&format!(
                "(#100) Param media_type must be one of {{CAROUSEL, IMAGE, REELS, STORIES, VIDEO}}, not {other}"
            )));
        }
    };
    if is_carousel_item && !matches!(kind, MediaKind::Image | MediaKind::Video) {
        return Err(err("(#100) is_carousel_item is only supported for images and for media_type=VIDEO"));
    }
    let caption = params.get("caption").filter(|c| !c.is_empty()).cloned();
    if is_carousel_item && caption.is_some() {
        return Err(err("(#100) Carousel items cannot have a caption; set it on the CAROUSEL container"));
    }
    if let Some(caption) = &caption
        && caption.chars().count() > MAX_CAPTION_CHARS
    {
        return Err(Box::new(graph_user_error(
            400,
            "(#100) The caption is too long",
            100,
            Some(2207010),
            "Caption too long",
            &format!("The caption can be at most {MAX_CAPTION_CHARS} characters long."),
        )));
    }
    if share_to_feed.is_some() && kind != MediaKind::Reels {
        return Err(err("(#100) share_to_feed is only supported for media_type=REELS"));
    }
    let alt_text = params.get("alt_text").filter(|a| !a.is_empty()).cloned();
    if alt_text.is_some() && (is_video || kind == MediaKind::Carousel) {
        return Err(err("(#100) alt_text is only supported for images"));
    }
    let children = match (kind, get("children")) {
        (MediaKind::Carousel, Some(list)) => carousel_children(state, &list)?,
        (MediaKind::Carousel, None) => return Err(err("(#100) The parameter children is required")),
        (_, Some(_)) => return Err(err("(#100) children is only supported for media_type=CAROUSEL")),
        (_, None) => Vec::new(),
    };
    Ok(Draft { kind, is_carousel_item, url, is_video, caption, alt_text, share_to_feed, children })
}

/// The `children` of a carousel parent (comma-separated, or a JSON array): 2–10 distinct
/// carousel-item containers of this user, each `FINISHED` or still `IN_PROGRESS`.
fn carousel_children(state: &mut State, list: &str) -> Result<Vec<String>, Box<Response>> {
    let children: Vec<String> = list
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    if !CAROUSEL_CHILDREN.contains(&children.len()) {
        return Err(Box::new(graph_error(
            400,
            "(#100) The carousel must have between 2 and 10 attachments",
            100,
            None,
        )));
    }
    for (index, child) in children.iter().enumerate() {
        if children[..index].contains(child) {
            let message = format!("(#100) Param children[{index}] repeats container {child}");
            return Err(Box::new(graph_error(400, &message, 100, None)));
        }
        state.settle(child);
        let usable = state.container(child).is_some_and(|c| {
            c.is_carousel_item && matches!(c.status, ContainerStatus::InProgress | ContainerStatus::Finished)
        });
        if !usable {
            let message = format!(
                "(#100) Param children[{index}] ({child}) must be a FINISHED or IN_PROGRESS carousel item container of this user"
            );
            return Err(Box::new(graph_error(400, &message, 100, None)));
        }
    }
    Ok(children)
}

/// `POST /{version}/{ig-user-id}/media`: creates a container. An `image_url` (feed image, image
/// item, image story) is downloaded before answering, a failure being error 9004/2207052; a
/// `video_url` is downloaded in the background, a failure turning the container into `ERROR`.
#[handler]
async fn create_media(
    req: &Request,
    Path((version, id)): Path<(String, String)>,
    body: Body,
    state: Data<&Arc<Mutex<State>>>,
    client: Data<&reqwest::Client>,
) -> Response {
    let params = params(req, &body.into_string().await.unwrap_or_default());
    let draft = {
        let mut state = state.lock().expect("fake state");
        if let Err(response) = user_caller(req, &params, (&version, &id, "media"), "post", &mut state) {
            return *response;
        }
        match draft_container(&mut state, &params) {
            Ok(draft) => draft,
            Err(response) => return *response,
        }
    };
    let Some(url) = draft.url.clone() else {
        let id = state.lock().expect("fake state").add_container(draft, Vec::new(), false);
        return json(200, serde_json::json!({ "id": id }));
    };
    if draft.is_video {
        let id = state.lock().expect("fake state").add_container(draft, Vec::new(), true);
        let (state, client, container_id) = (state.0.clone(), client.0.clone(), id.clone());
        tokio::spawn(async move {
            let fetched = download(&client, &url).await;
            let mut state = state.lock().expect("fake state");
            state.downloads.push(fetched.clone());
            if let Some(container) = state.container_mut(&container_id) {
                container.downloading = false;
                if fetched.error.is_some() && container.status == ContainerStatus::InProgress {
                    container.status = ContainerStatus::Error;
                    container.error = Some(DOWNLOAD_FAILED_STATUS.into());
                }
                container.downloads.push(fetched);
            }
            state.settle(&container_id);
        });
        return json(200, serde_json::json!({ "id": id }));
    }
    let fetched = download(&client, &url).await;
    let mut state = state.lock().expect("fake state");
    state.downloads.push(fetched.clone());
    if fetched.error.is_some() {
        return graph_user_error(
            400,
            FETCH_FAILED_MESSAGE,
            9004,
            Some(2207052),
            "Media download has failed",
            FETCH_FAILED_MESSAGE,
        );
    }
    let id = state.add_container(draft, vec![fetched], false);
    json(200, serde_json::json!({ "id": id }))
}

/// The fields a published media answers.
const MEDIA_FIELDS: [&str; 7] =
    ["id", "caption", "media_type", "media_product_type", "permalink", "timestamp", "username"];

/// A published media's requested fields (already checked against [`MEDIA_FIELDS`]); no
/// `caption` when it has none, as Instagram omits it.
fn media_value(media: &PublishedMedia, fields: &[String]) -> serde_json::Value {
    let mut answer = serde_json::Map::new();
    for field in fields {
        let value = match field.as_str() {
            "caption" => match &media.caption {
                Some(caption) => serde_json::json!(caption),
                None => continue,
            },
            "media_type" => serde_json::json!(media.media_type()),
            "media_product_type" => serde_json::json!(media.media_product_type()),
            "permalink" => serde_json::json!(media.permalink),
            "timestamp" => serde_json::json!(ig_timestamp(media.published_at)),
            "username" => serde_json::json!(USERNAME),
            _ => serde_json::json!(media.media_id),
        };
        answer.insert(field.clone(), value);
    }
    answer.entry("id").or_insert_with(|| serde_json::json!(media.media_id));
    serde_json::Value::Object(answer)
}

/// `GET /{version}/{id}`: a container's `status_code`/`status` (each poll asking for either
/// moves its processing on one step), or a published media's fields.
#[handler]
fn graph_node(req: &Request, Path((version, id)): Path<(String, String)>, state: Data<&Arc<Mutex<State>>>) -> Response {
    let params = query(req);
    let mut state = state.lock().expect("fake state");
    if let Err(response) = graph_caller(req, &params, &version, &id, &mut state) {
        return *response;
    }
    let fields = fields(&params, "id");
    if state.container(&id).is_some() {
        if let Some(other) = fields.iter().find(|f| !matches!(f.as_str(), "id" | "status_code" | "status")) {
            return nonexisting_field(other, "ShadowIGMediaBuilder");
        }
        if fields.iter().any(|f| f == "status_code" || f == "status") {
            state.advance(&id);
            if let Some(container) = state.container_mut(&id) {
                container.polls += 1;
            }
        } else {
            state.settle(&id);
        }
        let Some(container) = state.container(&id) else { return unsupported("get", &id) };
        let mut answer = serde_json::Map::new();
        for field in &fields {
            let value = match field.as_str() {
                "status_code" => serde_json::json!(container.status.code()),
                "status" => serde_json::json!(container.status_text()),
                _ => serde_json::json!(container.id),
            };
            answer.insert(field.clone(), value);
        }
        answer.entry("id").or_insert_with(|| serde_json::json!(container.id));
        return json(200, serde_json::Value::Object(answer));
    }
    let Some(media) = state.published.iter().find(|m| m.media_id == id) else {
        return unsupported("get", &id);
    };
    if let Some(other) = fields.iter().find(|f| !MEDIA_FIELDS.contains(&f.as_str())) {
        return nonexisting_field(other, "IGMedia");
    }
    json(200, media_value(media, &fields))
}

/// `GET /{version}/{ig-user-id}/media`: the published feed media and reels (stories are not on
/// this edge), newest first, at most `limit` (default 25).
#[handler]
fn list_media(req: &Request, Path((version, id)): Path<(String, String)>, state: Data<&Arc<Mutex<State>>>) -> Response {
    let params = query(req);
    let mut state = state.lock().expect("fake state");
    if let Err(response) = user_caller(req, &params, (&version, &id, "media"), "get", &mut state) {
        return *response;
    }
    let fields = fields(&params, "id");
    if let Some(other) = fields.iter().find(|f| !MEDIA_FIELDS.contains(&f.as_str())) {
        return nonexisting_field(other, "IGMedia");
    }
    let limit = params.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(25);
    let media: Vec<&PublishedMedia> =
        state.published.iter().rev().filter(|m| m.kind != MediaKind::Stories).take(limit).collect();
    let data: Vec<serde_json::Value> = media.iter().map(|m| media_value(m, &fields)).collect();
    let mut answer = serde_json::json!({ "data": data });
    if let (Some(first), Some(last)) = (media.first(), media.last()) {
        answer["paging"] = serde_json::json!({"cursors": {
            "before": URL_SAFE_NO_PAD.encode(&first.media_id),
            "after": URL_SAFE_NO_PAD.encode(&last.media_id),
        }});
    }
    json(200, answer)
}

/// `GET /{version}/{ig-user-id}/content_publishing_limit`: `quota_usage` (the default field)
/// and `config` over the rolling 24 h.
#[handler]
fn publishing_limit(
    req: &Request,
    Path((version, id)): Path<(String, String)>,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    let params = query(req);
    let mut state = state.lock().expect("fake state");
    if let Err(response) = user_caller(req, &params, (&version, &id, "content_publishing_limit"), "get", &mut state) {
        return *response;
    }
    let mut entry = serde_json::Map::new();
    for field in fields(&params, "quota_usage") {
        let value = match field.as_str() {
            "quota_usage" => serde_json::json!(state.quota_usage()),
            "config" => serde_json::json!({"quota_total": state.quota_total(), "quota_duration": QUOTA_DURATION_SECS}),
            other => return nonexisting_field(other, "ContentPublishingLimitResponse"),
        };
        entry.insert(field, value);
    }
    json(200, serde_json::json!({ "data": [entry] }))
}

/// `POST /{version}/{ig-user-id}/media_publish`: publishes a `FINISHED` container (`creation_id`)
/// within the rolling 24 h quota, answering the IG media id.
#[handler]
async fn media_publish(
    req: &Request,
    Path((version, id)): Path<(String, String)>,
    body: Body,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    let params = params(req, &body.into_string().await.unwrap_or_default());
    let scripted = {
        let mut state = state.lock().expect("fake state");
        if let Err(response) = user_caller(req, &params, (&version, &id, "media_publish"), "post", &mut state) {
            return *response;
        }
        match state.scripted_publishes.pop_front() {
            Some(scripted) => scripted,
            None => return publish(&mut state, &params),
        }
    };
    scripted_answer(scripted).await
}

fn publish(state: &mut State, params: &HashMap<String, String>) -> Response {
    let Some(creation_id) = params.get("creation_id").map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()) else {
        return graph_error(400, "(#100) The parameter creation_id is required", 100, None);
    };
    if state.quota_usage() >= state.quota_total() {
        return graph_user_error(
            400,
            "Application request limit reached",
            9,
            Some(2207042),
            "Maximum number of posts reached",
            QUOTA_REACHED_MESSAGE,
        );
    }
    state.settle(&creation_id);
    let Some(container) = state.container(&creation_id).cloned() else {
        let user_msg = format!("The media with id {creation_id} cannot be found.");
        return graph_user_error(400, "Media ID is not available", 9007, Some(2207006), "Media not found", &user_msg);
    };
    if container.is_carousel_item {
        return graph_error(
            400,
            "(#100) A carousel item container cannot be published on its own; publish its CAROUSEL container",
            100,
            None,
        );
    }
    let unusable = |title: &str, user_msg: &str| graph_user_error(400, user_msg, 9007, Some(2207008), title, user_msg);
    match container.status {
        ContainerStatus::Finished => {}
        ContainerStatus::InProgress => {
            return graph_user_error(
                400,
                NOT_READY_MESSAGE,
                9007,
                Some(2207027),
                "Media not ready for publishing",
                NOT_READY_MESSAGE,
            );
        }
        ContainerStatus::Error => {
            let user_msg =
                format!("The media container failed processing and cannot be published: {}", container.status_text());
            return unusable("Media processing failed", &user_msg);
        }
        ContainerStatus::Expired => {
            return unusable("Media container expired", "The media container has expired; create a new one.");
        }
        ContainerStatus::Published => {
            return unusable("Media already published", "The media container has already been published.");
        }
    }
    let media_id = state.mint_id(MEDIA_ID_BASE);
    let now = state.now();
    let shortcode = random_alphanumeric(11);
    let permalink = match container.kind {
        MediaKind::Reels => format!("https://www.instagram.com/reel/{shortcode}/"),
        MediaKind::Stories => format!("https://www.instagram.com/stories/{USERNAME}/{media_id}/"),
        _ => format!("https://www.instagram.com/p/{shortcode}/"),
    };
    for published in std::iter::once(&creation_id).chain(&container.children) {
        if let Some(c) = state.container_mut(published) {
            c.status = ContainerStatus::Published;
            c.media_id = Some(media_id.clone());
        }
    }
    state.publish_times.push(now);
    state.published.push(PublishedMedia {
        media_id: media_id.clone(),
        container_id: creation_id,
        children: container.children,
        kind: container.kind,
        is_video: container.is_video,
        caption: container.caption,
        permalink,
        published_at: now,
    });
    json(200, serde_json::json!({ "id": media_id }))
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

    fn media_bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[handler]
    fn photo_file() -> Vec<u8> {
        media_bytes(100_000)
    }

    #[handler]
    fn clip_file() -> Vec<u8> {
        media_bytes(300_000)
    }

    /// A plain-http media server: `/photo.jpg`, `/clip.mp4`; anything else is a 404.
    async fn media_server() -> String {
        let routes = Route::new().at("/photo.jpg", poem::get(photo_file)).at("/clip.mp4", poem::get(clip_file));
        crate::serve_fake(routes, Recorder::default()).await
    }

    async fn post_form(
        client: &reqwest::Client,
        url: &str,
        token: &str,
        form: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let response = client.post(url).bearer_auth(token).form(form).send().await.expect("POST");
        (response.status().as_u16(), response.json().await.expect("json"))
    }

    async fn poll(client: &reqwest::Client, base: &str, token: &str, id: &str) -> serde_json::Value {
        let url = format!("{base}/v26.0/{id}?fields=status_code,status&access_token={token}");
        let (status, body) = get_json(client, &url).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    fn error_codes(body: &serde_json::Value) -> (Option<u64>, Option<u64>) {
        (body["error"]["code"].as_u64(), body["error"]["error_subcode"].as_u64())
    }

    #[tokio::test]
    async fn container_flow() {
        let ig = FakeInstagram::start().await;
        let media = media_server().await;
        let token = ig.state.lock().expect("fake state").mint_token(TokenKind::LongLived);
        let client = reqwest::Client::new();
        let base = ig.base_url.as_str();
        let media_url = format!("{base}/v26.0/{USER_ID}/media");
        let publish_url = format!("{base}/v26.0/{USER_ID}/media_publish");
        let photo = format!("{media}/photo.jpg");
        let clip = format!("{media}/clip.mp4");

        // An image: downloaded at once, IN_PROGRESS twice, then FINISHED; published once.
        let (status, body) = post_form(
            &client,
            &media_url,
            &token,
            &[("image_url", &photo), ("caption", "Hello"), ("alt_text", "A cat")],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let image = body["id"].as_str().expect("id").to_owned();
        let expected_sha = crate::hex(&<sha2::Sha256 as sha2::Digest>::digest(media_bytes(100_000)));
        let downloads = ig.container(&image).expect("container").downloads;
        assert_eq!((downloads[0].bytes, downloads[0].sha256.as_str()), (100_000, expected_sha.as_str()));
        let (status, body) = post_form(&client, &publish_url, &token, &[("creation_id", &image)]).await;
        assert_eq!((status, error_codes(&body)), (400, (Some(9007), Some(2207027))), "{body}");
        assert_eq!(body["error"]["error_user_msg"], NOT_READY_MESSAGE);
        for _ in 0..2 {
            assert_eq!(poll(&client, base, &token, &image).await["status_code"], "IN_PROGRESS");
        }
        let finished = poll(&client, base, &token, &image).await;
        assert_eq!(finished["status"], "Finished: Media has been uploaded and it is complete.");
        assert_eq!(finished["id"], image.as_str());
        let (status, body) = post_form(&client, &publish_url, &token, &[("creation_id", &image)]).await;
        assert_eq!(status, 200, "{body}");
        let image_media = body["id"].as_str().expect("id").to_owned();
        assert_eq!(poll(&client, base, &token, &image).await["status_code"], "PUBLISHED");
        let (status, body) = post_form(&client, &publish_url, &token, &[("creation_id", &image)]).await;
        assert_eq!((status, error_codes(&body)), (400, (Some(9007), Some(2207008))), "{body}");

        // A failed image download is a 9004/2207052 and no container.
        let missing = format!("{media}/missing.jpg");
        let (status, body) = post_form(&client, &media_url, &token, &[("image_url", &missing)]).await;
        assert_eq!((status, error_codes(&body)), (400, (Some(9004), Some(2207052))), "{body}");
        assert_eq!(body["error"]["message"], FETCH_FAILED_MESSAGE);
        assert_eq!(ig.containers().len(), 1);
        assert!(ig.downloads().last().expect("download").error.is_some());

        // A reel: the video is fetched in the background; a failed one turns the container to ERROR.
        ig.set_polls_before_finished(0);
        let form =
            [("media_type", "REELS"), ("video_url", clip.as_str()), ("caption", "Reel"), ("share_to_feed", "true")];
        let (_, body) = post_form(&client, &media_url, &token, &form).await;
        let reel = body["id"].as_str().expect("id").to_owned();
        let bad_video = format!("{media}/gone.mp4");
        let (_, body) =
            post_form(&client, &media_url, &token, &[("media_type", "REELS"), ("video_url", &bad_video)]).await;
        let broken = body["id"].as_str().expect("id").to_owned();
        crate::wait_until(Duration::from_secs(5), "video downloads", || async {
            (ig.downloads().len() == 4).then_some(())
        })
        .await;
        assert_eq!(ig.container(&reel).expect("reel").downloads[0].bytes, 300_000);
        assert_eq!(poll(&client, base, &token, &reel).await["status_code"], "FINISHED");
        let failed = poll(&client, base, &token, &broken).await;
        assert_eq!(
            (failed["status_code"].as_str(), failed["status"].as_str()),
            (Some("ERROR"), Some(DOWNLOAD_FAILED_STATUS))
        );
        let (status, _) = post_form(&client, &publish_url, &token, &[("creation_id", &reel)]).await;
        assert_eq!(status, 200);

        // A carousel of an image and a video item; polling the parent alone moves the items on.
        ig.set_polls_before_finished(1);
        let (_, body) =
            post_form(&client, &media_url, &token, &[("image_url", &photo), ("is_carousel_item", "true")]).await;
        let first = body["id"].as_str().expect("id").to_owned();
        let form = [("media_type", "VIDEO"), ("video_url", clip.as_str()), ("is_carousel_item", "true")];
        let (_, body) = post_form(&client, &media_url, &token, &form).await;
        let second = body["id"].as_str().expect("id").to_owned();
        let (status, body) =
            post_form(&client, &media_url, &token, &[("media_type", "CAROUSEL"), ("children", &first)]).await;
        assert_eq!((status, error_codes(&body)), (400, (Some(100), None)), "{body}");
        let children = format!("{first},{second}");
        let form = [("media_type", "CAROUSEL"), ("children", children.as_str()), ("caption", "Album")];
        let (status, body) = post_form(&client, &media_url, &token, &form).await;
        assert_eq!(status, 200, "{body}");
        let carousel = body["id"].as_str().expect("id").to_owned();
        crate::wait_until(Duration::from_secs(5), "the item's video", || async {
            (ig.downloads().len() == 6).then_some(())
        })
        .await;
        assert_eq!(poll(&client, base, &token, &carousel).await["status_code"], "IN_PROGRESS");
        assert_eq!(poll(&client, base, &token, &carousel).await["status_code"], "FINISHED");
        let (status, body) = post_form(&client, &publish_url, &token, &[("creation_id", &first)]).await;
        assert_eq!((status, error_codes(&body)), (400, (Some(100), None)), "{body}");
        let (status, body) = post_form(&client, &publish_url, &token, &[("creation_id", &carousel)]).await;
        assert_eq!(status, 200, "{body}");
        let published = ig.published_media();
        assert_eq!(published.len(), 3);
        assert_eq!((published[0].media_id.as_str(), published[0].kind), (image_media.as_str(), MediaKind::Image));
        assert_eq!(
            (published[2].container_id.as_str(), published[2].children.clone()),
            (carousel.as_str(), vec![first.clone(), second])
        );
        assert_eq!(ig.container(&first).expect("item").status, ContainerStatus::Published);

        // Scripted outcomes.
        ig.fail_next_container("Error: Unsupported video. (2207026)");
        ig.expire_next_container();
        let (_, body) = post_form(&client, &media_url, &token, &[("image_url", &photo)]).await;
        let erroring = body["id"].as_str().expect("id").to_owned();
        let (_, body) = post_form(&client, &media_url, &token, &[("image_url", &photo)]).await;
        let expiring = body["id"].as_str().expect("id").to_owned();
        assert_eq!(poll(&client, base, &token, &erroring).await["status_code"], "IN_PROGRESS");
        assert_eq!(poll(&client, base, &token, &erroring).await["status"], "Error: Unsupported video. (2207026)");
        assert_eq!(poll(&client, base, &token, &expiring).await["status_code"], "IN_PROGRESS");
        assert_eq!(poll(&client, base, &token, &expiring).await["status_code"], "EXPIRED");

        // Validation.
        let long = "x".repeat(MAX_CAPTION_CHARS + 1);
        let (status, body) = post_form(&client, &media_url, &token, &[("image_url", &photo), ("caption", &long)]).await;
        assert_eq!((status, error_codes(&body)), (400, (Some(100), Some(2207010))), "{body}");
        let (status, body) = post_form(&client, &media_url, &token, &[("media_type", "REELS")]).await;
        assert_eq!((status, error_codes(&body)), (400, (Some(100), None)), "{body}");
        let other_user = format!("{base}/v26.0/17841499999999999/media");
        let (status, body) = post_form(&client, &other_user, &token, &[("image_url", &photo)]).await;
        assert_eq!((status, error_codes(&body)), (400, (Some(100), Some(33))), "{body}");
        let (status, body) = post_form(&client, &media_url, "nope", &[("image_url", &photo)]).await;
        assert_eq!((status, error_codes(&body)), (400, (Some(190), None)), "{body}");
        ig.set_container_limit(5);
        let (status, body) = post_form(&client, &media_url, &token, &[("image_url", &photo)]).await;
        assert_eq!((status, error_codes(&body)), (400, (Some(4), None)), "{body}");

        // Quota and the published list.
        let limit_url =
            format!("{base}/v26.0/{USER_ID}/content_publishing_limit?fields=quota_usage,config&access_token={token}");
        let (_, body) = get_json(&client, &limit_url).await;
        assert_eq!(
            body,
            serde_json::json!({"data": [{"quota_usage": 3, "config": {"quota_total": 50, "quota_duration": 86400}}]})
        );
        ig.set_container_limit(DEFAULT_CONTAINER_LIMIT);
        ig.set_polls_before_finished(0);
        let (_, body) = post_form(&client, &media_url, &token, &[("image_url", &photo)]).await;
        let over = body["id"].as_str().expect("id").to_owned();
        ig.set_quota_usage(50);
        let (status, body) = post_form(&client, &publish_url, &token, &[("creation_id", &over)]).await;
        assert_eq!((status, error_codes(&body)), (400, (Some(9), Some(2207042))), "{body}");
        assert_eq!(body["error"]["error_user_msg"], QUOTA_REACHED_MESSAGE);
        let list_url = format!("{base}/v26.0/{USER_ID}/media?fields=id,caption,timestamp&access_token={token}");
        let (status, body) = get_json(&client, &list_url).await;
        assert_eq!(status, 200, "{body}");
        let captions: Vec<&str> =
            body["data"].as_array().expect("data").iter().filter_map(|m| m["caption"].as_str()).collect();
        assert_eq!(captions, vec!["Album", "Reel", "Hello"]);
        let (_, body) =
            get_json(&client, &format!("{base}/v26.0/{image_media}?fields=permalink,media_type&access_token={token}"))
                .await;
        assert_eq!(body["media_type"], "IMAGE");
        assert_eq!(ig.container(&image).expect("image").polls, 4);
    }
}
