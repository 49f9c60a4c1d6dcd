//! `/login`, when spanlake runs with `--auth-token`: the token, once, for a
//! cookie the browser then sends with every page (HttpOnly, SameSite=Strict,
//! so pages of other sites cannot use it).

use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use leptos::prelude::*;
use serde::Deserialize;
use spanlake_query::auth::{AuthToken, COOKIE};

use crate::layout::{Nav, page};

#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Login {
    token: String,
    next: Option<String>,
}

pub(crate) async fn form(Query(query): Query<Next>) -> Response {
    page("Sign in", Nav::Home, body(&target(query.next), None).into_any()).into_response()
}

pub(crate) async fn login(State(token): State<AuthToken>, Form(login): Form<Login>) -> Response {
    let next = target(login.next);
    if !token.matches(&login.token) {
        let page = page("Sign in", Nav::Home, body(&next, Some("That is not this spanlake's token.")).into_any());
        return (StatusCode::UNAUTHORIZED, page).into_response();
    }
    let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", token.cookie_value());
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

/// Where to go after signing in: a path of this site, never another site.
fn target(next: Option<String>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\')).unwrap_or_else(|| "/".into())
}

fn body(next: &str, error: Option<&'static str>) -> impl IntoView {
    view! {
        <h1>"Sign in"</h1>
        <p>"This spanlake was started with " <code>"--auth-token"</code> ". Enter that token."</p>
        {error.map(|e| view! { <p class="error">{e}</p> })}
        <form method="post" action="/login" class="login">
            <input type="hidden" name="next" value=next.to_owned()/>
            <input type="password" name="token" autofocus=true autocomplete="current-password" aria-label="Token"/>
            <button type="submit">"Sign in"</button>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(target(Some("/search?service=a".into())), "/search?service=a");
        for outside in ["//evil.example/", "https://evil.example/", "/\\evil.example", ""] {
            assert_eq!(target(Some(outside.into())), "/", "{outside}");
        }
        assert_eq!(target(None), "/");
    }
}
