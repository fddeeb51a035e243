//! `/healthz`, `/readyz`, `/metrics`: for the platform running Herald, not for users.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    payload::{Html, Json, PlainText},
};
use shared::{App, ops};

use super::Tag;

/// Operations routes.
#[derive(Debug)]
pub struct OpsApi;

/// A probe answer.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Probe {
    /// `ok` or `unavailable`.
    pub status: String,
    /// What is unavailable, when something is.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
    /// Worker processes whose heartbeat is recent (readiness only, once the database answered).
    #[oai(skip_serializing_if_is_none)]
    pub live_workers: Option<u64>,
    /// Posts whose time passed more than 30 s ago without a worker taking them (readiness only).
    #[oai(skip_serializing_if_is_none)]
    pub overdue_posts: Option<u64>,
}

impl Probe {
    fn ok() -> Self {
        Self { status: "ok".into(), detail: None, live_workers: None, overdue_posts: None }
    }

    fn unavailable(detail: String) -> Self {
        Self { status: "unavailable".into(), detail: Some(detail), live_workers: None, overdue_posts: None }
    }
}

/// Readiness.
#[derive(Debug, ApiResponse)]
pub enum Readiness {
    /// The database and queue answer, and workers are publishing (or nothing is overdue).
    #[oai(status = 200)]
    Ready(Json<Probe>),
    /// A dependency does not answer, or no worker has been alive for `READYZ_NO_WORKER_SECS`
    /// while posts are overdue; `detail` says which.
    #[oai(status = 503)]
    NotReady(Json<Probe>),
}

/// Readiness of the api: its dependencies answer, and the fleet is not stalled.
async fn readiness(app: &App) -> Result<Probe, Probe> {
    ops::dependencies(app).await.map_err(Probe::unavailable)?;
    let snapshot = ops::Snapshot::take(app).await.map_err(Probe::unavailable)?;
    let counts = |probe: Probe| Probe {
        live_workers: Some(snapshot.live_workers),
        overdue_posts: Some(snapshot.overdue),
        ..probe
    };
    match snapshot.stalled(chrono::Utc::now(), app.settings.worker.no_worker_after) {
        Some(reason) => Err(counts(Probe::unavailable(reason))),
        None => Ok(counts(Probe::ok())),
    }
}

#[OpenApi(tag = "Tag::Operations")]
impl OpsApi {
    /// Liveness: the process serves HTTP.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> Json<Probe> {
        Json(Probe::ok())
    }

    /// Readiness: the database and the queue answer (each within 2 s), and some worker has been
    /// alive within `READYZ_NO_WORKER_SECS` or nothing is overdue. Says how many workers are live.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(&self, app: Data<&Arc<App>>) -> Readiness {
        match readiness(&app).await {
            Ok(probe) => Readiness::Ready(Json(probe)),
            Err(probe) => {
                tracing::warn!(detail = probe.detail.as_deref().unwrap_or_default(), "not ready");
                Readiness::NotReady(Json(probe))
            }
        }
    }

    /// The console page: static HTML and JavaScript on the public API (no build step), to try the
    /// whole flow in a browser. It is also where the OAuth popup posts when `FRONTEND_ORIGIN` is
    /// left at its default, the api's own origin. It holds no secret: a person pastes the token.
    /// (An operation of this service, hidden from the document, because the service is nested at
    /// `/` and would shadow a separate route there.)
    #[oai(path = "/", method = "get", hidden)]
    async fn console(&self) -> Html<&'static str> {
        Html(include_str!("../../static/console.html"))
    }

    /// Prometheus metrics.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(&self, app: Data<&Arc<App>>) -> PlainText<String> {
        PlainText(ops::metrics_text(&app).await)
    }
}
