//! Per-connection refresh locks, so concurrent refreshes never burn a single-use refresh token.
//!
//! In production the lock is a Redis key (`SET NX PX`) shared by every worker and api process,
//! released only by its holder. In the embedded default one process does everything, so an
//! in-process mutex per connection is enough.

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
#[error("refresh lock unavailable: {0}")]
pub struct LockError(String);

/// Refresh locks.
#[derive(Clone)]
pub enum RefreshLocks {
    /// Redis keys `{prefix}:lock:refresh:{connection_id}`.
    Redis { conn: ConnectionManager, prefix: String },
    /// One mutex per connection in this process.
    Local(Arc<std::sync::Mutex<HashMap<i64, Arc<Mutex<()>>>>>),
}

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

    /// Waits for the refresh lock of a connection.
    pub async fn lock(&self, connection_id: i64) -> Result<LockGuard, LockError> {
        match self {
            RefreshLocks::Local(map) => {
                let mutex = map.lock().expect("lock map is never poisoned").entry(connection_id).or_default().clone();
                Ok(LockGuard::Local(mutex.lock_owned().await))
            }
            RefreshLocks::Redis { conn, prefix } => {
                let key = format!("{prefix}:lock:refresh:{connection_id}");
                let mut bytes = [0u8; 16];
                rand::rng().fill_bytes(&mut bytes);
                let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                let deadline = tokio::time::Instant::now() + LOCK_WAIT;
                let mut conn = conn.clone();
                loop {
                    let taken: Option<String> = redis::cmd("SET")
                        .arg(&key)
                        .arg(&token)
                        .arg("NX")
                        .arg("PX")
                        .arg(LOCK_TTL.as_millis() as u64)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| LockError(e.to_string()))?;
                    if taken.is_some() {
                        return Ok(LockGuard::Redis { conn, key, token });
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(LockError(format!("connection {connection_id} is being refreshed elsewhere")));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
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
                tracing::warn!(lock.key = %key, error = %error, "refresh lock release failed; it expires by itself");
            }
        }
    }
}
