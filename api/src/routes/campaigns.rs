//! `/api/v1/campaigns/*`: a campaign's chat history.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use shared::{App, chat, db::entities::chat_message};

use super::Tag;
use crate::text::Text;
use crate::{auth::BearerAuth, error::ApiError};

/// Campaign routes.
#[derive(Debug)]
pub struct CampaignsApi;

/// A message to append.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct NewMessage {
    /// `user`, `assistant` or `system`.
    pub role: Text,
    /// The text, 1 to 32,000 characters.
    pub message: Text,
}

/// One message of a campaign's chat.
#[derive(Debug, Object)]
pub struct ChatMessage {
    /// Increasing within the chat.
    pub id: i64,
    /// The campaign.
    pub campaign_id: String,
    /// `user`, `assistant` or `system`.
    pub role: String,
    /// The text.
    pub message: String,
    /// When it was appended.
    pub created_at: DateTime<Utc>,
}

impl From<chat_message::Model> for ChatMessage {
    fn from(row: chat_message::Model) -> Self {
        Self {
            id: row.id,
            campaign_id: row.campaign_id,
            role: row.role.as_str().to_owned(),
            message: row.message,
            created_at: row.created_at,
        }
    }
}

/// One page of a chat.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ChatPage {
    /// Messages, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

#[OpenApi(prefix_path = "/api/v1/campaigns", tag = "Tag::Campaigns")]
impl CampaignsApi {
    /// The user's chat of a campaign, oldest first, a page at a time (`limit` 1-500, default
    /// 100; `cursor` is the `next_cursor` of the page before).
    #[oai(path = "/:campaign_id/chat", method = "get")]
    async fn list(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        campaign_id: Path<String>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u64>>,
        cursor: Query<Option<String>>,
    ) -> Result<Json<ChatPage>, ApiError> {
        let page = chat::list(&app, &auth.0.id, &campaign_id, cursor.as_deref(), limit.0).await?;
        Ok(Json(ChatPage {
            messages: page.messages.into_iter().map(ChatMessage::from).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    /// Append a message to the user's chat of a campaign.
    #[oai(path = "/:campaign_id/chat", method = "post")]
    async fn append(
        &self,
        app: Data<&Arc<App>>,
        auth: BearerAuth,
        campaign_id: Path<String>,
        body: Json<NewMessage>,
    ) -> Result<Json<ChatMessage>, ApiError> {
        Ok(Json(chat::append(&app, &auth.0.id, &campaign_id, &body.role, &body.message).await?.into()))
    }
}
