//! The platform modules' answer parsing, reachable from the fuzz targets in `fuzz/`.
//!
//! Each function here is the pure half of a call the platform modules make after the HTTP
//! exchange: the same code the clients run, given a status, headers and a body instead of a
//! response. Nothing here is used by Herald itself, and nothing here changes how it behaves; the
//! module is hidden from the docs because it is not an API.

use reqwest::{
    StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue},
};

use super::{Identity, PlatformError, Published, TokenSet, facebook, http, instagram, linkedin, oauth, tiktok, x};
use crate::domain::Platform;

use http::Effect;

/// Classifies a non-2xx answer in `platform`'s dialect, to a write when `write`. Statuses outside 100–999 and headers
/// that are not valid HTTP are left out, as no response could carry them.
pub fn classify(platform: Platform, status: u16, headers: &[(&str, &[u8])], body: &str, write: bool) -> PlatformError {
    use http::Dialect;
    let effect = if write { Effect::Write } else { Effect::Read };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(*name), HeaderValue::from_bytes(value)) {
            map.append(name, value);
        }
    }
    match platform {
        Platform::Twitter => x::X::classify(status, &map, body, effect),
        Platform::Linkedin => linkedin::Linkedin::classify(status, &map, body, effect),
        Platform::Instagram => instagram::Instagram::classify(status, &map, body, effect),
        Platform::Facebook => facebook::Graph::classify(status, &map, body, effect),
        Platform::Tiktok => tiktok::Tiktok::classify(status, &map, body, effect),
    }
}

/// The message of an error body in any of the platforms' shapes.
pub fn error_message(body: &str) -> Option<String> {
    http::error_message(body)
}

/// A token answer in the shape LinkedIn, TikTok, Facebook and Instagram share, as their clients
/// keep it.
pub fn token_answer(body: &[u8]) -> Result<TokenSet, PlatformError> {
    Ok(http::decode::<x::X, http::RawToken>(body, "the token request", Effect::Read)?.into_token_set())
}

/// A 2xx answer of an OAuth 2.0 token endpoint read by the oauth2 flow (X).
pub fn oauth_token_answer(body: &[u8]) -> Option<TokenSet> {
    oauth::read_token_answer(body)
}

/// An OAuth 2.0 error body read by the oauth2 flow (X).
pub fn oauth_error_answer(body: &[u8]) -> Option<PlatformError> {
    oauth::read_error_answer(body)
}

/// A media or publish status answer: `Ok(None)` when done, `Ok(Some(words))` while the platform
/// is still at it. Instagram answers `/me` here, as its status handling is part of its steps.
pub fn status_answer(platform: Platform, body: &[u8]) -> Result<Option<String>, PlatformError> {
    match platform {
        Platform::Twitter => Ok(x::read_media_status(body)?.map(|(state, _)| state)),
        Platform::Linkedin => linkedin::read_video_status(body),
        Platform::Facebook => facebook::read_video_status(body),
        Platform::Tiktok => match tiktok::read_publish_status(body, "publish-id")? {
            Ok(Published { .. }) => Ok(None),
            Err(status) => Ok(Some(status)),
        },
        Platform::Instagram => instagram::read_identity(body).map(|Identity { .. }| None),
    }
}
