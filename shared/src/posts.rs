//! Scheduling posts and reading them back. The database row is the source of truth: scheduling
//! writes rows only, and the dispatcher pushes each post's job as it comes due (DESIGN §11). A
//! post due within the dispatcher's lookahead is pushed here at once, through the same
//! [`dispatch`](crate::dispatch::dispatch).

use chrono::{DateTime, Duration, Utc};

use crate::{
    App, Error,
    db::{connections, entities::post, posts},
    dispatch,
    domain::{ConnectionStatus, Platform, PostContent, PostOptions, PostStatus, ValidationError, max_length},
    layout::{Layout, SchedulingOptions},
    media,
};

/// How far in the past a `scheduled_time` may be (clock skew, slow clients); it then runs now.
const PAST_GRACE_SECONDS: i64 = 60;
/// How far ahead a post may be scheduled.
const MAX_AHEAD_DAYS: i64 = 366;

/// One post of a scheduling request, as received: the same text to one or more platforms.
#[derive(Debug, Clone, Default)]
pub struct PostDraft {
    /// The text.
    pub content: String,
    /// Platform names.
    pub platforms: Vec<String>,
    /// RFC 3339 time with an offset; laid out by the request's options when absent.
    pub scheduled_time: Option<String>,
    /// Hashtags, with or without `#`.
    pub hashtags: Vec<String>,
    /// Media URLs.
    pub media_urls: Vec<String>,
    /// Per-platform choices.
    pub options: PostOptions,
}

/// A scheduling request, as received (DESIGN §13).
#[derive(Debug, Clone)]
pub struct ScheduleRequest {
    /// The campaign the posts belong to.
    pub campaign_id: String,
    /// The posts, 1 to [`MAX_POSTS_PER_REQUEST`].
    pub posts: Vec<PostDraft>,
    /// How to lay out posts without a time of their own.
    pub scheduling_options: Option<SchedulingOptions>,
}

/// Posts one request may carry.
pub const MAX_POSTS_PER_REQUEST: usize = 1_000;

/// What the dry run says of one post on one platform.
#[derive(Debug, Clone)]
pub struct Check {
    /// Index of the post in the request.
    pub index: usize,
    /// The platform, when the name was one.
    pub platform: Option<Platform>,
    /// The length as the platform counts it, when the text could be counted.
    pub length: Option<usize>,
    /// The platform's limit.
    pub limit: Option<usize>,
    /// When it would be published, when it could be worked out.
    pub scheduled_time: Option<DateTime<Utc>>,
    /// What would refuse it (field `posts[3].content (twitter)`), if anything.
    pub error: Option<ValidationError>,
}

/// A post checked for one platform, ready to store.
struct Planned {
    index: usize,
    platform: Platform,
    content: PostContent,
    scheduled_time: DateTime<Utc>,
    media_urls: Vec<String>,
    options: PostOptions,
}

/// TikTok's privacy levels (PLATFORMS.md §5.3).
const TIKTOK_PRIVACY: [&str; 4] = ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY"];

/// Checks a post's media URLs (the address rules and the count and kinds `platform` takes, as
/// far as the URLs tell) and its options; returns the URLs as stored.
pub fn check_media(
    platform: Platform,
    urls: &[String],
    options: &PostOptions,
    allow_private: bool,
) -> Result<Vec<String>, ValidationError> {
    if urls.len() > media::MAX_MEDIA_PER_POST {
        return Err(ValidationError::new(
            "media_urls",
            format!("send at most {} media URLs", media::MAX_MEDIA_PER_POST),
        ));
    }
    let mut formats = Vec::with_capacity(urls.len());
    let mut stored = Vec::with_capacity(urls.len());
    for (i, text) in urls.iter().enumerate() {
        let (url, format) = media::parse_url(text, allow_private)
            .map_err(|reason| ValidationError::new(format!("media_urls[{i}]"), reason))?;
        formats.push(format);
        stored.push(url.to_string());
    }
    let story = match options.instagram_share_as.as_deref() {
        None | Some("feed") => false,
        Some("story") => true,
        Some(other) => {
            return Err(ValidationError::new(
                "options.instagram_share_as",
                format!("`{other}` is not `feed` or `story`"),
            ));
        }
    };
    if let Some(level) = &options.tiktok_privacy_level
        && !TIKTOK_PRIVACY.contains(&level.as_str())
    {
        return Err(ValidationError::new(
            "options.tiktok_privacy_level",
            format!("`{level}` is not one of {}", TIKTOK_PRIVACY.join(", ")),
        ));
    }
    if platform == Platform::Instagram && story && formats.len() != 1 {
        return Err(ValidationError::new("media_urls", "an Instagram story is one image or one video"));
    }
    media::Limits::of(platform).check(platform, &formats)?;
    Ok(stored)
}

/// Checks a campaign id: 1–128 characters of letters, digits, `-`, `_`, `.` and `:`.
pub fn parse_campaign_id(id: &str) -> Result<String, ValidationError> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if valid {
        Ok(id.to_owned())
    } else {
        Err(ValidationError::new("campaign_id", "must be 1-128 characters of letters, digits, '-', '_', '.' or ':'"))
    }
}

/// Parses a time that carries an offset; a naive local time is refused, never guessed.
pub fn parse_time(field: &'static str, text: &str) -> Result<DateTime<Utc>, ValidationError> {
    DateTime::parse_from_rfc3339(text.trim()).map(|t| t.to_utc()).map_err(|_| {
        ValidationError::new(
            field,
            "must be an RFC 3339 time with an offset, such as 2030-01-01T09:00:00Z or 2030-01-01T10:00:00+01:00",
        )
    })
}

/// Checks every post of a request for every platform it names, without the database: the
/// campaign, the times (given or laid out), the content per platform. `Err` for what concerns
/// the whole request; per post and platform otherwise.
fn plan(
    request: &ScheduleRequest,
    now: DateTime<Utc>,
    allow_private: bool,
) -> Result<(String, Vec<Result<Planned, Check>>), ValidationError> {
    let campaign_id = parse_campaign_id(request.campaign_id.trim())?;
    if request.posts.is_empty() || request.posts.len() > MAX_POSTS_PER_REQUEST {
        return Err(ValidationError::new("posts", format!("send 1 to {MAX_POSTS_PER_REQUEST} posts")));
    }
    // A platform name Herald does not know is a malformed request, not a draft to report on.
    for (index, draft) in request.posts.iter().enumerate() {
        if let Some(name) = draft.platforms.iter().find(|name| Platform::parse(name).is_none()) {
            return Err(ValidationError::new("platforms", format!("`{name}` is not a platform")).in_post(index, None));
        }
    }
    let layout = request.scheduling_options.as_ref().map(Layout::parse).transpose()?;
    let unscheduled = request.posts.iter().filter(|p| p.scheduled_time.is_none()).count();
    let mut laid_out = layout.map(|l| l.times(unscheduled, now)).unwrap_or_default().into_iter();
    let mut planned = Vec::new();
    for (index, draft) in request.posts.iter().enumerate() {
        let refused = |platform: Option<Platform>, error: ValidationError| Check {
            index,
            platform,
            length: None,
            limit: None,
            scheduled_time: None,
            error: Some(error.in_post(index, platform)),
        };
        let time = match &draft.scheduled_time {
            Some(text) => parse_time("scheduled_time", text).and_then(|at| check_time(at, now)),
            None => laid_out.next().ok_or_else(|| {
                ValidationError::new("scheduled_time", "is required when the request has no scheduling_options")
            }),
        };
        let time = match time {
            Ok(time) => time,
            Err(error) => {
                planned.push(Err(refused(None, error)));
                continue;
            }
        };
        let mut platforms: Vec<Platform> = Vec::new();
        for platform in draft.platforms.iter().filter_map(|name| Platform::parse(name)) {
            if !platforms.contains(&platform) {
                platforms.push(platform);
            }
        }
        if draft.platforms.is_empty() {
            planned.push(Err(refused(None, ValidationError::new("platforms", "name at least one platform"))));
        }
        for platform in platforms {
            let media_urls = match check_media(platform, &draft.media_urls, &draft.options, allow_private) {
                Ok(urls) => urls,
                Err(error) => {
                    planned.push(Err(refused(Some(platform), error)));
                    continue;
                }
            };
            let has_media = !media_urls.is_empty();
            match PostContent::parse_with_media(platform, &draft.content, &draft.hashtags, has_media) {
                Ok(content) => planned.push(Ok(Planned {
                    index,
                    platform,
                    content,
                    scheduled_time: time,
                    media_urls,
                    options: draft.options.clone(),
                })),
                Err(error) => {
                    let mut check = refused(Some(platform), error);
                    check.length = Some(
                        PostContent::from_stored(
                            draft.content.trim().to_owned(),
                            draft.hashtags.iter().map(|t| t.trim().trim_start_matches('#').to_owned()).collect(),
                        )
                        .length(platform),
                    );
                    check.limit = Some(max_length(platform));
                    check.scheduled_time = Some(time);
                    planned.push(Err(check));
                }
            }
        }
    }
    Ok((campaign_id, planned))
}

/// A given time must be ahead (within a grace for clock skew) and within a year.
fn check_time(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>, ValidationError> {
    if at < now - Duration::seconds(PAST_GRACE_SECONDS) {
        return Err(ValidationError::new("scheduled_time", "is in the past"));
    }
    if at > now + Duration::days(MAX_AHEAD_DAYS) {
        return Err(ValidationError::new("scheduled_time", "is more than a year ahead"));
    }
    Ok(at)
}

/// The dry run of [`schedule`]: what each post would be on each platform, nothing stored and no
/// connection required. `Err` only for what concerns the whole request.
pub fn validate(request: &ScheduleRequest, allow_private: bool) -> Result<Vec<Check>, Error> {
    let (_, planned) = plan(request, Utc::now(), allow_private)?;
    Ok(planned
        .into_iter()
        .map(|planned| match planned {
            Ok(p) => Check {
                index: p.index,
                platform: Some(p.platform),
                length: Some(p.content.length(p.platform)),
                limit: Some(max_length(p.platform)),
                scheduled_time: Some(p.scheduled_time),
                error: None,
            },
            Err(check) => check,
        })
        .collect())
}

/// Validates every post of the request for every platform it names, and stores one row per post
/// and platform in one transaction, all sharing one group id; or refuses the whole request with
/// the first problem, naming the post, the platform and the field. Posts due within the
/// lookahead are pushed into the queue at once.
pub async fn schedule(app: &App, user_id: &str, request: ScheduleRequest) -> Result<Vec<post::Model>, Error> {
    let now = Utc::now();
    let (campaign_id, checked) = plan(&request, now, app.settings.media.allow_private)?;
    let mut planned = Vec::new();
    for result in checked {
        match result {
            Ok(p) => planned.push(p),
            Err(Check { error: Some(error), .. }) => return Err(error.into()),
            Err(Check { error: None, .. }) => {}
        }
    }
    let group_id = uuid::Uuid::new_v4().to_string();
    let mut rows = Vec::with_capacity(planned.len());
    let mut accounts: Vec<(Platform, i64)> = Vec::new();
    for Planned { index: _, platform, content, scheduled_time, media_urls, options } in planned {
        let connection_id = match accounts.iter().find(|(p, _)| *p == platform) {
            Some((_, id)) => *id,
            None => {
                let id = usable_connection(app, user_id, platform).await?;
                accounts.push((platform, id));
                id
            }
        };
        rows.push(post::Model {
            id: uuid::Uuid::new_v4().to_string(),
            group_id: group_id.clone(),
            campaign_id: campaign_id.clone(),
            user_id: user_id.to_owned(),
            social_connection_id: Some(connection_id),
            platform,
            post_content: content.text().to_owned(),
            media_urls: serde_json::Value::from(media_urls),
            hashtags: serde_json::Value::from(content.hashtags().to_vec()),
            scheduled_time,
            status: PostStatus::Pending,
            platform_post_id: None,
            posting_error: None,
            error_kind: None,
            retry_count: 0,
            next_attempt_at: None,
            published_at: None,
            created_at: now,
            updated_at: now,
            due_at: Some(posts::millis(scheduled_time)),
            dispatched_at: None,
            claim_token: None,
            claimed_at: None,
            publish_phase: None,
            publish_state: None,
            publish_options: (options != PostOptions::default())
                .then(|| serde_json::to_value(&options).unwrap_or_default()),
        });
    }
    posts::insert_all(&app.db, rows.clone()).await?;
    tracing::info!(post.group_id = %group_id, posts = rows.len(), "posts scheduled");
    dispatch_soon(app, rows.iter().map(|r| (r.id.as_str(), r.scheduled_time))).await;
    Ok(rows)
}

/// The id of the user's active connection to `platform`, ready to publish (a Page chosen where
/// the platform posts to one); 409 `not_connected` otherwise.
async fn usable_connection(app: &App, user_id: &str, platform: Platform) -> Result<i64, Error> {
    let connection = connections::find(&app.db, user_id, platform)
        .await?
        .filter(|c| c.connection_status == ConnectionStatus::Active);
    let Some(connection) = connection else {
        return Err(Error::Conflict {
            code: "not_connected",
            message: format!("connect a {platform} account before scheduling posts to it"),
        });
    };
    if app.platforms.get(platform).is_some_and(|c| c.needs_page()) && connection.page_id.is_none() {
        return Err(Error::Conflict {
            code: "not_connected",
            message: format!("choose which {platform} Page to publish to before scheduling posts to it"),
        });
    }
    Ok(connection.id)
}

/// Pushes the posts (id, due time) that are due within the lookahead now, rather than at the
/// dispatcher's next round; later ones are left to it. A failure only delays them: the rows are
/// stored, and every worker's dispatcher pushes them once the queue answers.
async fn dispatch_soon<'a>(app: &App, posts: impl IntoIterator<Item = (&'a str, DateTime<Utc>)>) {
    let horizon = Utc::now() + app.settings.worker.dispatch.lookahead;
    let ids: Vec<String> = posts.into_iter().filter(|(_, due)| *due <= horizon).map(|(id, _)| id.to_owned()).collect();
    if ids.is_empty() {
        return;
    }
    if let Err(error) = dispatch::dispatch(app, Some(&ids)).await {
        tracing::warn!(error = %error, posts = ids.len(), "could not push posts due soon; the dispatcher will");
    }
}

/// One post of the user.
pub async fn get(app: &App, user_id: &str, post_id: &str) -> Result<post::Model, Error> {
    known(post_id)?;
    posts::find_for_user(&app.db, user_id, post_id).await?.ok_or(Error::NotFound("post"))
}

/// Items per page of a listing by default (posts, chat messages).
pub const DEFAULT_PAGE: u64 = 100;
/// Most items one page may hold.
pub const MAX_PAGE: u64 = 500;

/// The page size asked for, checked: [`DEFAULT_PAGE`] when absent, 1 to [`MAX_PAGE`].
pub fn page_size(limit: Option<u64>) -> Result<u64, ValidationError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ValidationError::new("limit", format!("must be 1 to {MAX_PAGE}")));
    }
    Ok(limit)
}

/// A page out of `rows`, read with `limit + 1`: the first `limit`, and the cursor of the last of
/// them when there was more.
pub fn paged<T>(mut rows: Vec<T>, limit: u64, cursor_of: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let cursor = rows.last().map(cursor_of);
    (rows, cursor)
}

/// A listing as asked for: filters as received, a page size and the cursor of the page before.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// One campaign, or all.
    pub campaign_id: Option<String>,
    /// Status names (any of them).
    pub statuses: Vec<String>,
    /// A platform name.
    pub platform: Option<String>,
    /// RFC 3339: posts scheduled at or after.
    pub from: Option<String>,
    /// RFC 3339: posts scheduled before.
    pub to: Option<String>,
    /// RFC 3339: posts changed at or after.
    pub updated_since: Option<String>,
    /// Posts per page (1 to [`MAX_PAGE`]).
    pub limit: Option<u64>,
    /// `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// One page of posts and the cursor of the next, if there is more.
#[derive(Debug, Clone)]
pub struct Page {
    /// The posts, by time.
    pub posts: Vec<post::Model>,
    /// Pass as `cursor` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// The user's posts matching the request, one page at a time, by `(scheduled_time, id)`.
pub async fn list(app: &App, user_id: &str, request: ListRequest) -> Result<Page, Error> {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let time = |field: &'static str, text: &Option<String>| text.as_deref().map(|t| parse_time(field, t)).transpose();
    let mut statuses = Vec::new();
    for name in &request.statuses {
        if name.split(',').all(|n| n.trim().is_empty()) {
            return Err(ValidationError::new("status", "names no status").into());
        }
        for name in name.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let status = PostStatus::parse(name)
                .ok_or_else(|| ValidationError::new("status", format!("`{name}` is not a post status")))?;
            statuses.push(status);
        }
    }
    let platform = match request.platform.as_deref() {
        Some(name) => Some(
            Platform::parse(name)
                .ok_or_else(|| ValidationError::new("platform", format!("`{name}` is not a platform")))?,
        ),
        None => None,
    };
    let limit = page_size(request.limit)?;
    let bad_cursor = || ValidationError::new("cursor", "is not a cursor this API gave");
    let after = match &request.cursor {
        None => None,
        Some(cursor) => {
            let bytes = engine.decode(cursor.as_bytes()).map_err(|_| bad_cursor())?;
            let text = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
            let (nanos, id) = text.split_once('|').ok_or_else(bad_cursor)?;
            let nanos: i64 = nanos.parse().map_err(|_| bad_cursor())?;
            Some((DateTime::from_timestamp_nanos(nanos), id.to_owned()))
        }
    };
    let filter = posts::ListFilter {
        campaign_id: request.campaign_id.as_deref().map(parse_campaign_id).transpose()?,
        statuses,
        platform,
        from: time("from", &request.from)?,
        to: time("to", &request.to)?,
        updated_since: time("updated_since", &request.updated_since)?,
        after,
    };
    let rows = posts::list(&app.db, user_id, &filter, limit + 1).await?;
    let (posts, next_cursor) = paged(rows, limit, |last| {
        let nanos = last.scheduled_time.timestamp_nanos_opt().unwrap_or_default();
        engine.encode(format!("{nanos}|{}", last.id))
    });
    Ok(Page { posts, next_cursor })
}

/// Post ids are UUIDs: anything else is no post of anybody's, answered without a query.
fn known(post_id: &str) -> Result<(), Error> {
    if crate::db::is_id(post_id) { Ok(()) } else { Err(Error::NotFound("post")) }
}

/// Why a post could not be changed: it does not exist for this user, or it is past waiting.
async fn not_waiting(app: &App, user_id: &str, post_id: &str, what: &str) -> Error {
    match posts::find_for_user(&app.db, user_id, post_id).await {
        Ok(Some(post)) => Error::Conflict {
            code: "not_waiting",
            message: format!("only pending or retrying posts can be {what}; this one is {}", post.status),
        },
        Ok(None) => Error::NotFound("post"),
        Err(e) => e.into(),
    }
}

/// Cancels a waiting post (`pending` or `retrying`).
pub async fn cancel(app: &App, user_id: &str, post_id: &str) -> Result<post::Model, Error> {
    known(post_id)?;
    if !posts::cancel(&app.db, user_id, post_id).await? {
        return Err(not_waiting(app, user_id, post_id, "cancelled").await);
    }
    tracing::info!(post.id = %post_id, "post cancelled");
    get(app, user_id, post_id).await
}

/// What an edit changes; absent fields keep their value.
#[derive(Debug, Clone, Default)]
pub struct PostEdit {
    /// New text.
    pub content: Option<String>,
    /// New hashtags, with or without `#`.
    pub hashtags: Option<Vec<String>>,
    /// New media URLs.
    pub media_urls: Option<Vec<String>>,
    /// New time, RFC 3339 with an offset.
    pub scheduled_time: Option<String>,
}

/// Edits a waiting (`pending` or `retrying`) post: the result is validated as at scheduling,
/// then written only if the post is still waiting and unchanged since it was read (a concurrent
/// edit is retried on the new row). Against a worker claiming it, exactly one wins: a 200 means
/// the post goes out with this content at this time, a 409 names the status it reached.
pub async fn edit(app: &App, user_id: &str, post_id: &str, change: PostEdit) -> Result<post::Model, Error> {
    known(post_id)?;
    if change.content.is_none()
        && change.hashtags.is_none()
        && change.media_urls.is_none()
        && change.scheduled_time.is_none()
    {
        return Err(
            ValidationError::new("body", "name at least one of content, hashtags, media_urls, scheduled_time").into()
        );
    }
    let new_time = match &change.scheduled_time {
        Some(text) => Some(check_time(parse_time("scheduled_time", text)?, Utc::now())?),
        None => None,
    };
    for _ in 0..3 {
        let row = get(app, user_id, post_id).await?;
        if !matches!(row.status, PostStatus::Pending | PostStatus::Retrying) {
            return Err(not_waiting(app, user_id, post_id, "edited").await);
        }
        let stored_tags: Vec<String> = serde_json::from_value(row.hashtags.clone()).unwrap_or_default();
        let text = change.content.as_deref().unwrap_or(&row.post_content);
        let hashtags = change.hashtags.as_ref().unwrap_or(&stored_tags);
        let stored_media: Vec<String> = serde_json::from_value(row.media_urls.clone()).unwrap_or_default();
        let options: PostOptions =
            row.publish_options.clone().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
        let media_urls = check_media(
            row.platform,
            change.media_urls.as_ref().unwrap_or(&stored_media),
            &options,
            app.settings.media.allow_private,
        )?;
        let content = PostContent::parse_with_media(row.platform, text, hashtags, !media_urls.is_empty())?;
        let scheduled_time = new_time.unwrap_or(row.scheduled_time);
        let update = posts::Edit {
            content: content.text().to_owned(),
            hashtags: content.hashtags().to_vec(),
            media_urls,
            scheduled_time,
        };
        if posts::edit(&app.db, user_id, post_id, row.updated_at, new_time.is_some(), update).await? {
            tracing::info!(post.id = %post_id, moved = new_time.is_some(), "post edited");
            if new_time.is_some() {
                dispatch_soon(app, [(post_id, scheduled_time)]).await;
            }
            return get(app, user_id, post_id).await;
        }
    }
    Err(not_waiting(app, user_id, post_id, "edited").await)
}

/// What a retry asks for.
#[derive(Debug, Clone, Default)]
pub struct RetryRequest {
    /// When to try again, RFC 3339 with an offset; now when absent.
    pub scheduled_time: Option<String>,
    /// Required for an `unknown` post: the user checked that the platform does not have it.
    pub confirm_not_published: bool,
}

/// Puts a `failed` post back to waiting, now or at a given time, with its attempts reset. An
/// `unknown` post may already be live, so it goes back only with `confirm_not_published`.
pub async fn retry(app: &App, user_id: &str, post_id: &str, request: RetryRequest) -> Result<post::Model, Error> {
    known(post_id)?;
    let now = Utc::now();
    let at = match &request.scheduled_time {
        Some(text) => check_time(parse_time("scheduled_time", text)?, now)?.max(now),
        None => now,
    };
    let row = get(app, user_id, post_id).await?;
    match row.status {
        PostStatus::Failed => {}
        PostStatus::Unknown if request.confirm_not_published => {}
        PostStatus::Unknown => {
            return Err(Error::Conflict {
                code: "confirmation_required",
                message:
                    "this post may already be on the platform; check, then retry with \"confirm_not_published\": true"
                        .into(),
            });
        }
        status => return Err(not_retryable(status)),
    }
    // Through the account connected now (a reconnect after the failure made a new connection).
    let connection_id = usable_connection(app, user_id, row.platform).await?;
    if !posts::retry(&app.db, user_id, post_id, connection_id, at, request.confirm_not_published).await? {
        return Err(not_retryable(get(app, user_id, post_id).await?.status));
    }
    tracing::info!(post.id = %post_id, "post retried");
    dispatch_soon(app, [(post_id, at)]).await;
    get(app, user_id, post_id).await
}

fn not_retryable(status: PostStatus) -> Error {
    Error::Conflict {
        code: "not_retryable",
        message: format!("only failed or unknown posts can be retried; this one is {status}"),
    }
}

/// Publishes a waiting post now instead of at its time. A job pushed for its old time finds it
/// published, or not yet due, and drops itself.
pub async fn publish_now(app: &App, user_id: &str, post_id: &str) -> Result<post::Model, Error> {
    known(post_id)?;
    let now = Utc::now();
    if !posts::make_due(&app.db, user_id, post_id, now).await? {
        return Err(not_waiting(app, user_id, post_id, "published now").await);
    }
    dispatch_soon(app, [(post_id, now)]).await;
    tracing::info!(post.id = %post_id, "post due now");
    get(app, user_id, post_id).await
}

/// What the summary says of the user's posts (optionally of one campaign).
#[derive(Debug, Clone)]
pub struct Summary {
    /// Counts by platform and status (only the pairs that occur).
    pub counts: Vec<(Platform, PostStatus, i64)>,
    /// The waiting post due first.
    pub next_due: Option<post::Model>,
    /// The failed or unknown post that changed last.
    pub last_failure: Option<post::Model>,
}

/// The user's posts counted by platform and status, the next due and the last failure.
pub async fn summary(app: &App, user_id: &str, campaign_id: Option<&str>) -> Result<Summary, Error> {
    let campaign_id = campaign_id.map(parse_campaign_id).transpose()?;
    let counts = posts::count_by_platform_and_status(&app.db, user_id, campaign_id.as_deref()).await?;
    let (next_due, last_failure) = posts::next_and_last_failure(&app.db, user_id, campaign_id.as_deref()).await?;
    Ok(Summary { counts, next_due, last_failure })
}
