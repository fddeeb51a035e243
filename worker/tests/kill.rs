//! Crash safety (DESIGN §12) with real `worker` processes: one is SIGKILLed in the middle of a
//! herd, with X answering slowly so that it dies holding attempts that have sent their request
//! and attempts that have not. Another process takes over. Nothing is sent twice, nothing is left
//! waiting, and the only posts Herald cannot vouch for are the ones the dead process had on the
//! wire, which become `unknown` rather than being sent again.

use std::time::Duration;

use tests::{Fake, TestApp, wait_until};

/// Jobs each worker process runs at once.
const CONCURRENCY: usize = 8;

fn start_worker(app: &TestApp, name: &str) -> tests::WorkerProcess {
    tests::worker_process(app, env!("CARGO_BIN_EXE_worker"), &format!("kill-{name}"), &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_herd_sends_nothing_twice_and_leaves_nothing_waiting() {
    let app = TestApp::spawn_api_only(|env| {
        env.insert("WORKER_CONCURRENCY".into(), CONCURRENCY.to_string());
        env.insert("PUBLISH_STALE_AFTER_SECS".into(), "5".into());
    })
    .await;
    for i in 0..10 {
        app.connect_x(&format!("kill-{i}")).await;
    }
    app.x.set_tweet_delay(Duration::from_millis(300));
    let posts = 400;
    app.insert_x_posts("kill", posts, chrono::Utc::now() + chrono::Duration::seconds(2), 0).await;

    let mut first = start_worker(&app, "first");
    wait_until(Duration::from_secs(60), "the first worker to send 60 posts", || async {
        (app.x.requests_to("/2/tweets").len() >= 60).then_some(())
    })
    .await;
    first.kill().expect("SIGKILL the first worker");
    first.wait().expect("reap the first worker");
    let sent_by_first = app.x.requests_to("/2/tweets").len();

    let mut second = start_worker(&app, "second");
    let statuses = wait_until(Duration::from_secs(120), "every post to be final", || async {
        let statuses = app.posts_by_status().await;
        let open: i64 = ["pending", "retrying", "publishing"].iter().filter_map(|s| statuses.get(*s)).sum();
        (open == 0).then_some(statuses)
    })
    .await;
    second.kill().expect("stop the second worker");
    second.wait().expect("reap the second worker");

    // Every post final, and the second worker did most of the work (it was not already done).
    eprintln!("statuses after the kill: {statuses:?}; the first worker had sent {sent_by_first}");
    let posted = statuses.get("posted").copied().unwrap_or(0);
    let unknown = statuses.get("unknown").copied().unwrap_or(0);
    assert_eq!(posted + unknown, i64::from(posts), "{statuses:?}");
    assert!(sent_by_first < posts as usize / 2, "the first worker sent {sent_by_first} before it died");
    // Nothing was sent twice: every attempt the dead process had made was either finished by it or
    // resolved as unknown, never resent.
    let texts = app.x.texts_received();
    assert!(texts.values().all(|n| *n == 1), "a post was sent twice: {texts:?}");
    // Unknown posts are the ones the dead process held past their point of no return: at most
    // one per concurrent job, each with its `sending` phase saved. X may or may not have received
    // each (that is why it is unknown). The kill came within a poll (50 ms) of X receiving a
    // request it answers after 300 ms, so at least that one was on the wire.
    assert!((1..=CONCURRENCY as i64).contains(&unknown), "{unknown} unknown posts, concurrency {CONCURRENCY}");
    let rows = app.query("SELECT post_content, status, publish_phase FROM scheduled_posts").await;
    let mut seen_unknown = 0;
    for row in &rows {
        let content: String = row.try_get("", "post_content").expect("content");
        let status: String = row.try_get("", "status").expect("status");
        let phase: Option<String> = row.try_get("", "publish_phase").expect("phase");
        if status == "unknown" {
            assert_eq!(phase.as_deref(), Some("sending"), "{content}");
            seen_unknown += usize::from(texts.contains_key(&content));
        } else {
            assert_eq!(texts.get(&content), Some(&1), "{content} is {status}");
        }
    }
    assert!(seen_unknown >= 1, "no unknown post had reached X");
    // Nothing else reached X.
    assert_eq!(texts.len(), posted as usize + seen_unknown);
    app.stop().await;
}
