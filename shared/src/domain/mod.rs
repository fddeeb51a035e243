//! Domain types parsed once at the edge: platforms, post states, failure kinds and validated
//! post content. Nothing here does I/O. The enums are also the database's column types (sea-orm
//! active enums stored as their names), so a row is typed when it is read, never re-parsed.

mod content;

pub use content::{PostContent, ValidationError, max_length, refuse_nul};

/// Per-platform choices of a post beyond its text and media (stored as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostOptions {
    /// Instagram: `feed` (the default: an image, a reel or a carousel) or `story`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instagram_share_as: Option<String>,
    /// TikTok: one of the creator's `privacy_level_options` (default `PUBLIC_TO_EVERYONE`;
    /// unaudited apps may post only `SELF_ONLY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiktok_privacy_level: Option<String>,
    /// TikTok: turn comments off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tiktok_disable_comment: bool,
}

use std::fmt;

use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};

/// A social platform Herald publishes to. Stored and sent as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, EnumIter, DeriveActiveEnum)]
#[serde(rename_all = "lowercase")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum Platform {
    /// LinkedIn (member posts).
    #[sea_orm(string_value = "linkedin")]
    Linkedin,
    /// X, formerly Twitter; its configuration keeps the `TWITTER_` names.
    #[sea_orm(string_value = "twitter")]
    Twitter,
    /// Instagram professional accounts.
    #[sea_orm(string_value = "instagram")]
    Instagram,
    /// Facebook Pages.
    #[sea_orm(string_value = "facebook")]
    Facebook,
    /// TikTok.
    #[sea_orm(string_value = "tiktok")]
    Tiktok,
}

impl Platform {
    /// Every platform, in the order the API lists them.
    pub const ALL: [Platform; 5] =
        [Platform::Linkedin, Platform::Twitter, Platform::Instagram, Platform::Facebook, Platform::Tiktok];

    /// The name used in paths, bodies and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Linkedin => "linkedin",
            Platform::Twitter => "twitter",
            Platform::Instagram => "instagram",
            Platform::Facebook => "facebook",
            Platform::Tiktok => "tiktok",
        }
    }

    /// Parses a platform name; `x` is accepted for `twitter`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "linkedin" => Some(Platform::Linkedin),
            "twitter" | "x" => Some(Platform::Twitter),
            "instagram" => Some(Platform::Instagram),
            "facebook" => Some(Platform::Facebook),
            "tiktok" => Some(Platform::Tiktok),
            _ => None,
        }
    }
}

impl PostStatus {
    /// Every status, in the order of the status machine.
    pub const ALL: [PostStatus; 7] = [
        PostStatus::Pending,
        PostStatus::Publishing,
        PostStatus::Retrying,
        PostStatus::Posted,
        PostStatus::Failed,
        PostStatus::Unknown,
        PostStatus::Cancelled,
    ];
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
        #[sea_orm(rs_type = "String", db_type = "Text")]
        pub enum $name {
            $($(#[$vmeta])* #[sea_orm(string_value = $text)] $variant),+
        }

        impl $name {
            /// Every name, in declaration order (the API document lists them).
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The name stored in the database and returned by the API.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a stored name.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// Where a post is in its life (DESIGN §2).
    PostStatus {
        /// Waiting for its time.
        Pending => "pending",
        /// Claimed by a worker, being sent.
        Publishing => "publishing",
        /// On the platform.
        Posted => "posted",
        /// Failed for good; `posting_error` says why.
        Failed => "failed",
        /// Cancelled by the user before it was sent.
        Cancelled => "cancelled",
        /// A transient failure; another attempt is due at `next_attempt_at`.
        Retrying => "retrying",
        /// The platform may or may not have it; never re-sent automatically.
        Unknown => "unknown",
    }
}

string_enum! {
    /// Who wrote a campaign chat message.
    ChatRole {
        /// The person planning the campaign.
        User => "user",
        /// The assistant answering them.
        Assistant => "assistant",
        /// Instructions given to the assistant.
        System => "system",
    }
}

string_enum! {
    /// Health of a stored connection.
    ConnectionStatus {
        /// Usable.
        Active => "active",
        /// The token expired and could not be refreshed; the user must reconnect.
        Expired => "expired",
        /// The user or platform revoked Herald's access.
        Revoked => "revoked",
        /// Something else is wrong; `last_error` says what.
        Error => "error",
    }
}

string_enum! {
    /// Why a publish attempt failed, as the worker classified it (DESIGN §5).
    ErrorKind {
        /// The platform refused the token.
        Unauthorized => "unauthorized",
        /// The platform's rate limit; retried at its reset time.
        RateLimited => "rate_limited",
        /// A network failure or platform outage; retried with backoff.
        Transient => "transient",
        /// The platform refused the post; not retried.
        Rejected => "rejected",
        /// The request may have reached the platform; not retried.
        Unknown => "unknown",
        /// No usable connection for the platform.
        NotConnected => "not_connected",
    }
}

string_enum! {
    /// The last saved step of a publish attempt (DESIGN §12). Text posts go in one step; the
    /// media flows save each step before the next starts.
    PublishPhase {
        /// Media is being uploaded (or a container created): nothing is public yet, and a crashed
        /// attempt redoes the step from the saved handles.
        Uploading => "uploading",
        /// Waiting for the platform to process media before the post can be made: nothing is
        /// public yet; the next look is at `due_at`.
        Processing => "processing",
        /// The call that makes the post public has been sent (or is being sent): past this point
        /// the post is never sent again, and a crash leaves it `unknown` unless the platform can
        /// be asked.
        Sending => "sending",
        /// Past the point of no return, waiting for the platform to finish publishing (TikTok):
        /// the next look is at `due_at`.
        Confirming => "confirming",
    }
}

string_enum! {
    /// What a webhook reports (DESIGN §14).
    WebhookEvent {
        /// A post is on the platform.
        PostPublished => "post.published",
        /// A post failed for good.
        PostFailed => "post.failed",
        /// The platform may or may not have a post; it is not re-sent automatically.
        PostUnknown => "post.unknown",
        /// An attempt failed and another is scheduled.
        PostRetrying => "post.retrying",
        /// A connection's token expired and could not be refreshed.
        ConnectionExpired => "connection.expired",
        /// The user or the platform revoked Herald's access.
        ConnectionRevoked => "connection.revoked",
        /// A ping sent by `POST /webhooks/{id}/test`.
        Test => "webhook.test",
    }
}

impl WebhookEvent {
    /// The events an endpoint can subscribe to (the ping goes to the one endpoint it tests).
    pub const SUBSCRIBABLE: [WebhookEvent; 6] = [
        WebhookEvent::PostPublished,
        WebhookEvent::PostFailed,
        WebhookEvent::PostUnknown,
        WebhookEvent::PostRetrying,
        WebhookEvent::ConnectionExpired,
        WebhookEvent::ConnectionRevoked,
    ];

    /// The event a post's new status reports, if any.
    pub fn of_post(status: PostStatus) -> Option<Self> {
        match status {
            PostStatus::Posted => Some(WebhookEvent::PostPublished),
            PostStatus::Failed => Some(WebhookEvent::PostFailed),
            PostStatus::Unknown => Some(WebhookEvent::PostUnknown),
            PostStatus::Retrying => Some(WebhookEvent::PostRetrying),
            _ => None,
        }
    }

    /// The event a connection's new status reports, if any.
    pub fn of_connection(status: ConnectionStatus) -> Option<Self> {
        match status {
            ConnectionStatus::Expired => Some(WebhookEvent::ConnectionExpired),
            ConnectionStatus::Revoked => Some(WebhookEvent::ConnectionRevoked),
            _ => None,
        }
    }
}

string_enum! {
    /// Where a webhook delivery stands.
    DeliveryStatus {
        /// Waiting for its next attempt at `due_at`.
        Pending => "pending",
        /// The endpoint answered 2xx.
        Succeeded => "succeeded",
        /// Every attempt of the schedule failed, or the endpoint was disabled.
        Dead => "dead",
    }
}
