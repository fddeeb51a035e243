//! `herd --media`: how long each media flow takes against the sandbox's fakes, and the worker's
//! memory while it posts a large video (issue 9, DESIGN §10 and §12).
//!
//! On one fresh PostgreSQL database and Redis prefix, the release `api serve` and one `worker`
//! are pointed at the `sandbox` binary (the five platforms' fakes and the media server, the same
//! servers the end-to-end tests use, with their default processing polls) through the
//! environment it prints. One user connects all five platforms through the fakes' consent pages,
//! as a browser would. Each flow is then published [`ROUNDS`] times, one post at a time, timed
//! from the schedule request to `posted`, and the median is kept.
//!
//! The ceiling is a text post to X in the same run: what every post pays (dispatch, the queue, a
//! claim, one platform call), so a flow's ratio to it is what its media steps and the platform's
//! processing add. A 200 MB video to X gives the worker's peak resident memory against the
//! 100 MB that DESIGN §10 allows, and its time against a plain download of the same file from the
//! media server, the most any upload of it could be.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{
    harness::{Harness, Stage},
    herald::{free_port, memory_kib},
    schedule,
};

/// Posts per flow; the median is reported.
const ROUNDS: usize = 3;
/// How long one post may take to be published.
const POST_TIMEOUT: Duration = Duration::from_secs(300);
/// The large video: DESIGN §10's figure.
const LARGE_VIDEO_BYTES: u64 = 200 * 1024 * 1024;
/// The worker's memory ceiling while posting it.
const MEMORY_CEILING_KIB: u64 = 100 * 1024;
/// Size of each video of the flows.
const VIDEO_BYTES: u64 = 20_000_000;
/// Size of each image of the flows.
const IMAGE_BYTES: u64 = 200_000;

/// One flow: a platform, its media (file names on the media server, with sizes), its options.
struct Flow {
    name: &'static str,
    platform: &'static str,
    media: Vec<(&'static str, u64)>,
    /// TikTok pulls what is under the verified prefix; `upload` names the same files another way,
    /// so Herald uploads them.
    upload: bool,
}

fn flows() -> Vec<Flow> {
    let flow =
        |name, platform, media: &[(&'static str, u64)]| Flow { name, platform, media: media.to_vec(), upload: false };
    let images = |n: usize| [("a.jpg", IMAGE_BYTES), ("b.png", IMAGE_BYTES), ("c.jpg", IMAGE_BYTES)][..n].to_vec();
    let video = [("clip.mp4", VIDEO_BYTES)];
    vec![
        flow("X: text (the ceiling)", "twitter", &[]),
        flow("X: 2 images", "twitter", &images(2)),
        flow("X: 20 MB video (chunked, processed)", "twitter", &video),
        flow("LinkedIn: 3 images (multiImage)", "linkedin", &images(3)),
        flow("LinkedIn: 20 MB video (parts, processed)", "linkedin", &video),
        flow("Instagram: image", "instagram", &images(1)),
        flow("Instagram: carousel of 3", "instagram", &images(3)),
        flow("Instagram: 20 MB reel", "instagram", &video),
        flow("Facebook: 3 photos (one feed post)", "facebook", &images(3)),
        flow("Facebook: 20 MB video", "facebook", &video),
        Flow { upload: true, ..flow("TikTok: 20 MB video uploaded (FILE_UPLOAD)", "tiktok", &video) },
        flow("TikTok: 20 MB video pulled (PULL_FROM_URL)", "tiktok", &video),
        flow("TikTok: 3 photos", "tiktok", &[("a.jpg", IMAGE_BYTES), ("b.webp", IMAGE_BYTES), ("c.jpg", IMAGE_BYTES)]),
    ]
}

/// The running `sandbox`, stopped when dropped.
struct Sandbox {
    child: Child,
    env: Vec<(String, String)>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sandbox {
    /// Starts `sandbox` from `bin_dir` on seven free ports and reads the environment it prints.
    fn start(bin_dir: &Path, log_dir: &Path) -> anyhow::Result<Self> {
        let binary = bin_dir.join("sandbox");
        if !binary.is_file() {
            bail!("{} does not exist: build it with `cargo build --release -p sandbox`", binary.display());
        }
        let port_base = free_ports(7)?;
        let log = std::fs::File::create(log_dir.join("sandbox.log")).context("cannot create the sandbox log")?;
        let mut child = Command::new(&binary)
            .args(["--port-base", &port_base.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("the sandbox's stdout")?;
        let mut sandbox = Self { child, env: Vec::new() };
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading the sandbox's environment")?;
            if line.starts_with("# sandbox ready") {
                return Ok(sandbox);
            }
            if let Some((name, value)) = line.strip_prefix("export ").and_then(|rest| rest.split_once('=')) {
                let value = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).unwrap_or(value);
                sandbox.env.push((name.to_owned(), value.replace(r"'\''", "'")));
            }
        }
        bail!("the sandbox exited before it was ready; see {}", log_dir.join("sandbox.log").display())
    }

    fn var(&self, name: &str) -> anyhow::Result<&str> {
        self.env.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str()).context(name.to_owned())
    }
}

/// The first of `n` consecutive ports free right now on 127.0.0.1.
fn free_ports(n: u16) -> anyhow::Result<u16> {
    for _ in 0..50 {
        let base = free_port()?;
        if base.checked_add(n).is_some() && (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return Ok(base);
        }
    }
    bail!("no {n} consecutive free ports found")
}

/// The api as the one user of the run.
struct User {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl User {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = request.send().await.with_context(|| path.to_owned())?;
        let status = answer.status().as_u16();
        Ok((status, answer.json().await.unwrap_or(Value::Null)))
    }

    /// Connects `platform` as a browser does: initiate, Allow on the fake's consent page (its form
    /// posts the authorize request's parameters back with the decision), then the callback.
    async fn connect(&self, platform: &str) -> anyhow::Result<()> {
        let (status, body) = self
            .call(reqwest::Method::POST, "/api/v1/auth/social/initiate", Some(&json!({"platform": platform})))
            .await?;
        let oauth_url = body["oauth_url"].as_str().with_context(|| format!("initiate {platform}: {status} {body}"))?;
        let url = reqwest::Url::parse(oauth_url).context("oauth_url")?;
        let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        form.push(("sandbox_decision".into(), "allow".into()));
        let mut action = url.clone();
        action.set_query(None);
        let consent = self.http.post(action).form(&form).send().await.context("consent")?;
        let callback = consent
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .with_context(|| format!("{platform}'s consent answered {} without a redirect", consent.status()))?;
        let page = self.http.get(callback).send().await.context("callback")?;
        if page.status() != 200 {
            bail!("{platform}'s callback answered {}", page.status());
        }
        Ok(())
    }

    /// Schedules one post due now and waits until it is published; how long that took.
    async fn publish(&self, platform: &str, content: &str, media: &[String]) -> anyhow::Result<Duration> {
        let body = json!({"campaign_id": "media-bench", "platforms": [platform], "content": content,
            "media_urls": media, "scheduled_time": chrono::Utc::now().to_rfc3339()});
        let started = Instant::now();
        let (status, answer) = self.call(reqwest::Method::POST, "/api/v1/posts/schedule", Some(&body)).await?;
        let id = answer["posts"][0]["id"].as_str().with_context(|| format!("schedule: {status} {answer}"))?;
        let path = format!("/api/v1/posts/{id}");
        loop {
            let (_, post) = self.call(reqwest::Method::GET, &path, None).await?;
            match post["status"].as_str() {
                Some("posted") => return Ok(started.elapsed()),
                Some("failed" | "unknown") => {
                    bail!("{platform} post {id} ended {}: {}", post["status"], post["posting_error"])
                }
                _ if started.elapsed() > POST_TIMEOUT => {
                    bail!("{platform} post {id} still {} after {POST_TIMEOUT:?}", post["status"])
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// What one flow measured.
struct Measured {
    name: &'static str,
    bytes: u64,
    median: Duration,
    rounds: Vec<Duration>,
}

async fn measure(user: &User, flow: &Flow, media_base: &str) -> anyhow::Result<Measured> {
    let base = if flow.upload { media_base.replacen("127.0.0.1", "localhost", 1) } else { media_base.to_owned() };
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        // New names each round, so that no platform sees the same file twice.
        let media: Vec<String> =
            flow.media.iter().map(|(name, bytes)| format!("{base}r{round}-{name}?bytes={bytes}")).collect();
        rounds.push(user.publish(flow.platform, &format!("{} #{round}", flow.name), &media).await?);
    }
    let mut sorted = rounds.clone();
    sorted.sort();
    let median = sorted[ROUNDS / 2];
    let bytes = flow.media.iter().map(|(_, bytes)| bytes).sum();
    eprintln!("herd: media: {}: median {:.2} s", flow.name, median.as_secs_f64());
    Ok(Measured { name: flow.name, bytes, median, rounds })
}

/// A plain download of `url`, the bytes counted and dropped: the fastest the file can be read.
async fn download(url: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut answer = reqwest::get(url).await.context("download")?;
    let mut bytes = 0u64;
    while let Some(chunk) = answer.chunk().await.context("download chunk")? {
        bytes += chunk.len() as u64;
    }
    anyhow::ensure!(bytes == LARGE_VIDEO_BYTES, "downloaded {bytes} bytes");
    Ok(started.elapsed())
}

/// Runs the flows and the large video, and renders the tables.
pub async fn run(harness: &Harness) -> anyhow::Result<String> {
    let sandbox = Sandbox::start(&harness.options.bin_dir, &harness.options.log_dir)?;
    let mut stage = harness.stage().await?;
    let result = measure_all(harness, &mut stage, &sandbox).await;
    stage.teardown(harness).await;
    drop(sandbox);
    result
}

async fn measure_all(harness: &Harness, stage: &mut Stage, sandbox: &Sandbox) -> anyhow::Result<String> {
    let media_base = sandbox.var("TIKTOK_VERIFIED_URL_PREFIXES")?.to_owned();
    stage.deployment.extra_env.extend(sandbox.env.iter().cloned());
    // The flows post more often than the platforms' per-account budgets allow; the budgets are
    // measured elsewhere (worker/tests/media_kill.rs), not here.
    stage.deployment.extra_env.push(("TIKTOK_INITS_PER_MIN".into(), "0".into()));
    stage.deployment.extra_env.push(("PLATFORM_HTTP_TIMEOUT_SECS".into(), "120".into()));
    let client = schedule::start_api(harness, stage, 1, "media-api").await?;
    let user = User {
        // Redirects are the consent flow's steps, followed by hand.
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client")?,
        base: client.base().to_owned(),
        token: client.token(0).context("the user's token")?.to_owned(),
    };
    for platform in ["twitter", "linkedin", "instagram", "facebook", "tiktok"] {
        user.connect(platform).await?;
    }
    let (status, body) = user
        .call(reqwest::Method::POST, "/api/v1/auth/social/pages/facebook", Some(&json!({"page_id": "101"})))
        .await?;
    anyhow::ensure!(status == 200, "choosing the Facebook Page: {status} {body}");
    let worker = stage.deployment.spawn_worker("media-worker")?;
    let pid = worker.pid();
    stage.workers.push(worker);

    let mut measured = Vec::new();
    for flow in flows() {
        measured.push(measure(&user, &flow, &media_base).await?);
    }
    let large = format!("{media_base}large.mp4?bytes={LARGE_VIDEO_BYTES}");
    let before_kib = memory_kib(pid, "VmHWM").context("the worker's memory")?;
    let large_took = user.publish("twitter", "a 200 MB video", std::slice::from_ref(&large)).await?;
    let peak_kib = memory_kib(pid, "VmHWM").context("the worker's memory")?;
    let plain = download(&large).await?;
    Ok(render(&measured, before_kib, peak_kib, large_took, plain))
}

fn render(measured: &[Measured], before_kib: u64, peak_kib: u64, large: Duration, plain: Duration) -> String {
    let ceiling = measured[0].median;
    let secs = |d: Duration| format!("{:.2}", d.as_secs_f64());
    let mut table = format!(
        "**media flows:** release api + 1 worker on PostgreSQL + Redis against the sandbox's fakes (default \
         processing polls), one post at a time, median of {ROUNDS}\n\n\
         | flow | media | median s | rounds s | ratio to a text post |\n|---|---|---|---|---|\n"
    );
    for flow in measured {
        let rounds: Vec<String> = flow.rounds.iter().map(|d| secs(*d)).collect();
        table.push_str(&format!(
            "| {} | {:.1} MB | {} | {} | {:.1} |\n",
            flow.name,
            flow.bytes as f64 / 1e6,
            secs(flow.median),
            rounds.join(", "),
            flow.median.as_secs_f64() / ceiling.as_secs_f64()
        ));
    }
    table.push_str(&format!(
        "\n**200 MB video to X:** posted in {} s; a plain download of the same file took {} s (ratio {:.1}). \
         Worker peak RSS {:.1} MB (before it {:.1} MB) = {:.2} of the {} MB ceiling.\n",
        secs(large),
        secs(plain),
        large.as_secs_f64() / plain.as_secs_f64(),
        peak_kib as f64 / 1024.0,
        before_kib as f64 / 1024.0,
        peak_kib as f64 / MEMORY_CEILING_KIB as f64,
        MEMORY_CEILING_KIB / 1024
    ));
    table
}
