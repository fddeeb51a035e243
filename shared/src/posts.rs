//! Scheduling posts and reading them back. The database row is the source of truth: scheduling
//! writes rows only, and the dispatcher pushes each post's job as it comes due (DESIGN §11). A
//! post due within the dispatcher's lookahead is pushed here at once, through the same
//! [`dispatch`](crate::dispatch::dispatch).

use chrono::{DateTime, Duration, Utc};

use crate::{
    App, Error,
    db::{connections, entities::post, posts},
    dispatch,
    domain::{ConnectionStatus, Platform, PostContent, PostStatus, ValidationError},
};

/// How far in the past a `scheduled_time` may be (clock skew, slow clients); it then runs now.
const PAST_GRACE_SECONDS: i64 = 60;
/// How far ahead a post may be scheduled.
const MAX_AHEAD_DAYS: i64 = 366;

/// A scheduling request, as received.
#[derive(Debug, Clone)]
pub struct ScheduleRequest {
    /// The campaign the posts belong to.
    pub campaign_id: String,
    /// Platform names.
    pub platforms: Vec<String>,
    /// The text.
    pub content: String,
    /// Hashtags, with or without `#`.
    pub hashtags: Vec<String>,
    /// Media URLs.
    pub media_urls: Vec<String>,
    /// RFC 3339 time with an offset.
    pub scheduled_time: String,
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

/// Validates and stores one post per platform, then enqueues each.
pub async fn schedule(app: &App, user_id: &str, request: ScheduleRequest) -> Result<Vec<post::Model>, Error> {
    let campaign_id = parse_campaign_id(request.campaign_id.trim())?;
    let now = Utc::now();
    let scheduled_time = parse_time("scheduled_time", &request.scheduled_time)?;
    if scheduled_time < now - Duration::seconds(PAST_GRACE_SECONDS) {
        return Err(ValidationError::new("scheduled_time", "is in the past").into());
    }
    if scheduled_time > now + Duration::days(MAX_AHEAD_DAYS) {
        return Err(ValidationError::new("scheduled_time", "is more than a year ahead").into());
    }
    if !request.media_urls.is_empty() {
        return Err(ValidationError::new("media_urls", "media publishing is not available yet; send text posts").into());
    }
    let mut platforms: Vec<Platform> = Vec::new();
    for name in &request.platforms {
        let platform = Platform::parse(name)
            .ok_or_else(|| ValidationError::new("platforms", format!("`{name}` is not a platform")))?;
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    if platforms.is_empty() {
        return Err(ValidationError::new("platforms", "name at least one platform").into());
    }
    let group_id = uuid::Uuid::new_v4().to_string();
    let mut rows = Vec::with_capacity(platforms.len());
    for platform in platforms {
        let content = PostContent::parse(platform, &request.content, &request.hashtags)?;
        let connection = connections::find(&app.db, user_id, platform)
            .await?
            .filter(|c| c.connection_status == ConnectionStatus::Active);
        if matches!(platform, Platform::Instagram | Platform::Tiktok) {
            return Err(ValidationError::new(
                "media_urls",
                format!("{platform} posts need an image or a video, and media publishing is not available yet"),
            )
            .into());
        }
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
        rows.push(post::Model {
            id: uuid::Uuid::new_v4().to_string(),
            group_id: group_id.clone(),
            campaign_id: campaign_id.clone(),
            user_id: user_id.to_owned(),
            social_connection_id: Some(connection.id),
            platform,
            post_content: content.text().to_owned(),
            media_urls: serde_json::json!([]),
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
        });
    }
    posts::insert_all(&app.db, rows.clone()).await?;
    tracing::info!(post.group_id = %group_id, posts = rows.len(), "posts scheduled");
    let horizon = Utc::now() + app.settings.worker.dispatch.lookahead;
    let soon: Vec<String> = rows.iter().filter(|r| r.scheduled_time <= horizon).map(|r| r.id.clone()).collect();
    dispatch_soon(app, &soon).await;
    Ok(rows)
}

/// Pushes posts that are due within the lookahead now, rather than at the dispatcher's next
/// round. A failure only delays them: the rows are stored, and every worker's dispatcher pushes
/// them once the queue answers.
async fn dispatch_soon(app: &App, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    if let Err(error) = dispatch::dispatch(app, Some(ids)).await {
        tracing::warn!(error = %error, posts = ids.len(), "could not push posts due soon; the dispatcher will");
    }
}

/// One post of the user.
pub async fn get(app: &App, user_id: &str, post_id: &str) -> Result<post::Model, Error> {
    posts::find_for_user(&app.db, user_id, post_id).await?.ok_or(Error::NotFound("post"))
}

/// The user's posts of a campaign.
pub async fn list_campaign(app: &App, user_id: &str, campaign_id: &str) -> Result<Vec<post::Model>, Error> {
    let campaign_id = parse_campaign_id(campaign_id)?;
    Ok(posts::list_for_campaign(&app.db, user_id, &campaign_id).await?)
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
    if !posts::cancel(&app.db, user_id, post_id).await? {
        return Err(not_waiting(app, user_id, post_id, "cancelled").await);
    }
    tracing::info!(post.id = %post_id, "post cancelled");
    get(app, user_id, post_id).await
}

/// Publishes a waiting post now instead of at its time. A job pushed for its old time finds it
/// published, or not yet due, and drops itself.
pub async fn publish_now(app: &App, user_id: &str, post_id: &str) -> Result<post::Model, Error> {
    let now = Utc::now();
    if !posts::make_due(&app.db, user_id, post_id, now).await? {
        return Err(not_waiting(app, user_id, post_id, "published now").await);
    }
    dispatch_soon(app, &[post_id.to_owned()]).await;
    tracing::info!(post.id = %post_id, "post due now");
    get(app, user_id, post_id).await
}

/// The user's posts counted by status (every status listed, zeros included).
pub async fn summary(app: &App, user_id: &str, campaign_id: Option<&str>) -> Result<Vec<(PostStatus, i64)>, Error> {
    let campaign_id = campaign_id.map(parse_campaign_id).transpose()?;
    let counts = posts::count_by_status(&app.db, user_id, campaign_id.as_deref()).await?;
    Ok(PostStatus::ALL
        .into_iter()
        .map(|status| (status, counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n)))
        .collect())
}
