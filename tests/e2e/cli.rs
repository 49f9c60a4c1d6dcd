//! The command line: `spanlake sql` on a data directory or a server, and
//! `spanlake demo` against a real server.

use crate::harness::{TestServer, run_cli};

#[tokio::test(flavor = "multi_thread")]
async fn demo_traffic_and_the_sql_command() {
    let mut server = TestServer::start().await;
    let endpoint = server.grpc_endpoint();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run_cli(&["demo", "--endpoint", &endpoint, "--traces", "60", "--rate", "200"])
    })
    .await
    .unwrap();
    assert!(ok, "{stderr}");
    assert!(stdout.contains("sent 60 traces"), "{stdout}");

    // The demo shows a shop: several services, a canary beside its stable
    // version, errors, and database and messaging calls.
    let services = server.sql_scalar("SELECT count(DISTINCT service_name) FROM spans").await;
    assert!(services.as_i64().unwrap() >= 5, "{services}");
    let kinds = server.sql_scalar("SELECT count(DISTINCT span_kind) FROM spans").await;
    assert!(kinds.as_i64().unwrap() >= 3, "{kinds}");
    let with_version = server.sql_scalar("SELECT count(*) FROM spans WHERE service_version IS NULL").await;
    assert_eq!(with_version.as_i64(), Some(0), "every resource has service.version");
    let db = server.sql_scalar("SELECT count(*) FROM spans WHERE db_system IS NOT NULL").await;
    assert!(db.as_i64().unwrap() > 0);

    let url = format!("http://{}", server.http_addr);
    let (ok, table, stderr) =
        run_cli(&["sql", "--server", &url, "SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1"]);
    assert!(ok, "{stderr}");
    assert!(table.starts_with("+-") && table.contains("| frontend ") && table.contains(" rows\n"), "{table}");

    let (ok, _, stderr) = run_cli(&["sql", "--server", &url, "DROP TABLE spans"]);
    assert!(!ok);
    assert!(stderr.contains("read-only"), "{stderr}");

    // On the files alone, once the server has flushed them at shutdown.
    let total = server.span_count().await;
    server.stop().await;
    let data_dir = server.data_dir().to_str().unwrap().to_owned();
    let (ok, csv, stderr) =
        run_cli(&["sql", "--data-dir", &data_dir, "--format", "csv", "SELECT count(*) AS n FROM spans"]);
    assert!(ok, "{stderr}");
    assert_eq!(csv, format!("n\n{total}\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_home_page_is_served() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.api_url("/")).await.unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("spanlake") && html.contains("4317"), "{html}");
}
