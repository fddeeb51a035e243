//! Facebook Pages: Facebook Login and the Graph API at `GRAPH_API_VERSION` (default v26.0;
//! PLATFORMS.md §4).
//!
//! - Consent at `{FACEBOOK_AUTH_URL}` with `pages_show_list,pages_read_engagement,pages_manage_posts`.
//! - The code becomes a short-lived user token (`GET {FACEBOOK_TOKEN_URL}`), which is exchanged
//!   at once for a long-lived one (`grant_type=fb_exchange_token`, about 60 days). Facebook issues
//!   no refresh token.
//! - `GET /me/accounts` lists the Pages with their Page tokens; Page tokens obtained from a
//!   long-lived user token do not expire. The user picks one Page; posts go to
//!   `POST /{page-id}/feed` with that Page's token.
//! - Disconnect revokes with `DELETE /{user-id}/permissions`.
//! - Media (PLATFORMS.md §4.2, Graph API v26.0, docs snapshot 2026-11: FB10 photo uploads, FB11
//!   video publishing). Facebook fetches every URL itself, so each is probed first (address
//!   rules, type and size from the first bytes). One photo: `POST /{page-id}/photos` with `url`
//!   and `message`, whose `post_id` is the post. Several photos: each `POST /{page-id}/photos`
//!   with `published=false` (not public; each id saved before the next upload), then `POST
//!   /{page-id}/feed` with `message` and `attached_media[i]={"media_fbid":…}`. One video: `POST
//!   {FACEBOOK_VIDEO_API_BASE}/{version}/{page-id}/videos` with `file_url` and `description`; its
//!   id is saved at once (`confirming`), then `GET /{video-id}?fields=status` is polled, each wait
//!   a saved step, until `video_status` is `ready` (the video id is the post) or `error` (failed
//!   with Facebook's words). The photos call of a single photo, the feed call and the videos call
//!   are the points of no return; Facebook cannot be asked afterwards whether one was applied, so
//!   a crash there leaves the post `unknown` (the default `recover`).

use async_trait::async_trait;
use chrono::Duration;
use reqwest::{StatusCode, header::HeaderMap};
use serde::{Deserialize, Serialize};

use super::{
    Account, Authorization, Grant, Identity, MediaPost, Page, PlatformClient, PlatformError, Published, Step, TokenSet,
    http::{
        Dialect, Effect, RawToken, RegisteredApp, classify_status, decode, error_message, json, media_failure, send,
    },
};
use crate::{
    domain::{Platform, PostContent, PublishPhase},
    media::{Limits, MediaKind},
};

const SCOPES: &str = "pages_show_list,pages_read_engagement,pages_manage_posts";

/// The Facebook Pages client.
#[derive(Debug)]
pub struct FacebookClient {
    app: RegisteredApp,
    /// `{FACEBOOK_API_BASE}/{version}`.
    graph: String,
    /// `{FACEBOOK_VIDEO_API_BASE}/{version}`, where Page videos are posted.
    graph_video: String,
}

impl FacebookClient {
    /// A client for a registered app; Graph calls go to `{FACEBOOK_API_BASE}/{version}`, videos
    /// to `{video_base}/{version}`.
    pub(crate) fn new(app: RegisteredApp, version: &str, video_base: &str) -> Self {
        let graph = format!("{}/{version}", app.api_base);
        Self { app, graph, graph_video: format!("{video_base}/{version}") }
    }

    /// Facebook's token endpoint takes GET with the app credentials in the query.
    async fn token(&self, params: &[(&str, &str)]) -> Result<RawToken, PlatformError> {
        let mut query =
            vec![("client_id", self.app.client_id.as_str()), ("client_secret", self.app.client_secret.expose())];
        query.extend_from_slice(params);
        let response = send::<Graph>(self.app.http.get(self.app.token_url.clone()).query(&query), Effect::Read).await?;
        json::<Graph, RawToken>(response, "the token request", Effect::Read).await
    }
}

/// The Graph API error object: `{"error": {"message", "type", "code", "error_subcode"}}`.
pub(crate) struct Graph;

#[derive(Deserialize, Default)]
struct GraphErrorBody {
    #[serde(default)]
    error: GraphError,
}

#[derive(Deserialize, Default)]
struct GraphError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: i64,
    #[serde(default)]
    error_subcode: i64,
}

impl Dialect for Graph {
    const NAME: &'static str = "Facebook";

    fn classify(status: StatusCode, _headers: &HeaderMap, body: &str, effect: Effect) -> PlatformError {
        // Graph's error object; anything else (a proxy's page, an OAuth-shaped body) falls back to
        // the shared reading.
        let error = serde_json::from_str::<GraphErrorBody>(body).map(|b| b.error).unwrap_or_default();
        let message = Some(error.message)
            .filter(|m| !m.is_empty())
            .or_else(|| error_message(body))
            .unwrap_or_else(|| format!("Graph API answered HTTP {}", status.as_u16()));
        match (error.code, error.error_subcode) {
            // The user removed the app (458) or Facebook invalidated the session for good (459,
            // 464): access was withdrawn.
            (190, 458 | 459 | 464) => PlatformError::Revoked(message),
            // Otherwise an invalid or expired token.
            (190 | 102, _) => PlatformError::Unauthorized(message),
            // Throttling: application, user, page, custom and business-use-case limits.
            (4 | 17 | 32 | 341 | 613 | 80001..=80014, _) => PlatformError::RateLimited { message, retry_at: None },
            // "An unknown error occurred" and "service temporarily unavailable".
            (1 | 2, _) => PlatformError::Transient(message),
            (0, _) => classify_status(status, message, effect),
            _ => PlatformError::Rejected(message),
        }
    }
}

#[derive(Deserialize)]
struct Me {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Accounts {
    data: Vec<AccountEntry>,
}

#[derive(Deserialize)]
struct AccountEntry {
    id: String,
    name: String,
    access_token: String,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

/// `POST /{page-id}/photos` with `published` true: the photo and the post that carries it.
#[derive(Deserialize)]
struct PhotoPost {
    post_id: String,
}

/// What a post of one file carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Single {
    Photo,
    Video,
}

/// What the media steps have saved (`publish_state.step`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Uploads {
    /// A post of one file: what its probe showed it to be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    single: Option<Single>,
    /// Several photos: the unpublished photos uploaded so far, in the post's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    photo_ids: Vec<String>,
    /// The video posted, whose processing is awaited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    video_id: Option<String>,
}

#[derive(Deserialize)]
struct VideoNode {
    #[serde(default)]
    status: VideoStatus,
}

/// A video's `status`: `video_status` and the phases, each with its errors.
#[derive(Deserialize, Default)]
struct VideoStatus {
    #[serde(default)]
    video_status: String,
    #[serde(default)]
    uploading_phase: Option<VideoPhase>,
    #[serde(default)]
    processing_phase: Option<VideoPhase>,
    #[serde(default)]
    publishing_phase: Option<VideoPhase>,
}

#[derive(Deserialize, Default)]
struct VideoPhase {
    #[serde(default)]
    status: String,
    #[serde(default)]
    errors: Vec<VideoError>,
}

#[derive(Deserialize)]
struct VideoError {
    #[serde(default)]
    message: String,
}

impl VideoStatus {
    /// Facebook's words for a failed video: the first error any phase reports.
    fn failure(&self) -> Option<String> {
        let phases = [&self.uploading_phase, &self.processing_phase, &self.publishing_phase];
        let failed_phase = phases.iter().flat_map(|p| p.iter()).any(|p| p.status == "error");
        if !failed_phase && !matches!(self.video_status.as_str(), "error" | "expired") {
            return None;
        }
        let words = phases
            .iter()
            .flat_map(|p| p.iter())
            .flat_map(|p| &p.errors)
            .map(|e| e.message.as_str())
            .find(|m| !m.is_empty())
            .map_or_else(|| format!("video_status is {}", self.video_status), str::to_owned);
        Some(words)
    }
}

#[async_trait]
impl PlatformClient for FacebookClient {
    fn id(&self) -> Platform {
        Platform::Facebook
    }

    fn authorize(&self, state: &str, redirect_uri: &str) -> Authorization {
        self.app.authorization(&[
            ("client_id", &self.app.client_id),
            ("redirect_uri", redirect_uri),
            ("state", state),
            ("response_type", "code"),
            ("scope", SCOPES),
        ])
    }

    async fn exchange_code(
        &self,
        code: &str,
        _pkce_verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        let short = self.token(&[("redirect_uri", redirect_uri), ("code", code)]).await?;
        let long =
            self.token(&[("grant_type", "fb_exchange_token"), ("fb_exchange_token", &short.access_token)]).await?;
        Ok(long.into_token_set())
    }

    async fn identity(&self, access_token: &str) -> Result<Identity, PlatformError> {
        let request =
            self.app.http.get(format!("{}/me", self.graph)).query(&[("fields", "id,name")]).bearer_auth(access_token);
        let me: Me = json::<Graph, _>(send::<Graph>(request, Effect::Read).await?, "/me", Effect::Read).await?;
        Ok(Identity { user_id: me.id, username: me.name })
    }

    async fn refresh(&self, _refresh_token: &str) -> Result<TokenSet, PlatformError> {
        Err(PlatformError::Rejected("Facebook issues no refresh token; log in again".into()))
    }

    fn refresh_margin(&self) -> chrono::Duration {
        Duration::days(7)
    }

    fn needs_page(&self) -> bool {
        true
    }

    async fn pages(&self, access_token: &str) -> Result<Vec<Page>, PlatformError> {
        let request = self
            .app
            .http
            .get(format!("{}/me/accounts", self.graph))
            .query(&[("fields", "id,name,access_token"), ("limit", "100")])
            .bearer_auth(access_token);
        let accounts: Accounts =
            json::<Graph, _>(send::<Graph>(request, Effect::Read).await?, "/me/accounts", Effect::Read).await?;
        Ok(accounts.data.into_iter().map(|a| Page { id: a.id, name: a.name, access_token: a.access_token }).collect())
    }

    /// `DELETE /{user-id}/permissions` de-authorizes the app, Page tokens included.
    async fn revoke(&self, grant: &Grant) -> Result<bool, PlatformError> {
        let request = self
            .app
            .http
            .delete(format!("{}/{}/permissions", self.graph, grant.platform_user_id))
            .bearer_auth(&grant.access_token);
        send::<Graph>(request, Effect::Read).await?;
        Ok(true)
    }

    /// `POST /{page-id}/feed` with the Page token (the caller passes it as `access_token`).
    async fn publish(
        &self,
        access_token: &str,
        account: &Account,
        content: &PostContent,
    ) -> Result<Published, PlatformError> {
        let page_id =
            account.page_id.as_deref().ok_or_else(|| PlatformError::Rejected("no Facebook Page is selected".into()))?;
        let message = content.rendered();
        let request = self
            .app
            .http
            .post(format!("{}/{page_id}/feed", self.graph))
            .bearer_auth(access_token)
            .form(&[("message", message.as_str())]);
        let created: Created =
            json::<Graph, _>(send::<Graph>(request, Effect::Write).await?, "/feed", Effect::Write).await?;
        Ok(Published { platform_post_id: created.id })
    }

    async fn step(
        &self,
        post: &MediaPost<'_>,
        phase: Option<PublishPhase>,
        state: &serde_json::Value,
    ) -> Result<Step, PlatformError> {
        let page_id = post
            .account
            .page_id
            .as_deref()
            .ok_or_else(|| PlatformError::Rejected("no Facebook Page is selected".into()))?;
        let mut uploads: Uploads = serde_json::from_value(state.clone()).unwrap_or_default();
        let message = post.content.rendered();
        match phase {
            Some(PublishPhase::Confirming) => {
                let video_id = uploads.video_id.clone().ok_or_else(|| {
                    PlatformError::Unknown("the Facebook video id was not saved before its post was sent".into())
                })?;
                self.video_ready(post.token, &uploads, video_id).await
            }
            Some(PublishPhase::Sending) if post.media.len() > 1 => {
                if uploads.photo_ids.len() != post.media.len() {
                    return Err(PlatformError::Rejected(format!(
                        "{} of {} photos were uploaded to Facebook before sending",
                        uploads.photo_ids.len(),
                        post.media.len()
                    )));
                }
                Ok(Step::Done(self.photos_post(post.token, page_id, &message, &uploads.photo_ids).await?))
            }
            Some(PublishPhase::Sending) => match (post.media.first(), uploads.single) {
                (Some(url), Some(Single::Photo)) => {
                    Ok(Step::Done(self.photo_post(post.token, page_id, &message, url).await?))
                }
                (Some(url), Some(Single::Video)) => {
                    uploads.video_id = Some(self.video_post(post.token, page_id, &message, url).await?);
                    Ok(Step::Next { phase: PublishPhase::Confirming, state: to_state(&uploads) })
                }
                _ => Err(PlatformError::Rejected("the Facebook media was not checked before sending".into())),
            },
            _ if post.media.len() == 1 => {
                uploads.single = Some(match self.probe(post, &post.media[0]).await? {
                    MediaKind::Image => Single::Photo,
                    MediaKind::Video => Single::Video,
                });
                Ok(Step::Next { phase: PublishPhase::Sending, state: to_state(&uploads) })
            }
            _ => {
                let index = uploads.photo_ids.len();
                let Some(url) = post.media.get(index) else {
                    return Ok(Step::Next { phase: PublishPhase::Sending, state: to_state(&uploads) });
                };
                if self.probe(post, url).await? == MediaKind::Video {
                    return Err(PlatformError::Rejected(format!(
                        "media_urls[{index}] is a video; Facebook takes a video alone, not with photos"
                    )));
                }
                uploads.photo_ids.push(self.unpublished_photo(post.token, page_id, url).await?);
                Ok(Step::Next { phase: PublishPhase::Uploading, state: to_state(&uploads) })
            }
        }
    }
}

fn to_state(uploads: &Uploads) -> serde_json::Value {
    serde_json::to_value(uploads).unwrap_or_default()
}

impl FacebookClient {
    /// Checks a URL Facebook will fetch; image or video, as its bytes show.
    async fn probe(&self, post: &MediaPost<'_>, url: &str) -> Result<MediaKind, PlatformError> {
        let download = post.fetcher.probe(url, &Limits::of(Platform::Facebook)).await.map_err(media_failure)?;
        Ok(download.format.kind())
    }

    /// `POST /{page-id}/photos` with `published=false`: a photo that is not public, for a post.
    async fn unpublished_photo(&self, token: &str, page_id: &str, url: &str) -> Result<String, PlatformError> {
        let request = self
            .app
            .http
            .post(format!("{}/{page_id}/photos", self.graph))
            .bearer_auth(token)
            .form(&[("url", url), ("published", "false")]);
        let created: Created =
            json::<Graph, _>(send::<Graph>(request, Effect::Write).await?, "/photos", Effect::Write).await?;
        Ok(created.id)
    }

    /// `POST /{page-id}/photos` with `url` and `message`: a post of one photo.
    async fn photo_post(
        &self,
        token: &str,
        page_id: &str,
        message: &str,
        url: &str,
    ) -> Result<Published, PlatformError> {
        let mut form = vec![("url", url)];
        if !message.is_empty() {
            form.push(("message", message));
        }
        let request = self.app.http.post(format!("{}/{page_id}/photos", self.graph)).bearer_auth(token).form(&form);
        // Facebook answered 2xx, so the post exists; a body we cannot read leaves its id unknown.
        let created: PhotoPost =
            json::<Graph, _>(send::<Graph>(request, Effect::Write).await?, "/photos", Effect::Write).await?;
        Ok(Published { platform_post_id: created.post_id })
    }

    /// `POST /{page-id}/feed` with `message` and `attached_media[i]={"media_fbid":…}`.
    async fn photos_post(
        &self,
        token: &str,
        page_id: &str,
        message: &str,
        photo_ids: &[String],
    ) -> Result<Published, PlatformError> {
        let mut form: Vec<(String, String)> = photo_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("attached_media[{i}]"), serde_json::json!({ "media_fbid": id }).to_string()))
            .collect();
        if !message.is_empty() {
            form.push(("message".into(), message.to_owned()));
        }
        let request = self.app.http.post(format!("{}/{page_id}/feed", self.graph)).bearer_auth(token).form(&form);
        let created: Created =
            json::<Graph, _>(send::<Graph>(request, Effect::Write).await?, "/feed", Effect::Write).await?;
        Ok(Published { platform_post_id: created.id })
    }

    /// `POST {graph_video}/{page-id}/videos` with `file_url` and `description`: the video's id.
    async fn video_post(&self, token: &str, page_id: &str, message: &str, url: &str) -> Result<String, PlatformError> {
        let mut form = vec![("file_url", url)];
        if !message.is_empty() {
            form.push(("description", message));
        }
        let request =
            self.app.http.post(format!("{}/{page_id}/videos", self.graph_video)).bearer_auth(token).form(&form);
        let created: Created =
            json::<Graph, _>(send::<Graph>(request, Effect::Write).await?, "/videos", Effect::Write).await?;
        Ok(created.id)
    }

    /// `GET /{video-id}?fields=status`: published once `ready`, refused with Facebook's words on
    /// an error, otherwise a saved wait.
    async fn video_ready(&self, token: &str, uploads: &Uploads, video_id: String) -> Result<Step, PlatformError> {
        let request =
            self.app.http.get(format!("{}/{video_id}", self.graph)).query(&[("fields", "status")]).bearer_auth(token);
        let node: VideoNode =
            json::<Graph, _>(send::<Graph>(request, Effect::Read).await?, "the video status", Effect::Read).await?;
        match video_outcome(node.status)? {
            None => Ok(Step::Done(Published { platform_post_id: video_id })),
            Some(status) => Ok(Step::Wait {
                phase: PublishPhase::Confirming,
                state: to_state(uploads),
                after: None,
                status: format!("Facebook video processing is {status}"),
            }),
        }
    }
}

/// What a video's status says: `None` once `ready`, Facebook's `video_status` while it
/// processes, Facebook's words when it failed.
fn video_outcome(status: VideoStatus) -> Result<Option<String>, PlatformError> {
    if let Some(words) = status.failure() {
        return Err(PlatformError::Rejected(format!("Facebook could not process the video: {words}")));
    }
    Ok((status.video_status != "ready").then_some(status.video_status))
}

/// A `GET /{video-id}?fields=status` answer read as [`FacebookClient::video_ready`] reads it (the
/// fuzz targets' entry).
pub(super) fn read_video_status(body: &[u8]) -> Result<Option<String>, PlatformError> {
    video_outcome(decode::<Graph, VideoNode>(body, "the video status", Effect::Read)?.status)
}
