//! `herd`: the publishing benchmark of Herald (DESIGN §6 and §11).
//!
//! It answers one question with numbers: when N posts of U users all fall due in the same second,
//! how fast do W worker processes publish them, how late, and at what cost, compared with what
//! PostgreSQL on this machine allows? It runs, in order:
//!
//! 1. the ceiling ([`ceiling`]): pgbench through the claim and the result of one post;
//! 2. the API scheduling rate ([`api_rate`]): `POST /api/v1/posts/schedule`, 32 in flight;
//! 3. one herd per worker count in `--workers`, plus 2 workers at a tenth of the posts
//!    ([`herd`]), each on a fresh database, Redis prefix and fake X ([`harness`], [`fake_x`]);
//!
//! and prints one markdown table ([`report`]) on stdout; progress goes to stderr. There is no
//! pass or fail: the numbers are the result.
//!
//! The bench talks to Herald only through its binaries (`--bin-dir`), its HTTP API, PostgreSQL
//! and Redis ([`herald`], [`database`], [`keys`], [`schedule`]), never through its crates, so the
//! same `herd` measures any tree: the landed code and a refactor in flight.

mod api_rate;
mod campaign;
mod ceiling;
mod database;
mod fake_x;
mod harness;
mod herald;
mod herd;
mod keys;
mod limits;
mod media;
mod options;
mod report;
mod schedule;

use std::process::ExitCode;

use harness::Harness;
use herd::Spec;
use options::{Options, USAGE};

/// Worker processes of the extra run at a tenth of the posts.
const SMALL_RUN_WORKERS: usize = 2;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let Some(options) = Options::parse(std::env::args().skip(1))? else {
        print!("{USAGE}");
        return Ok(());
    };
    let harness = Harness::new(options).await?;
    if harness.options.clean {
        return harness.clean().await;
    }
    if harness.options.scheduling {
        print!("{}", campaign::run(&harness).await?);
        return Ok(());
    }
    if harness.options.limits {
        print!("{}", limits::run(&harness).await?);
        return Ok(());
    }
    if harness.options.media {
        print!("{}", media::run(&harness).await?);
        return Ok(());
    }
    let load_before = report::Machine::load();
    eprintln!(
        "herd: binaries from {}, logs in {}",
        harness.options.bin_dir.display(),
        harness.options.log_dir.display()
    );
    let ceiling = ceiling::run(&harness).await;
    eprintln!("herd: ceiling: {ceiling:?}");
    let api = api_rate::run(&harness).await;
    if let Some(rate) = api.rate() {
        eprintln!("herd: api scheduling rate: {rate:.0} posts/s");
    }
    let mut outcomes = Vec::new();
    for spec in runs(&harness.options) {
        outcomes.push(herd::run(&harness, spec, api.rate()).await);
    }
    let machine = report::Machine {
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        load_before,
        load_after: report::Machine::load(),
    };
    print!("{}", report::render(&harness.options, &machine, &ceiling, &api, &outcomes));
    Ok(())
}

/// The herd runs: every worker count at full size, then the small run.
fn runs(options: &Options) -> Vec<Spec> {
    let mut runs: Vec<Spec> = options.workers.iter().map(|&workers| Spec { workers, posts: options.posts }).collect();
    if options.small_posts > 0 {
        runs.push(Spec { workers: SMALL_RUN_WORKERS, posts: options.small_posts });
    }
    runs
}
