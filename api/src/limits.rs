//! Rate limits at the edge (README "Limits"): a token bucket per user over every `/api/` route,
//! a stricter one per user for `initiate`, and one per client address for the unauthenticated
//! OAuth callback. A request without a valid bearer token takes from its client address's bucket
//! (it gets a 401 anyway). Probes, the document and the console are not limited.
//!
//! Every limited answer carries the IETF draft's fields (draft-ietf-httpapi-ratelimit-headers-10):
//! `RateLimit-Policy: "user";q=100;w=10` and `RateLimit: "user";r=42;t=3`; a refusal is 429 in
//! the one error shape with `Retry-After`.

use std::{net::IpAddr, sync::Arc};

use poem::{
    Endpoint, IntoResponse, Request, Response,
    http::{HeaderValue, header},
};
use shared::{
    App,
    config::RateLimitSettings,
    ratelimit::{Decision, Quota},
};

use crate::{auth::User, error::ApiError};

/// The OAuth callback's path prefix: unauthenticated, limited per client address.
const CALLBACK: &str = "/api/v1/auth/social/callback/";
/// `initiate`: each call writes a state row, so it gets a stricter bucket of its own.
const INITIATE: &str = "/api/v1/auth/social/initiate";

/// One bucket a request takes from.
struct Bucket {
    /// The policy's name in the headers.
    policy: &'static str,
    /// The bucket's key.
    key: String,
    quota: Quota,
}

/// Takes from the buckets `req` falls under and refuses it with 429 when one is empty.
pub async fn rate_limit<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let Some(app) = req.data::<Arc<App>>().cloned() else {
        return Ok(next.call(req).await?.into_response());
    };
    let buckets = buckets(&app, &mut req);
    let mut taken = Vec::with_capacity(buckets.len());
    for bucket in &buckets {
        let Some(decision) = app.rate_limits.take(&bucket.key, bucket.quota).await else { continue };
        let allowed = decision.allowed;
        taken.push((bucket, decision));
        if !allowed {
            break;
        }
    }
    let refused =
        taken.iter().find(|(_, decision)| !decision.allowed).map(|(bucket, decision)| (bucket.policy, *decision));
    let mut response = match refused {
        Some((policy, decision)) => {
            let message =
                format!("too many requests ({policy} limit); retry after {} s", seconds(decision.retry_after));
            let mut response = ApiError::rate_limited(message).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds(decision.retry_after)));
            response
        }
        None => next.call(req).await?.into_response(),
    };
    if !taken.is_empty() {
        let policies = taken.iter().map(|(bucket, _)| policy_field(bucket)).collect::<Vec<_>>().join(", ");
        let states = taken.iter().map(|(bucket, decision)| state_field(bucket.policy, decision)).collect::<Vec<_>>();
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&policies) {
            headers.insert("ratelimit-policy", value);
        }
        if let Ok(value) = HeaderValue::from_str(&states.join(", ")) {
            headers.insert("ratelimit", value);
        }
    }
    Ok(response)
}

/// The buckets of a request; a verified bearer token's user is kept in the request for the
/// security scheme, so the token is checked once.
fn buckets(app: &App, req: &mut Request) -> Vec<Bucket> {
    let limits = &app.settings.rate_limits;
    let path = req.uri().path();
    if !path.starts_with("/api/") {
        return Vec::new();
    }
    let on = |bucket: Bucket| (bucket.quota.per_minute > 0).then_some(bucket);
    if path.starts_with(CALLBACK) {
        let key = format!("callback:{}", client_address(req, limits));
        return on(Bucket { policy: "callback", key, quota: limits.callback }).into_iter().collect();
    }
    let initiate = path == INITIATE;
    let user = bearer(req).and_then(|token| app.jwt.verify(token).ok());
    let mut buckets = Vec::new();
    match user {
        Some(id) => {
            buckets.extend(on(Bucket { policy: "user", key: format!("user:{id}"), quota: limits.per_user }));
            if initiate {
                buckets.extend(on(Bucket {
                    policy: "initiate",
                    key: format!("initiate:{id}"),
                    quota: limits.initiate,
                }));
            }
            req.extensions_mut().insert(User { id });
        }
        None => {
            let key = format!("address:{}", client_address(req, limits));
            buckets.extend(on(Bucket { policy: "user", key, quota: limits.per_user }));
        }
    }
    buckets
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The client's address: the peer, or with `TRUST_FORWARDED_FOR` the right-most
/// `X-Forwarded-For` entry (the one the trusted load balancer appended; entries to its left are
/// whatever the client sent). IPv6 addresses count by their /64, which one client holds whole.
fn client_address(req: &Request, limits: &RateLimitSettings) -> String {
    let forwarded = limits
        .trust_forwarded_for
        .then(|| req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()))
        .flatten()
        .and_then(|list| list.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    let address = forwarded.or_else(|| req.remote_addr().as_socket_addr().map(|a| a.ip()));
    match address {
        Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        Some(address) => address.to_string(),
        None => "unknown".to_owned(),
    }
}

/// Whole seconds, rounded up, at least 1 where anything is left to wait.
fn seconds(duration: std::time::Duration) -> u64 {
    duration.as_millis().div_ceil(1000) as u64
}

/// `"user";q=100;w=10`: the bucket holds `q` requests and refills them in `w` seconds.
fn policy_field(bucket: &Bucket) -> String {
    let quota = bucket.quota;
    let window = (u64::from(quota.burst.max(1)) * 60).div_ceil(u64::from(quota.per_minute.max(1)));
    format!("\"{}\";q={};w={}", bucket.policy, quota.burst.max(1), window.max(1))
}

/// `"user";r=42;t=3`: `r` requests left now, `t` seconds until the bucket is full.
fn state_field(policy: &str, decision: &Decision) -> String {
    format!("\"{policy}\";r={};t={}", decision.remaining, seconds(decision.reset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_draft() {
        let bucket = Bucket { policy: "user", key: String::new(), quota: Quota { per_minute: 600, burst: 100 } };
        assert_eq!(policy_field(&bucket), "\"user\";q=100;w=10");
        let decision = Decision {
            allowed: true,
            remaining: 42,
            reset: std::time::Duration::from_millis(2_100),
            retry_after: std::time::Duration::ZERO,
        };
        assert_eq!(state_field("user", &decision), "\"user\";r=42;t=3");
    }
}
