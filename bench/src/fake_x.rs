//! A fake X that answers `POST /2/tweets` as fast as it can and records what it received.
//!
//! It is the clock of the benchmark: lateness, earliness, duplicates and throughput are all read
//! from the moments posts arrive here, since arriving at the platform is what a user sees. The
//! handler does the least it can (one atomic id, one mutex push) so the fake is never the
//! bottleneck; it speaks X API v2's wire format (`{"text": ...}` in, 201
//! `{"data": {"id", "text"}}` out) and refuses a request without a bearer token, as X does.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use anyhow::Context;
use chrono::{DateTime, Utc};
use poem::{
    EndpointExt, IntoResponse, Response, Route, Server, handler,
    http::{StatusCode, header},
    listener::{Acceptor, Listener, TcpListener},
    post,
    web::{Data, Json},
};
use serde::Deserialize;
use tokio::{sync::oneshot, task::JoinHandle};

/// One tweet as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// When the request reached the handler.
    pub at: DateTime<Utc>,
    /// The tweet's text.
    pub text: String,
}

#[derive(Debug, Default)]
struct Recorder {
    next_id: AtomicU64,
    count: AtomicUsize,
    received: Mutex<Vec<Received>>,
}

/// The running fake.
#[derive(Debug)]
pub struct FakeX {
    /// `http://127.0.0.1:<port>`: Herald's `TWITTER_API_BASE`.
    pub base_url: String,
    recorder: Arc<Recorder>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

#[derive(Debug, Deserialize)]
struct TweetBody {
    text: String,
}

#[handler]
async fn create_tweet(
    req: &poem::Request,
    Data(recorder): Data<&Arc<Recorder>>,
    Json(body): Json<TweetBody>,
) -> Response {
    let at = Utc::now();
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("Bearer "));
    if !authorized {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // X's ids are numeric strings; any unique one will do.
    let id = 1_800_000_000_000_000_000 + recorder.next_id.fetch_add(1, Ordering::Relaxed);
    let answer = serde_json::json!({ "data": { "id": id.to_string(), "text": body.text } });
    recorder.received.lock().expect("the recorder mutex is never poisoned").push(Received { at, text: body.text });
    recorder.count.fetch_add(1, Ordering::Relaxed);
    Json(answer).with_status(StatusCode::CREATED).into_response()
}

impl FakeX {
    /// Starts the fake on a free port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.context("cannot bind the fake X")?;
        let addr = acceptor
            .local_addr()
            .into_iter()
            .find_map(|addr| addr.as_socket_addr().copied())
            .context("the fake X has no socket address")?;
        let recorder = Arc::new(Recorder::default());
        let app = Route::new().at("/2/tweets", post(create_tweet)).data(recorder.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            app,
            async move {
                let _ = stopped.await;
            },
            Some(std::time::Duration::from_secs(1)),
        ));
        Ok(Self { base_url: format!("http://{addr}"), recorder, stop, server })
    }

    /// How many tweets arrived so far (cheap: no lock).
    pub fn count(&self) -> usize {
        self.recorder.count.load(Ordering::Relaxed)
    }

    /// Stops the server and returns everything it received, in arrival order.
    pub async fn stop(self) -> Vec<Received> {
        let _ = self.stop.send(());
        let _ = self.server.await;
        std::mem::take(&mut *self.recorder.received.lock().expect("the recorder mutex is never poisoned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_like_x_and_records() -> anyhow::Result<()> {
        let fake = FakeX::start().await?;
        let client = reqwest::Client::new();
        let url = format!("{}/2/tweets", fake.base_url);
        let answer = client.post(&url).bearer_auth("t").json(&serde_json::json!({ "text": "hi" })).send().await?;
        assert_eq!(answer.status().as_u16(), 201);
        let body: serde_json::Value = answer.json().await?;
        assert_eq!(body["data"]["text"], "hi");
        assert!(body["data"]["id"].as_str().is_some_and(|id| id.chars().all(|c| c.is_ascii_digit())));
        let refused = client.post(&url).json(&serde_json::json!({ "text": "no token" })).send().await?;
        assert_eq!(refused.status().as_u16(), 401);
        let received = fake.stop().await;
        assert_eq!(received.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), ["hi"]);
        Ok(())
    }
}
