//! Command-line options of `herd`, parsed by hand (the workspace pins no argument parser).
//!
//! Every option has a default that reproduces the benchmark of DESIGN §11 (50,000 posts over
//! 1,000 users, 1, 2 and 4 workers, plus 2 workers at a tenth of the posts); `--quick` swaps in a
//! smoke-sized run, and any option given explicitly wins over `--quick`.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};

/// The usage text, printed by `--help` and after a malformed option.
pub const USAGE: &str = "\
usage: herd [options]

  --posts N            posts in the herd (default 50000; --quick 2000)
  --users N            users the herd is spread over, round-robin (default 1000; --quick 100)
  --workers 1,2,4      worker process counts, one herd run each (default 1,2,4; --quick 1,2)
  --small-posts N      posts of the extra 2-worker run that shows whether RSS is flat
                       (default posts/10; 0 skips it)
  --via-api            schedule the herd through POST /api/v1/posts/schedule instead of SQL
                       (needed for trees without scheduled_posts.due_at, which enqueue only there)
  --bin-dir DIR        where the api and worker binaries are
                       (default $CARGO_TARGET_DIR/release, else /var/tmp/herald-target/release)
  --quick              a small smoke run (sizes above, pgbench 3 s, 120 s timeout)
  --timeout-secs S     give up on a herd S seconds after its due time (default 600)
  --stall-secs S       stop a herd when nothing moved for S seconds (default 60)
  --lead-secs S        seconds between the workers being ready and the herd's due time (default 5)
  --pgbench-secs S     length of the ceiling run (default 10)
  --pgbench-script F   pgbench script to use instead of the built-in claim + result
                       (variables: :posts = number of posts; post ids are bench-0000001 ...)
  --skip-ceiling       do not run pgbench
  --skip-api           do not measure the API scheduling rate
  --env KEY=VALUE      extra environment for the api and worker processes (repeatable)
  --admin-url URL      PostgreSQL database to create and drop the bench databases from
                       (default postgres://postgres@127.0.0.1:5432/test)
  --redis-url URL      Redis (default redis://127.0.0.1:6379)
  --log-dir DIR        where process logs go (default /var/tmp/herd-logs/<run id>)
  --scheduling         instead of a herd, measure scheduling: one request of 1,000 posts
                       x 3 platforms, and 100 concurrent requests of 10 posts
  --limits             instead of a herd, measure the rate limiter's cost: authenticated
                       GETs with the limiter off (the ceiling) and on
  --media              instead of a herd, time each media flow against the sandbox's fakes
                       (needs the sandbox binary in --bin-dir) and the worker's memory while
                       it posts a 200 MB video
  --clean              drop every herald_bench_* database and herald-bench-* key left by
                       interrupted runs, then exit
";

/// What one invocation of `herd` does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Posts in each full-size herd.
    pub posts: u64,
    /// Users the posts are spread over.
    pub users: u64,
    /// Worker process counts, one full-size herd each.
    pub workers: Vec<usize>,
    /// Posts of the extra 2-worker run; 0 skips it.
    pub small_posts: u64,
    /// Schedule herds through the API instead of inserting them with SQL.
    pub via_api: bool,
    /// Directory holding the `api` and `worker` binaries.
    pub bin_dir: PathBuf,
    /// How long after its due time a herd may take.
    pub timeout: Duration,
    /// How long a herd may show no progress before it is called stalled.
    pub stall: Duration,
    /// Time between the workers being ready and the herd's due time.
    pub lead: Duration,
    /// Length of the pgbench run.
    pub pgbench_secs: u64,
    /// A pgbench script replacing the built-in one.
    pub pgbench_script: Option<PathBuf>,
    /// Skip the pgbench ceiling.
    pub skip_ceiling: bool,
    /// Skip the API scheduling rate.
    pub skip_api: bool,
    /// Extra environment for the Herald processes.
    pub extra_env: Vec<(String, String)>,
    /// Admin database URL (CREATE / DROP DATABASE run there).
    pub admin_url: String,
    /// Redis URL.
    pub redis_url: String,
    /// Where the logs of this invocation go.
    pub log_dir: PathBuf,
    /// Clean up leftovers of interrupted runs and exit.
    pub clean: bool,
    /// Measure scheduling instead of a herd.
    pub scheduling: bool,
    /// Measure the rate limiter's cost instead of a herd.
    pub limits: bool,
    /// Measure the media flows instead of a herd.
    pub media: bool,
}

impl Options {
    /// Parses the arguments after the program name. `Ok(None)` means `--help` was asked for.
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Option<Self>> {
        let mut raw = Raw::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--help" | "-h" => return Ok(None),
                "--posts" => raw.posts = Some(number(&arg, &value()?)?),
                "--users" => raw.users = Some(number(&arg, &value()?)?),
                "--workers" => raw.workers = Some(workers(&value()?)?),
                "--small-posts" => raw.small_posts = Some(number(&arg, &value()?)?),
                "--via-api" => raw.via_api = true,
                "--bin-dir" => raw.bin_dir = Some(PathBuf::from(value()?)),
                "--quick" => raw.quick = true,
                "--timeout-secs" => raw.timeout = Some(number(&arg, &value()?)?),
                "--stall-secs" => raw.stall = Some(number(&arg, &value()?)?),
                "--lead-secs" => raw.lead = Some(number(&arg, &value()?)?),
                "--pgbench-secs" => raw.pgbench_secs = Some(number(&arg, &value()?)?),
                "--pgbench-script" => raw.pgbench_script = Some(PathBuf::from(value()?)),
                "--skip-ceiling" => raw.skip_ceiling = true,
                "--skip-api" => raw.skip_api = true,
                "--env" => {
                    let pair = value()?;
                    let (key, val) =
                        pair.split_once('=').with_context(|| format!("--env {pair}: expected KEY=VALUE"))?;
                    raw.extra_env.push((key.to_owned(), val.to_owned()));
                }
                "--admin-url" => raw.admin_url = Some(value()?),
                "--redis-url" => raw.redis_url = Some(value()?),
                "--log-dir" => raw.log_dir = Some(PathBuf::from(value()?)),
                "--clean" => raw.clean = true,
                "--scheduling" => raw.scheduling = true,
                "--limits" => raw.limits = true,
                "--media" => raw.media = true,
                other => bail!("unknown option {other}\n\n{USAGE}"),
            }
        }
        raw.resolve().map(Some)
    }
}

/// Options as given, before defaults (so an explicit value beats `--quick` in any order).
#[derive(Debug, Default)]
struct Raw {
    posts: Option<u64>,
    users: Option<u64>,
    workers: Option<Vec<usize>>,
    small_posts: Option<u64>,
    via_api: bool,
    bin_dir: Option<PathBuf>,
    quick: bool,
    timeout: Option<u64>,
    stall: Option<u64>,
    lead: Option<u64>,
    pgbench_secs: Option<u64>,
    pgbench_script: Option<PathBuf>,
    skip_ceiling: bool,
    skip_api: bool,
    extra_env: Vec<(String, String)>,
    admin_url: Option<String>,
    redis_url: Option<String>,
    log_dir: Option<PathBuf>,
    clean: bool,
    scheduling: bool,
    limits: bool,
    media: bool,
}

impl Raw {
    fn resolve(self) -> anyhow::Result<Options> {
        let quick = self.quick;
        let posts = self.posts.unwrap_or(if quick { 2_000 } else { 50_000 });
        let users = self.users.unwrap_or(if quick { 100 } else { 1_000 });
        if posts == 0 || users == 0 {
            bail!("--posts and --users must be positive");
        }
        let bin_dir = self.bin_dir.unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .filter(|dir| !dir.is_empty())
                .map_or_else(|| PathBuf::from("/var/tmp/herald-target"), PathBuf::from);
            target.join("release")
        });
        let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        Ok(Options {
            posts,
            users,
            workers: self.workers.unwrap_or_else(|| if quick { vec![1, 2] } else { vec![1, 2, 4] }),
            small_posts: self.small_posts.unwrap_or(posts / 10),
            via_api: self.via_api,
            bin_dir,
            timeout: Duration::from_secs(self.timeout.unwrap_or(if quick { 120 } else { 600 })),
            stall: Duration::from_secs(self.stall.unwrap_or(60)),
            lead: Duration::from_secs(self.lead.unwrap_or(5)),
            pgbench_secs: self.pgbench_secs.unwrap_or(if quick { 3 } else { 10 }),
            pgbench_script: self.pgbench_script,
            skip_ceiling: self.skip_ceiling,
            skip_api: self.skip_api,
            extra_env: self.extra_env,
            admin_url: self.admin_url.unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into()),
            redis_url: self.redis_url.unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            log_dir: self.log_dir.unwrap_or_else(|| PathBuf::from("/var/tmp/herd-logs").join(run_id)),
            clean: self.clean,
            scheduling: self.scheduling,
            limits: self.limits,
            media: self.media,
        })
    }
}

fn number(option: &str, text: &str) -> anyhow::Result<u64> {
    text.replace('_', "").parse().with_context(|| format!("{option} {text}: expected a whole number"))
}

fn workers(text: &str) -> anyhow::Result<Vec<usize>> {
    let counts = text
        .split(',')
        .map(|part| part.trim().parse::<usize>().ok().filter(|n| *n > 0))
        .collect::<Option<Vec<_>>>()
        .with_context(|| format!("--workers {text}: expected positive numbers separated by commas"))?;
    if counts.is_empty() {
        bail!("--workers needs at least one count");
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        Options::parse(args.iter().map(|a| a.to_string())).expect("parses").expect("not --help")
    }

    #[test]
    fn defaults_are_the_design_benchmark() {
        let options = parse(&[]);
        assert_eq!((options.posts, options.users, options.small_posts), (50_000, 1_000, 5_000));
        assert_eq!(options.workers, vec![1, 2, 4]);
    }

    #[test]
    fn explicit_values_beat_quick_in_any_order() {
        let options = parse(&["--posts", "10000", "--quick", "--small-posts", "2000"]);
        assert_eq!((options.posts, options.users, options.small_posts), (10_000, 100, 2_000));
        assert_eq!(options.workers, vec![1, 2]);
    }

    #[test]
    fn malformed_worker_lists_are_refused() {
        assert!(Options::parse(["--workers".to_string(), "1,x".to_string()]).is_err());
        assert!(Options::parse(["--workers".to_string(), "0".to_string()]).is_err());
    }
}
