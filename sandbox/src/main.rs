//! `sandbox`: starts the fake platforms and prints the environment that points Herald at them
//! (see the crate's library and README.md); `--print-env` prints that environment only.

use std::io::Write;

use sandbox::{Command, Sandbox, USAGE, env_for, exports};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Command::parse(std::env::args().skip(1))? {
        Command::Help => print!("{USAGE}"),
        Command::PrintEnv(options) => print!("{}", exports(&env_for(&options))),
        Command::Run(options) => {
            let sandbox = Sandbox::start(&options, true).await?;
            eprint!("{}", sandbox.summary(&options));
            let mut stdout = std::io::stdout().lock();
            write!(stdout, "{}", exports(&sandbox.env()))?;
            writeln!(stdout, "# sandbox ready: Ctrl-C stops it")?;
            stdout.flush()?;
            drop(stdout);
            stopped().await?;
            eprintln!("sandbox stopped");
        }
    }
    Ok(())
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
async fn stopped() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = term.recv() => Ok(()),
    }
}
