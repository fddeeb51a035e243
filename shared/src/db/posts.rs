//! Scheduled posts and their status machine (DESIGN §2, §11). Every transition is one conditional
//! `UPDATE`, so two workers can never both move a post forward, and every write of a publish
//! attempt names the attempt's claim token, so a write by an attempt that lost its claim changes
//! nothing and says so.
//!
//! `due_at` is when a row next needs a worker: the scheduled time while `pending`, the next
//! attempt while `retrying`, the moment the claim goes stale while `publishing`, `NULL` once the
//! post is final. `dispatched_at` is when the dispatcher last pushed a job for it; clearing it
//! (any reschedule does) hands the row back to the dispatcher.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, Statement, TransactionTrait, Value,
    sea_query::{Expr, ExprTrait, SimpleExpr},
};

use super::entities::post::{ActiveModel, Column, Entity, Model};
use crate::domain::{ErrorKind, PostStatus, PublishPhase};

/// The statuses of a post that waits for its time.
pub const WAITING: [PostStatus; 2] = [PostStatus::Pending, PostStatus::Retrying];

/// `at` truncated to the millisecond, the precision `due_at` is kept in (SQLite stores times as
/// text, and one precision everywhere keeps its comparisons exact).
pub fn millis(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(at)
}

/// Stores new posts in one transaction: all rows of a request, or none.
pub async fn insert_all(db: &DatabaseConnection, rows: Vec<Model>) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    for row in rows {
        // A model converts to an all-`Unchanged` active model; `reset_all` marks every column set.
        ActiveModel::from(row).reset_all().insert(&txn).await?;
    }
    txn.commit().await
}

/// A post of the user.
pub async fn find_for_user(db: &DatabaseConnection, user_id: &str, post_id: &str) -> Result<Option<Model>, DbErr> {
    Entity::find_by_id(post_id.to_owned()).filter(Column::UserId.eq(user_id)).one(db).await
}

/// A post by id (worker use).
pub async fn find(db: &DatabaseConnection, post_id: &str) -> Result<Option<Model>, DbErr> {
    Entity::find_by_id(post_id.to_owned()).one(db).await
}

/// The user's posts of a campaign, by scheduled time.
/// Which of the user's posts a listing wants.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// One campaign, or all.
    pub campaign_id: Option<String>,
    /// Any of these statuses (all when empty).
    pub statuses: Vec<PostStatus>,
    /// One platform, or all.
    pub platform: Option<crate::domain::Platform>,
    /// `scheduled_time >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `scheduled_time < to`.
    pub to: Option<DateTime<Utc>>,
    /// `updated_at >= updated_since`.
    pub updated_since: Option<DateTime<Utc>>,
    /// Only posts after this one in `(scheduled_time, id)` order (the page's cursor).
    pub after: Option<(DateTime<Utc>, String)>,
}

/// Up to `limit` of the user's posts matching `filter`, by `(scheduled_time, id)`: keyset pages,
/// so a page never repeats or skips a post because others were added or changed meanwhile.
pub async fn list(
    db: &DatabaseConnection,
    user_id: &str,
    filter: &ListFilter,
    limit: u64,
) -> Result<Vec<Model>, DbErr> {
    use sea_orm::{Condition, QuerySelect};
    let mut query = Entity::find().filter(Column::UserId.eq(user_id));
    if let Some(campaign_id) = &filter.campaign_id {
        query = query.filter(Column::CampaignId.eq(campaign_id.as_str()));
    }
    if !filter.statuses.is_empty() {
        query = query.filter(status_in(&filter.statuses));
    }
    if let Some(platform) = filter.platform {
        query = query.filter(Column::Platform.eq(platform));
    }
    if let Some(from) = filter.from {
        query = query.filter(Column::ScheduledTime.gte(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(Column::ScheduledTime.lt(to));
    }
    if let Some(since) = filter.updated_since {
        query = query.filter(Column::UpdatedAt.gte(since));
    }
    if let Some((time, id)) = &filter.after {
        query = query.filter(
            Condition::any()
                .add(Column::ScheduledTime.gt(*time))
                .add(Condition::all().add(Column::ScheduledTime.eq(*time)).add(Column::Id.gt(id.as_str()))),
        );
    }
    query.order_by_asc(Column::ScheduledTime).order_by_asc(Column::Id).limit(limit).all(db).await
}

fn status_in(statuses: &[PostStatus]) -> SimpleExpr {
    Column::Status.is_in(statuses.iter().copied())
}

/// The post, while the attempt holding `claim_token` still holds it: every write of an attempt
/// is conditional on this.
fn held(post_id: &str, claim_token: &str) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(Column::Id.eq(post_id))
        .add(Column::Status.eq(PostStatus::Publishing))
        .add(Column::ClaimToken.eq(claim_token))
}

const NO_TIME: Option<DateTime<Utc>> = None;

/// A post due for the dispatcher: its id and when its job is due.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct Due {
    /// The post.
    pub id: String,
    /// When it is due.
    pub due_at: DateTime<Utc>,
    /// Its owner.
    pub user_id: String,
}

/// Orders due posts round-robin by user: every user's earliest post first (earliest of those
/// first), then every user's second, and so on. `UPDATE ... RETURNING` gives rows in no
/// particular order, so the order the statement chose them in is restored here.
fn round_robin(mut rows: Vec<Due>) -> Vec<Due> {
    rows.sort_by(|a, b| (&a.user_id, a.due_at, &a.id).cmp(&(&b.user_id, b.due_at, &b.id)));
    let mut keyed: Vec<(usize, Due)> = Vec::with_capacity(rows.len());
    for row in rows {
        let turn = match keyed.last() {
            Some((turn, previous)) if previous.user_id == row.user_id => turn + 1,
            _ => 0,
        };
        keyed.push((turn, row));
    }
    keyed.sort_by(|(ta, a), (tb, b)| (ta, a.due_at, &a.id).cmp(&(tb, b.due_at, &b.id)));
    keyed.into_iter().map(|(_, row)| row).collect()
}

/// Takes up to `limit` rows that need a job (`due_at <= horizon`, no job pushed since
/// `redispatch_before`), stamps them `dispatched_at = now` and returns them. The rows are weighed
/// by user: a user's n-th due post counts n plus the posts of that user already in the queue or
/// being published, and the lightest go first. So each round takes every user's next post in turn,
/// and across rounds a user whose backlog fills the queue waits behind one who has nothing in it:
/// one user's 50,000 posts never hold back another user's single post. `only` restricts the
/// choice to some ids (the api dispatching what it has just scheduled).
///
/// Several dispatchers may run this at once: the outer `WHERE` repeats the conditions, and the
/// database re-checks them on the locked row, so each row is stamped (and pushed) by one of them.
/// One statement, the same text on PostgreSQL and SQLite (both take `$n` parameters). The rows
/// come back in the order they were chosen in.
pub async fn stamp_due(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    horizon: DateTime<Utc>,
    redispatch_before: DateTime<Utc>,
    limit: u64,
    only: Option<&[String]>,
) -> Result<Vec<Due>, DbErr> {
    let mut values: Vec<Value> = vec![now.into(), horizon.into(), redispatch_before.into(), (limit as i64).into()];
    let only_ids = match only {
        None => String::new(),
        Some(ids) => {
            let start = values.len() + 1;
            values.extend(ids.iter().map(|id| Value::from(id.clone())));
            let placeholders: Vec<String> = (start..start + ids.len()).map(|n| format!("${n}")).collect();
            format!(" AND id IN ({})", placeholders.join(", "))
        }
    };
    let wanted =
        format!("due_at IS NOT NULL AND due_at <= $2 AND (dispatched_at IS NULL OR dispatched_at < $3){only_ids}");
    let sql = format!(
        "UPDATE scheduled_posts SET dispatched_at = $1 \
         WHERE id IN ( \
           SELECT due.id FROM ( \
             SELECT id, user_id, due_at, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY due_at, id) AS turn \
             FROM scheduled_posts WHERE {wanted} \
           ) AS due LEFT JOIN ( \
             SELECT user_id, COUNT(*) AS busy FROM scheduled_posts \
             WHERE due_at IS NOT NULL AND (status = 'publishing' OR dispatched_at >= $3) GROUP BY user_id \
           ) AS queued ON queued.user_id = due.user_id \
           ORDER BY due.turn + COALESCE(queued.busy, 0), due.due_at, due.id LIMIT $4 \
         ) AND {wanted} \
         RETURNING id, due_at, user_id"
    );
    let rows =
        Due::find_by_statement(Statement::from_sql_and_values(db.get_database_backend(), sql, values)).all(db).await?;
    Ok(round_robin(rows))
}

/// Hands rows back to the dispatcher (their jobs could not be pushed).
pub async fn unstamp(db: &DatabaseConnection, ids: &[String], stamped_at: DateTime<Utc>) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::DispatchedAt, Expr::value(NO_TIME))
        .filter(Column::Id.is_in(ids.iter().cloned()))
        .filter(Column::DispatchedAt.eq(stamped_at))
        .exec(db)
        .await?;
    Ok(())
}

/// Claims a due post for one publish attempt: `pending`/`retrying` and due → `publishing`, with
/// the attempt's `claim_token`. The claim is the read: the attempt publishes the row returned
/// here, so an edit or a reschedule that committed first always wins. `None` when the post is not
/// due, not waiting, or another attempt claimed it first. While `publishing`, the row is due
/// again at `stale_at`, when a dispatcher looks at it in case its worker died. `text_sending`:
/// nothing lies between the claim and the platform call of a text post, so the claim also saves
/// its point of no return (`sending`); a media post starts with no phase either way.
pub async fn claim(
    db: &DatabaseConnection,
    post_id: &str,
    claim_token: &str,
    now: DateTime<Utc>,
    stale_at: DateTime<Utc>,
    text_sending: bool,
) -> Result<Option<Model>, DbErr> {
    // `media_urls` is JSON on PostgreSQL and text on SQLite; as text, an empty list is `[]` on both.
    let phase = if text_sending {
        Expr::cust("CASE WHEN CAST(media_urls AS TEXT) = '[]' THEN 'sending' END")
    } else {
        Expr::value(Option::<PublishPhase>::None)
    };
    let mut rows = Entity::update_many()
        .col_expr(Column::Status, Expr::value(PostStatus::Publishing))
        .col_expr(Column::PublishPhase, phase)
        .col_expr(Column::PublishState, Expr::value(Option::<serde_json::Value>::None))
        .col_expr(Column::ClaimToken, Expr::value(claim_token))
        .col_expr(Column::ClaimedAt, Expr::value(now))
        .col_expr(Column::DueAt, Expr::value(millis(stale_at)))
        .col_expr(Column::DispatchedAt, Expr::value(NO_TIME))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(post_id))
        .filter(status_in(&WAITING))
        .filter(Column::DueAt.lte(now))
        .exec_with_returning(db)
        .await?;
    Ok(rows.pop())
}

/// Saves the step an attempt is about to take (DESIGN §12), if the attempt still holds the post.
/// Returns false when it does not: the step must not be taken.
pub async fn save_phase(
    db: &DatabaseConnection,
    post_id: &str,
    claim_token: &str,
    phase: PublishPhase,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::PublishPhase, Expr::value(phase))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(held(post_id, claim_token))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Saves a step of a media post (DESIGN §12) if the attempt still holds it: the phase, the
/// platform's handles, and when the row next needs a worker (`due_at`: the next look at the
/// platform while waiting, the claim's staleness otherwise). The dispatcher's stamp is cleared,
/// so a job is pushed when that time comes. False when the attempt no longer holds the post.
pub async fn save_step(
    db: &DatabaseConnection,
    post_id: &str,
    claim_token: &str,
    phase: PublishPhase,
    state: &serde_json::Value,
    due_at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::PublishPhase, Expr::value(phase))
        .col_expr(Column::PublishState, Expr::value(state.clone()))
        .col_expr(Column::DueAt, Expr::value(millis(due_at)))
        .col_expr(Column::DispatchedAt, Expr::value(NO_TIME))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(held(post_id, claim_token))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Moves the staleness of a claim the attempt still holds to `stale_at` (a long step's heartbeat).
pub async fn extend_claim(
    db: &DatabaseConnection,
    post_id: &str,
    claim_token: &str,
    stale_at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::DueAt, Expr::value(millis(stale_at)))
        .filter(held(post_id, claim_token))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Hands a `publishing` media post that is due (its wait is over, or its claim went stale) to a
/// new attempt: conditional on the claim and `due_at` as read, so of several jobs for the row
/// exactly one takes it. Returns the row as taken.
pub async fn take_over(
    db: &DatabaseConnection,
    row: &Model,
    claim_token: &str,
    now: DateTime<Utc>,
    stale_at: DateTime<Utc>,
) -> Result<Option<Model>, DbErr> {
    let (Some(due_at), Some(held_by)) = (row.due_at, row.claim_token.as_deref()) else { return Ok(None) };
    let mut rows = Entity::update_many()
        .col_expr(Column::ClaimToken, Expr::value(claim_token))
        .col_expr(Column::ClaimedAt, Expr::value(now))
        .col_expr(Column::DueAt, Expr::value(millis(stale_at)))
        .col_expr(Column::DispatchedAt, Expr::value(NO_TIME))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(row.id.as_str()))
        .filter(Column::Status.eq(PostStatus::Publishing))
        .filter(Column::ClaimToken.eq(held_by))
        .filter(Column::DueAt.eq(due_at))
        .filter(Column::DueAt.lte(now))
        .exec_with_returning(db)
        .await?;
    Ok(rows.pop())
}

/// Holds a claimed post back until `until` without counting an attempt (a per-account budget is
/// spent): it goes back to the status it was claimed from, its saved steps cleared, with `reason`
/// shown as its last error. False when the attempt no longer holds it.
pub async fn defer(
    db: &DatabaseConnection,
    post_id: &str,
    claim_token: &str,
    until: DateTime<Utc>,
    reason: &str,
) -> Result<bool, DbErr> {
    let until = millis(until);
    let retrying = Column::RetryCount.gt(0);
    let status =
        Expr::case(retrying.clone(), Expr::value(PostStatus::Retrying)).finally(Expr::value(PostStatus::Pending));
    let next_attempt = Expr::case(retrying, Expr::value(until)).finally(Expr::value(NO_TIME));
    let result = Entity::update_many()
        .col_expr(Column::Status, status.into())
        .col_expr(Column::NextAttemptAt, next_attempt.into())
        .col_expr(Column::DueAt, Expr::value(until))
        .col_expr(Column::DispatchedAt, Expr::value(NO_TIME))
        .col_expr(Column::ClaimToken, Expr::value(Option::<String>::None))
        .col_expr(Column::ClaimedAt, Expr::value(NO_TIME))
        .col_expr(Column::PublishPhase, Expr::value(Option::<PublishPhase>::None))
        .col_expr(Column::PublishState, Expr::value(Option::<serde_json::Value>::None))
        .col_expr(Column::ErrorKind, Expr::value(ErrorKind::RateLimited))
        .col_expr(Column::PostingError, Expr::value(reason))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(held(post_id, claim_token))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// What a publish attempt ended in.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// On the platform.
    Posted { platform_post_id: String, published_at: DateTime<Utc> },
    /// Another attempt at `next_attempt_at`.
    Retrying { kind: ErrorKind, error: String, next_attempt_at: DateTime<Utc> },
    /// Failed for good.
    Failed { kind: ErrorKind, error: String },
    /// The platform may have it; never re-sent automatically.
    Unknown { error: String },
}

impl Outcome {
    /// The status the outcome leaves the post in.
    pub fn status(&self) -> PostStatus {
        match self {
            Outcome::Posted { .. } => PostStatus::Posted,
            Outcome::Retrying { .. } => PostStatus::Retrying,
            Outcome::Failed { .. } => PostStatus::Failed,
            Outcome::Unknown { .. } => PostStatus::Unknown,
        }
    }
}

/// Records the outcome of the attempt holding `claim_token`. Returns false when the row was not
/// changed: the attempt no longer holds the post (a stale claim was resolved elsewhere); the
/// caller logs and counts that.
pub async fn record(
    db: &DatabaseConnection,
    post_id: &str,
    claim_token: &str,
    outcome: Outcome,
) -> Result<bool, DbErr> {
    let mut update = Entity::update_many()
        .col_expr(Column::Status, Expr::value(outcome.status()))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .col_expr(Column::DispatchedAt, Expr::value(NO_TIME))
        .filter(held(post_id, claim_token));
    update = match outcome {
        Outcome::Posted { platform_post_id, published_at } => update
            .col_expr(Column::PlatformPostId, Expr::value(platform_post_id))
            .col_expr(Column::PublishedAt, Expr::value(published_at))
            .col_expr(Column::PostingError, Expr::value(Option::<String>::None))
            .col_expr(Column::ErrorKind, Expr::value(Option::<ErrorKind>::None))
            .col_expr(Column::NextAttemptAt, Expr::value(NO_TIME))
            .col_expr(Column::DueAt, Expr::value(NO_TIME)),
        Outcome::Retrying { kind, error, next_attempt_at } => update
            .col_expr(Column::ErrorKind, Expr::value(kind))
            .col_expr(Column::PostingError, Expr::value(error))
            .col_expr(Column::NextAttemptAt, Expr::value(millis(next_attempt_at)))
            .col_expr(Column::DueAt, Expr::value(millis(next_attempt_at)))
            .col_expr(Column::PublishPhase, Expr::value(Option::<PublishPhase>::None))
            .col_expr(Column::PublishState, Expr::value(Option::<serde_json::Value>::None))
            .col_expr(Column::RetryCount, Expr::col(Column::RetryCount).add(1)),
        Outcome::Failed { kind, error } => update
            .col_expr(Column::ErrorKind, Expr::value(kind))
            .col_expr(Column::PostingError, Expr::value(error))
            .col_expr(Column::NextAttemptAt, Expr::value(NO_TIME))
            .col_expr(Column::DueAt, Expr::value(NO_TIME)),
        Outcome::Unknown { error } => update
            .col_expr(Column::ErrorKind, Expr::value(ErrorKind::Unknown))
            .col_expr(Column::PostingError, Expr::value(error))
            .col_expr(Column::NextAttemptAt, Expr::value(NO_TIME))
            .col_expr(Column::DueAt, Expr::value(NO_TIME)),
    };
    let txn = db.begin().await?;
    let rows = update.exec_with_returning(&txn).await?;
    super::webhooks::record_post_events(&txn, &rows).await?;
    txn.commit().await?;
    Ok(rows.len() == 1)
}

/// A `posted` outcome waiting to be written with others ([`record_posted`]).
#[derive(Debug, Clone)]
pub struct PostedRecord {
    /// The post.
    pub post_id: String,
    /// The claim token of the attempt that published it.
    pub claim_token: String,
    /// The platform's id for the new post.
    pub platform_post_id: String,
    /// When the platform took it.
    pub published_at: DateTime<Utc>,
}

/// Records several `posted` outcomes in one statement, each conditional on its attempt's claim
/// token exactly like [`record`]; returns the ids it changed (a missing id lost its claim). One
/// `UPDATE ... FROM (VALUES ...)`, the same text on PostgreSQL and SQLite (both name a `VALUES`
/// list's columns `column1`, `column2`, ...).
pub async fn record_posted(db: &DatabaseConnection, records: &[PostedRecord]) -> Result<Vec<String>, DbErr> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let mut values: Vec<Value> = vec![Utc::now().into()];
    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        let n = values.len();
        rows.push(format!("(${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4));
        values.push(record.post_id.clone().into());
        values.push(record.claim_token.clone().into());
        values.push(record.platform_post_id.clone().into());
        values.push(record.published_at.into());
    }
    let sql = format!(
        "UPDATE scheduled_posts SET status = 'posted', platform_post_id = v.column3, published_at = v.column4, \
         posting_error = NULL, error_kind = NULL, next_attempt_at = NULL, due_at = NULL, dispatched_at = NULL, \
         updated_at = $1 \
         FROM (VALUES {}) AS v \
         WHERE scheduled_posts.id = v.column1 AND scheduled_posts.claim_token = v.column2 \
           AND scheduled_posts.status = 'publishing' \
         RETURNING *",
        rows.join(", ")
    );
    let txn = db.begin().await?;
    let changed = Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(db.get_database_backend(), sql, values))
        .all(&txn)
        .await?;
    super::webhooks::record_post_events(&txn, &changed).await?;
    txn.commit().await?;
    Ok(changed.into_iter().map(|row| row.id).collect())
}

/// Fails the posts of a connection that are still waiting (`pending`/`retrying`) with a
/// `not_connected` error, with their `post.failed` events on the caller's transaction; returns
/// how many.
pub async fn fail_waiting_for_connection<C: ConnectionTrait>(
    db: &C,
    connection_id: i64,
    error: &str,
) -> Result<u64, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::Status, Expr::value(PostStatus::Failed))
        .col_expr(Column::ErrorKind, Expr::value(ErrorKind::NotConnected))
        .col_expr(Column::PostingError, Expr::value(error))
        .col_expr(Column::NextAttemptAt, Expr::value(NO_TIME))
        .col_expr(Column::DueAt, Expr::value(NO_TIME))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::SocialConnectionId.eq(connection_id))
        .filter(status_in(&WAITING))
        .exec_with_returning(db)
        .await?;
    super::webhooks::record_post_events(db, &result).await?;
    Ok(result.len() as u64)
}

/// Marks a post `unknown` if the attempt holding `claim_token` still holds it: its worker stopped
/// between claiming it and recording the outcome (the claim went stale), so whether the platform
/// has it cannot be known. Returns whether it changed.
/// Rows claimed by the previous release carry no token (`None`).
pub async fn mark_orphaned(
    db: &DatabaseConnection,
    post_id: &str,
    claim_token: Option<&str>,
    error: &str,
) -> Result<bool, DbErr> {
    let held_by = match claim_token {
        Some(token) => Column::ClaimToken.eq(token),
        None => Column::ClaimToken.is_null(),
    };
    let result = Entity::update_many()
        .col_expr(Column::Status, Expr::value(PostStatus::Unknown))
        .col_expr(Column::ErrorKind, Expr::value(ErrorKind::Unknown))
        .col_expr(Column::PostingError, Expr::value(error))
        .col_expr(Column::DueAt, Expr::value(NO_TIME))
        .col_expr(Column::DispatchedAt, Expr::value(NO_TIME))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(post_id))
        .filter(Column::Status.eq(PostStatus::Publishing))
        .filter(held_by);
    let txn = db.begin().await?;
    let rows = result.exec_with_returning(&txn).await?;
    super::webhooks::record_post_events(&txn, &rows).await?;
    txn.commit().await?;
    Ok(rows.len() == 1)
}

/// Puts a post whose attempt went stale before it started sending (no saved `sending` phase)
/// back to waiting, due now: nothing can have reached the platform, so it is safe to send. The
/// status it had before the claim comes back (`retrying` once an attempt has failed).
pub async fn release_unsent(
    db: &DatabaseConnection,
    post_id: &str,
    claim_token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let held_by = match claim_token {
        Some(token) => Column::ClaimToken.eq(token),
        None => Column::ClaimToken.is_null(),
    };
    let status = Expr::case(Column::RetryCount.gt(0), Expr::value(PostStatus::Retrying))
        .finally(Expr::value(PostStatus::Pending));
    let result = Entity::update_many()
        .col_expr(Column::Status, status.into())
        .col_expr(Column::DueAt, Expr::value(millis(now)))
        .col_expr(Column::DispatchedAt, Expr::value(NO_TIME))
        .col_expr(Column::ClaimToken, Expr::value(Option::<String>::None))
        .col_expr(Column::ClaimedAt, Expr::value(NO_TIME))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(post_id))
        .filter(Column::Status.eq(PostStatus::Publishing))
        .filter(Column::PublishPhase.is_null())
        .filter(held_by)
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Cancels a post of the user that is still waiting (`pending`/`retrying`); false otherwise.
pub async fn cancel(db: &DatabaseConnection, user_id: &str, post_id: &str) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::Status, Expr::value(PostStatus::Cancelled))
        .col_expr(Column::NextAttemptAt, Expr::value(NO_TIME))
        .col_expr(Column::DueAt, Expr::value(NO_TIME))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(post_id))
        .filter(Column::UserId.eq(user_id))
        .filter(status_in(&WAITING))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Makes a waiting post of the user due at `now` (its scheduled time while `pending`, its next
/// attempt while `retrying`) and hands it to the dispatcher; false when it is not waiting.
pub async fn make_due(
    db: &DatabaseConnection,
    user_id: &str,
    post_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let now = millis(now);
    let moved = |status: PostStatus, time: Column| {
        Entity::update_many()
            .col_expr(time, Expr::value(now))
            .col_expr(Column::DueAt, Expr::value(now))
            .col_expr(Column::DispatchedAt, Expr::value(NO_TIME))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.eq(post_id))
            .filter(Column::UserId.eq(user_id))
            .filter(Column::Status.eq(status))
    };
    if moved(PostStatus::Pending, Column::ScheduledTime).exec(db).await?.rows_affected == 1 {
        return Ok(true);
    }
    Ok(moved(PostStatus::Retrying, Column::NextAttemptAt).exec(db).await?.rows_affected == 1)
}

/// New content and time of a waiting post ([`edit`]).
#[derive(Debug, Clone)]
pub struct Edit {
    /// The text.
    pub content: String,
    /// Hashtags without `#`.
    pub hashtags: Vec<String>,
    /// Media URLs.
    pub media_urls: Vec<String>,
    /// When it is to go out.
    pub scheduled_time: DateTime<Utc>,
}

/// Changes a waiting post of the user, if it is still as read (`read_at` is the `updated_at` the
/// edit was based on) and still waiting: one conditional `UPDATE`, so against a worker's claim
/// exactly one of the two wins, and the claim, being the read, publishes the edit. A new time
/// hands the post back to the dispatcher (`dispatched_at` cleared): a job pushed for the old time
/// finds it not due and drops itself. False when the row changed or stopped waiting meanwhile.
pub async fn edit(
    db: &DatabaseConnection,
    user_id: &str,
    post_id: &str,
    read_at: DateTime<Utc>,
    moved: bool,
    change: Edit,
) -> Result<bool, DbErr> {
    let due = millis(change.scheduled_time);
    let mut update = Entity::update_many()
        .col_expr(Column::PostContent, Expr::value(change.content))
        .col_expr(Column::Hashtags, Expr::value(serde_json::Value::from(change.hashtags)))
        .col_expr(Column::MediaUrls, Expr::value(serde_json::Value::from(change.media_urls)))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(post_id))
        .filter(Column::UserId.eq(user_id))
        .filter(Column::UpdatedAt.eq(read_at))
        .filter(status_in(&WAITING));
    if moved {
        // Retrying posts move their next attempt; pending ones their time. Both are `due_at`.
        let next_attempt =
            Expr::case(Column::Status.eq(PostStatus::Retrying), Expr::value(due)).finally(Expr::value(NO_TIME));
        update = update
            .col_expr(Column::ScheduledTime, Expr::value(change.scheduled_time))
            .col_expr(Column::NextAttemptAt, next_attempt.into())
            .col_expr(Column::DueAt, Expr::value(due))
            .col_expr(Column::DispatchedAt, Expr::value(NO_TIME));
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// Puts a `failed` (or, when `unknown_too`, an `unknown`) post of the user back to `pending`,
/// due at `at` through `connection_id`, with its attempts and errors cleared. False when it is in
/// another status.
pub async fn retry(
    db: &DatabaseConnection,
    user_id: &str,
    post_id: &str,
    connection_id: i64,
    at: DateTime<Utc>,
    unknown_too: bool,
) -> Result<bool, DbErr> {
    let from: &[PostStatus] =
        if unknown_too { &[PostStatus::Failed, PostStatus::Unknown] } else { &[PostStatus::Failed] };
    let result = Entity::update_many()
        .col_expr(Column::Status, Expr::value(PostStatus::Pending))
        .col_expr(Column::SocialConnectionId, Expr::value(connection_id))
        .col_expr(Column::ScheduledTime, Expr::value(at))
        .col_expr(Column::DueAt, Expr::value(millis(at)))
        .col_expr(Column::DispatchedAt, Expr::value(NO_TIME))
        .col_expr(Column::RetryCount, Expr::value(0))
        .col_expr(Column::NextAttemptAt, Expr::value(NO_TIME))
        .col_expr(Column::PostingError, Expr::value(Option::<String>::None))
        .col_expr(Column::ErrorKind, Expr::value(Option::<ErrorKind>::None))
        .col_expr(Column::PublishPhase, Expr::value(Option::<PublishPhase>::None))
        .col_expr(Column::PublishState, Expr::value(Option::<serde_json::Value>::None))
        .col_expr(Column::ClaimToken, Expr::value(Option::<String>::None))
        .col_expr(Column::ClaimedAt, Expr::value(NO_TIME))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(post_id))
        .filter(Column::UserId.eq(user_id))
        .filter(status_in(from))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Posts in the statuses an operator watches (waiting, publishing, unknown), counted over every
/// user; the finished statuses only grow, so they are counted as outcomes instead. Each count is
/// a range of the `(status, scheduled_time)` index.
pub async fn count_open(db: &DatabaseConnection) -> Result<Vec<(PostStatus, i64)>, DbErr> {
    use sea_orm::QuerySelect;
    Entity::find()
        .select_only()
        .column(Column::Status)
        .column_as(Column::Id.count(), "count")
        .filter(status_in(&[PostStatus::Pending, PostStatus::Retrying, PostStatus::Publishing, PostStatus::Unknown]))
        .group_by(Column::Status)
        .into_tuple()
        .all(db)
        .await
}

/// Posts that needed a worker before `before` and have not had one (`due_at` passed): how many,
/// and the earliest such `due_at`. A range of the partial `due_at` index.
pub async fn overdue(db: &DatabaseConnection, before: DateTime<Utc>) -> Result<(i64, Option<DateTime<Utc>>), DbErr> {
    use sea_orm::QuerySelect;
    let row: Option<(i64, Option<DateTime<Utc>>)> = Entity::find()
        .select_only()
        .column_as(Column::Id.count(), "count")
        .column_as(Column::DueAt.min(), "oldest")
        .filter(Column::DueAt.is_not_null())
        .filter(Column::DueAt.lt(millis(before)))
        .into_tuple()
        .one(db)
        .await?;
    Ok(row.unwrap_or((0, None)))
}

/// The user's posts counted by platform and status, optionally within one campaign.
pub async fn count_by_platform_and_status(
    db: &DatabaseConnection,
    user_id: &str,
    campaign_id: Option<&str>,
) -> Result<Vec<(crate::domain::Platform, PostStatus, i64)>, DbErr> {
    use sea_orm::QuerySelect;
    let mut query = Entity::find()
        .select_only()
        .column(Column::Platform)
        .column(Column::Status)
        .column_as(Column::Id.count(), "count")
        .filter(Column::UserId.eq(user_id))
        .group_by(Column::Platform)
        .group_by(Column::Status);
    if let Some(campaign_id) = campaign_id {
        query = query.filter(Column::CampaignId.eq(campaign_id));
    }
    query.into_tuple::<(crate::domain::Platform, PostStatus, i64)>().all(db).await
}

/// The user's waiting post due first, and the failed or unknown post that changed last,
/// optionally within one campaign.
pub async fn next_and_last_failure(
    db: &DatabaseConnection,
    user_id: &str,
    campaign_id: Option<&str>,
) -> Result<(Option<Model>, Option<Model>), DbErr> {
    let scoped = || {
        let query = Entity::find().filter(Column::UserId.eq(user_id));
        match campaign_id {
            Some(campaign_id) => query.filter(Column::CampaignId.eq(campaign_id)),
            None => query,
        }
    };
    let next =
        scoped().filter(status_in(&WAITING)).order_by_asc(Column::DueAt).order_by_asc(Column::Id).one(db).await?;
    let failed = scoped()
        .filter(status_in(&[PostStatus::Failed, PostStatus::Unknown]))
        .order_by_desc(Column::UpdatedAt)
        .order_by_desc(Column::Id)
        .one(db)
        .await?;
    Ok((next, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(user: &str, id: &str, second: i64) -> Due {
        Due {
            id: id.into(),
            user_id: user.into(),
            due_at: DateTime::from_timestamp(1_900_000_000 + second, 0).expect("time"),
        }
    }

    #[test]
    fn round_robin_takes_each_users_next_post_in_turn() {
        let rows = vec![
            due("herd", "h3", 0),
            due("herd", "h1", 0),
            due("loner", "z", 0),
            due("herd", "h2", 0),
            due("early", "e1", -5),
            due("early", "e2", -4),
        ];
        let order: Vec<String> = round_robin(rows).into_iter().map(|d| d.id).collect();
        assert_eq!(order, ["e1", "h1", "z", "e2", "h2", "h3"]);
    }
}
