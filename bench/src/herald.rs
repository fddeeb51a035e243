//! Herald as the bench sees it: two binaries, the environment they read, and the processes they
//! become.
//!
//! The bench never links Herald's crates; it runs `api migrate`, `api serve` and `worker` as real
//! processes with an explicit, cleared environment (so nothing from the caller's shell, such as a
//! `DATABASE_URL`, leaks into a run), one log file per process, and stops them the way Cloud Run
//! does: SIGTERM, a drain window, then SIGKILL. It also reads a process's resident memory from
//! `/proc`, which is how worker RSS is measured.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rand::{Rng, distr::Alphanumeric};

/// How long a stopped process may drain before it is killed.
const DRAIN_WINDOW: Duration = Duration::from_secs(30);

/// The `api` and `worker` binaries of the tree under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    api: PathBuf,
    worker: PathBuf,
}

impl Binaries {
    /// Finds both binaries in `dir`, or says which is missing and how to build it.
    pub fn find(dir: &Path) -> anyhow::Result<Self> {
        let binaries = Self { api: dir.join("api"), worker: dir.join("worker") };
        for path in [&binaries.api, &binaries.worker] {
            if !path.is_file() {
                bail!(
                    "{} does not exist: build the tree under test with `cargo build --release -p api -p worker` \
                     and pass its target's release directory with --bin-dir",
                    path.display()
                );
            }
        }
        Ok(binaries)
    }
}

/// The secrets every process of one bench invocation shares, generated fresh each time.
#[derive(Clone)]
pub struct Secrets {
    /// `AUTH_JWT_SECRET`: the bench signs its bearer tokens with it.
    pub jwt: String,
    /// `OAUTH_STATE_SECRET`.
    pub oauth_state: String,
    /// `SOCIAL_TOKEN_ENCRYPTION_KEY`: the bench encrypts the connections' tokens with it.
    pub fernet_key: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets([redacted])")
    }
}

impl Secrets {
    /// New random secrets (48 characters; Herald requires at least 32) and a new Fernet key.
    pub fn generate() -> Self {
        let random = || rand::rng().sample_iter(&Alphanumeric).take(48).map(char::from).collect::<String>();
        Self { jwt: random(), oauth_state: random(), fernet_key: fernet::Fernet::generate_key() }
    }
}

/// One Herald deployment under test: a database, a Redis key prefix and a fake X, shared by the
/// api and every worker of a run.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The binaries to run.
    pub binaries: Binaries,
    /// The secrets.
    pub secrets: Secrets,
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `REDIS_URL`.
    pub redis_url: String,
    /// `HERALD_QUEUE_PREFIX`.
    pub queue_prefix: String,
    /// Base URL of the fake X (`TWITTER_API_BASE`, and the token and authorize URLs under it).
    pub fake_x: String,
    /// Extra variables from `--env`, applied last.
    pub extra_env: Vec<(String, String)>,
    /// Directory of the process logs.
    pub log_dir: PathBuf,
}

impl Deployment {
    /// The environment of every Herald process of this deployment. `backend_port` is the api's
    /// port when one runs; workers only need `BACKEND_URL` to be well formed.
    fn environment(&self, backend_port: u16) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", self.database_url.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            ("HERALD_QUEUE_PREFIX", self.queue_prefix.clone()),
            ("AUTH_JWT_SECRET", self.secrets.jwt.clone()),
            ("OAUTH_STATE_SECRET", self.secrets.oauth_state.clone()),
            ("SOCIAL_TOKEN_ENCRYPTION_KEY", self.secrets.fernet_key.clone()),
            ("BACKEND_URL", format!("http://127.0.0.1:{backend_port}")),
            ("TWITTER_CLIENT_ID", "herd-client".into()),
            ("TWITTER_CLIENT_SECRET", "herd-client-secret".into()),
            ("TWITTER_API_BASE", self.fake_x.clone()),
            ("TWITTER_TOKEN_URL", format!("{}/2/oauth2/token", self.fake_x)),
            ("TWITTER_AUTH_URL", format!("{}/i/oauth2/authorize", self.fake_x)),
            ("WORKER_POLL_INTERVAL_MS", "100".into()),
            // Herds come from a few users: the limiter stays in the path (its cost is measured)
            // but never refuses.
            ("RATE_LIMIT_PER_MIN", "10000000".into()),
            ("RATE_LIMIT_BURST", "10000000".into()),
            ("RUST_LOG", "warn".into()),
            ("LOG_FORMAT", "text".into()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        env.extend(self.extra_env.iter().cloned());
        env
    }

    fn command(&self, binary: &Path, backend_port: u16) -> Command {
        let mut command = Command::new(binary);
        command.env_clear().envs(self.environment(backend_port)).stdin(Stdio::null());
        command
    }

    /// Runs `api migrate` and waits for it; its output is in the error when it fails.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let mut command = self.command(&self.binaries.api, 9);
        command.arg("migrate");
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .context("the migrate task panicked")?
            .context("cannot run `api migrate`")?;
        if !output.status.success() {
            bail!(
                "`api migrate` failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Starts `api serve` on `port`, logging to `<log dir>/<name>.log`.
    pub fn spawn_api(&self, name: &str, port: u16) -> anyhow::Result<Process> {
        let mut command = self.command(&self.binaries.api, port);
        command.arg("serve").env("PORT", port.to_string());
        Process::spawn(name, command, &self.log_dir)
    }

    /// Starts one `worker`, logging to `<log dir>/<name>.log`.
    pub fn spawn_worker(&self, name: &str) -> anyhow::Result<Process> {
        Process::spawn(name, self.command(&self.binaries.worker, 9), &self.log_dir)
    }
}

/// A running Herald process. Dropping it kills the process if it still runs, so an error path
/// never leaves one behind; [`Process::stop`] is the graceful way.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &str, mut command: Command, log_dir: &Path) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let file = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = command
            .stdout(Stdio::from(file.try_clone().context("cannot share the log file")?))
            .stderr(Stdio::from(file))
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", command.get_program().to_string_lossy()))?;
        Ok(Self { name: name.to_owned(), child, log })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its name in progress lines and log file names.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM, waits for the drain, and kills the process if it outlives the window.
    /// Returns whether it exited by itself.
    pub async fn stop(&mut self) -> bool {
        if self.exited().is_some() {
            return true;
        }
        // std offers only SIGKILL; `kill` sends the SIGTERM that Herald drains on.
        let signalled =
            Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().is_ok_and(|s| s.success());
        if signalled {
            let deadline = Instant::now() + DRAIN_WINDOW;
            while Instant::now() < deadline {
                if self.exited().is_some() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    /// The last `lines` lines of its log that mention an error or warning, ANSI colours removed.
    pub fn log_problems(&self, lines: usize) -> Vec<String> {
        problems(&self.log, lines)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last `lines` error or warning lines of a log file, without ANSI colours.
pub fn problems(log: &Path, lines: usize) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let found: Vec<String> =
        text.lines().map(strip_ansi).filter(|line| line.contains("ERROR") || line.contains("WARN")).collect();
    found[found.len().saturating_sub(lines)..].to_vec()
}

/// Counts the lines of a log file containing `needle` (ANSI colours removed).
pub fn count_lines(log: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|line| strip_ansi(line).contains(needle)).count()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter (`\x1b[2m`, `\x1b[0m`).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A process's memory from `/proc/<pid>/status`, in KiB: `field` is `VmRSS` (now) or `VmHWM`
/// (the kernel's high-water mark of the resident set). `None` once the process is gone.
pub fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field) && line[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].split_whitespace().next()?.parse().ok()
}

/// A TCP port free right now on 127.0.0.1 (the api binds it a moment later).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr().context("cannot read the free port")?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_colours_are_stripped() {
        assert_eq!(strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m x"), "2026 ERROR x");
    }

    #[test]
    fn own_memory_is_readable() {
        let rss = memory_kib(std::process::id(), "VmRSS").expect("VmRSS of this process");
        let hwm = memory_kib(std::process::id(), "VmHWM").expect("VmHWM of this process");
        assert!(rss > 0 && hwm >= rss);
    }
}
