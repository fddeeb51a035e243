//! Operating Herald with real `worker` processes (issue 10): the api's `/readyz` says how many
//! workers are alive and fails while none is and posts are overdue; a worker serves `/healthz`,
//! `/readyz` and `/metrics` on `PORT`; SIGTERM lets the attempt in flight finish within
//! `WORKER_SHUTDOWN_GRACE_SECS`, leaves queued posts for the next worker and exits 0, and an
//! attempt cut off by the grace period is resolved by the stale-claim rules.

use std::{
    process::{Command, ExitStatus},
    time::{Duration, Instant},
};

use chrono::Utc;
use serde_json::Value;
use tests::{Fake, TestApp, WorkerProcess, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_worker");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port()
}

async fn get(app: &TestApp, url: &str) -> Option<(u16, String)> {
    let response = app.http.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let (status, body) = get(app, &app.url("/readyz")).await.expect("the api answers /readyz");
    (status, serde_json::from_str(&body).expect("a JSON probe"))
}

fn sigterm(worker: &WorkerProcess) {
    let status = Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().expect("kill");
    assert!(status.success(), "SIGTERM sent");
}

async fn exited(worker: &mut WorkerProcess, timeout: Duration) -> ExitStatus {
    wait_until(timeout, "the worker to exit", || {
        let status = worker.try_wait().expect("try_wait");
        async move { status }
    })
    .await
}

/// `promtool check metrics` (Debian's `prometheus` package, installed by `.ci/services`) on the
/// text: Prometheus's own linter for names, types, help and units.
fn promtool_check(text: &str) {
    use std::io::Write;
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(std::env::var_os("CI").is_none(), "promtool is missing: .ci/services installs it");
        eprintln!("promtool is not installed; skipping the lint (bash .ci/services installs it)");
        return;
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write metrics");
    let output = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_counts_live_workers_and_fails_while_none_lives_and_posts_are_overdue() {
    let app = TestApp::spawn_api_only(|env| {
        env.insert("READYZ_NO_WORKER_SECS".into(), "1".into());
    })
    .await;
    app.connect_x("ops").await;

    // No worker and nothing overdue: an idle fleet scaled to zero is ready.
    let (status, probe) = readyz(&app).await;
    assert_eq!(status, 200, "{probe}");
    assert_eq!((probe["live_workers"].as_u64(), probe["overdue_posts"].as_u64()), (Some(0), Some(0)), "{probe}");

    // Posts overdue and no worker ever: not ready, with the reason.
    app.insert_x_posts("overdue", 3, Utc::now() - chrono::Duration::seconds(90), 0).await;
    let (status, probe) = readyz(&app).await;
    assert_eq!(status, 503, "{probe}");
    let detail = probe["detail"].as_str().expect("detail");
    assert!(detail.contains("no worker has been alive ever and 3 posts are overdue"), "{detail}");

    // A worker with PORT serves its own probes, publishes the backlog, and the api sees it.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut worker = tests::worker_process(&app, BIN, "ops-readyz", &[("PORT", &port.to_string())]);
    wait_until(Duration::from_secs(60), "the worker's /readyz", || async {
        get(&app, &format!("{base}/readyz")).await.filter(|(status, _)| *status == 200)
    })
    .await;
    let (status, body) = get(&app, &format!("{base}/healthz")).await.expect("healthz");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    wait_until(Duration::from_secs(90), "the overdue posts to be published", || async {
        (app.posts_by_status().await.get("posted") == Some(&3)).then_some(())
    })
    .await;
    let (status, probe) = readyz(&app).await;
    assert_eq!(status, 200, "{probe}");
    assert_eq!((probe["live_workers"].as_u64(), probe["overdue_posts"].as_u64()), (Some(1), Some(0)), "{probe}");

    // The worker's metrics: this process's counters and the fleet's gauges, lint-clean.
    let (status, metrics) = get(&app, &format!("{base}/metrics")).await.expect("metrics");
    assert_eq!(status, 200);
    for line in [
        "herald_live_workers 1",
        "herald_overdue_posts 0",
        r#"herald_posts{state="pending"} 0"#,
        r#"herald_posts{state="unknown"} 0"#,
        r#"herald_publish_jobs_total{platform="twitter",outcome="posted"} 3"#,
        r#"herald_queue_jobs{state="scheduled"}"#,
        r#"herald_queue_jobs{state="running"}"#,
        r#"herald_http_requests_total{route="/readyz",method="GET",status="200"}"#,
        "herald_publish_lateness_seconds_bucket",
        "herald_dispatch_batches_total",
        "herald_database_up 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    promtool_check(&metrics);

    // Killed: once its heartbeat is stale and a post is overdue, the api is not ready again.
    worker.kill().expect("SIGKILL the worker");
    worker.wait().expect("reap it");
    app.insert_x_posts("late", 1, Utc::now() - chrono::Duration::seconds(90), 0).await;
    let probe = wait_until(Duration::from_secs(40), "the api's /readyz to fail", || async {
        let (status, probe) = readyz(&app).await;
        (status == 503).then_some(probe)
    })
    .await;
    assert_eq!(probe["live_workers"].as_u64(), Some(0), "{probe}");
    let detail = probe["detail"].as_str().expect("detail");
    assert!(detail.contains("no worker has been alive for") && detail.contains("1 posts are overdue"), "{detail}");
    let api_metrics = get(&app, &app.url("/metrics")).await.expect("api metrics").1;
    assert!(api_metrics.contains("herald_live_workers 0") && api_metrics.contains("herald_overdue_posts 1"));
    promtool_check(&api_metrics);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_attempt_in_flight_leaves_the_rest_queued_and_exits_zero() {
    let app = TestApp::spawn_api_only(|env| {
        env.insert("WORKER_CONCURRENCY".into(), "1".into());
        env.insert("WORKER_SHUTDOWN_GRACE_SECS".into(), "20".into());
        // The job the stopping worker had fetched but not started is pushed again quickly.
        env.insert("DISPATCH_REDISPATCH_AFTER_SECS".into(), "2".into());
    })
    .await;
    app.connect_x("drain").await;
    app.x.hold("POST", "/2/tweets");
    app.insert_x_posts("drain", 2, Utc::now(), 0).await;

    let port = free_port().to_string();
    let mut first = tests::worker_process(&app, BIN, "ops-drain-first", &[("PORT", &port)]);
    app.x.wait_held(Duration::from_secs(60)).await;
    sigterm(&first);
    // Draining: its /readyz says so while the attempt is still held at X.
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let (_, body) = wait_until(Duration::from_secs(10), "the worker's /readyz to say it is draining", || async {
        get(&app, &readyz).await.filter(|(status, _)| *status == 503)
    })
    .await;
    assert!(body.contains("draining"), "{body}");
    assert_eq!(app.posts_by_status().await.get("publishing"), Some(&1), "the attempt is still in flight");
    app.x.release_all();
    let status = exited(&mut first, Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");

    // It finished the one it had started and took no other: the second is still waiting.
    let statuses = app.posts_by_status().await;
    assert_eq!((statuses.get("posted"), statuses.get("pending")), (Some(&1), Some(&1)), "{statuses:?}");
    assert_eq!(app.x.requests_to("/2/tweets").len(), 1, "the stopping worker sent only the attempt in flight");
    let beats = app.query("SELECT id FROM worker_heartbeats").await;
    assert!(beats.is_empty(), "a clean stop removes the worker's heartbeat");

    let mut second = tests::worker_process(&app, BIN, "ops-drain-second", &[]);
    wait_until(Duration::from_secs(90), "the queued post to be published", || async {
        (app.posts_by_status().await.get("posted") == Some(&2)).then_some(())
    })
    .await;
    sigterm(&second);
    assert!(exited(&mut second, Duration::from_secs(15)).await.success());
    let texts = app.x.texts_received();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts.values().all(|n| *n == 1), "sent once each: {texts:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_cut_off_by_the_grace_period_is_resolved_by_the_stale_claim_rules() {
    let app = TestApp::spawn_api_only(|env| {
        env.insert("WORKER_SHUTDOWN_GRACE_SECS".into(), "1".into());
        env.insert("PUBLISH_STALE_AFTER_SECS".into(), "2".into());
        env.insert("PLATFORM_HTTP_TIMEOUT_SECS".into(), "60".into());
    })
    .await;
    app.connect_x("cut").await;
    // X publishes the tweet; its answer never comes back.
    app.x.hold_reply("POST", "/2/tweets");
    app.insert_x_posts("cut", 1, Utc::now(), 0).await;

    let mut first = tests::worker_process(&app, BIN, "ops-cut-first", &[]);
    app.x.wait_held(Duration::from_secs(60)).await;
    let signalled = Instant::now();
    sigterm(&first);
    let status = exited(&mut first, Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(6), "exited {took:?} after SIGTERM");
    assert_eq!(app.posts_by_status().await.get("publishing"), Some(&1), "cut off mid-attempt");

    // Past its point of no return when cut: the next worker marks it unknown, never re-sends.
    let mut second = tests::worker_process(&app, BIN, "ops-cut-second", &[]);
    wait_until(Duration::from_secs(90), "the cut-off post to be resolved", || async {
        (app.posts_by_status().await.get("unknown") == Some(&1)).then_some(())
    })
    .await;
    sigterm(&second);
    assert!(exited(&mut second, Duration::from_secs(15)).await.success());
    app.x.release_all();
    assert_eq!(app.x.requests_to("/2/tweets").len(), 1, "never sent twice");
    app.stop().await;
}
