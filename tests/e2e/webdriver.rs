//! A small W3C WebDriver client, as much as the UI test uses: a session,
//! navigation, elements by CSS selector, clicks and keys, script and
//! screenshots, over the JSON wire protocol that ChromeDriver speaks.
//!
//! Why not fantoccini: it pulls ICU 1.x through `webdriver`, whose proc
//! macros turn on features of `syn` and `serde` that the binary's build does
//! not, so `cargo test` after `cargo build` rebuilt DataFusion and most else.

use anyhow::{Context, Result, bail};
use base64::Engine;
use reqwest::{Method, Url};
use serde_json::{Value, json};

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

#[derive(Debug)]
pub struct WebDriver {
    http: reqwest::Client,
    session: String,
}

#[derive(Debug)]
pub struct Element<'a> {
    driver: &'a WebDriver,
    id: String,
}

impl WebDriver {
    /// Starts a browser session on the driver at `driver_url`.
    pub async fn connect(driver_url: &str, capabilities: Value) -> Result<Self> {
        let http = reqwest::Client::new();
        let answer = send(
            &http,
            Method::POST,
            format!("{driver_url}/session"),
            Some(json!({
                "capabilities": {"alwaysMatch": capabilities}
            })),
        )
        .await?;
        let id = answer["sessionId"].as_str().context("no sessionId in the new session")?;
        Ok(Self { http, session: format!("{driver_url}/session/{id}") })
    }

    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        send(&self.http, method, format!("{}{path}", self.session), body).await
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.command(Method::POST, "/url", Some(json!({ "url": url }))).await.map(drop)
    }

    pub async fn current_url(&self) -> Result<Url> {
        let url = self.command(Method::GET, "/url", None).await?;
        Ok(Url::parse(url.as_str().context("the URL is not a string")?)?)
    }

    pub async fn find(&self, css: &str) -> Result<Element<'_>> {
        let found = self.command(Method::POST, "/element", Some(locator(css))).await?;
        self.element(&found)
    }

    pub async fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>> {
        let found = self.command(Method::POST, "/elements", Some(locator(css))).await?;
        found.as_array().context("elements are not a list")?.iter().map(|e| self.element(e)).collect()
    }

    /// Runs `script` as a function body with `args` as `arguments`.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.command(Method::POST, "/execute/sync", Some(json!({ "script": script, "args": args }))).await
    }

    /// The viewport as PNG.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        let png = self.command(Method::GET, "/screenshot", None).await?;
        Ok(base64::engine::general_purpose::STANDARD.decode(png.as_str().context("no screenshot")?)?)
    }

    /// Ends the session, which closes the browser.
    pub async fn close(&self) -> Result<()> {
        self.command(Method::DELETE, "", None).await.map(drop)
    }

    fn element(&self, found: &Value) -> Result<Element<'_>> {
        let id = found[ELEMENT].as_str().with_context(|| format!("not an element: {found}"))?;
        Ok(Element { driver: self, id: id.to_owned() })
    }
}

impl Element<'_> {
    async fn command(&self, method: Method, action: &str, body: Option<Value>) -> Result<Value> {
        self.driver.command(method, &format!("/element/{}/{action}", self.id), body).await
    }

    pub async fn text(&self) -> Result<String> {
        let text = self.command(Method::GET, "text", None).await?;
        Ok(text.as_str().context("the text is not a string")?.to_owned())
    }

    pub async fn click(&self) -> Result<()> {
        self.command(Method::POST, "click", Some(json!({}))).await.map(drop)
    }

    pub async fn clear(&self) -> Result<()> {
        self.command(Method::POST, "clear", Some(json!({}))).await.map(drop)
    }

    pub async fn send_keys(&self, text: &str) -> Result<()> {
        self.command(Method::POST, "value", Some(json!({ "text": text }))).await.map(drop)
    }
}

fn locator(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

/// One WebDriver command: the answer's `value`, or its error and message.
async fn send(http: &reqwest::Client, method: Method, url: String, body: Option<Value>) -> Result<Value> {
    let mut request = http.request(method, &url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.with_context(|| url.clone())?;
    let status = response.status();
    let mut answer: Value = response.json().await.with_context(|| format!("{url}: not JSON"))?;
    let value = answer["value"].take();
    if !status.is_success() {
        bail!("{url}: {status} {}: {}", value["error"], value["message"]);
    }
    Ok(value)
}
