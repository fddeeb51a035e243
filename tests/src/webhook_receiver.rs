//! A webhook receiver for tests: a poem server on a loopback port that records every delivery
//! (headers and body, through the shared [`Recorder`], so a test can `hold` one) and answers
//! with scripted status codes and delays, 200 by default.
//!
//! [`verify`] checks a delivery's signatures with an implementation of its own, written from
//! the Standard Webhooks specification's text: the signed content is `{webhook-id}.{webhook-
//! timestamp}.{body}`, the key is the base64-decoded part of the secret after `whsec_`, the
//! signature is base64 of HMAC-SHA256, and `webhook-signature` is a space-separated list of
//! `v1,<signature>`. It does not use Herald's signing code.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use poem::{EndpointExt, Response, Route, handler, http::StatusCode, web::Data};
use sha2::Sha256;

use crate::{Fake, RecordedRequest, Recorder, serve_fake};

type Script = Arc<Mutex<VecDeque<(u16, Duration)>>>;

/// The receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:{port}/hook`.
    pub url: String,
    recorder: Recorder,
    script: Script,
}

#[handler]
async fn hook(script: Data<&Script>) -> Response {
    let next = script.lock().expect("script").pop_front();
    let (status, delay) = next.unwrap_or((200, Duration::ZERO));
    tokio::time::sleep(delay).await;
    Response::builder().status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK)).body("ok")
}

impl Receiver {
    /// Starts a receiver on a free loopback port.
    pub async fn start() -> Self {
        let recorder = Recorder::default();
        let script: Script = Arc::default();
        let base = serve_fake(Route::new().at("/hook", poem::post(hook)).data(script.clone()), recorder.clone()).await;
        Self { url: format!("{base}/hook"), recorder, script }
    }

    /// The next answers, in order: a status code each, sent after a delay.
    pub fn answer(&self, answers: &[(u16, Duration)]) {
        self.script.lock().expect("script").extend(answers.iter().copied());
    }

    /// Forgets the scripted answers not given yet: 200 from now on.
    pub fn reset(&self) {
        self.script.lock().expect("script").clear();
    }

    /// Every delivery received, in order.
    pub fn deliveries(&self) -> Vec<RecordedRequest> {
        self.requests_to("/hook")
    }
}

impl Fake for Receiver {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}

/// How many of a delivery's `v1` signatures `secret` verifies (0: none).
pub fn verify(secret: &str, delivery: &RecordedRequest) -> usize {
    let header = |name: &str| delivery.headers.get(name).cloned().unwrap_or_default();
    let Some(key) = secret.strip_prefix("whsec_").and_then(|key| STANDARD.decode(key).ok()) else { return 0 };
    let content = format!("{}.{}.{}", header("webhook-id"), header("webhook-timestamp"), delivery.body);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(content.as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    header("webhook-signature")
        .split(' ')
        .filter_map(|item| item.strip_prefix("v1,"))
        .filter(|signature| *signature == expected)
        .count()
}
