//! A fake TikTok that speaks TikTok's Login Kit v2 (web, no PKCE), Display API and Content Posting
//! API wire format (PLATFORMS.md §5): the authorize redirect with `client_key` and comma-separated
//! scopes, the token endpoint with the client secret in the form body, 5-minute single-use codes,
//! 2-hour access tokens and rotating 180-day refresh tokens, `POST /v2/oauth/revoke/` and
//! `GET /v2/user/info/`. For publishing it serves `creator_info/query`, Direct Post video init
//! (FILE_UPLOAD with a chunk plan checked like TikTok's, or PULL_FROM_URL from verified prefixes),
//! sequential chunk uploads to the returned `upload_url`, photo init (PULL_FROM_URL) and
//! `status/fetch`, whose answers advance one step per poll (never by wall-clock time). Uploaded and
//! pulled bytes are counted and hashed as they stream, never stored. It records every request so
//! tests can assert what TikTok received, and can be told to deny consent, to fail revocation, to
//! answer the next token call with a scripted response, to reject the next init or to fail a
//! publish's processing.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use poem::{
    Body, EndpointExt, Request, Response, Route, handler,
    http::{StatusCode, header},
    web::Data,
};
use rand::{Rng, distr::Alphanumeric};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::{Recorder, Serve, hex, serve_fake_with};

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

/// The scope every Content Posting endpoint requires.
const PUBLISH_SCOPE: &str = "video.publish";
/// `privacy_level_options` of `creator_info/query` until a test changes them.
const DEFAULT_PRIVACY_OPTIONS: [&str; 4] =
    ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY"];
/// How many "processing" answers `status/fetch` gives, once the media is in, until a test changes it.
const DEFAULT_POLLS_BEFORE_COMPLETE: u32 = 2;
/// `max_video_post_duration_sec` until [`FakeTiktok::set_max_video_seconds`] says otherwise.
const DEFAULT_MAX_VIDEO_SECONDS: u64 = 600;
/// Video and photo inits allowed per access token in any 60 seconds.
const INITS_PER_MINUTE: usize = 6;
const MIB: u64 = 1024 * 1024;
/// Below this a video is sent in one chunk; it is also the smallest chunk of a chunked upload.
const MIN_CHUNK: u64 = 5 * MIB;
/// The largest chunk but the last.
const MAX_CHUNK: u64 = 64 * MIB;
/// The largest last chunk (it takes the remainder).
const MAX_LAST_CHUNK: u64 = 128 * MIB;
/// The most chunks an upload may have.
const MAX_CHUNKS: u64 = 1000;
/// The largest video: 4 GB.
const MAX_VIDEO_SIZE: u64 = 4 * 1024 * MIB;
/// The largest photo of a photo post (larger ones fail `picture_size_check_failed`).
const MAX_PHOTO_SIZE: u64 = 20 * MIB;
/// The most images of a photo post.
const MAX_PHOTOS: usize = 35;
/// UTF-16 length limits of `title` (video, photo) and `description` (photo).
const MAX_VIDEO_TITLE: usize = 2200;
const MAX_PHOTO_TITLE: usize = 90;
const MAX_PHOTO_DESCRIPTION: usize = 4000;
/// How long a status poll waits for a running pull to finish before answering anyway.
const PULL_WAIT: Duration = Duration::from_secs(2);
/// First numeric id of publish ids and upload ids (TikTok's are 19 digits).
const FIRST_PUBLISH_NUMBER: u64 = 7_400_000_000_000_000_001;
/// First numeric post id (`publicaly_available_post_id`).
const FIRST_POST_ID: u64 = 7_500_000_000_000_000_001;

/// What a publish posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// A video (`/v2/post/publish/video/init/`).
    Video,
    /// A photo post (`/v2/post/publish/content/init/`, `media_type: PHOTO`).
    Photo,
}

/// Where a publish's media comes from (`source_info.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaSource {
    /// `FILE_UPLOAD`: the client PUTs the bytes to `upload_url`.
    FileUpload,
    /// `PULL_FROM_URL`: TikTok (the fake) downloads them.
    PullFromUrl,
}

/// A publish's `status` as `status/fetch` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishStatus {
    /// `PROCESSING_UPLOAD`: bytes still arriving, or processing an upload.
    ProcessingUpload,
    /// `PROCESSING_DOWNLOAD`: pulling, or processing what was pulled.
    ProcessingDownload,
    /// `PUBLISH_COMPLETE`: posted.
    PublishComplete,
    /// `FAILED`, with a `fail_reason`.
    Failed,
}

impl PublishStatus {
    /// The wire value (`PROCESSING_UPLOAD`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProcessingUpload => "PROCESSING_UPLOAD",
            Self::ProcessingDownload => "PROCESSING_DOWNLOAD",
            Self::PublishComplete => "PUBLISH_COMPLETE",
            Self::Failed => "FAILED",
        }
    }

    fn is_final(self) -> bool {
        matches!(self, Self::PublishComplete | Self::Failed)
    }
}

/// A publish the fake accepted (one successful video or photo init), as it stands now.
#[derive(Debug, Clone)]
pub struct Publish {
    /// `publish_id` (`v_pub_file~v2-1.<n>`, `v_pub_url~v2-1.<n>` or `p_pub_url~v2.<n>`).
    pub publish_id: String,
    /// Video or photo.
    pub kind: MediaKind,
    /// File upload or pull.
    pub source: MediaSource,
    /// `post_info.privacy_level`.
    pub privacy_level: String,
    /// `post_info.title` (empty when absent).
    pub title: String,
    /// `post_info.description` of a photo post (empty when absent, always empty for videos).
    pub description: String,
    /// The whole `post_info` as sent.
    pub post_info: Value,
    /// The whole `source_info` as sent.
    pub source_info: Value,
    /// The `upload_id` of `upload_url` (FILE_UPLOAD only).
    pub upload_id: Option<String>,
    /// `video_size` of a FILE_UPLOAD.
    pub video_size: Option<u64>,
    /// Chunks accepted so far (FILE_UPLOAD).
    pub chunks_received: u64,
    /// `video_url`, or the `photo_images` in order (pulls).
    pub urls: Vec<String>,
    /// Bytes uploaded or downloaded so far.
    pub bytes_received: u64,
    /// Hex SHA-256 of those bytes (for photos: of all images concatenated in order).
    pub sha256: String,
    /// The status as of the last poll (processing until a poll reports the final state).
    pub status: PublishStatus,
    /// `fail_reason` once FAILED.
    pub fail_reason: Option<String>,
    /// The post id reported in `publicaly_available_post_id` (None until complete, and for
    /// SELF_ONLY posts, whose id TikTok does not reveal).
    pub post_id: Option<u64>,
    /// `status/fetch` calls answered for it.
    pub status_polls: u32,
    /// When the init was accepted (the fake's clock).
    pub created_at: DateTime<Utc>,
}

/// A download the fake made for a PULL_FROM_URL publish.
#[derive(Debug, Clone)]
pub struct Download {
    /// The publish it was for.
    pub publish_id: String,
    /// The URL fetched.
    pub url: String,
    /// The HTTP status, None when the connection failed.
    pub http_status: Option<u16>,
    /// Bytes received.
    pub bytes: u64,
    /// Hex SHA-256 of those bytes.
    pub sha256: String,
    /// Whether the whole body arrived with a 2xx status.
    pub ok: bool,
}

/// A FILE_UPLOAD's chunk plan and progress.
#[derive(Debug)]
struct UploadPlan {
    upload_id: String,
    token: String,
    video_size: u64,
    chunk_size: u64,
    chunk_count: u64,
}

impl UploadPlan {
    /// The first and last byte offsets of chunk `index`.
    fn range(&self, index: u64) -> (u64, u64) {
        let first = index * self.chunk_size;
        let last = if index + 1 == self.chunk_count { self.video_size - 1 } else { first + self.chunk_size - 1 };
        (first, last)
    }
}

/// A publish and what the fake keeps to advance it.
#[derive(Debug)]
struct PublishState {
    info: Publish,
    hasher: Sha256,
    upload: Option<UploadPlan>,
    /// Set once a pull has finished (successfully or not).
    pulled: Option<watch::Receiver<bool>>,
    pull_done: bool,
    pull_failure: Option<String>,
    polls_left: u32,
    scripted_failure: Option<String>,
}

impl PublishState {
    /// Whether all the media is in (every chunk uploaded, or the pull finished).
    fn media_in(&self) -> bool {
        match &self.upload {
            Some(plan) => self.info.chunks_received == plan.chunk_count,
            None => self.pull_done,
        }
    }

    fn view(&self) -> Publish {
        Publish { sha256: hex(&self.hasher.clone().finalize()), ..self.info.clone() }
    }
}

/// An error the next init answers with.
#[derive(Debug, Clone)]
struct ScriptedError {
    code: String,
    message: String,
}

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
    /// The fake's own base URL (for `upload_url`).
    base_url: String,
    http: reqwest::Client,
    privacy_options: Vec<String>,
    /// `max_video_post_duration_sec` of `creator_info/query`.
    max_video_seconds: u64,
    unaudited: bool,
    verified_prefixes: Vec<String>,
    polls_before_complete: u32,
    /// Every counted init: the access token and when (the fake's clock).
    inits: Vec<(String, DateTime<Utc>)>,
    scripted_init_errors: VecDeque<ScriptedError>,
    next_publish_failures: VecDeque<String>,
    publishes: Vec<PublishState>,
    downloads: Vec<Download>,
    next_publish_number: u64,
    next_post_id: u64,
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

    /// The caller's access token when it is live and grants `video.publish`; else TikTok's 401.
    fn publisher(&self, req: &Request) -> Result<String, ApiError> {
        let bearer = header_str(req, header::AUTHORIZATION.as_str()).and_then(|v| v.strip_prefix("Bearer "));
        let Some((token, live)) = bearer.and_then(|t| self.live_access(t).map(|live| (t, live))) else {
            return Err(ApiError::new(
                401,
                "access_token_invalid",
                "The access token is invalid or not found in the request.",
            ));
        };
        if !live.scope.split(',').any(|s| s == PUBLISH_SCOPE) {
            return Err(ApiError::new(
                401,
                "scope_not_authorized",
                "The user did not authorize the scope required for completing this request.",
            ));
        }
        Ok(token.to_owned())
    }

    /// Counts an init against the token's 6-per-minute budget, or answers 429 when it is spent.
    fn count_init(&mut self, token: &str) -> Result<(), ApiError> {
        let now = self.now();
        let window_start = now - chrono::Duration::seconds(60);
        let recent = self.inits.iter().filter(|(t, at)| t == token && *at > window_start).count();
        if recent >= INITS_PER_MINUTE {
            return Err(ApiError::new(
                429,
                "rate_limit_exceeded",
                "The API rate limit was exceeded. Please try again later.",
            ));
        }
        self.inits.push((token.to_owned(), now));
        Ok(())
    }

    /// The init's answer when a test scripted one, else the common privacy and audit checks.
    fn check_init(&mut self, privacy_level: &str) -> Result<(), ApiError> {
        if let Some(scripted) = self.scripted_init_errors.pop_front() {
            return Err(ApiError::new(status_of(&scripted.code), &scripted.code, &scripted.message));
        }
        if !self.privacy_options.iter().any(|o| o == privacy_level) {
            return Err(ApiError::new(
                403,
                "privacy_level_option_mismatch",
                "privacy_level must be one of the creator's privacy_level_options.",
            ));
        }
        if self.unaudited && privacy_level != "SELF_ONLY" {
            return Err(ApiError::new(
                403,
                "unaudited_client_can_only_post_to_private_accounts",
                "Unaudited clients can only post to private accounts: use privacy_level SELF_ONLY.",
            ));
        }
        Ok(())
    }

    /// 403 `url_ownership_unverified` unless every URL starts with a verified prefix.
    fn check_ownership(&self, urls: &[String]) -> Result<(), ApiError> {
        let verified = |url: &String| self.verified_prefixes.iter().any(|p| url.starts_with(p.as_str()));
        if let Some(url) = urls.iter().find(|u| !verified(u)) {
            return Err(ApiError::new(
                403,
                "url_ownership_unverified",
                &format!("The ownership of the domain or URL prefix of {url} has not been verified."),
            ));
        }
        Ok(())
    }

    /// Registers an accepted publish, giving it the next scripted failure, if any.
    fn add_publish(&mut self, mut info: Publish, upload: Option<UploadPlan>, pulled: Option<watch::Receiver<bool>>) {
        info.created_at = self.now();
        let scripted_failure = self.next_publish_failures.pop_front();
        self.publishes.push(PublishState {
            info,
            hasher: Sha256::new(),
            upload,
            pulled,
            pull_done: false,
            pull_failure: None,
            polls_left: self.polls_before_complete,
            scripted_failure,
        });
    }

    fn take_publish_number(&mut self) -> u64 {
        let n = FIRST_PUBLISH_NUMBER + self.next_publish_number;
        self.next_publish_number += 1;
        n
    }

    fn publish_mut(&mut self, publish_id: &str) -> Option<&mut PublishState> {
        self.publishes.iter_mut().find(|p| p.info.publish_id == publish_id)
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

/// A successful API answer: `data` in TikTok's envelope with `error.code` `ok`.
fn api_ok(status: u16, data: Value) -> Response {
    json(status, json!({"data": data, "error": {"code": "ok", "message": "", "log_id": log_id()}}))
}

/// A TikTok API error (turned into a response by the handler).
#[derive(Debug)]
struct ApiError {
    status: u16,
    code: String,
    message: String,
}

impl ApiError {
    fn new(status: u16, code: &str, message: &str) -> Self {
        Self { status, code: code.to_owned(), message: message.to_owned() }
    }
}

impl From<ApiError> for Response {
    fn from(error: ApiError) -> Self {
        api_error(error.status, &error.code, &error.message)
    }
}

/// 400 `invalid_params`.
fn invalid(message: &str) -> ApiError {
    ApiError::new(400, "invalid_params", message)
}

/// 400 `invalid_params`, as a response.
fn bad(message: &str) -> Response {
    invalid(message).into()
}

/// The HTTP status TikTok answers an error code with (policy and spam codes: 403).
fn status_of(code: &str) -> u16 {
    match code {
        "invalid_params" | "invalid_file_upload" => 400,
        "access_token_invalid" | "scope_not_authorized" => 401,
        "rate_limit_exceeded" => 429,
        "internal_error" => 500,
        _ => 403,
    }
}

/// The request body as a JSON object, or 400 `invalid_params`.
fn json_object(body: &str) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_str(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(invalid("The request body must be a JSON object.")),
    }
}

/// An object field: absent is None, another type is 400 `invalid_params`.
fn opt_object<'a>(object: &'a Map<String, Value>, key: &str) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(_) => Err(invalid(&format!("{key} must be an object."))),
    }
}

/// A required object field.
fn req_object<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a Map<String, Value>, ApiError> {
    opt_object(object, key)?.ok_or_else(|| invalid(&format!("{key} is required.")))
}

/// A string field: absent is None, another type is 400 `invalid_params`.
fn opt_str<'a>(object: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(invalid(&format!("{key} must be a string."))),
    }
}

/// A required, non-empty string field.
fn req_str<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    opt_str(object, key)?.filter(|v| !v.is_empty()).ok_or_else(|| invalid(&format!("{key} is required.")))
}

/// A non-negative integer field: absent is None, another type is 400 `invalid_params`.
fn opt_u64(object: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            value.as_u64().map(Some).ok_or_else(|| invalid(&format!("{key} must be a non-negative integer.")))
        }
    }
}

/// A required non-negative integer field.
fn req_u64(object: &Map<String, Value>, key: &str) -> Result<u64, ApiError> {
    opt_u64(object, key)?.ok_or_else(|| invalid(&format!("{key} is required.")))
}

/// Boolean fields that may be absent but must be booleans when present.
fn check_bools(object: &Map<String, Value>, keys: &[&str]) -> Result<(), ApiError> {
    match keys.iter().find(|k| object.get(**k).is_some_and(|v| !v.is_boolean() && !v.is_null())) {
        Some(key) => Err(invalid(&format!("{key} must be a boolean."))),
        None => Ok(()),
    }
}

/// An optional text field no longer than `max` UTF-16 units.
fn text(object: &Map<String, Value>, key: &str, max: usize) -> Result<String, ApiError> {
    let value = opt_str(object, key)?.unwrap_or("");
    if value.encode_utf16().count() > max {
        return Err(invalid(&format!("{key} is longer than {max} characters.")));
    }
    Ok(value.to_owned())
}

/// A pulled URL: an absolute http(s) URL.
fn pull_url(value: &str, key: &str) -> Result<String, ApiError> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(value.to_owned()),
        _ => Err(invalid(&format!("{key} must be an http(s) URL."))),
    }
}

/// Checks a FILE_UPLOAD chunk plan the way TikTok does (PLATFORMS.md §5.4).
fn chunk_plan(source_info: &Map<String, Value>) -> Result<(u64, u64, u64), ApiError> {
    let video_size = req_u64(source_info, "video_size")?;
    let chunk_size = req_u64(source_info, "chunk_size")?;
    let count = req_u64(source_info, "total_chunk_count")?;
    if video_size == 0 || video_size > MAX_VIDEO_SIZE {
        return Err(invalid("video_size must be between 1 byte and 4 GB."));
    }
    if video_size < MIN_CHUNK {
        if chunk_size != video_size || count != 1 {
            return Err(invalid(
                "A video smaller than 5 MB must be uploaded in one chunk: chunk_size must equal video_size and total_chunk_count must be 1.",
            ));
        }
        return Ok((video_size, chunk_size, count));
    }
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
        return Err(invalid("chunk_size must be between 5 MB and 64 MB."));
    }
    if count != video_size / chunk_size {
        return Err(invalid("total_chunk_count must be video_size / chunk_size, rounded down."));
    }
    if count > MAX_CHUNKS {
        return Err(invalid("total_chunk_count must be at most 1000."));
    }
    if video_size - (count - 1) * chunk_size > MAX_LAST_CHUNK {
        return Err(invalid("The last chunk must be at most 128 MB."));
    }
    Ok((video_size, chunk_size, count))
}

/// Parses `bytes {first}-{last}/{total}`.
fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?, total.trim().parse().ok()?))
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
        Self::start_with(Serve::default()).await
    }

    /// Starts it where and as `serve` says (the sandbox's fixed ports and wrapping).
    pub async fn start_with(serve: Serve) -> Self {
        let state = Arc::new(Mutex::new(State {
            privacy_options: DEFAULT_PRIVACY_OPTIONS.iter().map(|o| (*o).to_owned()).collect(),
            polls_before_complete: DEFAULT_POLLS_BEFORE_COMPLETE,
            max_video_seconds: DEFAULT_MAX_VIDEO_SECONDS,
            next_post_id: FIRST_POST_ID,
            http: reqwest::Client::builder().no_proxy().build().expect("download client"),
            ..State::default()
        }));
        let recorder = Recorder::default();
        let routes = Route::new()
            .at("/v2/auth/authorize/", poem::get(authorize))
            .at("/v2/oauth/token/", poem::post(token_endpoint))
            .at("/v2/oauth/revoke/", poem::post(revoke))
            .at("/v2/user/info/", poem::get(user_info))
            .at("/v2/post/publish/creator_info/query/", poem::post(creator_info))
            .at("/v2/post/publish/video/init/", poem::post(video_init))
            .at("/v2/post/publish/content/init/", poem::post(content_init))
            .at("/v2/post/publish/status/fetch/", poem::post(status_fetch))
            .at("/video/upload/", poem::put(upload_chunk))
            .data(state.clone());
        let base_url = serve_fake_with(routes, recorder.clone(), serve).await;
        state.lock().expect("fake state").base_url = base_url.clone();
        Self { base_url, state, recorder }
    }

    /// The settings that point Herald at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        Self::env_at(&self.base_url)
    }

    /// The settings that point Herald at this fake served at `base_url`.
    pub fn env_at(base_url: &str) -> Vec<(String, String)> {
        vec![
            ("TIKTOK_CLIENT_ID".into(), CLIENT_ID.into()),
            ("TIKTOK_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("TIKTOK_AUTH_URL".into(), format!("{base_url}/v2/auth/authorize/")),
            ("TIKTOK_TOKEN_URL".into(), format!("{base_url}/v2/oauth/token/")),
            ("TIKTOK_API_BASE".into(), base_url.to_owned()),
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

    /// Sets `privacy_level_options` of `creator_info/query` (inits must use one of them).
    pub fn set_privacy_options(&self, options: &[&str]) {
        self.state.lock().expect("fake state").privacy_options = options.iter().map(|o| (*o).to_owned()).collect();
    }

    /// Sets `max_video_post_duration_sec` of `creator_info/query`.
    pub fn set_max_video_seconds(&self, seconds: u64) {
        self.state.lock().expect("fake state").max_video_seconds = seconds;
    }

    /// Makes the app unaudited (true) or audited: unaudited, any privacy but SELF_ONLY is refused.
    pub fn set_unaudited(&self, unaudited: bool) {
        self.state.lock().expect("fake state").unaudited = unaudited;
    }

    /// Sets the verified URL prefixes PULL_FROM_URL media must start with (default: none).
    pub fn set_verified_prefixes(&self, prefixes: &[&str]) {
        self.state.lock().expect("fake state").verified_prefixes = prefixes.iter().map(|p| (*p).to_owned()).collect();
    }

    /// Sets how many processing answers `status/fetch` gives once the media is in (default 2).
    pub fn set_polls_before_complete(&self, polls: u32) {
        self.state.lock().expect("fake state").polls_before_complete = polls;
    }

    /// The next accepted publish's processing ends `FAILED` with `reason` (queued, one per call).
    pub fn fail_next_publish(&self, reason: &str) {
        self.state.lock().expect("fake state").next_publish_failures.push_back(reason.to_owned());
    }

    /// An accepted, unfinished publish's processing ends `FAILED` with `reason`; false if unknown or final.
    pub fn fail_publish(&self, publish_id: &str, reason: &str) -> bool {
        let mut state = self.state.lock().expect("fake state");
        match state.publish_mut(publish_id).filter(|p| !p.info.status.is_final()) {
            Some(publish) => {
                publish.scripted_failure = Some(reason.to_owned());
                true
            }
            None => false,
        }
    }

    /// The next video or photo init answers error `code` (status as TikTok maps it; queued, one per call).
    pub fn fail_next_init(&self, code: &str, message: &str) {
        let error = ScriptedError { code: code.to_owned(), message: message.to_owned() };
        self.state.lock().expect("fake state").scripted_init_errors.push_back(error);
    }

    /// Every accepted publish, in init order.
    pub fn publishes(&self) -> Vec<Publish> {
        self.state.lock().expect("fake state").publishes.iter().map(PublishState::view).collect()
    }

    /// One publish by `publish_id`.
    pub fn publish(&self, publish_id: &str) -> Option<Publish> {
        self.state
            .lock()
            .expect("fake state")
            .publishes
            .iter()
            .find(|p| p.info.publish_id == publish_id)
            .map(PublishState::view)
    }

    /// The publishes that reached `PUBLISH_COMPLETE` (the posts created), in init order.
    pub fn published(&self) -> Vec<Publish> {
        self.publishes().into_iter().filter(|p| p.status == PublishStatus::PublishComplete).collect()
    }

    /// The publishes that make a post, polled or not: all their media in (every chunk uploaded,
    /// or the pull finished) and not failed, in init order. The fake moves a publish to
    /// `PUBLISH_COMPLETE` only when asked, so [`FakeTiktok::published`] misses one whose client
    /// died before asking; TikTok would publish it all the same.
    pub fn posts_made(&self) -> Vec<Publish> {
        let state = self.state.lock().expect("fake state");
        let made = state
            .publishes
            .iter()
            .filter(|p| p.media_in() && p.pull_failure.is_none() && p.info.status != PublishStatus::Failed);
        made.map(PublishState::view).collect()
    }

    /// Every download made for pulls, in the order they finished.
    pub fn downloads(&self) -> Vec<Download> {
        self.state.lock().expect("fake state").downloads.clone()
    }

    /// When each counted video or photo init arrived (the fake's clock), oldest first.
    pub fn init_times(&self) -> Vec<DateTime<Utc>> {
        self.state.lock().expect("fake state").inits.iter().map(|(_, at)| *at).collect()
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

/// `POST /v2/post/publish/creator_info/query/`: the creator's avatar, handle and nickname, the
/// privacy options Direct Post may use and the interaction settings.
#[handler]
fn creator_info(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    let state = state.lock().expect("fake state");
    if let Err(error) = state.publisher(req) {
        return error.into();
    }
    api_ok(
        200,
        json!({
            "creator_avatar_url": "https://example.invalid/a.jpg",
            "creator_username": USERNAME,
            "creator_nickname": DISPLAY_NAME,
            "privacy_level_options": state.privacy_options,
            "comment_disabled": false,
            "duet_disabled": false,
            "stitch_disabled": false,
            "max_video_post_duration_sec": state.max_video_seconds,
        }),
    )
}

/// A download the fake starts for a PULL_FROM_URL publish.
#[derive(Debug)]
struct Pull {
    publish_id: String,
    kind: MediaKind,
    urls: Vec<String>,
    done: watch::Sender<bool>,
}

/// A publish's public record before it is registered.
fn new_publish(
    publish_id: String,
    kind: MediaKind,
    source: MediaSource,
    post_info: &Map<String, Value>,
    source_info: &Map<String, Value>,
) -> Publish {
    Publish {
        publish_id,
        kind,
        source,
        privacy_level: String::new(),
        title: String::new(),
        description: String::new(),
        post_info: Value::Object(post_info.clone()),
        source_info: Value::Object(source_info.clone()),
        upload_id: None,
        video_size: None,
        chunks_received: 0,
        urls: Vec::new(),
        bytes_received: 0,
        sha256: String::new(),
        status: match source {
            MediaSource::FileUpload => PublishStatus::ProcessingUpload,
            MediaSource::PullFromUrl => PublishStatus::ProcessingDownload,
        },
        fail_reason: None,
        post_id: None,
        status_polls: 0,
        created_at: Utc::now(),
    }
}

/// Registers a pull publish and returns the download to start.
fn add_pull(state: &mut State, mut info: Publish, urls: Vec<String>) -> Pull {
    let (done, pulled) = watch::channel(false);
    info.urls = urls.clone();
    let pull = Pull { publish_id: info.publish_id.clone(), kind: info.kind, urls, done };
    state.add_publish(info, None, Some(pulled));
    pull
}

/// The checks and bookkeeping of a video init; returns the answer's data and the pull to start.
fn init_video(state: &mut State, req: &Request, body: &str) -> Result<(Value, Option<Pull>), ApiError> {
    let token = state.publisher(req)?;
    state.count_init(&token)?;
    let body = json_object(body)?;
    let post_info = req_object(&body, "post_info")?;
    let source_info = req_object(&body, "source_info")?;
    let privacy_level = req_str(post_info, "privacy_level")?;
    let title = text(post_info, "title", MAX_VIDEO_TITLE)?;
    check_bools(
        post_info,
        &[
            "disable_duet",
            "disable_comment",
            "disable_stitch",
            "brand_content_toggle",
            "brand_organic_toggle",
            "is_aigc",
        ],
    )?;
    opt_u64(post_info, "video_cover_timestamp_ms")?;
    let source = match req_str(source_info, "source")? {
        "FILE_UPLOAD" => MediaSource::FileUpload,
        "PULL_FROM_URL" => MediaSource::PullFromUrl,
        other => return Err(invalid(&format!("source {other} is not supported: use FILE_UPLOAD or PULL_FROM_URL."))),
    };
    let (plan, urls) = match source {
        MediaSource::FileUpload => (Some(chunk_plan(source_info)?), Vec::new()),
        MediaSource::PullFromUrl => (None, vec![pull_url(req_str(source_info, "video_url")?, "video_url")?]),
    };
    state.check_init(privacy_level)?;
    state.check_ownership(&urls)?;
    let n = state.take_publish_number();
    let prefix = if plan.is_some() { "v_pub_file" } else { "v_pub_url" };
    let mut info = new_publish(format!("{prefix}~v2-1.{n}"), MediaKind::Video, source, post_info, source_info);
    info.privacy_level = privacy_level.to_owned();
    info.title = title;
    let publish_id = info.publish_id.clone();
    match plan {
        Some((video_size, chunk_size, chunk_count)) => {
            let upload_id = n.to_string();
            let token = random_string(32);
            let upload_url = format!("{}/video/upload/?upload_id={upload_id}&upload_token={token}", state.base_url);
            info.upload_id = Some(upload_id.clone());
            info.video_size = Some(video_size);
            let plan = UploadPlan { upload_id, token, video_size, chunk_size, chunk_count };
            state.add_publish(info, Some(plan), None);
            Ok((json!({"publish_id": publish_id, "upload_url": upload_url}), None))
        }
        None => Ok((json!({"publish_id": publish_id}), Some(add_pull(state, info, urls)))),
    }
}

/// The checks and bookkeeping of a photo init; returns the answer's data and the pull to start.
fn init_photos(state: &mut State, req: &Request, body: &str) -> Result<(Value, Pull), ApiError> {
    let token = state.publisher(req)?;
    state.count_init(&token)?;
    let body = json_object(body)?;
    if req_str(&body, "media_type")? != "PHOTO" {
        return Err(invalid("media_type must be PHOTO."));
    }
    if req_str(&body, "post_mode")? != "DIRECT_POST" {
        return Err(invalid("post_mode must be DIRECT_POST."));
    }
    let post_info = req_object(&body, "post_info")?;
    let source_info = req_object(&body, "source_info")?;
    let privacy_level = req_str(post_info, "privacy_level")?;
    let title = text(post_info, "title", MAX_PHOTO_TITLE)?;
    let description = text(post_info, "description", MAX_PHOTO_DESCRIPTION)?;
    check_bools(post_info, &["disable_comment", "auto_add_music", "brand_content_toggle", "brand_organic_toggle"])?;
    if req_str(source_info, "source")? != "PULL_FROM_URL" {
        return Err(invalid("Photo posts support only source PULL_FROM_URL."));
    }
    let Some(Value::Array(images)) = source_info.get("photo_images") else {
        return Err(invalid("photo_images is required."));
    };
    if images.is_empty() || images.len() > MAX_PHOTOS {
        return Err(invalid("photo_images must hold 1 to 35 URLs."));
    }
    let urls = images
        .iter()
        .map(|image| pull_url(image.as_str().unwrap_or(""), "photo_images"))
        .collect::<Result<Vec<_>, _>>()?;
    if req_u64(source_info, "photo_cover_index")? >= urls.len() as u64 {
        return Err(invalid("photo_cover_index must be the index of one of photo_images."));
    }
    state.check_init(privacy_level)?;
    state.check_ownership(&urls)?;
    let n = state.take_publish_number();
    let mut info =
        new_publish(format!("p_pub_url~v2.{n}"), MediaKind::Photo, MediaSource::PullFromUrl, post_info, source_info);
    info.privacy_level = privacy_level.to_owned();
    info.title = title;
    info.description = description;
    let data = json!({"publish_id": info.publish_id});
    Ok((data, add_pull(state, info, urls)))
}

/// `POST /v2/post/publish/video/init/`: a Direct Post video, FILE_UPLOAD (answers `upload_url`)
/// or PULL_FROM_URL (the fake starts downloading at once).
#[handler]
async fn video_init(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let body = body.into_string().await.unwrap_or_default();
    let result = init_video(&mut state.lock().expect("fake state"), req, &body);
    match result {
        Ok((data, pull)) => {
            if let Some(pull) = pull {
                tokio::spawn(run_pull(state.0.clone(), pull));
            }
            api_ok(200, data)
        }
        Err(error) => error.into(),
    }
}

/// `POST /v2/post/publish/content/init/`: a Direct Post photo post, pulled from its URLs.
#[handler]
async fn content_init(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let body = body.into_string().await.unwrap_or_default();
    let result = init_photos(&mut state.lock().expect("fake state"), req, &body);
    match result {
        Ok((data, pull)) => {
            tokio::spawn(run_pull(state.0.clone(), pull));
            api_ok(200, data)
        }
        Err(error) => error.into(),
    }
}

/// Downloads a pull's URLs in order, streaming, counting and hashing; records each download and
/// marks the pull done (failed at the first download that fails or a photo that is too large).
async fn run_pull(state: Arc<Mutex<State>>, pull: Pull) {
    let http = state.lock().expect("fake state").http.clone();
    let mut failure = None;
    for url in &pull.urls {
        let download = download(&http, &state, &pull.publish_id, url).await;
        let failed = match pull.kind {
            MediaKind::Video if !download.ok => Some("video_pull_failed"),
            MediaKind::Photo if !download.ok => Some("photo_pull_failed"),
            MediaKind::Photo if download.bytes > MAX_PHOTO_SIZE => Some("picture_size_check_failed"),
            _ => None,
        };
        state.lock().expect("fake state").downloads.push(download);
        if failed.is_some() {
            failure = failed.map(str::to_owned);
            break;
        }
    }
    if let Some(publish) = state.lock().expect("fake state").publish_mut(&pull.publish_id) {
        publish.pull_done = true;
        publish.pull_failure = failure;
    }
    let _ = pull.done.send(true);
}

/// One GET of a pull, its body streamed into a running SHA-256 (and into the publish's).
async fn download(http: &reqwest::Client, state: &Arc<Mutex<State>>, publish_id: &str, url: &str) -> Download {
    let fetched = crate::fetch_streamed(http, url, |chunk| {
        if let Some(publish) = state.lock().expect("fake state").publish_mut(publish_id) {
            publish.hasher.update(chunk);
            publish.info.bytes_received += chunk.len() as u64;
        }
    })
    .await;
    Download {
        publish_id: publish_id.to_owned(),
        url: url.to_owned(),
        http_status: fetched.status,
        bytes: fetched.bytes,
        sha256: fetched.sha256,
        ok: fetched.error.is_none(),
    }
}

/// `PUT /video/upload/?upload_id=…&upload_token=…`: the next chunk of a FILE_UPLOAD, exactly the
/// planned `Content-Range`; 206 while chunks remain, 201 for the last. The upload token in the
/// URL is the credential (TikTok's upload URLs take no bearer token).
#[handler]
async fn upload_chunk(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let query = form(req.uri().query().unwrap_or(""));
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    let (upload_id, upload_token) = (get("upload_id"), get("upload_token"));
    let (publish_id, index, expected, mut hasher) = {
        let state = state.lock().expect("fake state");
        let found = state.publishes.iter().find_map(|p| {
            p.upload.as_ref().filter(|u| u.upload_id == upload_id && u.token == upload_token).map(|u| (p, u))
        });
        let Some((publish, plan)) = found else {
            return api_error(401, "access_token_invalid", "The upload_id or upload_token is invalid.");
        };
        let content_type = header_str(req, header::CONTENT_TYPE.as_str()).unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !["video/mp4", "video/quicktime", "video/webm"].contains(&mime) {
            return bad("Content-Type must be video/mp4, video/quicktime or video/webm.");
        }
        if publish.media_in() {
            return bad("Every chunk of this upload was already received.");
        }
        let Some((first, last, total)) = header_str(req, "content-range").and_then(content_range) else {
            return bad("Content-Range must be bytes {first}-{last}/{total}.");
        };
        let index = publish.info.chunks_received;
        let (want_first, want_last) = plan.range(index);
        if total != plan.video_size || (first, last) != (want_first, want_last) {
            return bad(&format!(
                "Content-Range must be bytes {want_first}-{want_last}/{} (chunk {} of {}).",
                plan.video_size,
                index + 1,
                plan.chunk_count
            ));
        }
        let expected = want_last - want_first + 1;
        let length = header_str(req, header::CONTENT_LENGTH.as_str()).map(|v| v.trim().parse::<u64>());
        if length.is_some_and(|l| l != Ok(expected)) {
            return bad("Content-Length must be the length of the Content-Range.");
        }
        (publish.info.publish_id.clone(), index, expected, publish.hasher.clone())
    };
    let mut received = 0u64;
    let mut stream = body.into_bytes_stream();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return bad("The chunk could not be read.");
        };
        received += chunk.len() as u64;
        if received > expected {
            return bad("The chunk is longer than its Content-Range.");
        }
        hasher.update(&chunk);
    }
    if received != expected {
        return bad("The chunk is shorter than its Content-Range.");
    }
    let mut state = state.lock().expect("fake state");
    let Some(publish) = state.publish_mut(&publish_id).filter(|p| p.info.chunks_received == index) else {
        return bad("Chunks must be uploaded sequentially.");
    };
    publish.hasher = hasher;
    publish.info.chunks_received += 1;
    publish.info.bytes_received += received;
    api_ok(if publish.media_in() { 201 } else { 206 }, json!({}))
}

/// Answers one status poll, advancing the publish one step: processing while the media is not in,
/// then `polls_left` processing answers, then FAILED (pull failure or scripted) or
/// PUBLISH_COMPLETE. `post_id` is the id a completing non-SELF_ONLY post gets; returns the data
/// and whether it was used.
fn advance(publish: &mut PublishState, post_id: u64) -> (Value, bool) {
    let mut used = false;
    publish.info.status_polls += 1;
    if !publish.info.status.is_final() && publish.media_in() {
        if let Some(reason) = publish.pull_failure.clone() {
            publish.info.status = PublishStatus::Failed;
            publish.info.fail_reason = Some(reason);
        } else if publish.polls_left > 0 {
            publish.polls_left -= 1;
        } else if let Some(reason) = publish.scripted_failure.take() {
            publish.info.status = PublishStatus::Failed;
            publish.info.fail_reason = Some(reason);
        } else {
            publish.info.status = PublishStatus::PublishComplete;
            if publish.info.privacy_level != "SELF_ONLY" {
                publish.info.post_id = Some(post_id);
                used = true;
            }
        }
    }
    let bytes = publish.info.bytes_received;
    let (uploaded, downloaded) = match publish.info.source {
        MediaSource::FileUpload => (bytes, 0),
        MediaSource::PullFromUrl => (0, bytes),
    };
    let data = json!({
        "status": publish.info.status.as_str(),
        "fail_reason": publish.info.fail_reason.clone().unwrap_or_default(),
        "publicaly_available_post_id": publish.info.post_id.into_iter().collect::<Vec<_>>(),
        "uploaded_bytes": uploaded,
        "downloaded_bytes": downloaded,
    });
    (data, used)
}

/// `POST /v2/post/publish/status/fetch/` `{"publish_id"}`: where a publish stands. A poll that
/// finds its pull still running waits for it (up to 2 s) so answers do not depend on timing.
#[handler]
async fn status_fetch(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let body = body.into_string().await.unwrap_or_default();
    let (publish_id, pulling) = {
        let state = state.lock().expect("fake state");
        if let Err(error) = state.publisher(req) {
            return error.into();
        }
        let publish_id = match json_object(&body).and_then(|o| req_str(&o, "publish_id").map(str::to_owned)) {
            Ok(id) => id,
            Err(error) => return error.into(),
        };
        let Some(publish) = state.publishes.iter().find(|p| p.info.publish_id == publish_id) else {
            return bad("publish_id does not exist.");
        };
        let pulling = publish.pulled.clone().filter(|_| !publish.pull_done);
        (publish_id, pulling)
    };
    if let Some(mut pulled) = pulling {
        let _ = tokio::time::timeout(PULL_WAIT, pulled.wait_for(|done| *done)).await;
    }
    let mut state = state.lock().expect("fake state");
    let post_id = state.next_post_id;
    let Some(publish) = state.publish_mut(&publish_id) else {
        return bad("publish_id does not exist.");
    };
    let (data, used) = advance(publish, post_id);
    if used {
        state.next_post_id += 1;
    }
    api_ok(200, data)
}

impl crate::Fake for FakeTiktok {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}
