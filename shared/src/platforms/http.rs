//! Calls to platform APIs: send, classify the failure once with the platform's dialect, read the
//! JSON answer. Every platform module uses these, so network failures and timeouts are treated
//! the same way everywhere.

use reqwest::{RequestBuilder, Response, StatusCode, header::HeaderMap};
use serde::de::DeserializeOwned;

use super::{PlatformError, oauth::without_url};

/// Whether a request that failed may have been applied by the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// A read, or a write that is safe to repeat: failing it changes nothing.
    Read,
    /// A write: a timeout or an ambiguous 5xx may mean the platform has it.
    Write,
}

/// How one platform reports errors.
pub(crate) trait Dialect {
    /// The platform's name in messages.
    const NAME: &'static str;

    /// Classifies a non-2xx answer.
    fn classify(status: StatusCode, headers: &HeaderMap, body: &str, effect: Effect) -> PlatformError;
}

/// The classification every platform shares for statuses its error body does not decide.
pub(crate) fn classify_status(status: StatusCode, message: String, effect: Effect) -> PlatformError {
    match status.as_u16() {
        401 => PlatformError::Unauthorized(message),
        429 => PlatformError::RateLimited { message, retry_at: None },
        // A gateway that could not reach the platform, or the platform saying it is unavailable:
        // nothing was applied.
        502 | 503 => PlatformError::Transient(message),
        // An internal error or a gateway timeout on a write may have applied it.
        500..=599 if effect == Effect::Write => PlatformError::Unknown(message),
        500..=599 => PlatformError::Transient(message),
        _ => PlatformError::Rejected(message),
    }
}

/// A transport failure: a connect failure never reached the platform; anything after the request
/// was sent might have been applied.
pub(crate) fn network_error<D: Dialect>(error: &reqwest::Error, effect: Effect) -> PlatformError {
    let message = format!("{} request {}", D::NAME, without_url(error));
    if error.is_connect() || effect == Effect::Read {
        PlatformError::Transient(message)
    } else {
        PlatformError::Unknown(message)
    }
}

/// Sends a request; a transport failure or a non-2xx answer comes back classified.
pub(crate) async fn send<D: Dialect>(request: RequestBuilder, effect: Effect) -> Result<Response, PlatformError> {
    let response = request.send().await.map_err(|e| network_error::<D>(&e, effect))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    Err(D::classify(status, &headers, &body, effect))
}

/// Reads a 2xx JSON answer; a body that does not parse is transient for reads and unknown for
/// writes (the platform accepted something we cannot read).
pub(crate) async fn json<D: Dialect, T: DeserializeOwned>(
    response: Response,
    what: &str,
    effect: Effect,
) -> Result<T, PlatformError> {
    let body = response.bytes().await.map_err(|e| network_error::<D>(&e, effect))?;
    serde_json::from_slice(&body).map_err(|_| {
        let message = format!("{} answered {what} with an unexpected body", D::NAME);
        match effect {
            Effect::Read => PlatformError::Transient(message),
            Effect::Write => PlatformError::Unknown(message),
        }
    })
}
