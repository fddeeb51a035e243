//! A fake LinkedIn that speaks LinkedIn's OAuth 2.0 (Sign In with LinkedIn using OpenID Connect +
//! Share on LinkedIn) and REST wire format (PLATFORMS.md §1): the authorize redirect, the token
//! endpoint with the client secret in the form body (no PKCE), 30-minute single-use codes, 60-day
//! access tokens, optional programmatic refresh tokens whose 365-day lifetime does not extend on
//! refresh, `GET /v2/userinfo` and `POST /rest/posts` with its versioning headers, 422 validation
//! and duplicate errors and the post URN in `x-restli-id`. It records every request so tests can
//! assert what LinkedIn received, and can be told to deny consent or to answer the next token or
//! post call with a scripted response.
//!
//! Media (§1.4): `POST /rest/images?action=initializeUpload` and a single raw `PUT` per image;
//! `POST /rest/videos?action=initializeUpload` with 4 MiB parts, one `PUT` per part answering an
//! `ETag`, `action=finalizeUpload` with those ETags in order, and `GET /rest/videos/{urn}` moving
//! from `WAITING_UPLOAD` to `PROCESSING` (for a set number of polls) to `AVAILABLE` or
//! `PROCESSING_FAILED`; posts may carry `content.media` or `content.multiImage`. Uploaded bytes are
//! counted and hashed as they stream in, never kept.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use poem::{
    Body, EndpointExt, Request, Response, Route, handler,
    http::{HeaderName, StatusCode, header},
    web::Data,
};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Recorder, Serve, serve_fake_with};

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

/// Largest image one `PUT` may carry (LinkedIn's own limit is in pixels; the fake caps bytes).
pub const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;
/// Largest `fileSizeBytes` a video `initializeUpload` accepts: 500 MiB.
pub const MAX_VIDEO_BYTES: u64 = 500 * 1024 * 1024;
/// Size of every video upload part but the last (which holds the remainder).
pub const VIDEO_PART_BYTES: u64 = 4_194_304;
/// `PROCESSING` answers a finalized video gives before its final state, unless changed.
pub const DEFAULT_PROCESSING_POLLS: u32 = 2;
/// The owner of the media [`FakeLinkedin::add_foreign_image`] and `add_foreign_video` register.
pub const FOREIGN_OWNER: &str = "urn:li:person:otherMember42";
/// How long upload URLs stay valid (`uploadUrlExpiresAt` / `uploadUrlsExpireAt`).
const UPLOAD_URL_TTL_HOURS: i64 = 24;

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

/// Where an image or video is in its lifecycle (the `status` of `GET /rest/videos/{urn}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaStatus {
    /// Registered, bytes (or for a video, the finalize call) not yet received.
    WaitingUpload,
    /// Finalized video being processed.
    Processing,
    /// Ready to be posted.
    Available,
    /// Processing failed (scripted); `failure_reason` says why.
    ProcessingFailed,
}

impl MediaStatus {
    /// The wire value (`WAITING_UPLOAD`, `PROCESSING`, `AVAILABLE`, `PROCESSING_FAILED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WaitingUpload => "WAITING_UPLOAD",
            Self::Processing => "PROCESSING",
            Self::Available => "AVAILABLE",
            Self::ProcessingFailed => "PROCESSING_FAILED",
        }
    }
}

/// An image registered with `initializeUpload`, as the fake holds it.
#[derive(Debug, Clone)]
pub struct LinkedinImage {
    /// `urn:li:image:…`.
    pub urn: String,
    /// The `urn:li:person:…` it was registered for.
    pub owner: String,
    /// The `uploadUrl` handed out.
    pub upload_url: String,
    /// When the upload URL stops accepting bytes (fake clock).
    pub upload_url_expires_at: DateTime<Utc>,
    /// Bytes of the last complete upload (0 before one).
    pub bytes: u64,
    /// SHA-256 (hex) of the last complete upload.
    pub sha256: Option<String>,
    /// Complete `PUT`s received (more than 1: uploaded again).
    pub uploads: u32,
    /// `WaitingUpload` until uploaded, then `Available` (or `ProcessingFailed` if scripted).
    pub status: MediaStatus,
    /// Why processing failed, when scripted.
    pub failure_reason: Option<String>,
}

/// One part of a video upload.
#[derive(Debug, Clone)]
pub struct VideoPart {
    /// The part's `uploadUrl`.
    pub upload_url: String,
    /// `firstByte` of the instruction.
    pub first_byte: u64,
    /// `lastByte` of the instruction (inclusive).
    pub last_byte: u64,
    /// The `ETag` answered to the last complete `PUT` of this part.
    pub etag: Option<String>,
    /// Bytes of the last complete `PUT`.
    pub bytes: u64,
    /// SHA-256 (hex) of the last complete `PUT`.
    pub sha256: Option<String>,
    /// Complete `PUT`s received for this part.
    pub uploads: u32,
}

/// A video registered with `initializeUpload`, as the fake holds it.
#[derive(Debug, Clone)]
pub struct LinkedinVideo {
    /// `urn:li:video:…`.
    pub urn: String,
    /// The `urn:li:person:…` it was registered for.
    pub owner: String,
    /// `fileSizeBytes` of the initialize request.
    pub file_size_bytes: u64,
    /// The `uploadToken` handed out (always empty, as for single-file member uploads).
    pub upload_token: String,
    /// When the part URLs stop accepting bytes (fake clock).
    pub upload_urls_expire_at: DateTime<Utc>,
    /// The upload instructions, in order.
    pub parts: Vec<VideoPart>,
    /// SHA-256 (hex) of the whole file, once every part arrived in order (re-sending a part with
    /// identical bytes is fine); `None` otherwise: compare `parts[i].sha256` then.
    pub sha256: Option<String>,
    /// `uploadedPartIds` of the accepted `finalizeUpload`.
    pub finalized_part_ids: Option<Vec<String>>,
    /// Lifecycle state.
    pub status: MediaStatus,
    /// `GET /rest/videos/{urn}` calls answered.
    pub status_polls: u32,
    /// `processingFailureReason`, once processing failed.
    pub failure_reason: Option<String>,
}

impl LinkedinVideo {
    /// Bytes received over all parts (last complete `PUT` of each).
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }

    /// Each part's current `ETag`, in order.
    pub fn etags(&self) -> Vec<Option<String>> {
        self.parts.iter().map(|p| p.etag.clone()).collect()
    }
}

/// A post the fake created.
#[derive(Debug, Clone)]
pub struct LinkedinPost {
    /// The URN sent in `x-restli-id`.
    pub urn: String,
    /// The request body.
    pub body: Value,
    /// The media URNs it carried (`content.media.id`, or the `multiImage` ids in order); empty for
    /// a text post.
    pub media: Vec<String>,
}

#[derive(Debug)]
struct ImageState {
    /// The `{n}` of `/upload/images/{n}`.
    n: u64,
    image: LinkedinImage,
}

#[derive(Debug)]
struct VideoState {
    video: LinkedinVideo,
    /// Whole-file hash over the parts received in order so far.
    running: Sha256,
    /// The part the whole-file hash needs next.
    next_in_order: usize,
    /// False once a part arrived out of order (the whole-file hash is then unknown).
    in_order: bool,
    /// `PROCESSING` answers still to give.
    processing_left: u32,
    /// Scripted failure reason for the end of processing.
    fail_with: Option<String>,
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
    posts: Vec<LinkedinPost>,
    images: Vec<ImageState>,
    videos: Vec<VideoState>,
    image_failures: VecDeque<String>,
    video_failures: VecDeque<String>,
    processing_polls: u32,
    next_upload: u64,
    base_url: String,
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

    /// Registers an image for `owner` with a fresh upload URL.
    fn new_image(&mut self, owner: &str) -> &mut LinkedinImage {
        self.next_upload += 1;
        let n = self.next_upload;
        let image = LinkedinImage {
            urn: format!("urn:li:image:C4E10AQ{}", random_b64(12)),
            owner: owner.to_owned(),
            upload_url: format!("{}/upload/images/{n}", self.base_url),
            upload_url_expires_at: self.now() + chrono::Duration::hours(UPLOAD_URL_TTL_HOURS),
            bytes: 0,
            sha256: None,
            uploads: 0,
            status: MediaStatus::WaitingUpload,
            failure_reason: None,
        };
        self.images.push(ImageState { n, image });
        &mut self.images.last_mut().expect("just pushed").image
    }

    /// Registers a video of `size` bytes for `owner`, split into upload parts.
    fn new_video(&mut self, owner: &str, size: u64) -> &mut VideoState {
        let id = format!("C5F10AQ{}", random_b64(12));
        let parts = (0..size.div_ceil(VIDEO_PART_BYTES))
            .map(|i| VideoPart {
                upload_url: format!("{}/upload/videos/{id}/{i}", self.base_url),
                first_byte: i * VIDEO_PART_BYTES,
                last_byte: ((i + 1) * VIDEO_PART_BYTES).min(size) - 1,
                etag: None,
                bytes: 0,
                sha256: None,
                uploads: 0,
            })
            .collect();
        let video = LinkedinVideo {
            urn: format!("urn:li:video:{id}"),
            owner: owner.to_owned(),
            file_size_bytes: size,
            upload_token: String::new(),
            upload_urls_expire_at: self.now() + chrono::Duration::hours(UPLOAD_URL_TTL_HOURS),
            parts,
            sha256: None,
            finalized_part_ids: None,
            status: MediaStatus::WaitingUpload,
            status_polls: 0,
            failure_reason: None,
        };
        self.videos.push(VideoState {
            video,
            running: Sha256::new(),
            next_in_order: 0,
            in_order: true,
            processing_left: 0,
            fail_with: None,
        });
        self.videos.last_mut().expect("just pushed")
    }

    fn image(&self, urn: &str) -> Option<&LinkedinImage> {
        self.images.iter().map(|i| &i.image).find(|i| i.urn == urn)
    }

    fn video_mut(&mut self, urn: &str) -> Option<&mut VideoState> {
        self.videos.iter_mut().find(|v| v.video.urn == urn)
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

/// LinkedIn's REST error shape without a service code.
fn li_error(status: u16, message: impl Into<String>) -> Response {
    json(status, json!({"message": message.into(), "status": status}))
}

/// The 422 LinkedIn answers for a required field that is absent.
fn missing_field(path: &str) -> Response {
    li_error(422, format!("ERROR :: {path} :: field is required but not found and has no default value"))
}

/// The 403 for acting on media or on behalf of an owner that is not the token's member.
fn forbidden(message: String) -> Response {
    json(403, json!({"serviceErrorCode": 100, "message": message, "status": 403}))
}

/// `urn:li:person:{USER_ID}`: the member every token of this fake belongs to.
fn member_urn() -> String {
    format!("urn:li:person:{USER_ID}")
}

/// The versioning headers every `/rest/*` call must carry, or LinkedIn's answer without them.
fn versioning_error(req: &Request) -> Option<Response> {
    match header_str(req, "linkedin-version") {
        None => {
            return Some(json(
                400,
                json!({"message": "A version must be present. Please specify a version by adding the LinkedIn-Version header.", "status": 400}),
            ));
        }
        Some(version) if version.len() != 6 || !version.bytes().all(|b| b.is_ascii_digit()) => {
            return Some(json(
                400,
                json!({"message": format!("Invalid LinkedIn-Version header value \"{version}\": expected YYYYMM"), "status": 400}),
            ));
        }
        Some(_) => {}
    }
    if header_str(req, "x-restli-protocol-version") != Some("2.0.0") {
        return Some(json(
            400,
            json!({"message": "The X-Restli-Protocol-Version header must be 2.0.0", "status": 400}),
        ));
    }
    None
}

/// Whether the request carries a live access token.
fn authorized(req: &Request, state: &State) -> bool {
    bearer(req).is_some_and(|t| state.access_live(t))
}

/// The body as a JSON object, or LinkedIn's 400 for anything else.
async fn json_object(body: Body) -> Result<Value, Response> {
    match serde_json::from_str(&body.into_string().await.unwrap_or_default()) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(li_error(400, "Unable to parse the request body as a JSON object")),
    }
}

/// An upload body, counted and hashed as it streams in.
struct Received {
    bytes: u64,
    sha256: String,
    /// The whole-file hasher it was also fed to, if any.
    running: Option<Sha256>,
}

enum ReceiveError {
    /// More than the limit arrived (reading stopped there).
    TooLarge,
    /// The body broke off.
    Broken(String),
}

/// Reads `body` chunk by chunk, up to `limit` bytes, hashing it (and feeding `running` too).
async fn receive(body: Body, limit: u64, mut running: Option<Sha256>) -> Result<Received, ReceiveError> {
    let mut stream = std::pin::pin!(body.into_bytes_stream());
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ReceiveError::Broken(e.to_string()))?;
        bytes += chunk.len() as u64;
        if bytes > limit {
            return Err(ReceiveError::TooLarge);
        }
        hasher.update(&chunk);
        if let Some(running) = running.as_mut() {
            running.update(&chunk);
        }
    }
    Ok(Received { bytes, sha256: format!("{:x}", hasher.finalize()), running })
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
        Self::start_with(Serve::default()).await
    }

    /// Starts it where and as `serve` says (the sandbox's fixed ports and wrapping).
    pub async fn start_with(serve: Serve) -> Self {
        let state = Arc::new(Mutex::new(State {
            next_id: 7_263_495_017_338_732_544,
            processing_polls: DEFAULT_PROCESSING_POLLS,
            ..State::default()
        }));
        let recorder = Recorder::default();
        let routes = Route::new()
            .at("/oauth/v2/authorization", poem::get(authorize))
            .at("/oauth/v2/accessToken", poem::post(token_endpoint))
            .at("/v2/userinfo", poem::get(userinfo))
            .at("/rest/posts", poem::post(create_post))
            .at("/rest/images", poem::post(images_action))
            .at("/rest/images/:urn", poem::get(get_image))
            .at("/upload/images/:n", poem::put(upload_image))
            .at("/rest/videos", poem::post(videos_action))
            .at("/rest/videos/:urn", poem::get(get_video))
            .at("/upload/videos/:id/:part", poem::put(upload_video_part))
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
            ("LINKEDIN_CLIENT_ID".into(), CLIENT_ID.into()),
            ("LINKEDIN_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("LINKEDIN_AUTH_URL".into(), format!("{base_url}/oauth/v2/authorization")),
            ("LINKEDIN_TOKEN_URL".into(), format!("{base_url}/oauth/v2/accessToken")),
            ("LINKEDIN_API_BASE".into(), base_url.to_owned()),
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
        self.state.lock().expect("fake state").posts.iter().map(|p| (p.urn.clone(), p.body.clone())).collect()
    }

    /// Posts created, in order, with the media URNs each carried.
    pub fn created_posts(&self) -> Vec<LinkedinPost> {
        self.state.lock().expect("fake state").posts.clone()
    }

    /// Every image registered, in order of `initializeUpload`.
    pub fn images(&self) -> Vec<LinkedinImage> {
        self.state.lock().expect("fake state").images.iter().map(|i| i.image.clone()).collect()
    }

    /// One image by URN.
    pub fn image(&self, urn: &str) -> Option<LinkedinImage> {
        self.state.lock().expect("fake state").image(urn).cloned()
    }

    /// Every video registered, in order of `initializeUpload`.
    pub fn videos(&self) -> Vec<LinkedinVideo> {
        self.state.lock().expect("fake state").videos.iter().map(|v| v.video.clone()).collect()
    }

    /// One video by URN.
    pub fn video(&self, urn: &str) -> Option<LinkedinVideo> {
        self.state.lock().expect("fake state").video_mut(urn).map(|v| v.video.clone())
    }

    /// How many `PROCESSING` answers videos finalized from now on give before their final state.
    pub fn set_processing_polls(&self, polls: u32) {
        self.state.lock().expect("fake state").processing_polls = polls;
    }

    /// The next video finalized ends processing as `PROCESSING_FAILED` with this reason.
    pub fn fail_next_video_processing(&self, reason: &str) {
        self.state.lock().expect("fake state").video_failures.push_back(reason.to_owned());
    }

    /// The next image uploaded fails processing with this reason (a post using it gets a 422).
    pub fn fail_next_image_processing(&self, reason: &str) {
        self.state.lock().expect("fake state").image_failures.push_back(reason.to_owned());
    }

    /// Registers an uploaded, available image owned by [`FOREIGN_OWNER`]; returns its URN.
    pub fn add_foreign_image(&self) -> String {
        let mut state = self.state.lock().expect("fake state");
        let image = state.new_image(FOREIGN_OWNER);
        image.status = MediaStatus::Available;
        image.urn.clone()
    }

    /// Registers a finalized, available video owned by [`FOREIGN_OWNER`]; returns its URN.
    pub fn add_foreign_video(&self) -> String {
        let mut state = self.state.lock().expect("fake state");
        let video = &mut state.new_video(FOREIGN_OWNER, 0).video;
        video.status = MediaStatus::Available;
        video.finalized_part_ids = Some(Vec::new());
        video.urn.clone()
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

/// `POST /rest/posts`: versioned Posts API as a member: text posts, and posts with one image or
/// video (`content.media`) or 2–20 images (`content.multiImage`).
#[handler]
async fn create_post(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    if let Some(error) = versioning_error(req) {
        return error;
    }
    let scripted = {
        let mut state = state.lock().expect("fake state");
        if !authorized(req, &state) {
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
    let media = match post_media(&state, &post) {
        Ok(media) => media,
        Err(rejection) => return rejection.response(),
    };
    if let Some(LinkedinPost { urn, .. }) = state.posts.iter().find(|p| p.body["commentary"] == post["commentary"]) {
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
    state.posts.push(LinkedinPost { urn: urn.clone(), body: post, media });
    Response::builder().status(StatusCode::CREATED).header("x-restli-id", urn).finish()
}

/// A validation failure of a post, turned into LinkedIn's error response at the end.
#[derive(Debug)]
struct Rejection {
    status: u16,
    message: String,
}

impl Rejection {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    fn missing(path: &str) -> Self {
        Self::new(422, format!("ERROR :: {path} :: field is required but not found and has no default value"))
    }

    fn forbidden(message: String) -> Self {
        Self::new(403, message)
    }

    fn response(self) -> Response {
        if self.status == 403 { forbidden(self.message) } else { li_error(self.status, self.message) }
    }
}

/// The media URNs of a post's `content` (none for a text post), or LinkedIn's error when one is
/// missing, not ready or not the author's.
fn post_media(state: &State, post: &Value) -> Result<Vec<String>, Rejection> {
    let content = match post.get("content") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(content) => content,
    };
    match (content.get("media"), content.get("multiImage")) {
        (Some(media), None) => {
            let Some(urn) = media.get("id").and_then(Value::as_str) else {
                return Err(Rejection::missing("/content/media/id"));
            };
            check_media(state, urn, "/content/media/id", true)?;
            Ok(vec![urn.to_owned()])
        }
        (None, Some(multi)) => {
            let Some(images) = multi.get("images").and_then(Value::as_array) else {
                return Err(Rejection::missing("/content/multiImage/images"));
            };
            if !(2..=20).contains(&images.len()) {
                return Err(Rejection::new(
                    422,
                    format!(
                        "ERROR :: /content/multiImage/images :: array size {} is out of range: a multi-image post takes 2 to 20 images",
                        images.len()
                    ),
                ));
            }
            let mut urns = Vec::new();
            for (i, image) in images.iter().enumerate() {
                let path = format!("/content/multiImage/images/{i}/id");
                let Some(urn) = image.get("id").and_then(Value::as_str) else {
                    return Err(Rejection::missing(&path));
                };
                check_media(state, urn, &path, false)?;
                urns.push(urn.to_owned());
            }
            Ok(urns)
        }
        (Some(_), Some(_)) => Err(Rejection::new(
            422,
            "ERROR :: /content :: union must have exactly one member, found media and multiImage",
        )),
        (None, None) => Err(Rejection::new(
            422,
            "ERROR :: /content :: the fake LinkedIn supports only media and multiImage content",
        )),
    }
}

/// Whether `urn` (at `path` of the post) can be posted by the member: an uploaded image, or (when
/// `allow_video`) an available video, owned by the member.
fn check_media(state: &State, urn: &str, path: &str, allow_video: bool) -> Result<(), Rejection> {
    let author = member_urn();
    let (kind, owner, status, reason) = if urn.starts_with("urn:li:image:") {
        let Some(image) = state.image(urn) else {
            return Err(Rejection::new(422, format!("ERROR :: {path} :: {urn} does not exist")));
        };
        ("image", &image.owner, image.status, &image.failure_reason)
    } else if urn.starts_with("urn:li:video:") && allow_video {
        let Some(video) = state.videos.iter().map(|v| &v.video).find(|v| v.urn == urn) else {
            return Err(Rejection::new(422, format!("ERROR :: {path} :: {urn} does not exist")));
        };
        ("video", &video.owner, video.status, &video.failure_reason)
    } else if urn.starts_with("urn:li:video:") {
        return Err(Rejection::new(422, format!("ERROR :: {path} :: a multi-image post takes images only, got {urn}")));
    } else {
        return Err(Rejection::new(422, format!("ERROR :: {path} :: {urn} is not an image or video URN")));
    };
    if *owner != author {
        return Err(Rejection::forbidden(format!(
            "Accessing this {kind} resource is forbidden: {urn} is not owned by {author}"
        )));
    }
    match status {
        MediaStatus::Available => Ok(()),
        MediaStatus::Processing => {
            Err(Rejection::new(400, format!("The {kind} {urn} is still processing and cannot be posted yet")))
        }
        MediaStatus::WaitingUpload if kind == "video" => {
            Err(Rejection::new(422, format!("ERROR :: {path} :: {urn} has not been uploaded and finalized")))
        }
        MediaStatus::WaitingUpload => {
            Err(Rejection::new(422, format!("ERROR :: {path} :: {urn} has not been uploaded")))
        }
        MediaStatus::ProcessingFailed => Err(Rejection::new(
            422,
            format!("ERROR :: {path} :: {urn} failed processing: {}", reason.as_deref().unwrap_or("unknown")),
        )),
    }
}

/// `POST /rest/images?action=initializeUpload`: registers an image for the token's member and
/// hands out its single-`PUT` upload URL.
#[handler]
async fn images_action(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    if let Some(error) = versioning_error(req) {
        return error;
    }
    if !authorized(req, &state.lock().expect("fake state")) {
        return invalid_token();
    }
    let action = query(req).get("action").cloned().unwrap_or_default();
    if action != "initializeUpload" {
        return li_error(400, format!("Unsupported action \"{action}\" on the images resource"));
    }
    let request = match json_object(body).await {
        Ok(request) => request,
        Err(error) => return error,
    };
    let Some(owner) = request.pointer("/initializeUploadRequest/owner").and_then(Value::as_str) else {
        return missing_field("/initializeUploadRequest/owner");
    };
    if owner != member_urn() {
        return forbidden(format!("Not enough permissions to upload on behalf of {owner}"));
    }
    let mut state = state.lock().expect("fake state");
    let image = state.new_image(owner);
    json(
        200,
        json!({"value": {
            "uploadUrlExpiresAt": image.upload_url_expires_at.timestamp_millis(),
            "uploadUrl": image.upload_url,
            "image": image.urn,
        }}),
    )
}

/// `GET /rest/images/{urn}`: a member (`w_member_social`) token may not read image status.
#[handler]
fn get_image(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    if let Some(error) = versioning_error(req) {
        return error;
    }
    if !authorized(req, &state.lock().expect("fake state")) {
        return invalid_token();
    }
    forbidden("Not enough permissions to access: images.GET.20260301".to_owned())
}

/// `PUT /upload/images/{n}`: the image's raw bytes in one request (counted and hashed, not kept).
#[handler]
async fn upload_image(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let n: u64 = req.raw_path_param("n").and_then(|v| v.parse().ok()).unwrap_or(0);
    {
        let state = state.lock().expect("fake state");
        if !authorized(req, &state) {
            return invalid_token();
        }
        let Some(image) = state.images.iter().find(|i| i.n == n) else {
            return li_error(404, "No image upload is registered at this URL");
        };
        if image.image.upload_url_expires_at <= state.now() {
            return li_error(400, "The upload URL has expired");
        }
    }
    let received = match receive(body, MAX_IMAGE_BYTES, None).await {
        Ok(received) if received.bytes == 0 => return li_error(400, "The upload is empty"),
        Ok(received) => received,
        Err(ReceiveError::TooLarge) => {
            return li_error(400, format!("The image exceeds the maximum upload size of {MAX_IMAGE_BYTES} bytes"));
        }
        Err(ReceiveError::Broken(error)) => return li_error(400, format!("The upload was interrupted: {error}")),
    };
    let mut state = state.lock().expect("fake state");
    let failure = state.image_failures.pop_front();
    let image = &mut state.images.iter_mut().find(|i| i.n == n).expect("registered image").image;
    image.bytes = received.bytes;
    image.sha256 = Some(received.sha256);
    image.uploads += 1;
    image.status = if failure.is_some() { MediaStatus::ProcessingFailed } else { MediaStatus::Available };
    image.failure_reason = failure;
    Response::builder().status(StatusCode::CREATED).finish()
}

/// `POST /rest/videos?action=initializeUpload|finalizeUpload`.
#[handler]
async fn videos_action(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    if let Some(error) = versioning_error(req) {
        return error;
    }
    if !authorized(req, &state.lock().expect("fake state")) {
        return invalid_token();
    }
    let action = query(req).get("action").cloned().unwrap_or_default();
    if action != "initializeUpload" && action != "finalizeUpload" {
        return li_error(400, format!("Unsupported action \"{action}\" on the videos resource"));
    }
    let request = match json_object(body).await {
        Ok(request) => request,
        Err(error) => return error,
    };
    let mut state = state.lock().expect("fake state");
    if action == "initializeUpload" {
        initialize_video(&mut state, &request)
    } else {
        finalize_video(&mut state, &request)
    }
}

/// `action=initializeUpload`: registers the video and answers its part upload instructions.
fn initialize_video(state: &mut State, request: &Value) -> Response {
    let Some(owner) = request.pointer("/initializeUploadRequest/owner").and_then(Value::as_str) else {
        return missing_field("/initializeUploadRequest/owner");
    };
    let Some(size) = request.pointer("/initializeUploadRequest/fileSizeBytes") else {
        return missing_field("/initializeUploadRequest/fileSizeBytes");
    };
    let Some(size) = size.as_u64().filter(|s| *s > 0) else {
        return li_error(
            400,
            format!("ERROR :: /initializeUploadRequest/fileSizeBytes :: {size} is not a positive file size"),
        );
    };
    if size > MAX_VIDEO_BYTES {
        return li_error(400, format!("The video size {size} exceeds the maximum of {MAX_VIDEO_BYTES} bytes"));
    }
    for flag in ["uploadCaptions", "uploadThumbnail"] {
        if request.pointer(&format!("/initializeUploadRequest/{flag}")) == Some(&Value::Bool(true)) {
            return li_error(400, format!("The fake LinkedIn does not support {flag}: true"));
        }
    }
    if owner != member_urn() {
        return forbidden(format!("Not enough permissions to upload on behalf of {owner}"));
    }
    let video = &state.new_video(owner, size).video;
    let instructions: Vec<Value> = video
        .parts
        .iter()
        .map(|p| json!({"uploadUrl": p.upload_url, "firstByte": p.first_byte, "lastByte": p.last_byte}))
        .collect();
    json(
        200,
        json!({"value": {
            "uploadUrlsExpireAt": video.upload_urls_expire_at.timestamp_millis(),
            "video": video.urn,
            "uploadInstructions": instructions,
            "uploadToken": video.upload_token,
        }}),
    )
}

/// `action=finalizeUpload`: every part uploaded and its ETag listed in order; the video then
/// processes.
fn finalize_video(state: &mut State, request: &Value) -> Response {
    let Some(finalize) = request.get("finalizeUploadRequest") else {
        return missing_field("/finalizeUploadRequest");
    };
    let Some(urn) = finalize.get("video").and_then(Value::as_str) else {
        return missing_field("/finalizeUploadRequest/video");
    };
    let Some(token) = finalize.get("uploadToken").and_then(Value::as_str) else {
        return missing_field("/finalizeUploadRequest/uploadToken");
    };
    let Some(ids) = finalize.get("uploadedPartIds").and_then(Value::as_array) else {
        return missing_field("/finalizeUploadRequest/uploadedPartIds");
    };
    let Some(ids) = ids.iter().map(|id| id.as_str().map(str::to_owned)).collect::<Option<Vec<String>>>() else {
        return li_error(400, "ERROR :: /finalizeUploadRequest/uploadedPartIds :: every part id must be a string");
    };
    let polls = state.processing_polls;
    let Some(video) = state.videos.iter().map(|v| &v.video).find(|v| v.urn == urn) else {
        return li_error(404, format!("Video {urn} does not exist"));
    };
    if video.owner != member_urn() {
        return forbidden(format!(
            "Accessing this video resource is forbidden: {urn} is not owned by {}",
            member_urn()
        ));
    }
    if video.status != MediaStatus::WaitingUpload {
        return li_error(400, format!("Video {urn} has already been finalized"));
    }
    if token != video.upload_token {
        return li_error(400, format!("Invalid uploadToken for video {urn}"));
    }
    if let Some(missing) = video.parts.iter().position(|p| p.etag.is_none()) {
        return li_error(400, format!("Part {missing} of video {urn} has not been uploaded"));
    }
    let etags: Vec<String> = video.parts.iter().filter_map(|p| p.etag.clone()).collect();
    if ids != etags {
        return li_error(
            400,
            format!(
                "uploadedPartIds do not match the {} uploaded parts of video {urn} (their ETags, in order)",
                etags.len()
            ),
        );
    }
    let failure = state.video_failures.pop_front();
    let video = state.video_mut(urn).expect("video exists");
    video.video.finalized_part_ids = Some(ids);
    video.video.status = MediaStatus::Processing;
    video.processing_left = polls;
    video.fail_with = failure;
    Response::builder().status(StatusCode::OK).finish()
}

/// `PUT /upload/videos/{id}/{part}`: one part's raw bytes, exactly `lastByte - firstByte + 1` of
/// them (counted and hashed, not kept); answers an unquoted `ETag` unique to this upload.
#[handler]
async fn upload_video_part(req: &Request, body: Body, state: Data<&Arc<Mutex<State>>>) -> Response {
    let urn = format!("urn:li:video:{}", req.raw_path_param("id").unwrap_or_default());
    let Some(part) = req.raw_path_param("part").and_then(|p| p.parse::<usize>().ok()) else {
        return li_error(404, "No video upload is registered at this URL");
    };
    let (expected, seed) = {
        let mut state = state.lock().expect("fake state");
        if !authorized(req, &state) {
            return invalid_token();
        }
        let now = state.now();
        let Some(video) = state.video_mut(&urn) else {
            return li_error(404, "No video upload is registered at this URL");
        };
        let Some(instruction) = video.video.parts.get(part) else {
            return li_error(404, "No video upload is registered at this URL");
        };
        if video.video.status != MediaStatus::WaitingUpload {
            return li_error(400, format!("Video {urn} has already been finalized"));
        }
        if video.video.upload_urls_expire_at <= now {
            return li_error(400, "The upload URL has expired");
        }
        let expected = instruction.last_byte - instruction.first_byte + 1;
        let seed = (video.in_order && video.next_in_order == part).then(|| video.running.clone());
        (expected, seed)
    };
    let wrong_size =
        |got: &str| li_error(400, format!("Part {part} of video {urn} must be exactly {expected} bytes, got {got}"));
    let received = match receive(body, expected, seed).await {
        Ok(received) if received.bytes != expected => return wrong_size(&received.bytes.to_string()),
        Ok(received) => received,
        Err(ReceiveError::TooLarge) => return wrong_size("more"),
        Err(ReceiveError::Broken(error)) => return li_error(400, format!("The upload was interrupted: {error}")),
    };
    let mut state = state.lock().expect("fake state");
    let etag = random_b64(24);
    let video = state.video_mut(&urn).expect("video exists");
    if video.video.status != MediaStatus::WaitingUpload {
        return li_error(400, format!("Video {urn} has already been finalized"));
    }
    let slot = &mut video.video.parts[part];
    let previous = slot.sha256.replace(received.sha256.clone());
    slot.bytes = received.bytes;
    slot.uploads += 1;
    slot.etag = Some(etag.clone());
    match received.running {
        Some(running) if video.in_order && video.next_in_order == part => {
            video.running = running;
            video.next_in_order += 1;
        }
        None if part < video.next_in_order && previous.as_deref() == Some(received.sha256.as_str()) => {}
        _ => video.in_order = false,
    }
    video.video.sha256 = (video.in_order && video.next_in_order == video.video.parts.len())
        .then(|| format!("{:x}", video.running.clone().finalize()));
    Response::builder().status(StatusCode::OK).header(header::ETAG, etag).finish()
}

/// `GET /rest/videos/{urn}` (URN percent-encoded or raw): `WAITING_UPLOAD` before finalize, then
/// `PROCESSING` for the configured number of polls, then `AVAILABLE` or `PROCESSING_FAILED`.
#[handler]
fn get_video(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    if let Some(error) = versioning_error(req) {
        return error;
    }
    let mut state = state.lock().expect("fake state");
    if !authorized(req, &state) {
        return invalid_token();
    }
    // poem percent-decodes path parameters, so `urn%3Ali%3Avideo%3A…` and the raw URN both arrive
    // here as `urn:li:video:…`.
    let urn = req.raw_path_param("urn").unwrap_or_default().to_owned();
    if !urn.starts_with("urn:li:video:") {
        return li_error(400, format!("Invalid video URN \"{urn}\""));
    }
    let Some(video) = state.video_mut(&urn) else {
        return li_error(404, format!("Video {urn} does not exist"));
    };
    if video.video.owner != member_urn() {
        return forbidden(format!(
            "Accessing this video resource is forbidden: {urn} is not owned by {}",
            member_urn()
        ));
    }
    video.video.status_polls += 1;
    if video.video.status == MediaStatus::Processing {
        if video.processing_left > 0 {
            video.processing_left -= 1;
        } else if let Some(reason) = video.fail_with.take() {
            video.video.status = MediaStatus::ProcessingFailed;
            video.video.failure_reason = Some(reason);
        } else {
            video.video.status = MediaStatus::Available;
        }
    }
    let mut body = json!({"id": urn, "owner": video.video.owner, "status": video.video.status.as_str()});
    if let Some(reason) = &video.video.failure_reason {
        body["processingFailureReason"] = json!(reason);
    }
    json(200, body)
}

impl crate::Fake for FakeLinkedin {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}
