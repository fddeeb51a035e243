//! One module per job.

pub mod publish_post;
pub mod refresh_tokens;
