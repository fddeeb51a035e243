//! `/api/v1/posts/*`: schedule posts and follow them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi, Union,
    param::{Header, Path, Query},
    payload::Json,
    types::{ParseFromJSON, ToJSON},
};
use shared::{
    App,
    db::entities::post,
    domain::{Platform, PostStatus},
    idempotency,
    posts::{self, ScheduleRequest},
};

use super::Tag;
use crate::text::{Text, strings};
use crate::{auth::BearerAuth, error::ApiError};

/// Post routes.
#[derive(Debug)]
pub struct PostsApi;

/// A campaign's posts to schedule: the original frontend's request (DESIGN §13).
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, skip_serializing_if_is_none)]
pub struct CampaignSchedule {
    /// The campaign: 1-128 letters, digits, `-`, `_`, `.` or `:`.
    pub campaign_id: Text,
    /// 1 to 1,000 posts; each becomes one scheduled post per platform it names.
    pub posts: Vec<PostDraft>,
    /// How to lay out the posts that have no `scheduled_time`.
    pub scheduling_options: Option<SchedulingOptions>,
}

/// One post of a campaign request: the same text to one or more platforms.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, skip_serializing_if_is_none)]
pub struct PostDraft {
    /// The text, counted per platform the way it counts (X: weighted, URLs as 23, limit 280).
    pub content: Text,
    /// Platform names: `linkedin`, `twitter` (or `x`), `facebook`, `instagram`, `tiktok`.
    pub platforms: Vec<Text>,
    /// When to publish: RFC 3339 with an offset (`2030-01-01T09:00:00Z`); naive times are refused.
    /// Without it, the post is laid out by `scheduling_options`.
    pub scheduled_time: Option<Text>,
    /// Hashtags, with or without `#`; appended to the text on a line of their own.
    #[oai(default)]
    pub hashtags: Vec<Text>,
    /// Public `https` URLs of images or a video, in order; what each platform takes is checked
    /// per platform (README "Media").
    #[oai(default)]
    pub media_urls: Vec<Text>,
    /// Per-platform choices (an Instagram story, the TikTok privacy level).
    pub options: Option<PostOptionsBody>,
}

/// Per-platform choices of a post.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, skip_serializing_if_is_none)]
pub struct PostOptionsBody {
    /// Instagram: `feed` (default: an image, a reel, or a carousel of 2-10) or `story`.
    pub instagram_share_as: Option<Text>,
    /// TikTok: `PUBLIC_TO_EVERYONE` (default), `MUTUAL_FOLLOW_FRIENDS`, `FOLLOWER_OF_CREATOR` or
    /// `SELF_ONLY`; it must be one the creator's account offers (an unaudited app: `SELF_ONLY`).
    pub tiktok_privacy_level: Option<Text>,
    /// TikTok: turn comments off.
    #[oai(default)]
    pub tiktok_disable_comment: bool,
}

impl From<PostOptionsBody> for shared::domain::PostOptions {
    fn from(body: PostOptionsBody) -> Self {
        Self {
            instagram_share_as: body.instagram_share_as.map(String::from),
            tiktok_privacy_level: body.tiktok_privacy_level.map(String::from),
            tiktok_disable_comment: body.tiktok_disable_comment,
        }
    }
}

/// How to lay out posts without a time of their own: the first at the next `start_time` in
/// `timezone`, each next one `interval_hours` later. Whole days step the wall clock (a daily post
/// stays at 09:00 across DST); other intervals step real time. A skipped wall time moves forward
/// by the gap (02:30 → 03:30); a repeated one is the first of the two.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, skip_serializing_if_is_none)]
pub struct SchedulingOptions {
    /// Hours between posts (more than 0, at most 2,208; fractions allowed).
    pub interval_hours: f64,
    /// Wall time of the first post, `HH:MM`.
    pub start_time: Text,
    /// IANA time zone name, such as `Europe/Berlin`; UTC when absent.
    pub timezone: Option<Text>,
}

/// One post to one or more platforms (the flat shape; a campaign request with one post does
/// the same).
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, skip_serializing_if_is_none)]
pub struct SingleSchedule {
    /// The campaign: 1-128 letters, digits, `-`, `_`, `.` or `:`.
    pub campaign_id: Text,
    /// Platform names; one post is created per platform.
    pub platforms: Vec<Text>,
    /// The text.
    pub content: Text,
    /// Hashtags, with or without `#`.
    #[oai(default)]
    pub hashtags: Vec<Text>,
    /// Public `https` URLs of images or a video, in order.
    #[oai(default)]
    pub media_urls: Vec<Text>,
    /// When to publish: RFC 3339 with an offset.
    pub scheduled_time: Text,
    /// Per-platform choices (an Instagram story, the TikTok privacy level).
    pub options: Option<PostOptionsBody>,
}

/// The body of `schedule` and `validate`: a campaign request (`posts`), or one flat post.
#[derive(Debug, Clone, Union)]
#[oai(one_of)]
pub enum ScheduleBody {
    /// A campaign's posts.
    Campaign(CampaignSchedule),
    /// One post.
    Single(SingleSchedule),
}

/// [`ScheduleBody`] as received: parsed by its `posts` member, so a refusal names the field that
/// is wrong rather than "matches neither shape". The schema is the union's.
#[derive(Debug, Clone)]
pub struct ScheduleInput(ScheduleBody);

impl poem_openapi::types::Type for ScheduleInput {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> std::borrow::Cow<'static, str> {
        ScheduleBody::name()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        ScheduleBody::schema_ref()
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        ScheduleBody::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for ScheduleInput {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        let campaign = value.as_ref().and_then(|v| v.as_object()).is_some_and(|o| o.contains_key("posts"));
        let body = if campaign {
            ScheduleBody::Campaign(CampaignSchedule::parse_from_json(value).map_err(|e| e.propagate())?)
        } else {
            ScheduleBody::Single(SingleSchedule::parse_from_json(value).map_err(|e| e.propagate())?)
        };
        Ok(Self(body))
    }
}

impl ToJSON for ScheduleInput {
    fn to_json(&self) -> Option<serde_json::Value> {
        self.0.to_json()
    }
}

impl ScheduleInput {
    /// The request as the scheduling service takes it.
    fn request(self) -> ScheduleRequest {
        match self.0 {
            ScheduleBody::Campaign(body) => ScheduleRequest {
                campaign_id: body.campaign_id.into(),
                posts: body
                    .posts
                    .into_iter()
                    .map(|p| posts::PostDraft {
                        content: p.content.into(),
                        platforms: strings(p.platforms),
                        scheduled_time: p.scheduled_time.map(String::from),
                        hashtags: strings(p.hashtags),
                        media_urls: strings(p.media_urls),
                        options: p.options.map(Into::into).unwrap_or_default(),
                    })
                    .collect(),
                scheduling_options: body.scheduling_options.map(|o| shared::layout::SchedulingOptions {
                    interval_hours: o.interval_hours,
                    start_time: o.start_time.into(),
                    timezone: o.timezone.map(String::from),
                }),
            },
            ScheduleBody::Single(body) => ScheduleRequest {
                campaign_id: body.campaign_id.into(),
                posts: vec![posts::PostDraft {
                    content: body.content.into(),
                    platforms: strings(body.platforms),
                    scheduled_time: Some(body.scheduled_time.into()),
                    hashtags: strings(body.hashtags),
                    media_urls: strings(body.media_urls),
                    options: body.options.map(Into::into).unwrap_or_default(),
                }],
                scheduling_options: None,
            },
        }
    }
}

/// Changes to a waiting post; absent fields keep their value.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, skip_serializing_if_is_none)]
pub struct PostEditBody {
    /// New text, validated for the post's platform.
    pub content: Option<Text>,
    /// New hashtags, with or without `#`.
    pub hashtags: Option<Vec<Text>>,
    /// New media URLs, checked for the post's platform.
    pub media_urls: Option<Vec<Text>>,
    /// New time, RFC 3339 with an offset.
    pub scheduled_time: Option<Text>,
}

/// How to retry a post.
#[derive(Debug, Clone, Default, Object)]
#[oai(deny_unknown_fields, skip_serializing_if_is_none)]
pub struct RetryBody {
    /// When to try again, RFC 3339 with an offset; now when absent.
    pub scheduled_time: Option<Text>,
    /// Required to retry an `unknown` post: you checked the platform does not have it.
    #[oai(default)]
    pub confirm_not_published: bool,
}

/// What a post would be on one platform.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PostCheck {
    /// Index of the post in the request.
    pub index: u32,
    /// The platform, when the name was one.
    pub platform: Option<String>,
    /// Length as the platform counts it (X: weighted), hashtags included as they will be posted.
    pub length: Option<u32>,
    /// The platform's limit.
    pub limit: Option<u32>,
    /// When it would be published (laid out, where the post has no time).
    pub scheduled_time: Option<DateTime<Utc>>,
    /// Why it would be refused, naming the field (`posts[3].content (twitter): ...`).
    pub error: Option<String>,
}

/// The dry run's answer.
#[derive(Debug, Object)]
pub struct Validation {
    /// Whether `schedule` would accept the body as far as content and times go (connections are
    /// checked when it is sent).
    pub valid: bool,
    /// One entry per post and platform.
    pub checks: Vec<PostCheck>,
}

/// A scheduled post.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Post {
    /// Post id (UUID).
    pub id: String,
    /// Id shared by the posts one request created.
    pub group_id: String,
    /// The campaign.
    pub campaign_id: String,
    /// The platform.
    pub platform: String,
    /// The text.
    pub content: String,
    /// Hashtags, without `#`.
    pub hashtags: Vec<String>,
    /// Media URLs.
    pub media_urls: Vec<String>,
    /// When it is to be published (UTC).
    pub scheduled_time: DateTime<Utc>,
    /// `pending`, `publishing`, `posted`, `failed`, `cancelled`, `retrying` or `unknown`.
    pub status: String,
    /// While `publishing`, the saved step: `uploading`, `processing` (the platform is processing
    /// the media), `sending` (the call that makes it public) or `confirming` (the platform is
    /// finishing it).
    pub publish_phase: Option<String>,
    /// The per-platform choices it was scheduled with.
    pub options: Option<PostOptionsBody>,
    /// The platform's id of the post, once posted.
    pub platform_post_id: Option<String>,
    /// Why the last attempt failed, in the platform's words where it gave some.
    pub posting_error: Option<String>,
    /// `unauthorized`, `rate_limited`, `transient`, `rejected`, `unknown` or `not_connected`.
    pub error_kind: Option<String>,
    /// Attempts that failed and were retried.
    pub retry_count: i32,
    /// When the next attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the platform accepted it.
    pub published_at: Option<DateTime<Utc>>,
    /// When it was scheduled.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<post::Model> for Post {
    fn from(row: post::Model) -> Self {
        Self {
            id: row.id,
            group_id: row.group_id,
            campaign_id: row.campaign_id,
            platform: row.platform.as_str().to_owned(),
            content: row.post_content,
            hashtags: serde_json::from_value(row.hashtags).unwrap_or_default(),
            media_urls: serde_json::from_value(row.media_urls).unwrap_or_default(),
            scheduled_time: row.scheduled_time,
            status: row.status.as_str().to_owned(),
            publish_phase: (row.status == shared::domain::PostStatus::Publishing)
                .then_some(row.publish_phase)
                .flatten()
                .map(|p| p.as_str().to_owned()),
            options: row
                .publish_options
                .and_then(|v| serde_json::from_value::<shared::domain::PostOptions>(v).ok())
                .map(|o| PostOptionsBody {
                    instagram_share_as: o.instagram_share_as.map(Text),
                    tiktok_privacy_level: o.tiktok_privacy_level.map(Text),
                    tiktok_disable_comment: o.tiktok_disable_comment,
                }),
            platform_post_id: row.platform_post_id,
            posting_error: row.posting_error,
            error_kind: row.error_kind.map(|k| k.as_str().to_owned()),
            retry_count: row.retry_count,
            next_attempt_at: row.next_attempt_at,
            published_at: row.published_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The posts a schedule request created.
#[derive(Debug, Object)]
pub struct Scheduled {
    /// Shared by these posts.
    pub group_id: String,
    /// One per platform.
    pub posts: Vec<Post>,
}

/// Scheduled.
#[derive(Debug, ApiResponse)]
pub enum ScheduleResponse {
    /// The posts were stored and queued (or, with a repeated `Idempotency-Key`, the first
    /// response again, marked `Idempotent-Replayed: true`).
    #[oai(status = 201)]
    Created(Json<Scheduled>, #[oai(header = "Idempotent-Replayed")] Option<String>),
}

/// The posts of a campaign, one page.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CampaignPosts {
    /// The campaign.
    pub campaign_id: String,
    /// Its posts, by scheduled time (then id).
    pub posts: Vec<Post>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// One page of the user's posts.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PostPage {
    /// The posts, by scheduled time (then id).
    pub posts: Vec<Post>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// The user's posts counted by status.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Summary {
    /// The campaign counted, when one was given.
    pub campaign_id: Option<String>,
    /// All posts counted.
    pub total: i64,
    /// Waiting for their time.
    pub pending: i64,
    /// Being sent now.
    pub publishing: i64,
    /// Waiting for another attempt.
    pub retrying: i64,
    /// On the platform.
    pub posted: i64,
    /// Failed for good.
    pub failed: i64,
    /// The platform may or may not have them; check before publishing again.
    pub unknown: i64,
    /// Cancelled.
    pub cancelled: i64,
    /// The same counts per platform (platforms with posts only).
    pub platforms: Vec<PlatformCounts>,
    /// The waiting post due first, if any.
    pub next_due: Option<Post>,
    /// The failed or unknown post that changed last, if any.
    pub last_failure: Option<Post>,
}

/// Posts of one platform counted by status.
#[derive(Debug, Object)]
pub struct PlatformCounts {
    /// The platform.
    pub platform: String,
    /// All its posts.
    pub total: i64,
    /// Waiting for their time.
    pub pending: i64,
    /// Being sent now.
    pub publishing: i64,
    /// Waiting for another attempt.
    pub retrying: i64,
    /// On the platform.
    pub posted: i64,
    /// Failed for good.
    pub failed: i64,
    /// The platform may or may not have them.
    pub unknown: i64,
    /// Cancelled.
    pub cancelled: i64,
}

/// The first response of a repeated `Idempotency-Key`, as stored.
fn replayed(body: &str) -> Result<ScheduleResponse, ApiError> {
    let value = serde_json::from_str(body).ok();
    let scheduled =
        Scheduled::parse_from_json(value).map_err(|_| ApiError::from(shared::Error::NotFound("stored response")))?;
    Ok(ScheduleResponse::Created(Json(scheduled), Some("true".into())))
}

#[OpenApi(prefix_path = "/api/v1/posts", tag = "Tag::Posts")]
impl PostsApi {
    /// Schedule a post to one or more connected platforms. With an `Idempotency-Key` header, the
    /// same key and body within 24 hours return the first response and create nothing new; the
    /// same key with another body is a 409.
    #[oai(path = "/schedule", method = "post")]
    async fn schedule(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        body: Json<ScheduleInput>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
    ) -> Result<ScheduleResponse, ApiError> {
        let reservation = match idempotency_key.0.as_deref() {
            None => None,
            Some(key) => {
                let fingerprint = body.0.to_json().map(|v| v.to_string()).unwrap_or_default();
                match idempotency::begin(&app, &auth.0.id, key, &fingerprint).await? {
                    idempotency::Begin::Replay { body, .. } => return replayed(&body),
                    idempotency::Begin::New(reservation) => Some(reservation),
                }
            }
        };
        let rows = match posts::schedule(&app, &auth.0.id, body.0.request()).await {
            Ok(rows) => rows,
            Err(error) => {
                if let Some(reservation) = reservation {
                    idempotency::release(&app, reservation).await?;
                }
                return Err(error.into());
            }
        };
        let group_id = rows.first().map(|r| r.group_id.clone()).unwrap_or_default();
        let scheduled = Scheduled { group_id, posts: rows.into_iter().map(Post::from).collect() };
        if let Some(reservation) = reservation {
            let stored = scheduled.to_json().map(|v| v.to_string()).unwrap_or_default();
            idempotency::finish(&app, reservation, 201, &stored).await?;
        }
        Ok(ScheduleResponse::Created(Json(scheduled), None))
    }

    /// Dry run of `schedule`: the same body, nothing stored. Answers, per post and platform, the
    /// length as the platform counts it, its limit, the time it would go out and what would refuse
    /// it, so a composer can show them as the user types. 422 only for what concerns the whole
    /// request (the campaign id, the number of posts, the scheduling options).
    #[oai(path = "/validate", method = "post")]
    async fn validate(
        &self,
        app: Data<&Arc<App>>,
        _auth: BearerAuth,
        body: Json<ScheduleInput>,
    ) -> Result<Json<Validation>, ApiError> {
        let checks = posts::validate(&body.0.request(), app.settings.media.allow_private)?;
        let number = |n: Option<usize>| n.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let checks: Vec<PostCheck> = checks
            .into_iter()
            .map(|c| PostCheck {
                index: u32::try_from(c.index).unwrap_or(u32::MAX),
                platform: c.platform.map(|p| p.as_str().to_owned()),
                length: number(c.length),
                limit: number(c.limit),
                scheduled_time: c.scheduled_time,
                error: c.error.map(|e| e.to_string()),
            })
            .collect();
        Ok(Json(Validation { valid: checks.iter().all(|c| c.error.is_none()), checks }))
    }

    /// Edit a waiting (`pending` or `retrying`) post: content, hashtags, media or time,
    /// validated as at scheduling. Against a worker claiming it, exactly one wins: once this
    /// answers 200, the post goes out with the new content at the new time; otherwise 409 with
    /// the status it has.
    #[oai(path = "/:post_id", method = "patch")]
    async fn edit(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        post_id: Path<String>,
        body: Json<PostEditBody>,
    ) -> Result<Json<Post>, ApiError> {
        let body = body.0;
        let change = posts::PostEdit {
            content: body.content.map(String::from),
            hashtags: body.hashtags.map(strings),
            media_urls: body.media_urls.map(strings),
            scheduled_time: body.scheduled_time.map(String::from),
        };
        Ok(Json(posts::edit(&app, &auth.0.id, &post_id, change).await?.into()))
    }

    /// Retry a `failed` post, now or at `scheduled_time`. An `unknown` post may already be on
    /// the platform: it is retried only with `{"confirm_not_published": true}` (409
    /// `confirmation_required` otherwise). Any other status is 409 `not_retryable`.
    #[oai(path = "/retry/:post_id", method = "post")]
    async fn retry(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        post_id: Path<String>,
        body: Json<Option<RetryBody>>,
    ) -> Result<Json<Post>, ApiError> {
        let body = body.0.unwrap_or_default();
        let request = posts::RetryRequest {
            scheduled_time: body.scheduled_time.map(String::from),
            confirm_not_published: body.confirm_not_published,
        };
        Ok(Json(posts::retry(&app, &auth.0.id, &post_id, request).await?.into()))
    }

    /// The user's posts of a campaign, by scheduled time, a page at a time (filters as for
    /// `GET /api/v1/posts`).
    #[oai(path = "/scheduled/:campaign_id", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn campaign(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        campaign_id: Path<String>,
        status: Query<Option<String>>,
        platform: Query<Option<String>>,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
        updated_since: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u64>>,
        cursor: Query<Option<String>>,
    ) -> Result<Json<CampaignPosts>, ApiError> {
        let request = posts::ListRequest {
            campaign_id: Some(campaign_id.0.clone()),
            statuses: status.0.into_iter().collect(),
            platform: platform.0,
            from: from.0,
            to: to.0,
            updated_since: updated_since.0,
            limit: limit.0,
            cursor: cursor.0,
        };
        let page = posts::list(&app, &auth.0.id, request).await?;
        Ok(Json(CampaignPosts {
            campaign_id: campaign_id.0,
            posts: page.posts.into_iter().map(Post::from).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    /// The user's posts in every campaign, by scheduled time (then id), a page at a time:
    /// `status` (one or several, comma-separated), `platform`, `from` and `to` (scheduled time,
    /// RFC 3339), `updated_since` (changed at or after), `limit` (1-500, default 100) and `cursor`
    /// (the `next_cursor` of the page before). Pages do not repeat or skip a post when others are
    /// added meanwhile.
    #[oai(path = "/", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        status: Query<Option<String>>,
        platform: Query<Option<String>>,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
        updated_since: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u64>>,
        cursor: Query<Option<String>>,
    ) -> Result<Json<PostPage>, ApiError> {
        let request = posts::ListRequest {
            campaign_id: None,
            statuses: status.0.into_iter().collect(),
            platform: platform.0,
            from: from.0,
            to: to.0,
            updated_since: updated_since.0,
            limit: limit.0,
            cursor: cursor.0,
        };
        let page = posts::list(&app, &auth.0.id, request).await?;
        Ok(Json(PostPage { posts: page.posts.into_iter().map(Post::from).collect(), next_cursor: page.next_cursor }))
    }

    /// Publish a waiting (`pending` or `retrying`) post now instead of at its time; 409 otherwise.
    #[oai(path = "/publish/:post_id", method = "post")]
    async fn publish_now(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        post_id: Path<String>,
    ) -> Result<Json<Post>, ApiError> {
        Ok(Json(posts::publish_now(&app, &auth.0.id, &post_id).await?.into()))
    }

    /// Cancel a waiting (`pending` or `retrying`) post; 409 once it is being sent or done.
    #[oai(path = "/cancel/:post_id", method = "delete")]
    async fn cancel(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        post_id: Path<String>,
    ) -> Result<Json<Post>, ApiError> {
        Ok(Json(posts::cancel(&app, &auth.0.id, &post_id).await?.into()))
    }

    /// The user's posts counted by status, optionally within one campaign.
    #[oai(path = "/status/summary", method = "get")]
    async fn summary(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        campaign_id: Query<Option<String>>,
    ) -> Result<Json<Summary>, ApiError> {
        let summary = posts::summary(&app, &auth.0.id, campaign_id.as_deref()).await?;
        let count = |platform: Option<Platform>, status: Option<PostStatus>| -> i64 {
            let matches = |p: &Platform, s: &PostStatus| {
                platform.is_none_or(|platform| platform == *p) && status.is_none_or(|status| status == *s)
            };
            summary.counts.iter().filter(|(p, s, _)| matches(p, s)).map(|(_, _, n)| n).sum()
        };
        let platforms = Platform::ALL
            .into_iter()
            .filter(|p| count(Some(*p), None) > 0)
            .map(|p| PlatformCounts {
                platform: p.as_str().to_owned(),
                total: count(Some(p), None),
                pending: count(Some(p), Some(PostStatus::Pending)),
                publishing: count(Some(p), Some(PostStatus::Publishing)),
                retrying: count(Some(p), Some(PostStatus::Retrying)),
                posted: count(Some(p), Some(PostStatus::Posted)),
                failed: count(Some(p), Some(PostStatus::Failed)),
                unknown: count(Some(p), Some(PostStatus::Unknown)),
                cancelled: count(Some(p), Some(PostStatus::Cancelled)),
            })
            .collect();
        Ok(Json(Summary {
            campaign_id: campaign_id.0,
            total: count(None, None),
            pending: count(None, Some(PostStatus::Pending)),
            publishing: count(None, Some(PostStatus::Publishing)),
            retrying: count(None, Some(PostStatus::Retrying)),
            posted: count(None, Some(PostStatus::Posted)),
            failed: count(None, Some(PostStatus::Failed)),
            unknown: count(None, Some(PostStatus::Unknown)),
            cancelled: count(None, Some(PostStatus::Cancelled)),
            platforms,
            next_due: summary.next_due.map(Post::from),
            last_failure: summary.last_failure.map(Post::from),
        }))
    }

    /// One post of the user.
    #[oai(path = "/:post_id", method = "get")]
    async fn get(&self, app: Data<&Arc<App>>, auth: BearerAuth, post_id: Path<String>) -> Result<Json<Post>, ApiError> {
        Ok(Json(posts::get(&app, &auth.0.id, &post_id).await?.into()))
    }
}
