//! Locks shared by every process: per-connection refresh locks, so concurrent refreshes never burn
//! a single-use refresh token, named leases, so one dispatcher at a time feeds the queue, and
//! sliding-window budgets, so every worker together keeps under a platform's per-account limits.
//!
//! In production a lock is a Redis key (`SET NX PX`) shared by every worker and api process,
//! released only by its holder. In the embedded default one process does everything, so an
//! in-process mutex per name is enough.

use std::{collections::HashMap, sync::Arc, time::Duration};

use rand::RngCore;
use redis::aio::ConnectionManager;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// How long a Redis lock lives if its holder dies without releasing it. Longer than a refresh can
/// take (one platform call, `PLATFORM_HTTP_TIMEOUT_SECS`, 30 s by default, plus the database
/// write), so a slow refresh never loses its lock to a second one that would reuse the old token.
const LOCK_TTL: Duration = Duration::from_secs(90);
/// How long to wait for a lock before giving up (the caller retries later).
const LOCK_WAIT: Duration = Duration::from_secs(100);

/// The lock could not be taken in time or Redis failed.
#[derive(Debug, thiserror::Error)]
#[error("lock unavailable: {0}")]
pub struct LockError(String);

/// Refresh locks.
#[derive(Clone)]
pub enum RefreshLocks {
    /// Redis keys `{prefix}:lock:refresh:{connection_id}` and `{prefix}:lock:{lease}`.
    Redis { conn: ConnectionManager, prefix: String },
    /// One mutex per lock name, and one window per budget, in this process.
    Local(Arc<LocalLocks>),
}

/// The embedded default's locks and budget windows.
#[derive(Debug, Default)]
pub struct LocalLocks {
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    windows: std::sync::Mutex<HashMap<String, std::collections::VecDeque<i64>>>,
}

/// Takes one slot of a sliding-window budget: `KEYS[1]` a sorted set of slot times (ms), `ARGV`
/// now, the window (ms), the limit and a unique member. Returns 0 when taken, otherwise the
/// milliseconds until the oldest slot leaves the window.
const TAKE_SLOT: &str = "\
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, oldest[2] + ARGV[2] - ARGV[1])";

impl std::fmt::Debug for RefreshLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefreshLocks::Redis { prefix, .. } => {
                f.debug_struct("Redis").field("prefix", prefix).finish_non_exhaustive()
            }
            RefreshLocks::Local(_) => f.write_str("Local"),
        }
    }
}

/// A held lock; call [`LockGuard::release`] when done (a dropped Redis guard expires by TTL).
pub enum LockGuard {
    /// Holds the Redis key with this random value.
    Redis { conn: ConnectionManager, key: String, token: String },
    /// Holds the local mutex.
    Local(OwnedMutexGuard<()>),
}

impl RefreshLocks {
    /// In-process locks.
    pub fn local() -> Self {
        RefreshLocks::Local(Arc::default())
    }

    fn local_mutex(local: &LocalLocks, name: String) -> Arc<Mutex<()>> {
        local.locks.lock().expect("lock map is never poisoned").entry(name).or_default().clone()
    }

    /// Takes one of `limit` slots of the budget `name` over a sliding `window` (X: 100 posts per
    /// 15 minutes per account). `None` when taken; otherwise how long until a slot frees.
    pub async fn take_slot(&self, name: &str, limit: u32, window: Duration) -> Result<Option<Duration>, LockError> {
        let now = chrono::Utc::now().timestamp_millis();
        let window_ms = window.as_millis() as i64;
        match self {
            RefreshLocks::Local(local) => {
                let mut windows = local.windows.lock().expect("window map is never poisoned");
                let slots = windows.entry(name.to_owned()).or_default();
                while slots.front().is_some_and(|at| *at <= now - window_ms) {
                    slots.pop_front();
                }
                if slots.len() < limit as usize {
                    slots.push_back(now);
                    return Ok(None);
                }
                let wait = slots.front().map_or(1, |oldest| (oldest + window_ms - now).max(1));
                Ok(Some(Duration::from_millis(wait as u64)))
            }
            RefreshLocks::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let member = uuid::Uuid::new_v4().simple().to_string();
                let wait: i64 = redis::Script::new(TAKE_SLOT)
                    .key(format!("{prefix}:budget:{name}"))
                    .arg(now)
                    .arg(window_ms)
                    .arg(limit)
                    .arg(member)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| LockError(e.to_string()))?;
                Ok((wait > 0).then(|| Duration::from_millis(wait as u64)))
            }
        }
    }

    /// Waits for the refresh lock of a connection.
    pub async fn lock(&self, connection_id: i64) -> Result<LockGuard, LockError> {
        let name = format!("refresh:{connection_id}");
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        if let RefreshLocks::Local(map) = self {
            return Ok(LockGuard::Local(Self::local_mutex(map, name).lock_owned().await));
        }
        loop {
            if let Some(guard) = self.try_lock(&name, LOCK_TTL).await? {
                return Ok(guard);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LockError(format!("connection {connection_id} is being refreshed elsewhere")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes the lock `name` for at most `ttl` if nobody holds it; `None` when somebody does.
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<LockGuard>, LockError> {
        match self {
            RefreshLocks::Local(map) => {
                Ok(Self::local_mutex(map, name.to_owned()).try_lock_owned().ok().map(LockGuard::Local))
            }
            RefreshLocks::Redis { conn, prefix } => {
                let key = format!("{prefix}:lock:{name}");
                let mut bytes = [0u8; 16];
                rand::rng().fill_bytes(&mut bytes);
                let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                let mut conn = conn.clone();
                let taken: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis() as u64)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| LockError(e.to_string()))?;
                Ok(taken.map(|_| LockGuard::Redis { conn, key, token }))
            }
        }
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockGuard::Redis { key, .. } => f.debug_struct("Redis").field("key", key).finish_non_exhaustive(),
            LockGuard::Local(_) => f.write_str("Local"),
        }
    }
}

impl LockGuard {
    /// Releases the lock if this holder still owns it.
    pub async fn release(self) {
        if let LockGuard::Redis { mut conn, key, token } = self {
            let script = redis::Script::new(
                "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end",
            );
            let released: Result<i64, _> = script.key(&key).arg(&token).invoke_async(&mut conn).await;
            if let Err(error) = released {
                tracing::warn!(lock.key = %key, error = %error, "lock release failed; it expires by itself");
            }
        }
    }
}
