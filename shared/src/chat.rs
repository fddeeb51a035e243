//! Campaign chat history (the original design's `campaign_chat_history`): the messages of a
//! campaign's planning conversation, per user, oldest first.

use chrono::Utc;

use crate::{
    App, Error,
    db::{chat, entities::chat_message},
    domain::{ChatRole, ValidationError, refuse_nul},
    posts::{page_size, paged, parse_campaign_id},
};

/// Longest message accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 32_000;

/// Appends a message (`role` `user`, `assistant` or `system`) to the user's chat of a campaign.
pub async fn append(
    app: &App,
    user_id: &str,
    campaign_id: &str,
    role: &str,
    message: &str,
) -> Result<chat_message::Model, Error> {
    let campaign_id = parse_campaign_id(campaign_id)?;
    let role =
        ChatRole::parse(role).ok_or_else(|| ValidationError::new("role", "must be user, assistant or system"))?;
    if message.trim().is_empty() {
        return Err(ValidationError::new("message", "must not be empty").into());
    }
    refuse_nul("message", message)?;
    let length = message.chars().count();
    if length > MAX_MESSAGE_CHARS {
        return Err(ValidationError::new(
            "message",
            format!("is {length} characters, over the limit of {MAX_MESSAGE_CHARS}"),
        )
        .into());
    }
    Ok(chat::append(&app.db, user_id, &campaign_id, role, message, Utc::now()).await?)
}

/// One page of a chat and the cursor of the next.
#[derive(Debug, Clone)]
pub struct Page {
    /// Messages, oldest first.
    pub messages: Vec<chat_message::Model>,
    /// Pass as `cursor` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// The user's chat of a campaign, a page at a time, oldest first.
pub async fn list(
    app: &App,
    user_id: &str,
    campaign_id: &str,
    cursor: Option<&str>,
    limit: Option<u64>,
) -> Result<Page, Error> {
    let campaign_id = parse_campaign_id(campaign_id)?;
    let limit = page_size(limit)?;
    let after = cursor
        .map(|c| c.parse::<i64>().map_err(|_| ValidationError::new("cursor", "is not a cursor this API gave")))
        .transpose()?;
    let rows = chat::list(&app.db, user_id, &campaign_id, after, limit + 1).await?;
    let (messages, next_cursor) = paged(rows, limit, |last| last.id.to_string());
    Ok(Page { messages, next_cursor })
}
