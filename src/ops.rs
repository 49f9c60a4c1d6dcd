//! The operational endpoints: `/metrics` (Prometheus text; RED and service
//! graph metrics of the spans received on `/metrics/spans`), `/healthz`
//! (the process answers) and `/readyz` (storage replayed, API open; also
//! as `/ready`, Tempo's name). Until
//! ready, every other path answers 503.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tower::ServiceExt;

#[derive(Debug, Clone)]
pub(crate) struct Ops {
    registry: Arc<Registry>,
    spans: Arc<Registry>,
    app: Arc<OnceLock<Router>>,
}

impl Ops {
    pub(crate) fn new(registry: Registry, spans: Registry) -> Self {
        Self { registry: Arc::new(registry), spans: Arc::new(spans), app: Arc::new(OnceLock::new()) }
    }

    /// Opens the rest of the HTTP port: `app` serves every other path.
    pub(crate) fn ready(&self, app: Router) {
        let _ = self.app.set(app);
    }

    pub(crate) fn router(&self) -> Router {
        let (registry, spans) = (Arc::clone(&self.registry), Arc::clone(&self.spans));
        let ready = Arc::clone(&self.app);
        let readiness = get(move || async move {
            if ready.get().is_some() {
                (StatusCode::OK, "ready\n")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "replaying the WAL\n")
            }
        });
        let app = Arc::clone(&self.app);
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            // `/ready` is Tempo's name for it, which Grafana's Tempo data source may probe.
            .route("/readyz", readiness.clone())
            .route("/ready", readiness)
            .route("/metrics", get(move || async move { metrics(&registry) }))
            .route("/metrics/spans", get(move || async move { metrics(&spans) }))
            .fallback(move |request: Request<Body>| async move {
                match app.get() {
                    Some(app) => app.clone().oneshot(request).await.into_response(),
                    None => {
                        (StatusCode::SERVICE_UNAVAILABLE, "spanlake is starting: replaying the WAL\n").into_response()
                    }
                }
            })
    }
}

fn metrics(registry: &Registry) -> Response {
    let mut text = String::new();
    match encode(&mut text, registry) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}
