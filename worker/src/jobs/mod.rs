//! One module per job.

pub mod dispatch_posts;
pub mod publish_post;
pub mod refresh_tokens;
