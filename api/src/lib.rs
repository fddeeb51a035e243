//! The HTTP API: poem + poem-openapi over the `shared` services.
//!
//! [`run`] is the whole service given settings, a bound listener and a shutdown future, so the
//! binary, the embedded default and the tests run the same thing. With the embedded default it
//! also runs the worker in-process.

pub mod auth;
pub mod error;
pub mod limits;
pub mod popup;
pub mod routes;
mod spec;
pub mod text;

use std::{future::Future, sync::Arc, time::Duration};

use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route, Server,
    http::StatusCode,
    http::{HeaderValue, Method, header},
    listener::{Acceptor, TcpAcceptor},
};
use poem_openapi::OpenApiService;
use shared::{
    App,
    app::Schema,
    config::{Settings, Storage},
};

use crate::routes::{
    campaigns::CampaignsApi, ops::OpsApi, posts::PostsApi, social_auth::SocialAuthApi, webhooks::WebhooksApi,
};

/// Largest request body accepted (413 above it).
const MAX_BODY_BYTES: usize = 256 * 1024;
/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

type Apis = (SocialAuthApi, PostsApi, CampaignsApi, OpsApi, WebhooksApi);

fn api_service() -> OpenApiService<Apis, &'static dyn routes::webhooks::Events> {
    OpenApiService::new(
        (SocialAuthApi, PostsApi, CampaignsApi, OpsApi, WebhooksApi),
        "Herald",
        env!("CARGO_PKG_VERSION"),
    )
    .webhooks::<&dyn routes::webhooks::Events>()
    .description(
        "Connect LinkedIn, X, Instagram, Facebook Page and TikTok accounts, schedule posts to them, and follow each \
         post until it is published. Every route but the OAuth callback and the probes takes \
         `Authorization: Bearer <JWT>`; errors are always `{\"error\": {\"code\", \"message\"}}`.",
    )
}

/// The OpenAPI document as YAML (`api openapi`, `/openapi.yaml`; CI compares it with
/// `openapi.yaml`): poem-openapi's, completed by [`spec`].
pub fn openapi_yaml() -> String {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| serde_yaml::to_string(&spec::complete(&api_service().spec())).unwrap_or_default()).clone()
}

async fn openapi_document() -> Response {
    Response::builder().content_type("application/x-yaml").body(openapi_yaml())
}

/// The whole HTTP endpoint for `app`.
pub fn endpoint(app: Arc<App>) -> impl Endpoint {
    let api = api_service().server(app.settings.backend_url.as_str().trim_end_matches('/'));
    let docs = api.swagger_ui();
    Route::new()
        .nest("/docs", docs)
        .at("/openapi.yaml", poem::get(poem::endpoint::make(|_| openapi_document())))
        .nest("/", api)
        .around(limit_body)
        .around(limits::rate_limit)
        .with(cors(&app.settings))
        .catch_all_error(error::json_error)
        .around(allow_header)
        .around(observe)
        .data(app)
}

/// CORS for the frontend's origins (`FRONTEND_ORIGIN`) and the API's own (the console): the
/// bearer and `Idempotency-Key` headers allowed, `Idempotent-Replayed` and the rate-limit
/// fields readable, no cookies. A
/// request from any other origin is refused with 403 (poem's `Cors`), in the one error shape.
fn cors(settings: &Settings) -> poem::middleware::Cors {
    let own = settings.backend_url.origin().ascii_serialization();
    poem::middleware::Cors::new()
        .allow_origins(settings.frontend_origins.iter().map(String::as_str).chain([own.as_str()]))
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers(["authorization", "content-type", "idempotency-key"])
        .expose_headers(["idempotent-replayed", "retry-after", "ratelimit", "ratelimit-policy"])
        .max_age(600)
}

/// Refuses bodies over [`MAX_BODY_BYTES`] with 413, whether the size is announced in
/// `Content-Length` or only found while reading a chunked body, and reads no body as empty JSON. (poem's `SizeLimit` answers 411
/// to any request without `Content-Length`, GETs included, so it does not fit an API.)
async fn limit_body<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let too_large = || poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE);
    let length =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    match length {
        Some(length) if length > MAX_BODY_BYTES => return Err(too_large()),
        None if chunked => {
            let body = req.take_body().into_bytes_limit(MAX_BODY_BYTES).await.map_err(|_| too_large())?;
            req.set_body(body);
        }
        _ => {}
    }
    // A request with no body at all is one with an empty JSON body: a route whose body is
    // optional (retry) takes it, the others say the object is missing (400), instead of poem's
    // 415 for the missing `Content-Type` of a body nobody sent.
    if length.unwrap_or(0) == 0 && !chunked && !req.headers().contains_key(header::CONTENT_TYPE) {
        req.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(next.call(req).await?.into_response())
}

/// Counts and times every request, logs it in one span, and sets headers every answer carries:
/// nothing Herald returns is cacheable, and the OAuth popup must not leak its URL (which holds
/// the authorization code) as a referrer.
async fn observe<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let app = req.data::<Arc<App>>().cloned();
    let route = route_of(&path);
    let mut response = next.call(req).await?.into_response();
    let status = response.status().as_u16();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let elapsed = started.elapsed();
    if let Some(app) = app {
        app.metrics.http(route, &method, status, elapsed.as_secs_f64());
    }
    // The path only: query strings can hold authorization codes and state.
    tracing::info!(http.method = %method, http.path = %path, http.status = status, duration_ms = elapsed.as_millis() as u64, "request");
    Ok(response)
}

/// The document's path templates with their methods (upper-case), plus the routes it does not
/// list: the spec and the console.
fn templates() -> &'static [(&'static str, Vec<String>)] {
    static TEMPLATES: std::sync::OnceLock<Vec<(&'static str, Vec<String>)>> = std::sync::OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let spec: serde_json::Value = serde_json::from_str(&api_service().spec()).unwrap_or_default();
        let paths = spec["paths"].as_object().cloned().unwrap_or_default();
        let listed = paths.into_iter().map(|(path, operations)| {
            let methods = operations.as_object().map(|o| o.keys().map(|m| m.to_ascii_uppercase()).collect());
            (&*path.leak(), methods.unwrap_or_default())
        });
        listed.chain([("/openapi.yaml", vec!["GET".to_owned()]), ("/", vec!["GET".to_owned()])]).collect()
    })
}

/// The route template a request path belongs to, for metric labels: one of the document's paths
/// (`/api/v1/posts/{post_id}`; literal segments win over parameters), `/docs`, `/` (the console)
/// or `other`. Never the raw path, so the number of series stays bounded.
fn route_of(path: &str) -> &'static str {
    if path == "/docs" || path.starts_with("/docs/") {
        return "/docs";
    }
    template_of(path).map_or("other", |(template, _)| template)
}

fn template_of(path: &str) -> Option<&'static (&'static str, Vec<String>)> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut best: Option<(&'static (&'static str, Vec<String>), usize)> = None;
    for entry in templates() {
        let parts: Vec<&str> = entry.0.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literal = 0;
        let fits = parts.iter().zip(&segments).all(|(part, segment)| {
            let parameter = part.starts_with('{') && part.ends_with('}') && !segment.is_empty();
            literal += usize::from(!parameter);
            parameter || part == segment
        });
        if fits && best.is_none_or(|(_, most)| literal > most) {
            best = Some((entry, literal));
        }
    }
    best.map(|(entry, _)| entry)
}

/// A 405 says which methods the path takes (RFC 9110 §15.5.6 requires `Allow`).
async fn allow_header<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let mut response = next.call(req).await?.into_response();
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some((_, methods)) = template_of(&path)
        && let Ok(value) = HeaderValue::from_str(&methods.join(", "))
    {
        response.headers_mut().insert(header::ALLOW, value);
    }
    Ok(response)
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    tracing::info!(addr = ?acceptor.local_addr(), "api listening");
    Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(endpoint(app), shutdown, Some(DRAIN_TIMEOUT)).await
}

/// Starts Herald from settings: the production api, or with the embedded default the api plus an
/// in-process worker on SQLite (migrations applied at start).
pub async fn run(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let embedded = matches!(settings.storage, Storage::Embedded { .. });
    let app = App::start(settings, if embedded { Schema::Migrate } else { Schema::RequireCurrent }).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let worker = embedded.then(|| {
        tracing::info!("embedded default: SQLite storage and an in-process worker");
        tokio::spawn(worker::run(app.clone(), stopped(stop_rx.clone())))
    });
    serve(app, listener, stopped(stop_rx)).await?;
    if let Some(worker) = worker {
        worker.await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_templates_never_raw_paths() {
        assert_eq!(route_of("/api/v1/posts/0191-abc"), "/api/v1/posts/{post_id}");
        assert_eq!(route_of("/api/v1/posts/schedule"), "/api/v1/posts/schedule");
        assert_eq!(route_of("/api/v1/posts"), "/api/v1/posts");
        assert_eq!(route_of("/api/v1/auth/social/callback/x"), "/api/v1/auth/social/callback/{platform}");
        assert_eq!(route_of("/readyz"), "/readyz");
        assert_eq!(route_of("/"), "/");
        assert_eq!(route_of("/docs/index.css"), "/docs");
        assert_eq!(route_of("/api/v1/posts/a/b/c"), "other");
        assert_eq!(route_of("/api/v1/posts/"), "other");
        assert_eq!(route_of("/wp-login.php"), "other");
    }
}
