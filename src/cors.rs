//! CORS for the read routes, so a UI served from another origin (Zipkin's
//! Lens, a Jaeger UI build) can call the APIs from the browser. Without an
//! auth token every origin may read (`*`, Zipkin's default); with one only
//! the origins listed may, with credentials, and never `*`.

use axum::http::{HeaderName, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The layer for `--cors-allowed-origins` (`*` or origins), or none when
/// no origin may read.
pub(crate) fn layer(allowed: &[String], token: bool) -> anyhow::Result<Option<CorsLayer>> {
    let any = allowed.is_empty() || allowed.iter().any(|o| o == "*");
    let base = CorsLayer::new().allow_methods([Method::GET, Method::POST, Method::OPTIONS]).allow_headers([
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        HeaderName::from_static("x-scope-orgid"),
    ]);
    if !token {
        return Ok(Some(if any {
            base.allow_origin(AllowOrigin::any())
        } else {
            base.allow_origin(origins(allowed)?)
        }));
    }
    if any {
        // Credentials never go to every origin; `*` with a token names none.
        return Ok(None);
    }
    Ok(Some(base.allow_origin(origins(allowed)?).allow_credentials(true)))
}

fn origins(allowed: &[String]) -> anyhow::Result<AllowOrigin> {
    let values = allowed
        .iter()
        .map(|o| o.parse().map_err(|_| anyhow::anyhow!("--cors-allowed-origins: {o:?} is not an origin")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(AllowOrigin::list(values))
}
