//! The Redis side of a run: every key a run creates lives under its own prefix
//! (`herald-bench-<uuid>`, Herald's `HERALD_QUEUE_PREFIX`), so the bench can count them, see the
//! workers register, and delete them all at the end without touching anything else in Redis.
//!
//! Counting uses `SCAN MATCH '<prefix>:*' COUNT 1000` (never `KEYS`, which blocks Redis); the
//! peak key count shows whether a design keeps Redis bounded (a dispatcher with a depth cap) or
//! lets it grow with the backlog (every post pushed at schedule time, apalis keeping finished
//! jobs' metadata).

use anyhow::Context;
use redis::aio::MultiplexedConnection;

/// Connects to Redis.
pub async fn connect(client: &redis::Client) -> anyhow::Result<MultiplexedConnection> {
    client.get_multiplexed_async_connection().await.context("cannot connect to Redis")
}

/// Every key matching `pattern`, by `SCAN`.
pub async fn scan(conn: &mut MultiplexedConnection, pattern: &str) -> anyhow::Result<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .context("SCAN")?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// How many keys the run under `prefix` holds.
pub async fn count(conn: &mut MultiplexedConnection, prefix: &str) -> anyhow::Result<u64> {
    Ok(scan(conn, &format!("{prefix}:*")).await?.len() as u64)
}

/// The most workers registered on any one apalis queue under `prefix` (`<queue>:workers` is the
/// sorted set of worker heartbeats), which is how the bench knows the workers are consuming.
pub async fn registered_workers(conn: &mut MultiplexedConnection, prefix: &str) -> anyhow::Result<u64> {
    let mut most = 0;
    for key in scan(conn, &format!("{prefix}:*:workers")).await? {
        // Another type under that name would answer WRONGTYPE; it is not a worker set.
        if let Ok(n) = redis::cmd("ZCARD").arg(&key).query_async::<u64>(conn).await {
            most = most.max(n);
        }
    }
    Ok(most)
}

/// Deletes every key matching `pattern`; returns how many.
pub async fn delete(conn: &mut MultiplexedConnection, pattern: &str) -> anyhow::Result<u64> {
    let keys = scan(conn, pattern).await?;
    for chunk in keys.chunks(500) {
        redis::cmd("UNLINK").arg(chunk).query_async::<u64>(conn).await.context("UNLINK")?;
    }
    Ok(keys.len() as u64)
}
