//! The error of Herald's services, translated once at each boundary (HTTP in the api, job
//! outcome in the worker).

use crate::{domain::ValidationError, jobs::QueueError};

/// What a service call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed in a way that is not a field's content.
    #[error("{message}")]
    BadRequest {
        /// Stable machine-readable code.
        code: &'static str,
        /// A sentence for the developer.
        message: String,
    },
    /// A field failed validation.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// Not found for this user.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// Stable machine-readable code.
        code: &'static str,
        /// A sentence for the developer.
        message: String,
    },
    /// A platform answered with an error.
    #[error("{0}")]
    Upstream(String),
    /// The queue is unreachable.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// A stored secret could not be decrypted.
    #[error(transparent)]
    Decrypt(#[from] crate::crypto::DecryptError),
}
