//! An edit racing a real `worker` process's claim (issue 8): for every post, exactly one of the
//! two wins. An edit answered 200 is what X receives; an edit answered 409 came too late and X
//! receives the original. Never both, never neither, never the old words after a 200.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::json;
use tests::{TestApp, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_edit_racing_a_claim_either_wins_or_is_refused() {
    let app = TestApp::spawn_api_only(|_| {}).await;
    for i in 0..4 {
        app.connect_x(&format!("race-{i}")).await;
    }
    let posts = 80;
    let first = Utc::now() + chrono::Duration::seconds(4);
    // Spread over four seconds, so claims happen all along the edits.
    app.insert_x_posts("race", posts, first, 50).await;
    let rows = app.query("SELECT id, user_id, due_at FROM scheduled_posts").await;
    let mut worker = tests::worker_process(&app, env!("CARGO_BIN_EXE_worker"), "edit-race", &[]);

    // One edit per post, sent around the moment its job runs: apalis runs a job in the whole
    // second after its time, so between 0.6 s before and 1.4 s after `due_at`.
    let mut edits = Vec::new();
    for row in &rows {
        let id: String = row.try_get("", "id").expect("id");
        let user: String = row.try_get("", "user_id").expect("user");
        let due: DateTime<Utc> = row.try_get("", "due_at").expect("due");
        let jitter = rand::rng().random_range(-600..1400);
        let at = due + chrono::Duration::milliseconds(jitter);
        let request = app
            .http
            .patch(app.url(&format!("/api/v1/posts/{id}")))
            .bearer_auth(app.token(&user))
            .json(&json!({"content": format!("edited {id}")}));
        edits.push(tokio::spawn(async move {
            if let Ok(wait) = (at - Utc::now()).to_std() {
                tokio::time::sleep(wait).await;
            }
            let status = request.send().await.expect("PATCH").status().as_u16();
            (id, status)
        }));
    }
    let mut answers = Vec::new();
    for edit in edits {
        answers.push(edit.await.expect("edit task"));
    }
    wait_until(Duration::from_secs(60), "every post to be posted", || async {
        let statuses = app.posts_by_status().await;
        (statuses.get("posted").copied() == Some(i64::from(posts))).then_some(())
    })
    .await;
    let _ = worker.kill();
    let _ = worker.wait();

    let texts = app.x.texts_received();
    assert!(texts.values().all(|n| *n == 1), "a post was sent twice");
    let (mut won, mut lost) = (0, 0);
    for (id, status) in &answers {
        let n: u32 = id.trim_start_matches("race-").parse().expect("number");
        let (original, edited) = (format!("race {n}"), format!("edited {id}"));
        match status {
            200 => {
                won += 1;
                assert_eq!((texts.get(&edited), texts.get(&original)), (Some(&1), None), "{id}: edit answered 200");
            }
            409 => {
                lost += 1;
                assert_eq!((texts.get(&original), texts.get(&edited)), (Some(&1), None), "{id}: edit answered 409");
            }
            other => panic!("{id}: edit answered {other}"),
        }
    }
    eprintln!("edits that won: {won}, refused: {lost}");
    // Both sides of the race happened, or the test proved nothing.
    assert!(won > 0 && lost > 0, "won {won}, lost {lost}");
    app.stop().await;
}
