//! `/healthz`, `/readyz`, `/metrics`: for the platform running Herald, not for users.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json, payload::PlainText};
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

    /// Prometheus metrics.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(&self, app: Data<&Arc<App>>) -> PlainText<String> {
        PlainText(app.metrics.render())
    }
}
