//! Rate limits of the API: token buckets kept as GCRA (the generic cell rate algorithm), where a
//! bucket is one number, the "theoretical arrival time" (TAT) of the next request. A request is
//! let through when taking it would not push the TAT more than `burst` intervals past now.
//!
//! In production a bucket is a Redis key, updated by one Lua script on Redis's own clock, so every
//! api instance shares it and their clocks need not agree. In the embedded default one process
//! serves everything, so a map in memory is enough; both use [`decide`].

use std::{collections::HashMap, sync::Arc, time::Duration};

use redis::aio::ConnectionManager;

/// A bucket's size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests refilled per minute.
    pub per_minute: u32,
    /// Requests that may arrive at once when the bucket is full.
    pub burst: u32,
}

impl Quota {
    /// Milliseconds between two refilled requests.
    fn interval_ms(self) -> i64 {
        (60_000 / i64::from(self.per_minute.max(1))).max(1)
    }

    /// How far the TAT may run ahead of now.
    fn capacity_ms(self) -> i64 {
        self.interval_ms() * i64::from(self.burst.max(1))
    }
}

/// What the bucket said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Requests that could still arrive right now.
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// When refused: until one request is let through.
    pub retry_after: Duration,
}

/// The GCRA step: the decision for a request at `now` (ms) given the stored TAT (`None` for a
/// bucket never used, or expired), and the TAT to store when it is allowed.
pub fn decide(quota: Quota, tat: Option<i64>, now: i64) -> (Decision, Option<i64>) {
    let interval = quota.interval_ms();
    let capacity = quota.capacity_ms();
    let tat = tat.unwrap_or(now).max(now);
    let next = tat + interval;
    let ms = |ms: i64| Duration::from_millis(ms.max(0) as u64);
    if next - now > capacity {
        let decision =
            Decision { allowed: false, remaining: 0, reset: ms(tat - now), retry_after: ms(next - now - capacity) };
        return (decision, None);
    }
    let remaining = ((capacity - (next - now)) / interval) as u32;
    (Decision { allowed: true, remaining, reset: ms(next - now), retry_after: Duration::ZERO }, Some(next))
}

/// The GCRA step in Redis, on Redis's clock: `KEYS[1]` the bucket, `ARGV` the interval and the
/// capacity (ms). Returns `{allowed, tat - now, retry}` with `tat` the stored TAT afterwards.
/// Mirrors [`decide`]; the tests hold the two to the same answers.
const TAKE: &str = "\
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next = tat + interval
if next - now > capacity then
  return {0, tat - now, next - now - capacity}
end
redis.call('SET', KEYS[1], next, 'PX', next - now)
return {1, next - now, 0}";

/// How long the limiter waits for Redis before it lets the request through.
const REDIS_WAIT: Duration = Duration::from_millis(250);
/// Buckets kept in memory before full ones (TAT in the past) are forgotten.
const LOCAL_PRUNE_AT: usize = 50_000;

/// Where buckets live.
#[derive(Clone)]
pub enum RateLimiter {
    /// Redis keys `{prefix}:rate:{bucket}`.
    Redis { conn: ConnectionManager, prefix: String, script: Arc<redis::Script> },
    /// A map of this process.
    Local(Arc<std::sync::Mutex<HashMap<String, i64>>>),
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RateLimiter::Redis { prefix, .. } => {
                f.debug_struct("Redis").field("prefix", prefix).finish_non_exhaustive()
            }
            RateLimiter::Local(_) => f.write_str("Local"),
        }
    }
}

impl RateLimiter {
    /// Buckets in Redis, shared by every api instance with this prefix.
    pub fn redis(conn: ConnectionManager, prefix: String) -> Self {
        RateLimiter::Redis { conn, prefix, script: Arc::new(redis::Script::new(TAKE)) }
    }

    /// Buckets in this process.
    pub fn local() -> Self {
        RateLimiter::Local(Arc::default())
    }

    /// Takes one request from the bucket `name`. When Redis fails or is slow the request is let
    /// through (`None`): a limiter outage must not become an API outage, and the routes that
    /// need Redis answer 503 themselves.
    pub async fn take(&self, name: &str, quota: Quota) -> Option<Decision> {
        match self {
            RateLimiter::Local(buckets) => {
                let now = chrono::Utc::now().timestamp_millis();
                let mut buckets = buckets.lock().expect("bucket map is never poisoned");
                if buckets.len() >= LOCAL_PRUNE_AT {
                    buckets.retain(|_, tat| *tat > now);
                }
                let (decision, tat) = decide(quota, buckets.get(name).copied(), now);
                if let Some(tat) = tat {
                    buckets.insert(name.to_owned(), tat);
                }
                Some(decision)
            }
            RateLimiter::Redis { conn, prefix, script } => {
                let mut conn = conn.clone();
                let mut call = script.key(format!("{prefix}:rate:{name}"));
                call.arg(quota.interval_ms()).arg(quota.capacity_ms());
                let answer = tokio::time::timeout(REDIS_WAIT, call.invoke_async::<(i64, i64, i64)>(&mut conn)).await;
                match answer {
                    Ok(Ok((allowed, ahead, retry))) => Some(from_redis(quota, allowed == 1, ahead, retry)),
                    Ok(Err(error)) => {
                        tracing::warn!(error = %error, "rate limiter unavailable; request let through");
                        None
                    }
                    Err(_) => {
                        tracing::warn!("rate limiter timed out; request let through");
                        None
                    }
                }
            }
        }
    }
}

/// The script's answer as a decision, counted as [`decide`] counts.
fn from_redis(quota: Quota, allowed: bool, ahead: i64, retry: i64) -> Decision {
    let ms = |ms: i64| Duration::from_millis(ms.max(0) as u64);
    if !allowed {
        return Decision { allowed, remaining: 0, reset: ms(ahead), retry_after: ms(retry) };
    }
    let remaining = ((quota.capacity_ms() - ahead).max(0) / quota.interval_ms()) as u32;
    Decision { allowed, remaining, reset: ms(ahead), retry_after: Duration::ZERO }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA: Quota = Quota { per_minute: 60, burst: 3 };

    #[test]
    fn a_full_bucket_lets_the_burst_through_then_refuses_until_it_refills() {
        let now = 1_000_000;
        let mut tat = None;
        for remaining in [2, 1, 0] {
            let (decision, next) = decide(QUOTA, tat, now);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, remaining);
            tat = next;
        }
        let (refused, next) = decide(QUOTA, tat, now);
        assert!(!refused.allowed);
        assert_eq!(next, None, "a refused request takes nothing");
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        assert_eq!(refused.reset, Duration::from_secs(3));
        // One interval later exactly one more gets through.
        let (later, next) = decide(QUOTA, tat, now + 1000);
        assert!(later.allowed);
        assert_eq!(later.remaining, 0);
        assert!(!decide(QUOTA, next, now + 1000).0.allowed);
    }

    #[test]
    fn an_idle_bucket_is_full_again() {
        let (_, tat) = decide(QUOTA, None, 0);
        let (decision, _) = decide(QUOTA, tat, 60_000);
        assert_eq!(decision.remaining, 2);
        assert_eq!(decision.reset, Duration::from_secs(1));
    }

    #[test]
    fn the_redis_answer_counts_as_decide_does() {
        let now = 5_000;
        let mut tat = None;
        for _ in 0..5 {
            let (local, next) = decide(QUOTA, tat, now);
            let stored = tat.unwrap_or(now).max(now);
            let ahead = if local.allowed { next.unwrap_or(0) - now } else { stored - now };
            let retry = local.retry_after.as_millis() as i64;
            assert_eq!(from_redis(QUOTA, local.allowed, ahead, retry), local);
            tat = next.or(tat);
        }
    }
}
