//! One module per job.

pub mod publish_post;
