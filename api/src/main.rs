//! `api`: the HTTP API (`serve`, the default), and the operator commands `migrate`, `openapi`
//! and `token`. A shim over the library.

use std::process::ExitCode;

use anyhow::{Context, bail};
use shared::{App, app::Schema, config::Settings, telemetry};

const USAGE: &str =
    "usage: api [serve] | api migrate | api openapi | api token USER_ID [--ttl 1h] | api rotate-keys [--batch 500]";

#[tokio::main]
async fn main() -> ExitCode {
    match command(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("api: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn command(args: Vec<String>) -> anyhow::Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["serve"] => serve().await,
        ["migrate"] => {
            let settings = Settings::from_env()?;
            telemetry::init(settings.log_format);
            App::start(settings, Schema::Migrate).await?;
            println!("migrations applied");
            Ok(())
        }
        ["openapi"] => {
            print!("{}", api::openapi_yaml());
            Ok(())
        }
        ["token", user_id, rest @ ..] => {
            let ttl = match rest {
                [] => chrono::Duration::hours(1),
                ["--ttl", ttl] => parse_ttl(ttl)?,
                _ => bail!("{USAGE}"),
            };
            let settings = Settings::from_env()?;
            let keys = shared::crypto::JwtKeys::new(&settings);
            println!("{}", keys.sign(user_id, ttl));
            Ok(())
        }
        ["rotate-keys", rest @ ..] => {
            let batch = match rest {
                [] => 500,
                ["--batch", n] => n
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("--batch {n}: expected a positive number"))?,
                _ => bail!("{USAGE}"),
            };
            let settings = Settings::from_env()?;
            telemetry::init(settings.log_format);
            let app = App::start(settings, Schema::RequireCurrent).await?;
            let report = shared::keys::rotate(&app, batch).await?;
            println!(
                "rows examined: {}, secrets re-encrypted: {}, changed meanwhile (skipped): {}, undecryptable: {}",
                report.rows, report.reencrypted, report.raced, report.undecryptable
            );
            if report.undecryptable > 0 {
                bail!(
                    "{} stored secrets could not be decrypted with any configured key; they were left unchanged",
                    report.undecryptable
                );
            }
            Ok(())
        }
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

async fn serve() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    telemetry::init(settings.log_format);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", settings.port))
        .await
        .with_context(|| format!("cannot listen on port {}", settings.port))?;
    api::run(settings, listener, shared::app::shutdown_signal()).await
}

/// Parses `90s`, `30m`, `1h` or `7d`.
fn parse_ttl(text: &str) -> anyhow::Result<chrono::Duration> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().with_context(|| format!("--ttl {text}: expected a number with s, m, h or d"))?;
    Ok(match unit {
        "s" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => bail!("--ttl {text}: expected a number with s, m, h or d"),
    })
}
