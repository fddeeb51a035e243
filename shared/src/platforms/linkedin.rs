//! LinkedIn member posting: Sign In with LinkedIn using OpenID Connect plus Share on LinkedIn
//! (PLATFORMS.md §1), Posts API with `LinkedIn-Version` from `LINKEDIN_API_VERSION`
//! (default 202603).
//!
//! - Consent at `{LINKEDIN_AUTH_URL}` with `openid profile w_member_social`; no PKCE (LinkedIn
//!   offers it only to native apps); the client secret goes in the token request's form body.
//! - Self-serve apps get no refresh token: the connection records its expiry (60 days) and the
//!   status reports `expiring`, then `expired`. Apps approved for programmatic refresh tokens get
//!   one, and it is used.
//! - Identity from `GET /v2/userinfo` (`sub`, the member id; the author URN is
//!   `urn:li:person:{sub}`); posts with `POST /rest/posts`, whose id is the `x-restli-id` header.
//! - LinkedIn documents no revocation endpoint, so disconnect deletes the tokens only.
//! - Media (PLATFORMS.md §1.4–1.6, compiled 2026-11-24 from the Images, Videos, Posts and
//!   MultiImage API pages and Postiz @74b01ad; the same `LinkedIn-Version` header): each image is
//!   `POST /rest/images?action=initializeUpload` for `urn:li:person:{sub}`, then one raw `PUT` of
//!   its bytes to `uploadUrl`; its URN is saved before the next (phase `uploading`). A member token
//!   cannot read image status, so none is asked. One video is `POST
//!   /rest/videos?action=initializeUpload` with `fileSizeBytes`, a `PUT` of each part of
//!   `uploadInstructions` (its byte range, read from the download in order, one part in memory at
//!   a time) keeping each `ETag`, `action=finalizeUpload` with those ETags, then `GET
//!   /rest/videos/{urn}` as saved `processing` waits until `AVAILABLE` (`PROCESSING_FAILED` fails
//!   the post with `processingFailureReason`). The post (`content.media.id` for one image or the
//!   video, `content.multiImage.images` for 2–20 images) is the point of no return; LinkedIn has
//!   no way to ask whether it was made, so a crash there leaves the post `unknown`.

use async_trait::async_trait;
use chrono::{Duration, Utc};
use reqwest::{StatusCode, header::HeaderMap};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Account, Authorization, Identity, MediaPost, PlatformClient, PlatformError, Published, Step, TokenSet,
    http::{Dialect, Effect, RegisteredApp, classify_status, decode, error_message, json, media_failure, send},
};
use crate::{
    domain::{Platform, PostContent, PublishPhase},
    media::{Download, Limits, MediaKind},
};

const SCOPES: &str = "openid profile w_member_social";

/// The LinkedIn client.
#[derive(Debug)]
pub struct LinkedinClient {
    app: RegisteredApp,
    version: String,
}

impl LinkedinClient {
    /// A client for a registered app, sending `LinkedIn-Version: {version}`.
    pub(crate) fn new(app: RegisteredApp, version: String) -> Self {
        Self { app, version }
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<TokenSet, PlatformError> {
        let mut fields = form.to_vec();
        fields.extend([("client_id", self.app.client_id.as_str()), ("client_secret", self.app.client_secret.expose())]);
        self.app.post_token::<Linkedin>(&fields).await
    }
}

/// LinkedIn's error dialect: `{"message", "serviceErrorCode", "status"}` from the API and OAuth's
/// `{"error", "error_description"}` from the token endpoint.
pub(super) struct Linkedin;

impl Dialect for Linkedin {
    const NAME: &'static str = "LinkedIn";

    fn classify(status: StatusCode, _headers: &HeaderMap, body: &str, effect: Effect) -> PlatformError {
        let message = error_message(body).unwrap_or_else(|| format!("LinkedIn answered HTTP {}", status.as_u16()));
        if status == StatusCode::TOO_MANY_REQUESTS {
            // LinkedIn's limits are daily and reset at midnight UTC; it sends no reset header.
            let tomorrow = (Utc::now() + Duration::days(1)).date_naive().and_hms_opt(0, 0, 0).map(|t| t.and_utc());
            return PlatformError::RateLimited { message, retry_at: tomorrow };
        }
        classify_status(status, message, effect)
    }
}

#[derive(Deserialize)]
struct UserInfo {
    sub: String,
    #[serde(default)]
    name: Option<String>,
}

/// Escapes text for the Posts API's "little" text format, where these characters are markup:
/// unescaped, LinkedIn silently truncates the post at the first one.
fn little_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '|' | '{' | '}' | '@' | '[' | ']' | '(' | ')' | '<' | '>' | '#' | '*' | '_' | '~') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The commentary of a post: escaped text, then the hashtags as little-format hashtag templates.
fn commentary(content: &PostContent) -> String {
    let tags: Vec<String> = content.hashtags().iter().map(|t| format!("{{hashtag|\\#|{}}}", little_text(t))).collect();
    match (content.text().is_empty(), tags.is_empty()) {
        (_, true) => little_text(content.text()),
        (true, false) => tags.join(" "),
        (false, false) => format!("{}\n\n{}", little_text(content.text()), tags.join(" ")),
    }
}

#[async_trait]
impl PlatformClient for LinkedinClient {
    fn id(&self) -> Platform {
        Platform::Linkedin
    }

    fn authorize(&self, state: &str, redirect_uri: &str) -> Authorization {
        self.app.authorization(&[
            ("response_type", "code"),
            ("client_id", &self.app.client_id),
            ("redirect_uri", redirect_uri),
            ("state", state),
            ("scope", SCOPES),
        ])
    }

    async fn exchange_code(
        &self,
        code: &str,
        _pkce_verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        self.token(&[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)]).await
    }

    async fn identity(&self, access_token: &str) -> Result<Identity, PlatformError> {
        let request = self.app.http.get(format!("{}/v2/userinfo", self.app.api_base)).bearer_auth(access_token);
        let response = send::<Linkedin>(request, Effect::Read).await?;
        let user: UserInfo = json::<Linkedin, _>(response, "/v2/userinfo", Effect::Read).await?;
        Ok(Identity { user_id: user.sub, username: user.name })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, PlatformError> {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    fn refresh_margin(&self) -> chrono::Duration {
        // Tokens live 60 days; with a refresh token, renew a week ahead.
        Duration::days(7)
    }

    async fn publish(
        &self,
        access_token: &str,
        account: &Account,
        content: &PostContent,
    ) -> Result<Published, PlatformError> {
        self.create_post(access_token, account, content, &[]).await
    }

    async fn step(
        &self,
        post: &MediaPost<'_>,
        phase: Option<PublishPhase>,
        state: &Value,
    ) -> Result<Step, PlatformError> {
        let mut uploads: Uploads = serde_json::from_value(state.clone()).unwrap_or_default();
        if phase == Some(PublishPhase::Sending) {
            return Ok(Step::Done(self.create_post(post.token, post.account, post.content, &uploads.media).await?));
        }
        if let Some(urn) = uploads.processing.take() {
            match self.video_status(post.token, &urn).await? {
                None => uploads.media.push(urn),
                Some(status) => {
                    uploads.processing = Some(urn);
                    return Ok(wait(&uploads, &status));
                }
            }
        }
        let Some(url) = post.media.get(uploads.media.len()) else {
            return Ok(Step::Next { phase: PublishPhase::Sending, state: to_state(&uploads) });
        };
        let owner = member_urn(post.account);
        let download = post.fetcher.open(url, &Limits::of(Platform::Linkedin)).await.map_err(media_failure)?;
        if download.format.kind() == MediaKind::Image {
            let urn = self.upload_image(post.token, &owner, download).await?;
            uploads.media.push(urn);
            return Ok(Step::Next { phase: PublishPhase::Uploading, state: to_state(&uploads) });
        }
        // LinkedIn processes a finalized video before it can be posted: look after a wait.
        uploads.processing = Some(self.upload_video(post.token, &owner, download).await?);
        Ok(wait(&uploads, "PROCESSING"))
    }
}

/// What the media steps have saved (`publish_state.step`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Uploads {
    /// URNs of the images (or the video) uploaded and ready, in the post's order.
    #[serde(default)]
    media: Vec<String>,
    /// A finalized video LinkedIn is still processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    processing: Option<String>,
}

fn to_state(uploads: &Uploads) -> Value {
    serde_json::to_value(uploads).unwrap_or_default()
}

fn wait(uploads: &Uploads, status: &str) -> Step {
    Step::Wait {
        phase: PublishPhase::Processing,
        state: to_state(uploads),
        after: None,
        status: format!("LinkedIn video processing is {status}"),
    }
}

fn member_urn(account: &Account) -> String {
    format!("urn:li:person:{}", account.platform_user_id)
}

#[derive(Deserialize)]
struct Envelope<T> {
    value: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageUpload {
    upload_url: String,
    image: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VideoUpload {
    video: String,
    upload_instructions: Vec<UploadInstruction>,
    #[serde(default)]
    upload_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadInstruction {
    upload_url: String,
    first_byte: u64,
    last_byte: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VideoStatus {
    status: String,
    #[serde(default)]
    processing_failure_reason: Option<String>,
}

impl LinkedinClient {
    /// A `/rest/*` request with the versioning headers.
    fn rest(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.app
            .http
            .request(method, format!("{}/rest/{path}", self.app.api_base))
            .bearer_auth(token)
            .header("LinkedIn-Version", &self.version)
            .header("X-Restli-Protocol-Version", "2.0.0")
    }

    /// `POST /rest/posts`: the text post, carrying `media` when there is some (one image or the
    /// video as `content.media`, 2–20 images as `content.multiImage`).
    async fn create_post(
        &self,
        token: &str,
        account: &Account,
        content: &PostContent,
        media: &[String],
    ) -> Result<Published, PlatformError> {
        let mut body = serde_json::json!({
            "author": member_urn(account),
            "commentary": commentary(content),
            "visibility": "PUBLIC",
            "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [], "thirdPartyDistributionChannels": []},
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": false,
        });
        match media {
            [] => {}
            [one] => body["content"] = serde_json::json!({"media": {"id": one}}),
            many => {
                let images: Vec<Value> = many.iter().map(|id| serde_json::json!({"id": id})).collect();
                body["content"] = serde_json::json!({"multiImage": {"images": images}});
            }
        }
        let request = self.rest(reqwest::Method::POST, "posts", token).json(&body);
        let response = send::<Linkedin>(request, Effect::Write).await?;
        let urn = response.headers().get("x-restli-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        urn.map(|platform_post_id| Published { platform_post_id })
            .ok_or_else(|| PlatformError::Unknown("LinkedIn accepted the post but sent no x-restli-id".into()))
    }

    /// `initializeUpload` then one `PUT` of the whole image; its URN.
    async fn upload_image(&self, token: &str, owner: &str, download: Download) -> Result<String, PlatformError> {
        let init = serde_json::json!({"initializeUploadRequest": {"owner": owner}});
        let request = self.rest(reqwest::Method::POST, "images?action=initializeUpload", token).json(&init);
        let upload: Envelope<ImageUpload> = json::<Linkedin, _>(
            send::<Linkedin>(request, Effect::Write).await?,
            "image initializeUpload",
            Effect::Write,
        )
        .await?;
        let bytes = download.all().await.map_err(media_failure)?;
        let request = self
            .app
            .http
            .put(&upload.value.upload_url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        send::<Linkedin>(request, Effect::Write).await?;
        Ok(upload.value.image)
    }

    /// `initializeUpload` with the file's size, a `PUT` of each part's byte range in order (one
    /// part in memory at a time), `finalizeUpload` with the parts' ETags; the video's URN.
    async fn upload_video(&self, token: &str, owner: &str, mut download: Download) -> Result<String, PlatformError> {
        let size = download.size().map_err(media_failure)?;
        let init = serde_json::json!({"initializeUploadRequest": {
            "owner": owner, "fileSizeBytes": size, "uploadCaptions": false, "uploadThumbnail": false,
        }});
        let request = self.rest(reqwest::Method::POST, "videos?action=initializeUpload", token).json(&init);
        let upload: Envelope<VideoUpload> = json::<Linkedin, _>(
            send::<Linkedin>(request, Effect::Write).await?,
            "video initializeUpload",
            Effect::Write,
        )
        .await?;
        let VideoUpload { video, mut upload_instructions, upload_token } = upload.value;
        upload_instructions.sort_by_key(|part| part.first_byte);
        let mut etags = Vec::with_capacity(upload_instructions.len());
        let mut offset = 0u64;
        for part in &upload_instructions {
            let Some(len) = (part.first_byte == offset).then(|| part.last_byte.checked_sub(offset)).flatten() else {
                return Err(bad_instructions(size));
            };
            let len = usize::try_from(len + 1).map_err(|_| bad_instructions(size))?;
            let bytes = download.chunk(len).await.map_err(media_failure)?.unwrap_or_default();
            if bytes.len() != len {
                return Err(PlatformError::Transient(format!(
                    "the video ended after {} of {size} bytes",
                    offset + bytes.len() as u64
                )));
            }
            let request = self
                .app
                .http
                .put(&part.upload_url)
                .bearer_auth(token)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes);
            let response = send::<Linkedin>(request, Effect::Write).await?;
            let etag = response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok());
            let etag =
                etag.ok_or_else(|| PlatformError::Transient("LinkedIn answered a video part with no ETag".into()))?;
            etags.push(etag.to_owned());
            offset = part.last_byte + 1;
        }
        if offset != size {
            return Err(bad_instructions(size));
        }
        let finalize = serde_json::json!({"finalizeUploadRequest": {
            "video": video, "uploadToken": upload_token, "uploadedPartIds": etags,
        }});
        let request = self.rest(reqwest::Method::POST, "videos?action=finalizeUpload", token).json(&finalize);
        send::<Linkedin>(request, Effect::Write).await?;
        Ok(video)
    }

    /// `None` once the video is `AVAILABLE`; otherwise LinkedIn's status. A failed processing is
    /// refused with LinkedIn's reason.
    async fn video_status(&self, token: &str, urn: &str) -> Result<Option<String>, PlatformError> {
        let encoded: String = url::form_urlencoded::byte_serialize(urn.as_bytes()).collect();
        let request = self.rest(reqwest::Method::GET, &format!("videos/{encoded}"), token);
        let video: VideoStatus =
            json::<Linkedin, _>(send::<Linkedin>(request, Effect::Read).await?, "GET /rest/videos", Effect::Read)
                .await?;
        video_outcome(video)
    }
}

/// What a video's status says: `None` once `AVAILABLE`, LinkedIn's status while it processes,
/// LinkedIn's reason when processing failed.
fn video_outcome(video: VideoStatus) -> Result<Option<String>, PlatformError> {
    match video.status.as_str() {
        "AVAILABLE" => Ok(None),
        "PROCESSING_FAILED" => {
            let reason = video.processing_failure_reason.unwrap_or_else(|| "no reason given".into());
            Err(PlatformError::Rejected(format!("LinkedIn could not process the video: {reason}")))
        }
        _ => Ok(Some(video.status)),
    }
}

/// A `GET /rest/videos` answer read as [`LinkedinClient::video_status`] reads it (the fuzz
/// targets' entry).
pub(super) fn read_video_status(body: &[u8]) -> Result<Option<String>, PlatformError> {
    video_outcome(decode::<Linkedin, VideoStatus>(body, "GET /rest/videos", Effect::Read)?)
}

/// Upload instructions that do not cover the file once, in order.
fn bad_instructions(size: u64) -> PlatformError {
    PlatformError::Transient(format!("LinkedIn's upload instructions do not cover the video's {size} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commentary_escapes_little_format_markup() {
        let content = PostContent::parse(Platform::Linkedin, "Hi (all) #1 @you", &["rust_lang".into()]).expect("valid");
        assert_eq!(commentary(&content), "Hi \\(all\\) \\#1 \\@you\n\n{hashtag|\\#|rust\\_lang}");
    }
}
