//! `--auth-token`: one shared secret for everything that reads spans. HTTP
//! clients send it as `Authorization: Bearer <token>`; browsers get it in a
//! cookie from the UI's login page; pgwire clients give it as password.
//! Receivers stay open: SDKs and reporters rarely carry credentials, and
//! they can only add spans.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};

use crate::params::percent_encode;

/// The cookie the UI's login page sets.
pub const COOKIE: &str = "spanlake_token";

#[derive(Clone)]
pub struct AuthToken(Arc<str>);

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(..)")
    }
}

impl AuthToken {
    /// `None` for an empty token: no authentication.
    pub fn new(token: &str) -> Option<Self> {
        (!token.is_empty()).then(|| Self(token.into()))
    }

    pub fn secret(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    /// Compares in time independent of where the strings differ.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
    }

    /// Whether a request carries the token, as a bearer token or a cookie.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.matches(t.trim()));
        let cookie = cookie(headers, COOKIE).and_then(|hex| const_hex::decode(hex).ok());
        bearer || cookie.is_some_and(|t| self.matches(&String::from_utf8_lossy(&t)))
    }

    /// The login cookie's value: the token in hex, which needs no quoting.
    pub fn cookie_value(&self) -> String {
        const_hex::encode(self.0.as_bytes())
    }

    /// `router`, answering only requests that carry the token. Browsers
    /// asking for a page are sent to the login page; others get a 401.
    pub fn require(&self, router: Router) -> Router {
        router.layer(middleware::from_fn_with_state(self.clone(), check))
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

async fn check(State(token): State<AuthToken>, request: Request, next: Next) -> Response {
    if token.admits(request.headers()) {
        return next.run(request).await;
    }
    let wants_page = request.method() == Method::GET
        && !request.uri().path().starts_with("/api/")
        && request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if wants_page {
        let next = request.uri().path_and_query().map_or("/", |p| p.as_str());
        return Redirect::to(&format!("/login?next={}", percent_encode(next))).into_response();
    }
    let message = "this spanlake requires its token: send `Authorization: Bearer <token>` (--auth-token)";
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], Json(serde_json::json!({ "error": message })))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_or_cookie() {
        let token = AuthToken::new("s3cret").unwrap();
        let headers = |name, value: &str| HeaderMap::from_iter([(name, value.parse().unwrap())]);
        assert!(token.admits(&headers(header::AUTHORIZATION, "Bearer s3cret")));
        assert!(!token.admits(&headers(header::AUTHORIZATION, "Bearer s3cre")));
        assert!(!token.admits(&headers(header::AUTHORIZATION, "Basic s3cret")));
        let cookie = format!("theme=dark; spanlake_token={}", token.cookie_value());
        assert!(token.admits(&headers(header::COOKIE, &cookie)));
        assert!(!token.admits(&headers(header::COOKIE, "spanlake_token=s3cret")));
        assert!(!token.admits(&headers(header::COOKIE, "spanlake_token=other")));
        assert!(!token.admits(&HeaderMap::new()));
        assert!(AuthToken::new("").is_none());
    }
}
