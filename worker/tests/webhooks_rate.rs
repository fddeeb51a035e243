//! Delivery throughput: a burst of webhook events delivered to a local receiver by two real
//! `worker` processes. Prints deliveries per second (the figure in ARCHITECTURE.md) and checks
//! that each event arrived exactly once, signed.

use std::{collections::HashSet, time::Duration};

use serde_json::json;
use tests::{
    TestApp, wait_until,
    webhook_receiver::{Receiver, verify},
};

const EVENTS: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_deliver_a_burst_once_each() {
    let app = TestApp::spawn_api_only(|env| {
        env.insert("WORKER_CONCURRENCY".into(), "16".into());
    })
    .await;
    let receiver = Receiver::start().await;
    let (status, created) = app.post("alice", "/api/v1/webhooks", &json!({"url": receiver.url})).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    // A burst of outbox rows, as if that many posts had just been published.
    app.exec(&format!(
        "INSERT INTO webhook_events (id, user_id, event_type, payload, created_at) \
         SELECT 'evt_bench' || g, 'alice', 'post.published', \
           json_build_object('id', 'post-' || g, 'status', 'posted'), now() \
         FROM generate_series(1, {EVENTS}) AS g"
    ))
    .await;
    let started = std::time::Instant::now();
    let _first = tests::worker_process(&app, env!("CARGO_BIN_EXE_worker"), "webhooks-rate-1", &[]);
    let _second = tests::worker_process(&app, env!("CARGO_BIN_EXE_worker"), "webhooks-rate-2", &[]);
    wait_until(Duration::from_secs(180), "every event to be delivered", || async {
        let rows = app.query("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status = 'succeeded'").await;
        (rows[0].try_get::<i64>("", "n").expect("n") == EVENTS as i64).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    eprintln!(
        "webhooks: {EVENTS} deliveries by 2 worker processes in {:.1} s (from worker start): {:.0} deliveries/s",
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64()
    );
    let got = receiver.deliveries();
    let ids: HashSet<&String> = got.iter().map(|d| &d.headers["webhook-id"]).collect();
    assert_eq!((got.len(), ids.len()), (EVENTS, EVENTS), "each event once");
    assert!(got.iter().all(|d| verify(&secret, d) == 1));
    app.stop().await;
}
