//! A real `worker` process killed in the middle of a webhook delivery (the receiver holds the
//! request, never answering): the delivery is not lost. Once the dead attempt's claim is stale
//! (`WEBHOOK_TIMEOUT_SECS` + 5 s), another worker process delivers it again, with the same
//! `webhook-id` and a valid signature.

use std::time::Duration;

use serde_json::json;
use tests::{
    Fake, TestApp, wait_until,
    webhook_receiver::{Receiver, verify},
};

fn start_worker(app: &TestApp, name: &str) -> tests::WorkerProcess {
    tests::worker_process(app, env!("CARGO_BIN_EXE_worker"), &format!("webhooks-kill-{name}"), &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delivery_is_followed_by_a_redelivery_with_the_same_id() {
    let app = TestApp::spawn_api_only(|env| {
        env.insert("WEBHOOK_TIMEOUT_SECS".into(), "2".into());
        env.insert("WEBHOOK_RETRY_SCALE".into(), "0.0001".into());
    })
    .await;
    let receiver = Receiver::start().await;
    let (status, created) = app.post("alice", "/api/v1/webhooks", &json!({"url": receiver.url})).await;
    assert_eq!(status, 201, "{created}");
    let webhook = created["webhook"]["id"].as_str().expect("id").to_owned();
    let secret = created["secret"].as_str().expect("secret").to_owned();

    receiver.hold("POST", "/hook");
    let (status, ping) = app.post("alice", &format!("/api/v1/webhooks/{webhook}/test"), &json!({})).await;
    assert_eq!(status, 202, "{ping}");
    let mut first = start_worker(&app, "first");
    let held = receiver.wait_held(Duration::from_secs(30)).await;
    first.kill().expect("SIGKILL the first worker");
    first.wait().expect("reap the first worker");
    assert_eq!(held.headers["webhook-id"], ping["id"].as_str().expect("id"));
    receiver.release_all();

    let mut second = start_worker(&app, "second");
    let listed = wait_until(Duration::from_secs(60), "the delivery to succeed", || async {
        let (_, body) = app.get("alice", &format!("/api/v1/webhooks/{webhook}/deliveries")).await;
        (body["deliveries"][0]["status"] == "succeeded").then_some(body)
    })
    .await;
    second.kill().expect("stop the second worker");
    second.wait().expect("reap the second worker");

    let got = receiver.deliveries();
    assert_eq!(got.len(), 2, "the held request and the redelivery: {got:?}");
    assert!(got.iter().all(|d| d.headers["webhook-id"] == held.headers["webhook-id"]), "{got:?}");
    assert!(got.iter().all(|d| verify(&secret, d) == 1));
    // The dead attempt counted but recorded nothing; the second is the recorded success.
    let delivery = &listed["deliveries"][0];
    assert_eq!(delivery["attempt_count"], 2, "{delivery}");
    assert_eq!(delivery["attempts"].as_array().map(Vec::len), Some(1), "{delivery}");
    app.stop().await;
}
