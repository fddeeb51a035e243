//! The worker's own HTTP endpoints, served on `PORT` when it is set (Cloud Run worker pools and
//! always-on services probe them; Prometheus scrapes `/metrics`): `/healthz` (the process
//! answers), `/readyz` (its database and Redis answer, each within 2 s, and it is not draining after SIGTERM) and `/metrics` (this
//! process's counters with the fleet's gauges). The same answers as the api's.

use std::{future::Future, sync::Arc};

use poem::{
    EndpointExt, IntoResponse, Request, Response, Route, Server, get, handler,
    http::StatusCode,
    listener::{Acceptor, TcpAcceptor},
    web::{Data, Json},
};
use serde_json::json;
use shared::App;

#[handler]
fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

#[handler]
async fn readyz(app: Data<&Arc<App>>) -> Response {
    let ready = if app.draining.load(std::sync::atomic::Ordering::SeqCst) {
        Err("draining: finishing the attempts in flight before exiting".to_owned())
    } else {
        shared::ops::dependencies(&app).await
    };
    match ready {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(detail) => {
            tracing::warn!(detail = %detail, "not ready");
            let body = Json(json!({ "status": "unavailable", "detail": detail }));
            (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
        }
    }
}

#[handler]
async fn metrics(app: Data<&Arc<App>>) -> Response {
    let text = shared::ops::metrics_text(&app).await;
    text.with_content_type("text/plain; version=0.0.4; charset=utf-8").into_response()
}

/// Counts and times each request like the api does; routes are the three paths or `other`.
async fn observe<E: poem::Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let started = std::time::Instant::now();
    let route = match req.uri().path() {
        path @ ("/healthz" | "/readyz" | "/metrics") => path.to_owned(),
        _ => "other".to_owned(),
    };
    let method = req.method().to_string();
    let app = req.data::<Arc<App>>().cloned();
    let response = match next.call(req).await {
        Ok(response) => response.into_response(),
        Err(error) => error.into_response(),
    };
    if let Some(app) = app {
        app.metrics.http(&route, &method, response.status().as_u16(), started.elapsed().as_secs_f64());
    }
    Ok(response)
}

/// Serves the endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    tracing::info!(addr = ?acceptor.local_addr(), "worker endpoints listening");
    let routes = Route::new()
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .at("/metrics", get(metrics))
        .around(observe)
        .data(app);
    Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(routes, shutdown, None).await
}
