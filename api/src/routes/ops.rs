//! `/healthz`, `/readyz`, `/metrics`: for the platform running Herald, not for users.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    payload::{Html, Json, PlainText},
};
use shared::App;

use super::Tag;

/// Operations routes.
#[derive(Debug)]
pub struct OpsApi;

/// A probe answer.
#[derive(Debug, Object)]
pub struct Probe {
    /// `ok` or `unavailable`.
    pub status: String,
    /// What is unavailable, when something is.
    pub detail: Option<String>,
}

/// Readiness.
#[derive(Debug, ApiResponse)]
pub enum Readiness {
    /// The database and queue answer.
    #[oai(status = 200)]
    Ready(Json<Probe>),
    /// Something does not answer.
    #[oai(status = 503)]
    NotReady(Json<Probe>),
}

#[OpenApi(tag = "Tag::Operations")]
impl OpsApi {
    /// Liveness: the process serves HTTP.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> Json<Probe> {
        Json(Probe { status: "ok".into(), detail: None })
    }

    /// Readiness: the database and the queue answer.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(&self, app: Data<&Arc<App>>) -> Readiness {
        match app.ready().await {
            Ok(()) => Readiness::Ready(Json(Probe { status: "ok".into(), detail: None })),
            Err(detail) => {
                tracing::warn!(detail = %detail, "not ready");
                Readiness::NotReady(Json(Probe { status: "unavailable".into(), detail: Some(detail) }))
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
        PlainText(app.metrics.render())
    }
}
