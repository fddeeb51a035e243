//! Locks shared by every process: per-connection refresh locks, so concurrent refreshes never burn
//! a single-use refresh token, and named leases, so one dispatcher at a time feeds the queue.
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
    /// One mutex per lock name in this process.
    Local(Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>),
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

    fn local_mutex(map: &std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>, name: String) -> Arc<Mutex<()>> {
        map.lock().expect("lock map is never poisoned").entry(name).or_default().clone()
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
