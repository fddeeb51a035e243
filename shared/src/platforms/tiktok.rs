//! TikTok: Login Kit v2 for web and the Content Posting API (PLATFORMS.md §5, docs of 2026-11).
//!
//! - Consent at `{TIKTOK_AUTH_URL}` with `client_key` (TikTok's name for the client id) and the
//!   comma-separated scopes `user.info.basic,video.publish`; web apps use no PKCE.
//! - Tokens at `{TIKTOK_TOKEN_URL}` with `client_key` and `client_secret` in the form. Access
//!   tokens live 2 hours, refresh tokens 180 days, and refresh tokens rotate: the previous one
//!   stops working once a new one is issued. Lifetimes are read from each answer, not assumed.
//! - Identity from `GET /v2/user/info/` (`open_id`, `display_name`); revocation with
//!   `POST /v2/oauth/revoke/`. Every API answer carries `error.code`, `"ok"` on success, which is
//!   checked even on HTTP 200 (§5.5).
//! - TikTok posts are videos or photos: text alone cannot be published.
//! - Media by Direct Post (PLATFORMS.md §5.3–5.5, after TikTok's Content Posting API v2
//!   references as of 2026-11: query-creator-info, direct-post, photo-post, media-transfer-guide,
//!   get-video-status), as saved steps (DESIGN §12):
//!   1. `POST /v2/post/publish/creator_info/query/` first: the privacy level
//!      (`options.tiktok_privacy_level`, default `PUBLIC_TO_EVERYONE`) must be one of the
//!      creator's `privacy_level_options`, and interactions the creator turned off stay off. A
//!      video longer than `max_video_post_duration_sec` is refused, its length read from its
//!      movie header by a few ranged reads (`media::mp4`); a video that tells no length, or a
//!      server that takes no ranges, leaves the length to TikTok.
//!   2. A video under one of `TIKTOK_VERIFIED_URL_PREFIXES` is probed (address rules, type and
//!      size from the first bytes) and pulled by TikTok: `POST /v2/post/publish/video/init/` with
//!      `PULL_FROM_URL` starts publishing, so it is sent only at `sending`. Any other video is
//!      uploaded (`FILE_UPLOAD`): its size is read from the source, `video/init` announces the
//!      chunk plan (10 MiB chunks, one chunk under 10 MiB, `total_chunk_count = floor(size /
//!      chunk)`, the last chunk taking the remainder) and answers `publish_id` and `upload_url`,
//!      both saved; the init publishes nothing. At `sending` the chunks are `PUT` one after the
//!      other (`Content-Range`, `Content-Type: video/mp4`), streamed from a fresh download of the
//!      source a piece at a time, never the whole file: the last chunk starts publishing.
//!   3. Photos (1–35) can only be pulled (`POST /v2/post/publish/content/init/`, `PHOTO`,
//!      `DIRECT_POST`), so every URL must be under a verified prefix; each is probed, and the
//!      init is sent at `sending`.
//!   4. `POST /v2/post/publish/status/fetch/` with the `publish_id`, each look a saved
//!      `confirming` wait: `PUBLISH_COMPLETE` gives `publicaly_available_post_id[0]` (sic), or
//!      the `publish_id` when the list is empty (private posts, whose id TikTok does not reveal;
//!      a public post still in moderation also has none yet), `FAILED` fails the post with
//!      TikTok's `fail_reason`. A failed look is only retried: the post is on its way.
//!
//!   After a crash at `sending`: an upload whose status shows fewer `uploaded_bytes` than the
//!   video (and no finished publish) never completed, so nothing will publish and it is sent
//!   again from a new init; an upload that did complete is confirmed by its status; a pull whose
//!   init may or may not have reached TikTok left no `publish_id` to ask with, so it is `unknown`.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Duration;
use futures::SinkExt;
use reqwest::{
    RequestBuilder, StatusCode,
    header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::{
    Account, Authorization, Grant, Identity, MediaPost, PlatformClient, PlatformError, Published, Recovery, Step,
    TokenSet,
    http::{Dialect, Effect, RegisteredApp, classify_status, decode, error_message, json, media_failure, send},
};
use crate::{
    domain::{Platform, PostContent, PublishPhase},
    media::{Download, Format, Limits, MediaError, MediaKind},
};

const SCOPES: &str = "user.info.basic,video.publish";

/// The privacy level of a post whose options name none.
const DEFAULT_PRIVACY: &str = "PUBLIC_TO_EVERYONE";
/// Bytes per `FILE_UPLOAD` chunk (§5.4: 5–64 MB each, the last up to 128 MB, under 5 MB whole).
const CHUNK_BYTES: u64 = 10 * 1024 * 1024;
/// Bytes read from the source and handed to a chunk's `PUT` at a time.
const PIECE_BYTES: u64 = 1024 * 1024;
/// Time for one chunk's `PUT` (the platform timeout is meant for API calls, not 20 MB bodies).
const CHUNK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// The TikTok client.
#[derive(Debug)]
pub struct TiktokClient {
    app: RegisteredApp,
    /// URL prefixes verified for `PULL_FROM_URL` (`TIKTOK_VERIFIED_URL_PREFIXES`).
    verified_prefixes: Vec<String>,
}

impl TiktokClient {
    /// A client for a registered app; its client id is TikTok's `client_key`.
    pub(crate) fn new(app: RegisteredApp, verified_prefixes: Vec<String>) -> Self {
        Self { app, verified_prefixes }
    }

    fn credentials(&self) -> [(&str, &str); 2] {
        [("client_key", self.app.client_id.as_str()), ("client_secret", self.app.client_secret.expose())]
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<TokenSet, PlatformError> {
        let mut fields = self.credentials().to_vec();
        fields.extend_from_slice(form);
        self.app.post_token::<Tiktok>(&fields).await
    }
}

/// TikTok's error dialect: `{"data": {}, "error": {"code", "message", "log_id"}}` from the API,
/// OAuth's `{"error", "error_description"}` from the token endpoint.
pub(super) struct Tiktok;

impl Dialect for Tiktok {
    const NAME: &'static str = "TikTok";

    fn classify(status: StatusCode, _headers: &HeaderMap, body: &str, effect: Effect) -> PlatformError {
        if let Ok(Envelope { error: Some(error), .. }) = serde_json::from_str::<Envelope>(body)
            && !error.code.is_empty()
        {
            return error.classify(status, effect);
        }
        let message = error_message(body).unwrap_or_else(|| format!("TikTok answered HTTP {}", status.as_u16()));
        classify_status(status, message, effect)
    }
}

/// Every Content Posting answer: `data` and the `error` object (`code` is `ok` on success).
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Value,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct UserInfoResponse {
    data: UserInfoData,
    error: ApiError,
}

#[derive(Deserialize)]
struct UserInfoData {
    user: User,
}

#[derive(Deserialize)]
struct User {
    open_id: String,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl ApiError {
    /// The failure TikTok's code names; codes it does not decide are classified by the status.
    fn classify(&self, status: StatusCode, effect: Effect) -> PlatformError {
        let message =
            if self.message.is_empty() { self.code.clone() } else { format!("{}: {}", self.code, self.message) };
        match self.code.as_str() {
            "access_token_invalid" | "scope_not_authorized" => PlatformError::Unauthorized(message),
            "rate_limit_exceeded" => PlatformError::RateLimited { message, retry_at: None },
            "internal_error" => classify_status(StatusCode::INTERNAL_SERVER_ERROR, message, effect),
            "unaudited_client_can_only_post_to_private_accounts" => PlatformError::Rejected(format!(
                "{message} (until TikTok audits the app, posts must use options.tiktok_privacy_level \
                 SELF_ONLY and the TikTok account must be private)"
            )),
            // A refusal carried by an HTTP 200.
            _ if status.is_success() => PlatformError::Rejected(message),
            _ => classify_status(status, message, effect),
        }
    }
}

/// What the media steps have saved (`publish_state.step`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Flow {
    /// The post's settings, decided from `creator_info` at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    settings: Option<PostSettings>,
    /// How the media gets to TikTok, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<Source>,
    /// TikTok's handle of the publish: from the upload's init (before `sending`) or from the
    /// pull's init (after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    publish_id: Option<String>,
}

/// `post_info` choices that hold for every init of the post.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PostSettings {
    privacy_level: String,
    disable_comment: bool,
    disable_duet: bool,
    disable_stitch: bool,
    /// The longest video the creator may post, in seconds (`max_video_post_duration_sec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_video_seconds: Option<u64>,
}

/// How the media gets to TikTok.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
enum Source {
    /// `FILE_UPLOAD`, inited: the chunk plan and where to put the chunks.
    Upload { video_size: u64, chunk_size: u64, chunk_count: u64, upload_url: String },
    /// A video pulled by TikTok (`PULL_FROM_URL`).
    PullVideo,
    /// Photos pulled by TikTok.
    Photos,
}

#[derive(Deserialize)]
struct CreatorInfo {
    #[serde(default)]
    privacy_level_options: Vec<String>,
    #[serde(default)]
    comment_disabled: bool,
    #[serde(default)]
    duet_disabled: bool,
    #[serde(default)]
    stitch_disabled: bool,
    #[serde(default)]
    max_video_post_duration_sec: Option<u64>,
}

#[derive(Deserialize)]
struct InitData {
    publish_id: String,
    #[serde(default)]
    upload_url: Option<String>,
}

#[derive(Deserialize)]
struct PublishStatus {
    status: String,
    #[serde(default)]
    fail_reason: Option<String>,
    /// Numbers in TikTok's answers; strings accepted too.
    #[serde(default)]
    publicaly_available_post_id: Vec<Value>,
    #[serde(default)]
    uploaded_bytes: Option<u64>,
}

impl PublishStatus {
    /// Whether every byte of an upload of `video_size` bytes reached TikTok (so it publishes, or
    /// has).
    fn upload_complete(&self, video_size: u64) -> Option<bool> {
        if matches!(self.status.as_str(), "PUBLISH_COMPLETE" | "SEND_TO_USER_INBOX") {
            return Some(true);
        }
        self.uploaded_bytes.map(|bytes| bytes >= video_size)
    }
}

/// The chunk plan of a `FILE_UPLOAD` (§5.4): `(chunk_size, total_chunk_count)`.
fn chunk_plan(video_size: u64) -> (u64, u64) {
    let chunk_size = video_size.min(CHUNK_BYTES);
    (chunk_size, (video_size / chunk_size.max(1)).max(1))
}

fn to_state(flow: &Flow) -> Value {
    serde_json::to_value(flow).unwrap_or_default()
}

fn confirming(flow: &Flow, status: String) -> Step {
    Step::Wait { phase: PublishPhase::Confirming, state: to_state(flow), after: None, status }
}

#[async_trait]
impl PlatformClient for TiktokClient {
    fn id(&self) -> Platform {
        Platform::Tiktok
    }

    fn authorize(&self, state: &str, redirect_uri: &str) -> Authorization {
        self.app.authorization(&[
            ("client_key", &self.app.client_id),
            ("scope", SCOPES),
            ("redirect_uri", redirect_uri),
            ("state", state),
            ("response_type", "code"),
        ])
    }

    async fn exchange_code(
        &self,
        code: &str,
        _pkce_verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        self.token(&[("code", code), ("grant_type", "authorization_code"), ("redirect_uri", redirect_uri)]).await
    }

    async fn identity(&self, access_token: &str) -> Result<Identity, PlatformError> {
        let request = self
            .app
            .http
            .get(format!("{}/v2/user/info/", self.app.api_base))
            .query(&[("fields", "open_id,union_id,avatar_url,display_name")])
            .bearer_auth(access_token);
        let response = send::<Tiktok>(request, Effect::Read).await?;
        let info: UserInfoResponse = json::<Tiktok, _>(response, "/v2/user/info/", Effect::Read).await?;
        // TikTok reports some failures with HTTP 200 and a non-"ok" code.
        if info.error.code != "ok" {
            return Err(PlatformError::Rejected(format!("{}: {}", info.error.code, info.error.message)));
        }
        Ok(Identity { user_id: info.data.user.open_id, username: info.data.user.display_name })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, PlatformError> {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    fn refresh_margin(&self) -> chrono::Duration {
        // Access tokens live two hours; refresh in the last ten minutes.
        Duration::minutes(10)
    }

    /// `POST /v2/oauth/revoke/` with the access token ends the grant.
    async fn revoke(&self, grant: &Grant) -> Result<bool, PlatformError> {
        let mut fields = self.credentials().to_vec();
        fields.push(("token", grant.access_token.as_str()));
        let request = self.app.http.post(format!("{}/v2/oauth/revoke/", self.app.api_base)).form(&fields);
        send::<Tiktok>(request, Effect::Read).await?;
        Ok(true)
    }

    async fn publish(
        &self,
        _access_token: &str,
        _account: &Account,
        _content: &PostContent,
    ) -> Result<Published, PlatformError> {
        // Scheduling refuses TikTok posts without media; this answers rows stored otherwise.
        Err(PlatformError::Rejected("TikTok posts need a video or photos; text alone cannot be published".into()))
    }

    async fn step(
        &self,
        post: &MediaPost<'_>,
        phase: Option<PublishPhase>,
        state: &Value,
    ) -> Result<Step, PlatformError> {
        let mut flow: Flow = serde_json::from_value(state.clone()).unwrap_or_default();
        match phase {
            Some(PublishPhase::Confirming) => return self.confirm(post.token, flow).await,
            Some(PublishPhase::Sending) => return self.send_post(post, flow).await,
            _ => {}
        }
        let settings = match flow.settings.take() {
            Some(settings) => settings,
            None => self.post_settings(post).await?,
        };
        flow.source = Some(self.prepare(post, &settings, &mut flow.publish_id).await?);
        flow.settings = Some(settings);
        Ok(Step::Next { phase: PublishPhase::Sending, state: to_state(&flow) })
    }

    /// Only an upload can be asked about: its `publish_id` was saved before `sending`. A pull's
    /// init may or may not have reached TikTok, and there is nothing to ask with.
    async fn recover(&self, post: &MediaPost<'_>, state: &Value) -> Result<Recovery, PlatformError> {
        let flow: Flow = serde_json::from_value(state.clone()).unwrap_or_default();
        let Some(publish_id) = flow.publish_id.as_deref() else { return Ok(Recovery::Unknown) };
        let Some(Source::Upload { video_size, .. }) = flow.source else {
            return Ok(Recovery::Pending { state: state.clone() });
        };
        let status = self.status(post.token, publish_id).await?;
        if status.upload_complete(video_size) == Some(false) {
            tracing::warn!(
                platform = %Platform::Tiktok,
                uploaded_bytes = status.uploaded_bytes.unwrap_or_default(),
                video_bytes = video_size,
                "the TikTok upload never finished; starting it again"
            );
            let fresh = Flow { settings: flow.settings, source: None, publish_id: None };
            return Ok(Recovery::NotSent { state: to_state(&fresh) });
        }
        Ok(Recovery::Pending { state: state.clone() })
    }
}

impl TiktokClient {
    /// A Content Posting call: the answer's `data`, or the failure its `error.code` names (also on
    /// HTTP 200).
    async fn api<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        what: &str,
        effect: Effect,
    ) -> Result<T, PlatformError> {
        let response = send::<Tiktok>(request, effect).await?;
        open_envelope(json::<Tiktok, _>(response, what, effect).await?, what, effect)
    }

    fn post_json(&self, token: &str, path: &str, body: &Value) -> RequestBuilder {
        self.app
            .http
            .post(format!("{}/v2/post/publish/{path}", self.app.api_base))
            .bearer_auth(token)
            .header(CONTENT_TYPE, "application/json; charset=UTF-8")
            .body(body.to_string())
    }

    fn verified(&self, url: &str) -> bool {
        self.verified_prefixes.iter().any(|prefix| url.starts_with(prefix.as_str()))
    }

    /// Refuses a photo that is not under a verified prefix: TikTok pulls photos and nothing else.
    fn unverified_photos(&self, url: &str) -> PlatformError {
        let prefixes = if self.verified_prefixes.is_empty() {
            "none is set".to_owned()
        } else {
            self.verified_prefixes.join(", ")
        };
        PlatformError::Rejected(format!(
            "TikTok takes photos only by pulling them from a URL prefix verified in the TikTok \
             developer portal, and {url} is not under one of TIKTOK_VERIFIED_URL_PREFIXES ({prefixes})"
        ))
    }

    /// `creator_info/query`: the privacy level asked for, if the creator's account offers it, and
    /// the interactions to turn off.
    async fn post_settings(&self, post: &MediaPost<'_>) -> Result<PostSettings, PlatformError> {
        let request = self
            .app
            .http
            .post(format!("{}/v2/post/publish/creator_info/query/", self.app.api_base))
            .bearer_auth(post.token)
            .header(CONTENT_TYPE, "application/json; charset=UTF-8");
        let info: CreatorInfo = self.api(request, "creator_info/query", Effect::Read).await?;
        let wanted = post.options.tiktok_privacy_level.as_deref().unwrap_or(DEFAULT_PRIVACY);
        if !info.privacy_level_options.iter().any(|option| option == wanted) {
            return Err(PlatformError::Rejected(format!(
                "this TikTok account does not offer privacy level {wanted}; it offers {}: set \
                 options.tiktok_privacy_level to one of them",
                info.privacy_level_options.join(", ")
            )));
        }
        Ok(PostSettings {
            privacy_level: wanted.to_owned(),
            disable_comment: post.options.tiktok_disable_comment || info.comment_disabled,
            disable_duet: info.duet_disabled,
            disable_stitch: info.stitch_disabled,
            // A zero would refuse every video: read as not said.
            max_video_seconds: info.max_video_post_duration_sec.filter(|seconds| *seconds > 0),
        })
    }

    /// Decides how the media gets to TikTok and checks it; inits an upload (which publishes
    /// nothing) and sets `publish_id` to its handle.
    async fn prepare(
        &self,
        post: &MediaPost<'_>,
        settings: &PostSettings,
        publish_id: &mut Option<String>,
    ) -> Result<Source, PlatformError> {
        let limits = Limits::of(Platform::Tiktok);
        let [url] = post.media else {
            self.check_photos(post, &limits).await?;
            return Ok(Source::Photos);
        };
        if self.verified(url) {
            let probed = post.fetcher.probe(url, &limits).await.map_err(media_failure)?;
            if probed.format.kind() == MediaKind::Image {
                return Ok(Source::Photos);
            }
            self.check_duration(post, url, settings).await?;
            return Ok(Source::PullVideo);
        }
        let named = url::Url::parse(url).ok().and_then(|u| Format::from_url(&u));
        if named.is_some_and(|format| format.kind() == MediaKind::Image) {
            return Err(self.unverified_photos(url));
        }
        let download = post.fetcher.open(url, &limits).await.map_err(media_failure)?;
        if download.format.kind() == MediaKind::Image {
            return Err(self.unverified_photos(url));
        }
        let video_size = download.size().map_err(media_failure)?;
        // Only the size was needed: the bytes are streamed from a new download at `sending`.
        drop(download);
        self.check_duration(post, url, settings).await?;
        let (chunk_size, chunk_count) = chunk_plan(video_size);
        let body = json!({
            "post_info": self.video_info(post, settings),
            "source_info": {
                "source": "FILE_UPLOAD",
                "video_size": video_size,
                "chunk_size": chunk_size,
                "total_chunk_count": chunk_count,
            },
        });
        let request = self.post_json(post.token, "video/init/", &body);
        let init: InitData = self.api(request, "video/init", Effect::Write).await?;
        let Some(upload_url) = init.upload_url else {
            return Err(PlatformError::Transient("TikTok answered video/init without an upload_url".into()));
        };
        *publish_id = Some(init.publish_id);
        Ok(Source::Upload { video_size, chunk_size, chunk_count, upload_url })
    }

    /// Refuses a video longer than the creator may post, when the file tells its length.
    async fn check_duration(
        &self,
        post: &MediaPost<'_>,
        url: &str,
        settings: &PostSettings,
    ) -> Result<(), PlatformError> {
        let Some(max) = settings.max_video_seconds else { return Ok(()) };
        let Some(length) = post.fetcher.video_duration(url).await.map_err(media_failure)? else { return Ok(()) };
        if length > std::time::Duration::from_secs(max) {
            return Err(PlatformError::Rejected(format!(
                "{url} is {:.1} s long, and this TikTok account can post videos of up to {max} s",
                length.as_secs_f64()
            )));
        }
        Ok(())
    }

    /// Every photo is under a verified prefix, is a photo TikTok takes, and fits.
    async fn check_photos(&self, post: &MediaPost<'_>, limits: &Limits) -> Result<(), PlatformError> {
        if let Some(url) = post.media.iter().find(|url| !self.verified(url)) {
            return Err(self.unverified_photos(url));
        }
        for url in post.media {
            let probed = post.fetcher.probe(url, limits).await.map_err(media_failure)?;
            if probed.format.kind() != MediaKind::Image {
                return Err(PlatformError::Rejected(format!(
                    "{url} is a video: TikTok takes a video alone, not with photos"
                )));
            }
        }
        Ok(())
    }

    fn video_info(&self, post: &MediaPost<'_>, settings: &PostSettings) -> Value {
        json!({
            "title": post.content.rendered(),
            "privacy_level": settings.privacy_level,
            "disable_comment": settings.disable_comment,
            "disable_duet": settings.disable_duet,
            "disable_stitch": settings.disable_stitch,
        })
    }
}

impl TiktokClient {
    /// The point of no return: the pull's init, or the upload's chunks (the last one starts
    /// publishing). Then TikTok is asked how it goes.
    async fn send_post(&self, post: &MediaPost<'_>, mut flow: Flow) -> Result<Step, PlatformError> {
        // Nothing is sent without the saved steps; starting over is safe.
        let incomplete = || PlatformError::Transient("the saved TikTok steps are incomplete; starting over".into());
        let settings = flow.settings.clone().ok_or_else(incomplete)?;
        match flow.source.clone().ok_or_else(incomplete)? {
            Source::Upload { video_size, chunk_size, chunk_count, upload_url } => {
                let publish_id = flow.publish_id.clone().ok_or_else(incomplete)?;
                let plan = Plan { video_size, chunk_size, chunk_count, upload_url: &upload_url };
                self.upload(post, &publish_id, &plan).await?;
            }
            Source::PullVideo => {
                let body = json!({
                    "post_info": self.video_info(post, &settings),
                    "source_info": {"source": "PULL_FROM_URL", "video_url": post.media[0]},
                });
                let request = self.post_json(post.token, "video/init/", &body);
                let init: InitData = self.api(request, "video/init", Effect::Write).await?;
                flow.publish_id = Some(init.publish_id);
            }
            Source::Photos => {
                let body = json!({
                    "media_type": "PHOTO",
                    "post_mode": "DIRECT_POST",
                    "post_info": {
                        "description": post.content.rendered(),
                        "privacy_level": settings.privacy_level,
                        "disable_comment": settings.disable_comment,
                    },
                    "source_info": {"source": "PULL_FROM_URL", "photo_cover_index": 0, "photo_images": post.media},
                });
                let request = self.post_json(post.token, "content/init/", &body);
                let init: InitData = self.api(request, "content/init", Effect::Write).await?;
                flow.publish_id = Some(init.publish_id);
            }
        }
        Ok(confirming(&flow, "TikTok is processing the post".into()))
    }

    /// PUTs every chunk in order, streamed from a new download of the source. A failure before
    /// the last chunk is in leaves an unfinished upload, which TikTok never publishes; a `PUT`
    /// that may or may not have arrived is settled by asking TikTok how many bytes it has.
    async fn upload(&self, post: &MediaPost<'_>, publish_id: &str, plan: &Plan<'_>) -> Result<(), PlatformError> {
        let url = &post.media[0];
        let mut download = post.fetcher.open(url, &Limits::of(Platform::Tiktok)).await.map_err(media_failure)?;
        let size = download.size().map_err(media_failure)?;
        if size != plan.video_size {
            return Err(PlatformError::Transient(format!(
                "{url} is {size} bytes now but was {} bytes when TikTok's upload was planned; starting over",
                plan.video_size
            )));
        }
        for index in 0..plan.chunk_count {
            let first = index * plan.chunk_size;
            let last = if index + 1 == plan.chunk_count { size - 1 } else { first + plan.chunk_size - 1 };
            match self.put_chunk(plan, &mut download, first, last).await {
                Ok(()) => {}
                Err(PlatformError::Unknown(message)) => {
                    let landed = self.status(post.token, publish_id).await.ok().and_then(|s| s.upload_complete(size));
                    match landed {
                        Some(true) => return Ok(()),
                        Some(false) => {
                            return Err(PlatformError::Transient(format!(
                                "{message}; TikTok did not get the whole video, so nothing was published"
                            )));
                        }
                        None => return Err(PlatformError::Unknown(message)),
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// One chunk's `PUT`, its body fed from the download a piece at a time as the request sends.
    async fn put_chunk(
        &self,
        plan: &Plan<'_>,
        download: &mut Download,
        first: u64,
        last: u64,
    ) -> Result<(), PlatformError> {
        let length = last - first + 1;
        let (mut pieces, body) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let request = self
            .app
            .http
            .put(plan.upload_url)
            .timeout(CHUNK_TIMEOUT)
            .header(CONTENT_TYPE, "video/mp4")
            .header(CONTENT_LENGTH, length)
            .header(CONTENT_RANGE, format!("bytes {first}-{last}/{}", plan.video_size))
            .body(reqwest::Body::wrap_stream(body));
        let feed = async {
            let mut left = length;
            let fed = loop {
                if left == 0 {
                    break Ok(());
                }
                match download.chunk(left.min(PIECE_BYTES) as usize).await {
                    Ok(Some(piece)) => {
                        left -= piece.len() as u64;
                        if pieces.send(Ok(piece)).await.is_err() {
                            // The request ended early; its answer says why.
                            break Ok(());
                        }
                    }
                    Ok(None) => {
                        break Err(MediaError::Unavailable(format!(
                            "the video ended {left} bytes short of its announced {} bytes",
                            plan.video_size
                        )));
                    }
                    Err(error) => break Err(error),
                }
            };
            if let Err(error) = &fed {
                // Cut the request short: TikTok must not take a truncated chunk as whole.
                let _ = pieces.send(Err(std::io::Error::other(error.to_string()))).await;
            }
            pieces.close_channel();
            fed
        };
        let (sent, fed) = tokio::join!(send::<Tiktok>(request, Effect::Write), feed);
        // A source that failed explains a failed request better than the request does.
        fed.map_err(media_failure)?;
        sent.map(drop)
    }

    /// Looks at the publish once more: done, failed with TikTok's words, or still on its way.
    async fn confirm(&self, token: &str, flow: Flow) -> Result<Step, PlatformError> {
        let Some(publish_id) = flow.publish_id.clone() else {
            return Err(PlatformError::Unknown("no TikTok publish_id was saved to look the post up with".into()));
        };
        let status = match self.status(token, &publish_id).await {
            Ok(status) => status,
            // The post is on its way: a failed look is tried again later, never sent again.
            Err(PlatformError::Transient(message) | PlatformError::RateLimited { message, .. }) => {
                return Ok(confirming(&flow, format!("asking TikTok how the post is doing failed: {message}")));
            }
            Err(error) => return Err(error),
        };
        Ok(match settled(&status, &publish_id)? {
            Some(published) => Step::Done(published),
            None => confirming(&flow, format!("TikTok says {}", status.status)),
        })
    }

    /// `status/fetch` for a publish.
    async fn status(&self, token: &str, publish_id: &str) -> Result<PublishStatus, PlatformError> {
        let request = self.post_json(token, "status/fetch/", &json!({ "publish_id": publish_id }));
        self.api(request, "status/fetch", Effect::Read).await
    }
}

/// A Content Posting answer's `data`, or the failure its `error.code` names (also on HTTP 200).
fn open_envelope<T: DeserializeOwned>(envelope: Envelope, what: &str, effect: Effect) -> Result<T, PlatformError> {
    if let Some(error) = envelope.error.filter(|e| e.code != "ok") {
        return Err(error.classify(StatusCode::OK, effect));
    }
    serde_json::from_value(envelope.data).map_err(|_| {
        let message = format!("TikTok answered {what} with an unexpected body");
        match effect {
            Effect::Read => PlatformError::Transient(message),
            Effect::Write => PlatformError::Unknown(message),
        }
    })
}

/// What a publish's status says: the post once published (its public id, else the publish id),
/// TikTok's words when it failed or went to the inbox, `None` while it is on its way.
fn settled(status: &PublishStatus, publish_id: &str) -> Result<Option<Published>, PlatformError> {
    match status.status.as_str() {
        "PUBLISH_COMPLETE" => {
            let id = status.publicaly_available_post_id.first().map(|id| match id {
                Value::String(id) => id.clone(),
                other => other.to_string(),
            });
            Ok(Some(Published { platform_post_id: id.unwrap_or_else(|| publish_id.to_owned()) }))
        }
        "FAILED" => {
            let reason =
                status.fail_reason.as_deref().filter(|r| !r.is_empty()).unwrap_or("no reason given").to_owned();
            Err(PlatformError::Rejected(format!("TikTok could not publish the post: {reason}")))
        }
        "SEND_TO_USER_INBOX" => {
            Err(PlatformError::Rejected("TikTok sent the post to the creator's inbox instead of publishing it".into()))
        }
        _ => Ok(None),
    }
}

/// A `status/fetch` answer read as [`TiktokClient::confirm`] reads it, `Err` carrying TikTok's
/// status words while the post is on its way (the fuzz targets' entry).
pub(super) fn read_publish_status(body: &[u8], publish_id: &str) -> Result<Result<Published, String>, PlatformError> {
    let envelope: Envelope = decode::<Tiktok, _>(body, "status/fetch", Effect::Read)?;
    let status: PublishStatus = open_envelope(envelope, "status/fetch", Effect::Read)?;
    Ok(settled(&status, publish_id)?.ok_or(status.status))
}

/// A saved upload plan, borrowed for the chunks' `PUT`s.
struct Plan<'a> {
    video_size: u64,
    chunk_size: u64,
    chunk_count: u64,
    upload_url: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_plans_follow_the_media_transfer_guide() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(chunk_plan(3_000_000), (3_000_000, 1), "under 5 MB: one chunk");
        assert_eq!(chunk_plan(9 * MIB), (9 * MIB, 1), "under one chunk: one chunk");
        assert_eq!(chunk_plan(10 * MIB), (10 * MIB, 1));
        assert_eq!(chunk_plan(26_000_000), (10 * MIB, 2), "the last chunk takes the remainder");
        assert_eq!(chunk_plan(4096 * MIB), (10 * MIB, 409));
    }
}
