//! The one error shape every client sees: `{"error": {"code": "...", "message": "..."}}` with the
//! right status. Service errors are translated here, once; errors raised by poem itself (bad JSON,
//! missing auth, unknown route, body too large) are rewritten into the same shape by
//! [`json_error`].

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{ApiResponse, Object, payload::Json};
use shared::Error;

/// The error body.
#[derive(Debug, Object)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Object)]
pub struct ErrorDetail {
    /// Stable machine-readable code, such as `validation_failed` or `not_found`.
    pub code: String,
    /// A sentence for the developer; never holds a token or secret.
    pub message: String,
}

fn body(code: &str, message: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody { error: ErrorDetail { code: code.to_owned(), message: message.into() } })
}

/// Every error status a route can answer with.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or invalid bearer token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Not found (or not this user's).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Conflicts with the current state.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is larger than the API takes (256 KiB).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// A field failed validation.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many requests: wait for `Retry-After` seconds (README "Limits").
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// Herald failed; the message says no more than that.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A platform failed.
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// A dependency (database, queue) is unavailable.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl ApiError {
    /// A 429 with the reason.
    pub fn rate_limited(message: String) -> Self {
        ApiError::TooManyRequests(body("rate_limited", message))
    }

    /// A 500 that says no more than that; the cause is logged.
    pub fn internal(cause: &str) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::Internal(body("internal_error", "internal error"))
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::BadRequest { code, message } => ApiError::BadRequest(body(code, message)),
            Error::Validation(e) => ApiError::Unprocessable(body("validation_failed", e.to_string())),
            Error::NotFound(what) => ApiError::NotFound(body("not_found", format!("{what} not found"))),
            Error::Conflict { code, message } => ApiError::Conflict(body(code, message)),
            Error::Upstream(message) => ApiError::BadGateway(body("platform_error", message)),
            Error::Queue(e) => {
                tracing::error!(error = %e, "queue unavailable");
                ApiError::Unavailable(body("queue_unavailable", "the job queue is unavailable; try again"))
            }
            Error::Database(e) => {
                tracing::error!(error = %e, "database error");
                ApiError::Unavailable(body("database_unavailable", "the database is unavailable; try again"))
            }
            Error::Decrypt(e) => {
                tracing::error!(error = %e, "stored secret undecryptable");
                ApiError::Internal(body("internal_error", "internal error"))
            }
        }
    }
}

/// Rewrites any error poem produced into the JSON shape, keeping its status.
pub async fn json_error(error: poem::Error) -> Response {
    // A route's own `ApiError` reaches here as an error built from its response: keep it.
    if error.is_from_response() {
        return error.into_response();
    }
    let status = error.status();
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        s if s.is_server_error() => "internal_error",
        _ => "error",
    };
    let message = if status.is_server_error() {
        tracing::error!(error = %error, "unhandled error");
        "internal error".to_owned()
    } else if status == StatusCode::UNAUTHORIZED {
        // Authorization failures all read the same, whatever was wrong with the token.
        "a valid bearer token is required".to_owned()
    } else {
        error.to_string()
    };
    (status, body(code, message)).into_response()
}
