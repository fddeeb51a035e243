//! sea-orm entities: the schema as the code sees it today (the migrations crate owns how it got
//! there). Token columns hold Fernet ciphertext, never plaintext.

/// `social_media_connections`: one row per user and platform.
pub mod connection {
    use sea_orm::entity::prelude::*;

    use crate::domain::{ConnectionStatus, Platform};

    /// A connected platform account.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "social_media_connections")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: String,
        pub platform: Platform,
        pub platform_user_id: String,
        pub platform_username: Option<String>,
        /// Fernet ciphertext.
        pub access_token: String,
        /// Fernet ciphertext.
        pub refresh_token: Option<String>,
        pub token_expires_at: Option<DateTimeUtc>,
        pub refresh_expires_at: Option<DateTimeUtc>,
        pub scopes: Json,
        pub connection_status: ConnectionStatus,
        pub last_error: Option<String>,
        pub page_id: Option<String>,
        pub page_name: Option<String>,
        /// Fernet ciphertext.
        pub page_access_token: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `scheduled_posts`: one row per post and platform.
pub mod post {
    use sea_orm::entity::prelude::*;

    use crate::domain::{ErrorKind, Platform, PostStatus, PublishPhase};

    /// A scheduled post.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scheduled_posts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub group_id: String,
        pub campaign_id: String,
        pub user_id: String,
        pub social_connection_id: Option<i64>,
        pub platform: Platform,
        pub post_content: String,
        pub media_urls: Json,
        pub hashtags: Json,
        pub scheduled_time: DateTimeUtc,
        pub status: PostStatus,
        pub platform_post_id: Option<String>,
        pub posting_error: Option<String>,
        pub error_kind: Option<ErrorKind>,
        pub retry_count: i32,
        pub next_attempt_at: Option<DateTimeUtc>,
        pub published_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// When the row next needs a worker (DESIGN §11): the scheduled time while `pending`,
        /// `next_attempt_at` while `retrying`, the moment a claim goes stale while `publishing`;
        /// `NULL` once final. Millisecond precision.
        pub due_at: Option<DateTimeUtc>,
        /// When the dispatcher last pushed a job for the row (`NULL`: no live job).
        pub dispatched_at: Option<DateTimeUtc>,
        /// The claim of the attempt that holds the row; every write of that attempt names it.
        pub claim_token: Option<String>,
        /// When the attempt claimed it.
        pub claimed_at: Option<DateTimeUtc>,
        /// The last saved step of a multi-step publish (DESIGN §12).
        pub publish_phase: Option<PublishPhase>,
        /// The platform's handles saved by the steps (upload ids, container ids, ...).
        pub publish_state: Option<Json>,
        /// Per-platform options the user chose ([`PostOptions`](crate::domain::PostOptions)).
        pub publish_options: Option<Json>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `oauth_states`: pending authorizations, single use.
pub mod oauth_state {
    use sea_orm::entity::prelude::*;

    use crate::domain::Platform;

    /// A pending authorization.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth_states")]
    pub struct Model {
        /// SHA-256 of the state's random part; the state itself is never stored.
        #[sea_orm(primary_key, auto_increment = false)]
        pub state_hash: String,
        pub user_id: String,
        pub platform: Platform,
        /// Fernet ciphertext of the PKCE verifier.
        pub pkce_verifier: Option<String>,
        pub redirect_uri: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `idempotency_keys`: responses of `POST /posts/schedule` by key, for 24 hours.
pub mod idempotency_key {
    use sea_orm::entity::prelude::*;

    /// A remembered request.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// SHA-256 of the request body.
        pub request_hash: String,
        /// 0 while the first request is in progress.
        pub response_status: i32,
        pub response_body: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `campaign_chat_history`: a campaign's planning conversation, per user, in order.
pub mod chat_message {
    use sea_orm::entity::prelude::*;

    use crate::domain::ChatRole;

    /// One message.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "campaign_chat_history")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub campaign_id: String,
        pub user_id: String,
        pub role: ChatRole,
        pub message: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `worker_heartbeats`: one row per running worker process.
pub mod worker_heartbeat {
    use sea_orm::entity::prelude::*;

    /// A worker process and when it last said it was alive.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "worker_heartbeats")]
    pub struct Model {
        /// The process's random id (also its queue consumer's name prefix).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Host name, for an operator reading the table.
        pub host: String,
        pub started_at: DateTimeUtc,
        pub seen_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `webhook_endpoints`: an HTTPS endpoint a user registered for some events.
pub mod webhook_endpoint {
    use sea_orm::entity::prelude::*;

    /// A registered endpoint.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_endpoints")]
    pub struct Model {
        /// `ep_` + ULID.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        pub url: String,
        /// The event names it wants (JSON array).
        pub events: Json,
        /// Fernet ciphertext of the `whsec_...` signing secret.
        pub secret: String,
        /// Fernet ciphertext of the secret before the last rotation, which still signs until
        /// `previous_secret_until`.
        pub previous_secret: Option<String>,
        pub previous_secret_until: Option<DateTimeUtc>,
        pub disabled_at: Option<DateTimeUtc>,
        pub disabled_reason: Option<String>,
        /// Since when every delivery to it has failed (cleared by a success).
        pub failing_since: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `webhook_events`: the outbox, one row per reported change, written in its transaction.
pub mod webhook_event {
    use sea_orm::entity::prelude::*;

    use crate::domain::WebhookEvent;

    /// A reported change.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_events")]
    pub struct Model {
        /// `evt_` + ULID.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        pub event_type: WebhookEvent,
        /// The post or connection as the API shows it, at the change.
        pub payload: Json,
        pub created_at: DateTimeUtc,
        /// When its deliveries were created (`NULL` until then).
        pub fanned_out_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `webhook_deliveries`: one event to one endpoint, retried under one `webhook-id` (its id).
pub mod webhook_delivery {
    use sea_orm::entity::prelude::*;

    use crate::domain::DeliveryStatus;

    /// A delivery.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_deliveries")]
    pub struct Model {
        /// `msg_` + ULID: the `webhook-id` header of every attempt.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub endpoint_id: String,
        pub event_id: String,
        pub user_id: String,
        pub status: DeliveryStatus,
        pub attempts: i32,
        /// When the next attempt is due while `pending`; `NULL` once final.
        pub due_at: Option<DateTimeUtc>,
        /// When the dispatcher last pushed a job for it.
        pub dispatched_at: Option<DateTimeUtc>,
        pub last_status_code: Option<i32>,
        pub last_error: Option<String>,
        pub last_latency_ms: Option<i64>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `webhook_attempts`: one row per HTTP attempt of a delivery.
pub mod webhook_attempt {
    use sea_orm::entity::prelude::*;

    /// An attempt.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_attempts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub delivery_id: String,
        pub attempted_at: DateTimeUtc,
        /// The endpoint's status code, when it answered.
        pub status_code: Option<i32>,
        pub latency_ms: i64,
        /// Why it failed, when it did.
        pub error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
