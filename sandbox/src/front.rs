//! What stands in front of each fake in the sandbox: `GET /` answers the fake's page, the
//! authorize path answers the consent page and takes its decision, and every other request goes
//! to the fake unchanged and leaves a log line. It adds no route a platform has and changes no
//! answer of the fake (a JSON answer is read for its log line and passed on byte for byte).

use std::sync::{Arc, OnceLock};

use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response,
    endpoint::BoxEndpoint,
    http::{Method, StatusCode, Uri, header},
};

use crate::{
    Site,
    consent::{self, Decision},
    log::{self, Log},
    pages::{self, Hosted},
};

/// The largest consent form the sandbox reads.
const FORM_LIMIT: usize = 64 * 1024;

/// The [`tests::Wrap`] that puts a [`Front`] around a fake.
pub(crate) fn wrap(
    site: Site,
    auth_path: Option<String>,
    hosted: Arc<OnceLock<Arc<dyn Hosted>>>,
    log: Log,
) -> tests::Wrap {
    Box::new(move |inner| {
        Front { site, inner, auth_path, hosted, log, denial_pending: tokio::sync::Mutex::new(false) }.boxed()
    })
}

struct Front {
    site: Site,
    inner: BoxEndpoint<'static>,
    /// The path of the platform's authorize URL, if it has one.
    auth_path: Option<String>,
    /// The fake, once started.
    hosted: Arc<OnceLock<Arc<dyn Hosted>>>,
    log: Log,
    /// A refusal the fake was asked for but never gave (the request it was meant for failed the
    /// fake's checks first). Held while a decision is handed on, so that two people's decisions
    /// never meet in the fake.
    denial_pending: tokio::sync::Mutex<bool>,
}

impl Endpoint for Front {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let Some(hosted) = self.hosted.get() else {
            return Ok(text(StatusCode::SERVICE_UNAVAILABLE, "the sandbox is still starting"));
        };
        if method == Method::GET && path == "/" {
            return Ok(poem::web::Html(pages::site_page(self.site, hosted.as_ref(), &self.log)).into_response());
        }
        if self.auth_path.as_deref() == Some(path.as_str()) {
            if method == Method::GET {
                let query = pairs(req.uri().query().unwrap_or(""));
                let scopes = consent::scopes(&query);
                self.log.line(self.site, &format!("GET {path} → consent page (scopes: {})", scopes.join(" ")));
                return Ok(poem::web::Html(consent::page(self.site, &path, &query)).into_response());
            }
            if method == Method::POST {
                return Ok(self.decide(hosted.as_ref(), &path, req).await);
            }
        }
        let response = answer(&self.inner, req).await;
        Ok(self.logged(&method, &path, response).await)
    }
}

impl Front {
    /// Takes the consent form's decision and hands the original authorize request to the fake
    /// (asked to refuse first, for Deny); answers what the fake answers.
    async fn decide(&self, hosted: &dyn Hosted, path: &str, req: Request) -> Response {
        let form = match req.into_body().into_bytes_limit(FORM_LIMIT).await {
            Ok(bytes) => pairs(&String::from_utf8_lossy(&bytes)),
            Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "the consent form is too large"),
        };
        let Some((decision, query)) = consent::decision(form) else {
            return text(StatusCode::BAD_REQUEST, "the consent form names no decision: Allow or Deny");
        };
        let authorize = || {
            let query: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&query).finish();
            let uri: Uri = format!("{path}?{query}").parse().expect("a path and an encoded query");
            Request::builder().method(Method::GET).uri(uri).finish()
        };
        let mut pending = self.denial_pending.lock().await;
        match decision {
            Decision::Deny if !*pending => {
                hosted.deny_next_consent();
                *pending = true;
            }
            // A refusal still waits in the fake: this request spends it, then asks again.
            Decision::Allow if *pending => {
                if answer(&self.inner, authorize()).await.status() == StatusCode::FOUND {
                    *pending = false;
                }
            }
            Decision::Deny | Decision::Allow => {}
        }
        let mut response = answer(&self.inner, authorize()).await;
        if response.status() == StatusCode::FOUND {
            *pending = false;
        }
        drop(pending);
        let outcome = match response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()) {
            Some(location) => consent::describe_redirect(location),
            // The fake refused the request itself: its page says why, in a sentence.
            None => {
                let page = response.take_body().into_bytes_limit(FORM_LIMIT).await.unwrap_or_default();
                let outcome = format!("{} {}", response.status().as_u16(), String::from_utf8_lossy(&page));
                response.set_body(page);
                outcome
            }
        };
        self.log.line(self.site, &format!("consent {} → {}", decision.word(), outcome.trim_end()));
        response
    }

    /// Logs a request the fake answered; a JSON answer is read for the line and put back.
    async fn logged(&self, method: &Method, path: &str, mut response: Response) -> Response {
        let status = response.status().as_u16();
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let restli_id = response.headers().get("x-restli-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = None;
        if is_json {
            match response.take_body().into_bytes().await {
                Ok(bytes) => {
                    body = serde_json::from_slice(&bytes).ok();
                    response.set_body(bytes);
                }
                Err(error) => {
                    self.log.line(self.site, &format!("{method} {path} → {status}, its answer broke off: {error}"));
                    return response;
                }
            }
        }
        let words = log::summary(self.site, method.as_str(), path, status, restli_id.as_deref(), body.as_ref());
        self.log.line(self.site, &format!("{method} {path} → {status}{words}"));
        response
    }
}

/// The fake's answer, an error turned into the response it stands for.
async fn answer(inner: &BoxEndpoint<'static>, req: Request) -> Response {
    match inner.call(req).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn pairs(encoded: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(encoded.as_bytes()).into_owned().collect()
}

fn text(status: StatusCode, message: &str) -> Response {
    Response::builder().status(status).content_type("text/plain; charset=utf-8").body(message.to_owned())
}
