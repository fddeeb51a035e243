//! The ceiling: how many posts per second PostgreSQL on this machine can take through the claim
//! and the result of DESIGN §11, with nothing else in the way.
//!
//! `pgbench` runs 8 clients for a few seconds against a fresh database migrated by `api migrate`
//! and filled with the same N posts as the herd; each transaction claims one random post and
//! records its result, two autocommit statements like a worker's. The result puts the post back
//! to `pending` only so the run can repeat; it costs what a real result costs. No worker can
//! publish faster than this with single-row claims, so the herd's posts/s is reported as a
//! fraction of it.
//!
//! The built-in script needs the refactor's `due_at`, `claim_token` and `claimed_at` columns;
//! on a tree without them the ceiling is skipped with a note, unless `--pgbench-script` gives
//! statements that tree has (the variable `:posts` holds N, post `n` has id `bench-000000n`).

use std::{path::PathBuf, process::Command};

use anyhow::{Context, bail};
use chrono::Utc;

use crate::{database::POST_ID_DIGITS, harness::Harness};

/// Clients and threads of the pgbench run.
const CLIENTS: u32 = 8;
const THREADS: u32 = 2;

/// What the ceiling measurement found.
#[derive(Debug, Clone)]
pub enum Ceiling {
    /// Transactions (claim + result of one post) per second.
    Measured(f64),
    /// Not measured, and why.
    Skipped(String),
}

impl Ceiling {
    /// The measured rate, if any.
    pub fn rate(&self) -> Option<f64> {
        match self {
            Self::Measured(tps) => Some(*tps),
            Self::Skipped(_) => None,
        }
    }
}

/// The built-in script: the claim and the result of one random post, verbatim from DESIGN §11
/// apart from pgbench's variable syntax (pgbench has no `:'var'` quoting, so the id and the
/// claim token are built in SQL from random numbers).
fn builtin_script() -> String {
    let id = format!("('bench-' || lpad(:n::text, {POST_ID_DIGITS}, '0'))");
    format!(
        "\\set n random(1, :posts)\n\
         \\set tok random(1, 2000000000)\n\
         UPDATE scheduled_posts SET status = 'publishing', claim_token = ('tok-' || :tok), claimed_at = now(), \
         updated_at = now() WHERE id = {id} AND status IN ('pending','retrying') AND due_at <= now() RETURNING *;\n\
         UPDATE scheduled_posts SET status = 'pending', platform_post_id = '1', published_at = now(), \
         updated_at = now() WHERE id = {id} AND claim_token = ('tok-' || :tok);\n"
    )
}

/// Measures the ceiling; a failure becomes a skipped ceiling with the reason, so the rest of the
/// benchmark still runs.
pub async fn run(harness: &Harness) -> Ceiling {
    if harness.options.skip_ceiling {
        return Ceiling::Skipped("--skip-ceiling".into());
    }
    eprintln!(
        "herd: ceiling: pgbench, {CLIENTS} clients, {} s, {} posts",
        harness.options.pgbench_secs, harness.options.posts
    );
    let stage = match harness.stage().await {
        Ok(stage) => stage,
        Err(error) => return Ceiling::Skipped(format!("setup failed: {error:#}")),
    };
    let result = measure(harness, &stage.db).await;
    stage.teardown(harness).await;
    result.unwrap_or_else(|error| Ceiling::Skipped(format!("failed: {error:#}")))
}

async fn measure(harness: &Harness, db: &crate::database::BenchDb) -> anyhow::Result<Ceiling> {
    let options = &harness.options;
    let schema = db.schema().await?;
    let script = match &options.pgbench_script {
        Some(path) => path.clone(),
        None if !(schema.due_at && schema.claim_token) => {
            return Ok(Ceiling::Skipped(
                "this tree's scheduled_posts has no due_at / claim_token / claimed_at; \
                 pass --pgbench-script with statements it has"
                    .into(),
            ));
        }
        None => {
            let path = options.log_dir.join("ceiling.pgbench");
            std::fs::write(&path, builtin_script()).with_context(|| format!("cannot write {}", path.display()))?;
            path
        }
    };
    db.connect_users(options.users, &harness.cipher).await?;
    // Due a minute ago, so every claim's `due_at <= now()` holds.
    db.insert_herd(schema, options.posts, options.users, Utc::now() - chrono::Duration::minutes(1)).await?;
    db.analyze().await?;
    pgbench(&db.url, &script, options.posts, options.pgbench_secs).await.map(Ceiling::Measured)
}

async fn pgbench(url: &str, script: &PathBuf, posts: u64, secs: u64) -> anyhow::Result<f64> {
    let mut command = Command::new("pgbench");
    command
        .args(["-c", &CLIENTS.to_string(), "-j", &THREADS.to_string(), "-T", &secs.to_string(), "-n"])
        .arg("-D")
        .arg(format!("posts={posts}"))
        .arg("-f")
        .arg(script)
        .arg(url);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .context("the pgbench task panicked")?
        .context("cannot run pgbench (Debian: apt-get install -y postgresql-client)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("pgbench failed ({}):\n{stdout}{stderr}", output.status);
    }
    // A script whose statements fail still "succeeds" when pgbench is told to continue; any
    // failed transaction makes the number meaningless.
    if let Some(line) = stdout.lines().find(|l| l.starts_with("number of failed transactions:")) {
        let failed = line.split(':').nth(1).and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok());
        if failed != Some(0) {
            bail!("pgbench reported {line}");
        }
    }
    parse_tps(&stdout).with_context(|| format!("no tps line in pgbench's output:\n{stdout}{stderr}"))
}

/// The rate from pgbench's `tps = 2301.5 (without initial connection time)` line.
fn parse_tps(output: &str) -> Option<f64> {
    output.lines().find_map(|line| line.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tps_is_read_from_pgbench_output() {
        let output = "latency average = 3.4 ms\ninitial connection time = 9.1 ms\n\
                      tps = 2301.512345 (without initial connection time)\n";
        assert_eq!(parse_tps(output), Some(2301.512345));
        assert_eq!(parse_tps("nothing"), None);
    }

    #[test]
    fn builtin_script_addresses_posts_like_the_fixture() {
        let script = builtin_script();
        assert!(script.contains("lpad(:n::text, 7, '0')"));
        assert!(script.starts_with("\\set n random(1, :posts)\n"));
    }
}
