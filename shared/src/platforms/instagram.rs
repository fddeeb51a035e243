//! Instagram professional accounts: the Instagram API with Instagram Login at `GRAPH_API_VERSION`
//! (default v26.0; PLATFORMS.md §3, docs snapshot 2026-11). Instagram Basic Display is gone and
//! not implemented.
//!
//! - Consent at `{INSTAGRAM_AUTH_URL}` with `instagram_business_basic,instagram_business_content_publish`.
//! - The code becomes a short-lived token at `{INSTAGRAM_TOKEN_URL}` (form with the client
//!   credentials), exchanged at once for a 60-day token (`GET /access_token`,
//!   `grant_type=ig_exchange_token`). There is no refresh token: the long-lived token refreshes
//!   itself (`GET /refresh_access_token`, `grant_type=ig_refresh_token`) once it is a day old,
//!   which the refresh sweep does ten days before expiry.
//! - Identity from `GET /{version}/me?fields=user_id,username`.
//! - Instagram documents no revocation endpoint; posts need an image or a video.
//! - Media through the container flow (PLATFORMS.md §3.5–3.7; Meta's content-publishing guide and
//!   the `ig-user/media`, `ig-container`, `ig-user/media_publish` and
//!   `ig-user/content_publishing_limit` references as of 2026-11), bearer token and form bodies
//!   on `/{version}/...`. Meta fetches the media itself, so Herald only probes each URL (address
//!   rules, type and size from the first bytes) before handing it over:
//!   1. `GET /{ig-user-id}/content_publishing_limit?fields=quota_usage,config` first; a spent
//!      quota reschedules the post an hour later instead of earning error 2207042.
//!   2. One image: a container with `image_url` and `caption`; one video: `media_type=REELS`
//!      (single feed videos are reels since 2023), `video_url`, `caption`; 2–10 media: one
//!      carousel item each (`is_carousel_item=true`, `media_type=VIDEO` for videos), each saved
//!      before the next, then the `CAROUSEL` parent with `children` and the caption.
//!      `options.instagram_share_as = "story"`: `media_type=STORIES` with `image_url` or
//!      `video_url` and no caption (stories take none).
//!   3. `GET /{container-id}?fields=status_code,status` until `FINISHED`, each look a saved
//!      `processing` wait (for a carousel the parent, whose status covers its items); `ERROR` or
//!      `EXPIRED` fails the post with Instagram's `status` words.
//!   4. `POST /{ig-user-id}/media_publish` with `creation_id`, the point of no return; its `id`
//!      is the post id.
//!
//!   After a crash at step 4 the container says what happened: still `FINISHED` is safe to
//!   publish again; `PUBLISHED` is found in `GET /{ig-user-id}/media?fields=id,caption,timestamp`
//!   (the newest with the post's caption, published since the container was made); anything
//!   else, or a story (not on that edge), is `unknown`.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use reqwest::{StatusCode, header::HeaderMap};
use serde::{Deserialize, Serialize};

use super::{
    Account, Authorization, Identity, MediaPost, PlatformClient, PlatformError, Published, Recovery, Step, TokenSet,
    http::{
        Dialect, Effect, RawToken, RegisteredApp, classify_status, decode, error_message, json, media_failure, send,
    },
};
use crate::{
    domain::{Platform, PostContent, PublishPhase},
    media::{Limits, MediaKind},
};

const SCOPES: &str = "instagram_business_basic,instagram_business_content_publish";

/// How long a post waits when the account's publishing quota is spent (the quota rolls over 24 h
/// and Instagram does not say when a slot frees).
const QUOTA_WAIT: Duration = Duration::hours(1);
/// How far Instagram's clock may be behind Herald's when telling our media from older ones.
const CLOCK_SLACK: Duration = Duration::minutes(5);
/// A carousel's fewest and most items (PLATFORMS.md §3.6).
const CAROUSEL_ITEMS: std::ops::RangeInclusive<usize> = 2..=10;

/// What the media steps have saved (`publish_state.step`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Containers {
    /// Carousel item containers made so far, in the post's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    items: Vec<String>,
    /// The container `media_publish` takes: the image, reel or story, or the carousel parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    /// When `container` was made (Herald's clock), to find the post after a crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    made_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct ContainerStatus {
    #[serde(default)]
    status_code: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct List<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

#[derive(Deserialize)]
struct Quota {
    #[serde(default)]
    quota_usage: u32,
    #[serde(default)]
    config: Option<QuotaConfig>,
}

#[derive(Deserialize)]
struct QuotaConfig {
    #[serde(default)]
    quota_total: Option<u32>,
}

#[derive(Deserialize)]
struct MediaItem {
    id: String,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
}

/// The Instagram client.
#[derive(Debug)]
pub struct InstagramClient {
    app: RegisteredApp,
    version: String,
}

impl InstagramClient {
    /// A client for a registered app, calling Graph `version`.
    pub(crate) fn new(app: RegisteredApp, version: &str) -> Self {
        Self { app, version: version.to_owned() }
    }
}

/// Instagram's dialects: the Graph error object from the API, and
/// `{"error_type", "code", "error_message"}` from the code exchange.
pub(super) struct Instagram;

impl Dialect for Instagram {
    const NAME: &'static str = "Instagram";

    fn classify(status: StatusCode, _headers: &HeaderMap, body: &str, effect: Effect) -> PlatformError {
        let mut message = error_message(body).unwrap_or_else(|| format!("Instagram answered HTTP {}", status.as_u16()));
        let value = serde_json::from_str::<serde_json::Value>(body).ok();
        let error = value.as_ref().and_then(|v| v.get("error"));
        // Publishing errors explain themselves in `error_user_msg`.
        if let Some(user_msg) = error.and_then(|e| e.get("error_user_msg")?.as_str())
            && !user_msg.is_empty()
            && user_msg != message
        {
            message = format!("{message}: {user_msg}");
        }
        let field = |name: &str| error.and_then(|e| e.get(name)?.as_i64());
        match (field("code"), field("error_subcode")) {
            // The user removed the app: access was withdrawn.
            (Some(190), Some(458)) => PlatformError::Revoked(message),
            (Some(190), _) => PlatformError::Unauthorized(message),
            // The publishing limit (2207042): nothing was published; the quota frees up over 24 h.
            (_, Some(2207042)) => PlatformError::RateLimited { message, retry_at: Some(Utc::now() + QUOTA_WAIT) },
            (Some(4 | 17 | 32 | 613 | 80001..=80014), _) => PlatformError::RateLimited { message, retry_at: None },
            (Some(1 | 2), _) => PlatformError::Transient(message),
            _ => classify_status(status, message, effect),
        }
    }
}

impl Me {
    /// The identity, with a numeric `user_id` in its decimal form.
    fn identity(self) -> Identity {
        let user_id = match self.user_id {
            serde_json::Value::String(id) => id,
            other => other.to_string(),
        };
        Identity { user_id, username: self.username }
    }
}

/// A `/me` answer read as [`InstagramClient::identity`] reads it (the fuzz targets' entry).
pub(super) fn read_identity(body: &[u8]) -> Result<Identity, PlatformError> {
    Ok(decode::<Instagram, Me>(body, "/me", Effect::Read)?.identity())
}

/// The code exchange's answer: `user_id` is a JSON number.
#[derive(Deserialize)]
struct ShortToken {
    access_token: String,
}

#[derive(Deserialize)]
struct Me {
    user_id: serde_json::Value,
    #[serde(default)]
    username: Option<String>,
}

#[async_trait]
impl PlatformClient for InstagramClient {
    fn id(&self) -> Platform {
        Platform::Instagram
    }

    fn authorize(&self, state: &str, redirect_uri: &str) -> Authorization {
        self.app.authorization(&[
            ("client_id", &self.app.client_id),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("scope", SCOPES),
            ("state", state),
        ])
    }

    async fn exchange_code(
        &self,
        code: &str,
        _pkce_verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        // Instagram appends `#_` to the redirect; a client that kept it would send it back.
        let code = code.trim_end_matches("#_");
        let form = [
            ("client_id", self.app.client_id.as_str()),
            ("client_secret", self.app.client_secret.expose()),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect_uri),
            ("code", code),
        ];
        let response =
            send::<Instagram>(self.app.http.post(self.app.token_url.clone()).form(&form), Effect::Read).await?;
        let short: ShortToken = json::<Instagram, _>(response, "the code exchange", Effect::Read).await?;
        let query = [
            ("grant_type", "ig_exchange_token"),
            ("client_secret", self.app.client_secret.expose()),
            ("access_token", short.access_token.as_str()),
        ];
        let request = self.app.http.get(format!("{}/access_token", self.app.api_base)).query(&query);
        let long: RawToken =
            json::<Instagram, _>(send::<Instagram>(request, Effect::Read).await?, "the token exchange", Effect::Read)
                .await?;
        Ok(long.into_token_set())
    }

    async fn identity(&self, access_token: &str) -> Result<Identity, PlatformError> {
        let request = self
            .app
            .http
            .get(format!("{}/{}/me", self.app.api_base, self.version))
            .query(&[("fields", "user_id,username")])
            .bearer_auth(access_token);
        let me: Me = json::<Instagram, _>(send::<Instagram>(request, Effect::Read).await?, "/me", Effect::Read).await?;
        Ok(me.identity())
    }

    /// Refreshes the long-lived access token itself.
    async fn refresh(&self, access_token: &str) -> Result<TokenSet, PlatformError> {
        let query = [("grant_type", "ig_refresh_token"), ("access_token", access_token)];
        let request = self.app.http.get(format!("{}/refresh_access_token", self.app.api_base)).query(&query);
        let token: RawToken =
            json::<Instagram, _>(send::<Instagram>(request, Effect::Read).await?, "the refresh", Effect::Read).await?;
        Ok(token.into_token_set())
    }

    fn refreshes_access_token(&self) -> bool {
        true
    }

    fn refresh_margin(&self) -> chrono::Duration {
        // 60-day tokens, refreshable from day 1: renew ten days ahead, before `expiring` shows.
        Duration::days(10)
    }

    async fn publish(
        &self,
        _access_token: &str,
        _account: &Account,
        _content: &PostContent,
    ) -> Result<Published, PlatformError> {
        // Scheduling refuses Instagram posts without media; this answers rows stored otherwise.
        Err(PlatformError::Rejected("Instagram posts need an image or a video; this post has neither".into()))
    }

    async fn step(
        &self,
        post: &MediaPost<'_>,
        phase: Option<PublishPhase>,
        state: &serde_json::Value,
    ) -> Result<Step, PlatformError> {
        let mut saved: Containers = serde_json::from_value(state.clone()).unwrap_or_default();
        if phase == Some(PublishPhase::Sending) {
            let Some(container) = saved.container.as_deref() else {
                return Err(PlatformError::Rejected("no Instagram container was saved to publish".into()));
            };
            return Ok(Step::Done(self.media_publish(post, container).await?));
        }
        if phase.is_none() {
            self.check_quota(post).await?;
        }
        if let Some(container) = saved.container.clone() {
            let status = self.container_status(post.token, &container).await?;
            let words = status.status.clone().or(status.status_code.clone()).unwrap_or_else(|| "no status".into());
            return match status.status_code.as_deref() {
                Some("FINISHED") => Ok(Step::Next { phase: PublishPhase::Sending, state: to_state(&saved) }),
                Some("ERROR" | "EXPIRED") => {
                    Err(PlatformError::Rejected(format!("Instagram could not process the media: {words}")))
                }
                // Published by another attempt (one resumed after a crash raced this one): past the point
                // of no return, so never sent again; look for the post until the wait runs out.
                Some("PUBLISHED") => match self.find_published(post, &saved).await? {
                    Some(published) => Ok(Step::Done(published)),
                    None => Ok(Step::Wait {
                        phase: PublishPhase::Confirming,
                        state: to_state(&saved),
                        after: None,
                        status: format!("Instagram says container {container} is published but does not list the post"),
                    }),
                },
                _ => Ok(Step::Wait {
                    phase: PublishPhase::Processing,
                    state: to_state(&saved),
                    after: None,
                    status: format!("Instagram is processing the media: {words}"),
                }),
            };
        }
        let story = post.options.instagram_share_as.as_deref() == Some("story");
        let caption = post.content.rendered();
        let caption = (!caption.is_empty()).then_some(caption);
        if story || post.media.len() == 1 {
            let [url] = post.media else {
                return Err(PlatformError::Rejected("an Instagram story is one image or one video".into()));
            };
            let kind = self.probe(post, url).await?;
            let url_field = if kind == MediaKind::Video { "video_url" } else { "image_url" };
            let mut form = vec![(url_field, url.as_str())];
            match (story, kind) {
                (true, _) => form.push(("media_type", "STORIES")),
                (false, MediaKind::Video) => form.push(("media_type", "REELS")),
                (false, MediaKind::Image) => {}
            }
            if let (false, Some(caption)) = (story, &caption) {
                form.push(("caption", caption));
            }
            saved.container = Some(self.create_container(post, &form).await?);
            saved.made_at = Some(Utc::now());
            return Ok(Step::Next { phase: PublishPhase::Uploading, state: to_state(&saved) });
        }
        if !CAROUSEL_ITEMS.contains(&post.media.len()) {
            return Err(PlatformError::Rejected(format!(
                "an Instagram carousel takes 2 to 10 media, not {}",
                post.media.len()
            )));
        }
        if let Some(url) = post.media.get(saved.items.len()) {
            let mut form = vec![("is_carousel_item", "true")];
            match self.probe(post, url).await? {
                MediaKind::Video => form.extend([("media_type", "VIDEO"), ("video_url", url.as_str())]),
                MediaKind::Image => form.push(("image_url", url.as_str())),
            }
            saved.items.push(self.create_container(post, &form).await?);
            return Ok(Step::Next { phase: PublishPhase::Uploading, state: to_state(&saved) });
        }
        let children = saved.items.join(",");
        let mut form = vec![("media_type", "CAROUSEL"), ("children", children.as_str())];
        if let Some(caption) = &caption {
            form.push(("caption", caption));
        }
        saved.container = Some(self.create_container(post, &form).await?);
        saved.made_at = Some(Utc::now());
        Ok(Step::Next { phase: PublishPhase::Uploading, state: to_state(&saved) })
    }

    /// The container says whether `media_publish` got through: `FINISHED` is safe to publish
    /// again, `PUBLISHED` is looked up among the account's media.
    async fn recover(&self, post: &MediaPost<'_>, state: &serde_json::Value) -> Result<Recovery, PlatformError> {
        let saved: Containers = serde_json::from_value(state.clone()).unwrap_or_default();
        let Some(container) = saved.container.as_deref() else { return Ok(Recovery::Unknown) };
        let status = self.container_status(post.token, container).await?;
        match status.status_code.as_deref() {
            Some("FINISHED") => Ok(Recovery::NotSent { state: to_state(&saved) }),
            Some("PUBLISHED") => {
                Ok(self.find_published(post, &saved).await?.map_or(Recovery::Unknown, Recovery::Published))
            }
            _ => Ok(Recovery::Unknown),
        }
    }
}

fn to_state(saved: &Containers) -> serde_json::Value {
    serde_json::to_value(saved).unwrap_or_default()
}

impl InstagramClient {
    /// `{api_base}/{version}/{path}`.
    fn graph(&self, path: &str) -> String {
        format!("{}/{}/{path}", self.app.api_base, self.version)
    }

    /// Refuses to go on when the account's publishing quota is spent: the post is rescheduled.
    async fn check_quota(&self, post: &MediaPost<'_>) -> Result<(), PlatformError> {
        let user = &post.account.platform_user_id;
        let request = self
            .app
            .http
            .get(self.graph(&format!("{user}/content_publishing_limit")))
            .query(&[("fields", "quota_usage,config")])
            .bearer_auth(post.token);
        let limits: List<Quota> = json::<Instagram, _>(
            send::<Instagram>(request, Effect::Read).await?,
            "content_publishing_limit",
            Effect::Read,
        )
        .await?;
        let Some(quota) = limits.data.first() else { return Ok(()) };
        let Some(total) = quota.config.as_ref().and_then(|c| c.quota_total) else { return Ok(()) };
        if quota.quota_usage >= total {
            return Err(PlatformError::RateLimited {
                message: format!(
                    "Instagram's publishing limit is used: {} of {total} posts in the last 24 hours",
                    quota.quota_usage
                ),
                retry_at: Some(Utc::now() + QUOTA_WAIT),
            });
        }
        Ok(())
    }

    /// Checks a URL Meta will fetch (address rules, type, size); whether it is an image or a video.
    async fn probe(&self, post: &MediaPost<'_>, url: &str) -> Result<MediaKind, PlatformError> {
        let download = post.fetcher.probe(url, &Limits::of(Platform::Instagram)).await.map_err(media_failure)?;
        Ok(download.format.kind())
    }

    /// `POST /{ig-user-id}/media`: a container; its id.
    async fn create_container(&self, post: &MediaPost<'_>, form: &[(&str, &str)]) -> Result<String, PlatformError> {
        let user = &post.account.platform_user_id;
        let request = self.app.http.post(self.graph(&format!("{user}/media"))).bearer_auth(post.token).form(form);
        let created: Created =
            json::<Instagram, _>(send::<Instagram>(request, Effect::Write).await?, "the container", Effect::Write)
                .await?;
        Ok(created.id)
    }

    /// `GET /{container-id}?fields=status_code,status`.
    async fn container_status(&self, token: &str, container: &str) -> Result<ContainerStatus, PlatformError> {
        let request =
            self.app.http.get(self.graph(container)).query(&[("fields", "status_code,status")]).bearer_auth(token);
        json::<Instagram, _>(send::<Instagram>(request, Effect::Read).await?, "the container status", Effect::Read)
            .await
    }

    /// `POST /{ig-user-id}/media_publish` with `creation_id`: the point of no return.
    async fn media_publish(&self, post: &MediaPost<'_>, container: &str) -> Result<Published, PlatformError> {
        let user = &post.account.platform_user_id;
        let request = self
            .app
            .http
            .post(self.graph(&format!("{user}/media_publish")))
            .bearer_auth(post.token)
            .form(&[("creation_id", container)]);
        // Instagram answered 2xx, so the post exists; a body we cannot read leaves its id unknown.
        let published: Created =
            json::<Instagram, _>(send::<Instagram>(request, Effect::Write).await?, "media_publish", Effect::Write)
                .await?;
        Ok(Published { platform_post_id: published.id })
    }

    /// The newest of the account's media with the post's caption, published since its container
    /// was made (stories are not listed: `None`).
    async fn find_published(
        &self,
        post: &MediaPost<'_>,
        saved: &Containers,
    ) -> Result<Option<Published>, PlatformError> {
        let user = &post.account.platform_user_id;
        let request = self
            .app
            .http
            .get(self.graph(&format!("{user}/media")))
            .query(&[("fields", "id,caption,timestamp")])
            .bearer_auth(post.token);
        let media: List<MediaItem> =
            json::<Instagram, _>(send::<Instagram>(request, Effect::Read).await?, "the media list", Effect::Read)
                .await?;
        let caption = post.content.rendered();
        let since = saved.made_at.map(|at| at - CLOCK_SLACK);
        let found = media.data.into_iter().find(|item| {
            let published = item
                .timestamp
                .as_deref()
                .and_then(|t| DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%z").ok())
                .map(|t| t.to_utc());
            let recent = match (since, published) {
                (Some(since), Some(published)) => published >= since,
                (None, _) => true,
                (Some(_), None) => false,
            };
            recent && item.caption.as_deref().unwrap_or_default() == caption
        });
        Ok(found.map(|item| Published { platform_post_id: item.id }))
    }
}
