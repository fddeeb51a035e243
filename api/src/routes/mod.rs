//! HTTP routes, one file per OpenAPI tag. Handlers extract, make one call into `shared`, and map
//! the result to a response.

pub mod campaigns;
pub mod ops;
pub mod posts;
pub mod social_auth;
pub mod webhooks;

use poem_openapi::Tags;

/// OpenAPI tags.
#[derive(Debug, Tags)]
pub enum Tag {
    /// Connecting platform accounts through OAuth.
    SocialAuth,
    /// Scheduling posts and following them.
    Posts,
    /// A campaign's chat history.
    Campaigns,
    /// Liveness, readiness and metrics.
    Operations,
    /// Endpoints that receive the user's events, and their deliveries.
    Webhooks,
}
