//! The frame of every page: head, stylesheet, navigation with the trace-id
//! box, and the error page.

use axum::response::{Html, IntoResponse, Response};
use leptos::prelude::*;
use spanlake_query::QueryError;

use crate::format;

/// The navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Home,
    Search,
    Dependencies,
    Services,
    Sql,
    Trace,
}

const LINKS: [(Nav, &str, &str); 5] = [
    (Nav::Search, "/search", "Search"),
    (Nav::Dependencies, "/dependencies", "Dependencies"),
    (Nav::Services, "/services", "Services"),
    (Nav::Sql, "/sql", "SQL"),
    (Nav::Home, "/", "Start"),
];

/// A whole page: `body` inside spanlake's frame.
pub(crate) fn page(title: &str, nav: Nav, body: AnyView) -> Html<String> {
    let links = LINKS
        .iter()
        .map(|(entry, href, label)| {
            let class = if *entry == nav { "nav-link active" } else { "nav-link" };
            view! { <a class=class href=*href>{*label}</a> }
        })
        .collect_view();
    let html = view! {
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <title>{format!("{title} · spanlake")}</title>
                <link rel="stylesheet" href="/ui/style.css" />
            </head>
            <body>
                <header class="top">
                    <a class="brand" href="/">"spanlake"</a>
                    <nav>{links}</nav>
                    <form class="jump" method="get" action="/traces">
                        <input name="id" placeholder="Trace id" aria-label="Trace id" size="34" />
                        <button type="submit">"Open"</button>
                    </form>
                </header>
                <main>{body}</main>
            </body>
        </html>
    };
    Html(format!("<!DOCTYPE html>{}", html.to_html()))
}

/// A service's colour dot and a link to its page.
pub(crate) fn service_link(service: &str) -> AnyView {
    let style = format!("background:{}", format::service_colour(service));
    let href = format!("/services/{}", format::encode(service));
    view! { <span class="chip"><span class="dot" style=style></span></span><a href=href>{service.to_owned()}</a> }
        .into_any()
}

/// Buttons for the usual time windows; `href` makes each one's link.
pub(crate) fn lookback_links(current: &str, href: impl Fn(&str) -> String) -> AnyView {
    ["15m", "1h", "6h", "24h"]
        .into_iter()
        .map(|l| {
            let class = if l == current { "button" } else { "button quiet" };
            view! { <a class=class href=href(l)>{format!("Last {l}")}</a> }
        })
        .collect_view()
        .into_any()
}

/// An error answer as a page: 4xx for the request's fault, 5xx for ours.
pub(crate) fn error_page(title: &str, nav: Nav, error: &QueryError) -> Response {
    let status = error.status();
    let message = error.to_string();
    (status, page(title, nav, view! { <h1>{title.to_owned()}</h1><p class="error">{message}</p> }.into_any()))
        .into_response()
}
