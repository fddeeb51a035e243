//! Campaign chat history: append and page through a campaign's conversation, oldest first, each
//! user seeing only their own.

use serde_json::{Value, json};
use tests::{Mode, TestApp};

async fn chat_test(mode: Mode) {
    let app = TestApp::spawn(mode).await;
    let path = "/api/v1/campaigns/spring/chat";
    let roles = ["system", "user", "assistant"];
    for i in 0..25 {
        let body = json!({"role": roles[i % 3], "message": format!("message {i}")});
        let (status, answer) = app.post("alice", path, &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!((answer["role"].as_str(), answer["campaign_id"].as_str()), (Some(roles[i % 3]), Some("spring")));
    }
    let (status, _) =
        app.post("alice", "/api/v1/campaigns/autumn/chat", &json!({"role": "user", "message": "elsewhere"})).await;
    assert_eq!(status, 200);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}?limit=10&cursor={c}"),
            None => format!("{path}?limit=10"),
        };
        let (status, page) = app.get("alice", &url).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .map(|m| m["message"].as_str().unwrap_or("").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("message {i}")).collect();
    assert_eq!(seen, expected, "oldest first, each once, only this campaign");

    for (body, status) in [
        (json!({"role": "robot", "message": "hi"}), 422),
        (json!({"role": "user", "message": "  "}), 422),
        (json!({"role": "user", "message": "x".repeat(32_001)}), 422),
        (json!({"role": "user", "message": "hi", "extra": 1}), 400),
        (json!({"role": "user"}), 400),
    ] {
        let (got, answer) = app.post("alice", path, &body).await;
        assert_eq!(got, status, "{answer}");
    }
    let (status, _) =
        app.post("alice", "/api/v1/campaigns/not%20valid/chat", &json!({"role": "user", "message": "hi"})).await;
    assert_eq!(status, 422);
    let (status, page) = app.get("alice", &format!("{path}?cursor=abc")).await;
    assert_eq!(status, 422, "{page}");
    // Bob's view of the same campaign is his own, empty, chat.
    let (status, page) = app.get("bob", path).await;
    assert_eq!((status, page["messages"].clone(), page["next_cursor"].clone()), (200, json!([]), Value::Null));
    let response = app.http.get(app.url(path)).send().await.expect("GET");
    assert_eq!(response.status().as_u16(), 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_chat_on_postgres() {
    chat_test(Mode::Production).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_chat_on_the_embedded_default() {
    chat_test(Mode::Embedded).await;
}
