//! X (formerly Twitter): OAuth 2.0 authorization code with PKCE and X API v2
//! (PLATFORMS.md §2, docs snapshot 2026-08).
//!
//! - Consent at `{TWITTER_AUTH_URL}` (default `https://x.com/i/oauth2/authorize`) with PKCE S256
//!   and the scopes `tweet.read tweet.write users.read media.write offline.access`.
//! - Token exchange and refresh at `{TWITTER_TOKEN_URL}` as a confidential client (Basic auth).
//!   Refresh tokens are single use: each refresh returns a new one, which the caller must store
//!   in the same transaction as the access token.
//! - Identity from `GET {TWITTER_API_BASE}/2/users/me`, posts with `POST /2/tweets`.
//! - Media through the v2 upload endpoints (PLATFORMS.md §2.3, the dedicated paths since
//!   2025-04-30): images in one `POST /2/media/upload` (multipart); video and GIF chunked with
//!   `POST /2/media/upload/initialize`, `/{id}/append` (4 MiB segments streamed from the source),
//!   `/{id}/finalize`, then `GET /2/media/upload?command=STATUS` until `succeeded`, each wait a
//!   saved `processing` step. Each finished upload is saved before the next; the tweet that
//!   carries their ids is the point of no return.

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;

use super::{
    Account, Authorization, Grant, Identity, PlatformClient, PlatformError, Published, TokenSet,
    http::{Dialect, Effect, RegisteredApp, classify_status, decode, json, media_failure, send},
    oauth::{ClientAuth, Flow, OAuthApp},
};
use crate::{
    domain::{Platform, PostContent, PublishPhase},
    media::{Format, Limits},
    platforms::{MediaPost, Step},
};

/// Bytes per `append` segment (X takes up to 5 MB).
const SEGMENT_BYTES: usize = 4 * 1024 * 1024;

/// What the media steps have saved (`publish_state.step`).
#[derive(Debug, Default, serde::Serialize, Deserialize)]
struct Uploads {
    /// Ids of the media uploaded and ready, in the post's order.
    #[serde(default)]
    media_ids: Vec<String>,
    /// A chunked upload X is still processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    processing: Option<String>,
}

#[derive(Deserialize)]
struct MediaData {
    id: String,
    #[serde(default)]
    processing_info: Option<ProcessingInfo>,
}

#[derive(Deserialize)]
struct ProcessingInfo {
    state: String,
    #[serde(default)]
    check_after_secs: Option<u64>,
    #[serde(default)]
    error: Option<ProcessingError>,
}

#[derive(Deserialize)]
struct ProcessingError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// Confidential client (Basic auth), PKCE S256, and the minimal scopes for posting text and media
/// and staying connected (`offline.access` is what makes X issue a refresh token).
const FLOW: Flow = Flow {
    auth: ClientAuth::Basic,
    scopes: &["tweet.read", "tweet.write", "users.read", "media.write", "offline.access"],
    pkce: true,
};

/// The X client.
#[derive(Debug)]
pub struct XClient {
    oauth: OAuthApp,
    app: RegisteredApp,
}

impl XClient {
    /// A client for a registered app.
    pub(crate) fn new(app: RegisteredApp) -> Self {
        Self { oauth: OAuthApp::new(&app, FLOW), app }
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct User {
    id: String,
    username: String,
}

#[derive(Deserialize)]
struct Tweet {
    id: String,
}

/// X's two error shapes: the problem format (`title`, `detail`) and the older `errors[]`.
#[derive(Deserialize, Default)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    message: Option<String>,
}

/// X's error dialect.
pub(super) struct X;

impl Dialect for X {
    const NAME: &'static str = "X";

    fn classify(status: StatusCode, headers: &HeaderMap, body: &str, effect: Effect) -> PlatformError {
        let problem: Problem = serde_json::from_str(body).unwrap_or_default();
        let message = problem
            .detail
            .or_else(|| problem.errors.into_iter().find_map(|e| e.message))
            .or(problem.title)
            .unwrap_or_else(|| format!("X answered HTTP {}", status.as_u16()));
        if status == StatusCode::TOO_MANY_REQUESTS {
            // `x-rate-limit-reset` is the Unix second the window reopens.
            let retry_at = headers
                .get("x-rate-limit-reset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(|secs| Utc.timestamp_opt(secs, 0).single());
            return PlatformError::RateLimited { message, retry_at };
        }
        classify_status(status, message, effect)
    }
}

#[async_trait]
impl PlatformClient for XClient {
    fn id(&self) -> Platform {
        Platform::Twitter
    }

    fn authorize(&self, state: &str, redirect_uri: &str) -> Authorization {
        self.oauth.authorize(state, redirect_uri)
    }

    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        self.oauth.exchange_code(code, pkce_verifier, redirect_uri).await
    }

    async fn identity(&self, access_token: &str) -> Result<Identity, PlatformError> {
        let request = self.app.http.get(format!("{}/2/users/me", self.app.api_base)).bearer_auth(access_token);
        let response = send::<X>(request, Effect::Read).await?;
        let user: Envelope<User> = json::<X, _>(response, "/2/users/me", Effect::Read).await?;
        Ok(Identity { user_id: user.data.id, username: Some(user.data.username) })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, PlatformError> {
        self.oauth.refresh(refresh_token).await
    }

    fn refresh_margin(&self) -> chrono::Duration {
        // Access tokens live two hours; refresh in the last ten minutes.
        chrono::Duration::minutes(10)
    }

    /// `POST /2/oauth2/revoke` for the refresh token (which ends the grant) and the access token.
    async fn revoke(&self, grant: &Grant) -> Result<bool, PlatformError> {
        let tokens =
            [(grant.refresh_token.as_deref(), "refresh_token"), (Some(grant.access_token.as_str()), "access_token")];
        for (token, hint) in tokens {
            let Some(token) = token else { continue };
            let request = self
                .app
                .http
                .post(format!("{}/2/oauth2/revoke", self.app.api_base))
                .basic_auth(&self.app.client_id, Some(self.app.client_secret.expose()))
                .form(&[("token", token), ("token_type_hint", hint)]);
            send::<X>(request, Effect::Read).await?;
        }
        Ok(true)
    }

    async fn publish(
        &self,
        access_token: &str,
        _account: &Account,
        content: &PostContent,
    ) -> Result<Published, PlatformError> {
        self.tweet(access_token, content, &[]).await
    }

    async fn step(
        &self,
        post: &MediaPost<'_>,
        phase: Option<PublishPhase>,
        state: &serde_json::Value,
    ) -> Result<Step, PlatformError> {
        let mut uploads: Uploads = serde_json::from_value(state.clone()).unwrap_or_default();
        if phase == Some(PublishPhase::Sending) {
            return Ok(Step::Done(self.tweet(post.token, post.content, &uploads.media_ids).await?));
        }
        if let Some(id) = uploads.processing.take() {
            match self.media_status(post.token, &id).await? {
                None => uploads.media_ids.push(id),
                Some((status, after)) => {
                    uploads.processing = Some(id);
                    return Ok(wait(&uploads, status, after));
                }
            }
        }
        let Some(url) = post.media.get(uploads.media_ids.len()) else {
            return Ok(Step::Next { phase: PublishPhase::Sending, state: to_state(&uploads) });
        };
        let limits = Limits::of(Platform::Twitter);
        let download = post.fetcher.open(url, &limits).await.map_err(media_failure)?;
        let format = download.format;
        let id = if matches!(format, Format::Jpeg | Format::Png | Format::Webp) {
            let bytes = download.all().await.map_err(media_failure)?;
            self.upload_image(post.token, format, bytes).await?
        } else {
            let data = self.upload_chunked(post.token, download).await?;
            match data.processing_info {
                Some(info) if info.state != "succeeded" => {
                    uploads.processing = Some(data.id);
                    let after = info.check_after_secs.map(std::time::Duration::from_secs);
                    return Ok(wait(&uploads, info.state, after));
                }
                _ => data.id,
            }
        };
        uploads.media_ids.push(id);
        Ok(Step::Next { phase: PublishPhase::Uploading, state: to_state(&uploads) })
    }
}

fn to_state(uploads: &Uploads) -> serde_json::Value {
    serde_json::to_value(uploads).unwrap_or_default()
}

fn wait(uploads: &Uploads, status: String, after: Option<std::time::Duration>) -> Step {
    Step::Wait {
        phase: PublishPhase::Processing,
        state: to_state(uploads),
        after,
        status: format!("X media processing is {status}"),
    }
}

impl XClient {
    /// `POST /2/tweets` with the text and, when there are some, media ids.
    async fn tweet(
        &self,
        access_token: &str,
        content: &PostContent,
        media_ids: &[String],
    ) -> Result<Published, PlatformError> {
        let text = content.rendered();
        let mut body = serde_json::Map::new();
        if !text.is_empty() || media_ids.is_empty() {
            body.insert("text".into(), text.into());
        }
        if !media_ids.is_empty() {
            body.insert("media".into(), serde_json::json!({ "media_ids": media_ids }));
        }
        let request =
            self.app.http.post(format!("{}/2/tweets", self.app.api_base)).bearer_auth(access_token).json(&body);
        let response = send::<X>(request, Effect::Write).await?;
        // X answered 2xx, so the post exists; a body we cannot read leaves its id unknown.
        let tweet: Envelope<Tweet> = json::<X, _>(response, "/2/tweets", Effect::Write).await?;
        Ok(Published { platform_post_id: tweet.data.id })
    }

    /// The simple upload of one image.
    async fn upload_image(&self, token: &str, format: Format, bytes: bytes::Bytes) -> Result<String, PlatformError> {
        let part = reqwest::multipart::Part::stream(bytes)
            .file_name("media")
            .mime_str(format.mime())
            .map_err(|e| PlatformError::Rejected(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .part("media", part)
            .text("media_category", "tweet_image")
            .text("media_type", format.mime());
        let request =
            self.app.http.post(format!("{}/2/media/upload", self.app.api_base)).bearer_auth(token).multipart(form);
        let data: Envelope<MediaData> =
            json::<X, _>(send::<X>(request, Effect::Write).await?, "/2/media/upload", Effect::Write).await?;
        Ok(data.data.id)
    }

    /// INITIALIZE, APPEND each segment as it arrives from the source (one segment in memory at a
    /// time), FINALIZE; the finalize answer says whether X is still processing.
    async fn upload_chunked(
        &self,
        token: &str,
        mut download: crate::media::Download,
    ) -> Result<MediaData, PlatformError> {
        let total = download.size().map_err(media_failure)?;
        let category = if download.format == Format::Gif { "tweet_gif" } else { "tweet_video" };
        let base = format!("{}/2/media/upload", self.app.api_base);
        let init = serde_json::json!({ "media_type": download.format.mime(), "total_bytes": total, "media_category": category });
        let request = self.app.http.post(format!("{base}/initialize")).bearer_auth(token).json(&init);
        let media: Envelope<MediaData> =
            json::<X, _>(send::<X>(request, Effect::Write).await?, "media initialize", Effect::Write).await?;
        let id = media.data.id;
        let mut segment = 0u32;
        while let Some(chunk) = download.chunk(SEGMENT_BYTES).await.map_err(media_failure)? {
            let part = reqwest::multipart::Part::stream(chunk).file_name("media");
            let form = reqwest::multipart::Form::new().part("media", part).text("segment_index", segment.to_string());
            let request = self.app.http.post(format!("{base}/{id}/append")).bearer_auth(token).multipart(form);
            send::<X>(request, Effect::Write).await?;
            segment += 1;
        }
        let request = self.app.http.post(format!("{base}/{id}/finalize")).bearer_auth(token);
        let data: Envelope<MediaData> =
            json::<X, _>(send::<X>(request, Effect::Write).await?, "media finalize", Effect::Write).await?;
        Ok(data.data)
    }

    /// `None` when the media is ready; otherwise X's state and when to look again. A failed
    /// processing is refused with X's words.
    async fn media_status(
        &self,
        token: &str,
        id: &str,
    ) -> Result<Option<(String, Option<std::time::Duration>)>, PlatformError> {
        let request = self
            .app
            .http
            .get(format!("{}/2/media/upload", self.app.api_base))
            .query(&[("command", "STATUS"), ("media_id", id)])
            .bearer_auth(token);
        let data: Envelope<MediaData> =
            json::<X, _>(send::<X>(request, Effect::Read).await?, "media STATUS", Effect::Read).await?;
        processing_outcome(data.data.processing_info)
    }
}

/// What a STATUS answer's `processing_info` says: `None` when the media is ready, X's state and
/// when to look again while it processes, X's words when it failed.
fn processing_outcome(
    info: Option<ProcessingInfo>,
) -> Result<Option<(String, Option<std::time::Duration>)>, PlatformError> {
    match info {
        None => Ok(None),
        Some(info) if info.state == "succeeded" => Ok(None),
        Some(info) if info.state == "failed" => {
            let error = info.error.unwrap_or(ProcessingError { message: None, name: None });
            let words = error.message.or(error.name).unwrap_or_else(|| "no reason given".into());
            Err(PlatformError::Rejected(format!("X could not process the media: {words}")))
        }
        Some(info) => Ok(Some((info.state, info.check_after_secs.map(std::time::Duration::from_secs)))),
    }
}

/// A media STATUS answer read as [`XClient::media_status`] reads it (the fuzz targets' entry).
pub(super) fn read_media_status(body: &[u8]) -> Result<Option<(String, Option<std::time::Duration>)>, PlatformError> {
    let data: Envelope<MediaData> = decode::<X, _>(body, "media STATUS", Effect::Read)?;
    processing_outcome(data.data.processing_info)
}
