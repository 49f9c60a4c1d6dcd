//! The web UI in a real headless Chromium (Debian's chromium and
//! chromium-driver, which scripts/test.sh installs), driven over WebDriver:
//! the first-run page, then demo traffic sent through the OTLP receiver and
//! every page used as a person would, and span data that tries to run
//! script. Screenshots go to the folder the test prints.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixture::{SERVER, Span, now_ms, send};
use crate::harness::{TestServer, chromedriver, free_port, run_cli};
use crate::webdriver::WebDriver;

const XSS_NAME: &str = "<script>window.pwned = 1</script>";
const XSS_KEY: &str = "<img src=x onerror=\"window.pwned = 2\">";

struct Browser {
    client: WebDriver,
    driver: Child,
    shots: PathBuf,
}

impl Browser {
    async fn start(driver: PathBuf) -> Self {
        let port = free_port().port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let capabilities = json!({
            "goog:chromeOptions": {
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"]
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match WebDriver::connect(&format!("http://127.0.0.1:{port}"), capabilities.clone()).await {
                Ok(client) => break client,
                Err(error) => {
                    assert!(Instant::now() < deadline, "chromedriver did not come up: {error}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        eprintln!("UI screenshots: {}", shots.display());
        Self { client, driver, shots }
    }

    async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    async fn text(&self, css: &str) -> String {
        self.client.find(css).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
    }

    async fn count(&self, css: &str) -> usize {
        self.client.find_all(css).await.unwrap().len()
    }

    async fn click(&self, css: &str) {
        self.client.find(css).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
    }

    /// Clicks `css` and waits for the next page to load and show `then`.
    async fn follow(&self, css: &str, then: &str) {
        self.client.execute("window.spanlakeOldPage = true", vec![]).await.unwrap();
        self.click(css).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let new_page = self.client.execute("return window.spanlakeOldPage === undefined", vec![]).await;
            if new_page.is_ok_and(|v| v == json!(true)) && self.client.find(then).await.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "clicking {css} did not lead to a page with {then}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        format!("{}{}", url.path(), url.query().map(|q| format!("?{q}")).unwrap_or_default())
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Whether script from span data ran on this page.
    async fn pwned(&self) -> bool {
        self.client.execute("return window.pwned !== undefined", vec![]).await.unwrap() == json!(true)
    }

    async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_finds_and_reads_traces_in_chromium() {
    let Some(driver) = chromedriver() else { return };
    let server = TestServer::start().await;
    let browser = Browser::start(driver).await;
    let ui = |path: &str| server.api_url(path);

    // An empty installation says how to send spans.
    browser.open(&ui("/")).await;
    assert!(browser.text("main").await.contains("4317"), "the first-run page names the OTLP endpoints");
    browser.shot("first-run").await;

    // Demo traffic through the OTLP/gRPC receiver, and a span that tries to run script.
    let endpoint = format!("http://{}", server.grpc_addr);
    let (ok, _, stderr) = tokio::task::spawn_blocking(move || {
        run_cli(&["demo", "--endpoint", &endpoint, "--traces", "40", "--rate", "200"])
    })
    .await
    .unwrap();
    assert!(ok, "demo traffic: {stderr}");
    let xss = Span::new(7, 70, "evil-svc", XSS_NAME, SERVER).attr(XSS_KEY, XSS_NAME).at(0, 5);
    send(&server, now_ms() - 1000, &[xss]).await;

    // Start page and service list name the services that sent spans.
    browser.open(&ui("/")).await;
    assert!(browser.text("main").await.contains("checkout"), "the start page lists services");
    browser.open(&ui("/services")).await;
    assert!(browser.count("main table a[href='/services/checkout']").await == 1);

    // Search: pick a service in the form and submit it.
    browser.open(&ui("/search")).await;
    browser.click("select[name=service] option[value=checkout]").await;
    browser.follow("form.search-form button[type=submit]", "table.results").await;
    let path = browser.path().await;
    assert!(path.starts_with("/search?") && path.contains("service=checkout"), "the URL holds the query: {path}");
    let rows = browser.count("tr.trace-row").await;
    assert!(rows > 0, "checkout traces are listed");
    assert_eq!(browser.count("svg.scatter circle").await, rows, "one dot per trace");
    let services = browser.text("table.results").await;
    assert!(services.contains("checkout"), "{services}");
    browser.shot("search").await;

    // Open a trace, then a span in it.
    browser.follow("tr.trace-row a.trace-link", ".waterfall").await;
    assert!(browser.path().await.starts_with("/traces/"));
    let spans = browser.count(".wf-row").await;
    assert!(spans > 1, "the waterfall has a row per span");
    assert!(browser.count(".wf-bar.critical").await >= 1, "the critical path is marked");
    browser.shot("trace").await;
    browser.follow(".wf-row:nth-of-type(1) a.span-link", "#span-detail").await;
    let detail = browser.text("#span-detail").await;
    assert!(detail.contains("Attributes") && detail.contains("service.name"), "{detail}");
    browser.shot("span").await;

    // A subtree collapses without script.
    let trace_url = browser.client.current_url().await.unwrap();
    browser.open(trace_url.as_str().split('?').next().unwrap()).await;
    let open_before = browser.count("details.subtree[open]").await;
    assert!(open_before > 0);
    browser.click("details.subtree > summary .toggle").await;
    assert_eq!(
        browser.count("details.subtree[open]").await,
        open_before - 1,
        "clicking a row's toggle collapses its subtree"
    );

    // The dependency graph links to a service's page.
    browser.open(&ui("/dependencies")).await;
    assert!(browser.count(".graph .edge").await >= 3, "the demo shop has calls between services");
    browser.shot("dependencies").await;
    browser.follow(".graph a.node[href='/services/checkout']", "table.operations").await;
    assert_eq!(browser.path().await, "/services/checkout");
    let operations = browser.text("table.operations").await;
    assert!(operations.contains("POST /checkout") || operations.lines().count() > 1, "{operations}");
    assert!(browser.count("svg path").await >= 3, "rate, error and latency lines");
    browser.shot("service").await;

    // SQL: run a query and read the answer.
    browser.open(&ui("/sql")).await;
    let textarea = browser.client.find("textarea[name=sql]").await.unwrap();
    textarea.clear().await.unwrap();
    textarea.send_keys("SELECT count(*) AS n FROM spans").await.unwrap();
    browser.follow("main form button[type=submit]", ".sql-result").await;
    let expected = server.span_count().await;
    let cell = browser.text(".sql-result td").await;
    assert_eq!(cell, expected.to_string());
    browser.open(&ui("/sql")).await;
    let textarea = browser.client.find("textarea[name=sql]").await.unwrap();
    textarea.clear().await.unwrap();
    textarea.send_keys("DROP TABLE spans").await.unwrap();
    browser.follow("main form button[type=submit]", ".sql-error").await;
    assert!(!browser.text(".sql-error").await.is_empty(), "refused SQL is explained inline");
    browser.shot("sql").await;

    // Span data is text, never markup.
    let xss_trace = crate::fixture::trace_id(7);
    browser.open(&ui("/search?service=evil-svc&lookback=1h")).await;
    assert!(browser.text("table.results").await.contains(XSS_NAME), "the name shows as text");
    assert!(!browser.pwned().await, "a span name ran as script on the search page");
    browser.open(&ui(&format!("/traces/{xss_trace}?span={}", crate::fixture::span_id(70)))).await;
    assert!(browser.text(".waterfall").await.contains(XSS_NAME));
    assert!(browser.text("#span-detail").await.contains(XSS_KEY), "the attribute key shows as text");
    assert_eq!(browser.count("#span-detail img").await, 0);
    assert!(!browser.pwned().await, "span data ran as script on the trace page");
    browser.shot("xss").await;

    // A downloaded trace file, pasted back, shows without being stored.
    let file = reqwest::get(ui(&format!("/api/v1/traces/{xss_trace}"))).await.unwrap().text().await.unwrap();
    browser.open(&ui("/traces/view")).await;
    browser
        .client
        .execute("document.getElementById('trace-json').value = arguments[0]", vec![json!(file)])
        .await
        .unwrap();
    browser.follow("main form button[type=submit]", ".trace-head").await;
    assert!(browser.text(".trace-head").await.contains("not stored"));
    assert!(browser.text(&format!("#detail-{}", crate::fixture::span_id(70))).await.contains(XSS_KEY));
    assert!(!browser.pwned().await, "span data from a file ran as script");
    browser.shot("file").await;

    browser.close().await;
}

/// The version, canary, retry and hop views on the demo shop's traffic,
/// which has an answer for each (`src/demo/topology.rs`).
#[tokio::test(flavor = "multi_thread")]
async fn the_version_and_retry_views_answer_on_the_demo_shop_in_chromium() {
    let Some(driver) = chromedriver() else { return };
    let server = TestServer::start().await;
    let endpoint = format!("http://{}", server.grpc_addr);
    let (ok, _, stderr) = tokio::task::spawn_blocking(move || {
        run_cli(&["demo", "--endpoint", &endpoint, "--traces", "3000", "--rate", "3000"])
    })
    .await
    .unwrap();
    assert!(ok, "demo traffic: {stderr}");
    let browser = Browser::start(driver).await;
    let ui = |path: &str| server.api_url(path);

    // The service page leads to its versions; the canary is judged there.
    browser.open(&ui("/services/checkout")).await;
    let retries = browser.text(".retries table").await;
    assert!(retries.contains("payment") && retries.contains("PaymentService/Charge"), "{retries}");
    browser.shot("service-retries").await;
    browser.follow("a[href^='/services/checkout/versions']", "table.versions").await;
    let versions = browser.text("table.versions").await;
    assert!(versions.contains("1.4.2") && versions.contains("1.5.0-rc.1"), "{versions}");
    let verdicts = browser.text("table.compare").await;
    assert!(verdicts.contains("POST /checkout") && verdicts.contains("worse"), "the slower canary: {verdicts}");
    assert!(browser.count(".chart svg rect").await > 10, "overlaid histograms");
    browser.shot("versions").await;

    // The old catalog is still called, by the old front end only.
    browser.open(&ui("/services/product-catalog/versions")).await;
    let callers = browser.text("main").await;
    assert!(callers.contains("Callers of 1.7.3") && callers.contains("2.2.0"), "{callers}");
    assert_eq!(browser.count(".callers .verdict.better").await, 0, "nothing is safe to remove while called");

    // Each hop's cost on the graph, and the graph by version.
    browser.open(&ui("/dependencies")).await;
    let costs = browser.text(".graph").await;
    assert!(costs.contains("hop +") && costs.contains("240.0 kB"), "{costs}");
    browser.shot("dependencies-hops").await;
    browser.follow("a[href*='groupBy=service.version']", ".graph").await;
    assert!(
        browser.count(".graph a.node[href='/services/checkout/versions']").await >= 2,
        "a node per checkout version"
    );
    assert!(browser.text(".graph").await.contains("product-catalog@1.7.3"));
    browser.shot("dependencies-versions").await;

    // A trace with a timed-out payment marks the retry and the abandoned work.
    let found =
        server.sql("SELECT id_to_hex(trace_id) FROM spans WHERE status_message = 'deadline exceeded' LIMIT 1").await;
    let trace_id = found["rows"][0][0].as_str().expect("the demo times payments out").to_owned();
    browser.open(&ui(&format!("/traces/{trace_id}"))).await;
    assert_eq!(browser.count(".wf-name .mark.abandoned").await, 1, "the payment span outlived its client");
    assert!(browser.text(".wf-name .mark.abandoned").await.starts_with("abandoned +"));
    assert_eq!(browser.count(".wf-name .mark.retry").await, 1, "the payment call after the timeout is a retry");
    browser.shot("trace-retry").await;
    browser.close().await;
}
