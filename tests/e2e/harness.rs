//! The one harness: starts the real `spanlake` binary on free ports with a
//! temporary data directory, and talks to it like a user would.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::Value;
use spanlake_client::{Error as ClientError, RetryPolicy};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_spanlake");

pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr")
}

/// Options for a test server.
#[derive(Debug, Default, Clone)]
pub struct ServerOptions {
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Where the data lives; a fresh temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
}

impl ServerOptions {
    pub fn arg(mut self, flag: &str, value: &str) -> Self {
        self.extra_args.extend([flag.to_owned(), value.to_owned()]);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }
}

enum Started {
    Ready,
    PortTaken,
}

/// A running `spanlake serve`.
#[derive(Debug)]
pub struct TestServer {
    pub grpc_addr: SocketAddr,
    pub otlp_http_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub pg_addr: SocketAddr,
    pub jaeger_grpc_addr: SocketAddr,
    pub flight_sql_addr: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    options: ServerOptions,
    child: Option<Child>,
    // Dropped last: removes the data directory.
    _dir: Option<TempDir>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = options.data_dir.clone().unwrap_or_else(|| dir.path().join("data"));
        let mut server = Self {
            grpc_addr: free_port(),
            otlp_http_addr: free_port(),
            http_addr: free_port(),
            pg_addr: free_port(),
            jaeger_grpc_addr: free_port(),
            flight_sql_addr: free_port(),
            data_dir,
            log_path: dir.path().join("server.log"),
            options,
            child: None,
            _dir: Some(dir),
        };
        // A port found free can be taken (by another test's outgoing
        // connection) before the server binds it: then try other ports.
        for _ in 0..3 {
            match server.try_spawn().await {
                Started::Ready => return server,
                Started::PortTaken => {
                    let _ = std::fs::remove_file(server.log_path());
                    (server.grpc_addr, server.otlp_http_addr) = (free_port(), free_port());
                    (server.http_addr, server.pg_addr) = (free_port(), free_port());
                    (server.jaeger_grpc_addr, server.flight_sql_addr) = (free_port(), free_port());
                }
            }
        }
        panic!("spanlake found no free ports three times:\n{}", server.log());
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.log_path.clone()
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        if let Started::PortTaken = self.try_spawn().await {
            panic!("spanlake could not listen on its ports again:\n{}", self.log());
        }
    }

    async fn try_spawn(&mut self) -> Started {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--otlp-grpc-addr", &self.grpc_addr.to_string()])
            .args(["--otlp-http-addr", &self.otlp_http_addr.to_string()])
            .args(["--http-addr", &self.http_addr.to_string()])
            .args(["--pg-addr", &self.pg_addr.to_string()])
            .args(["--jaeger-grpc-addr", &self.jaeger_grpc_addr.to_string()])
            .args(["--flight-sql-addr", &self.flight_sql_addr.to_string()])
            .args(&self.options.extra_args)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info,spanlake=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start spanlake");
        self.child = Some(child);
        self.wait_until_ready().await
    }

    /// Waits for `/readyz` (the WAL replayed, every port open).
    async fn wait_until_ready(&mut self) -> Started {
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = self.api_url("/readyz");
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let log = self.log();
                if log.contains("Address already in use") {
                    self.child = None;
                    return Started::PortTaken;
                }
                panic!("spanlake exited with {status} while starting:\n{log}");
            }
            let answered = reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200);
            if answered && self.role_ports().iter().all(|a| TcpStream::connect(a).is_ok()) {
                return Started::Ready;
            }
            assert!(Instant::now() < deadline, "spanlake did not get ready:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The ports the server's `--roles` open (all of them without the flag).
    fn role_ports(&self) -> Vec<SocketAddr> {
        let args = &self.options.extra_args;
        let roles = args.iter().position(|a| a == "--roles").and_then(|i| args.get(i + 1));
        let has = |role: &str| roles.is_none_or(|r| r.contains(role) || r.contains("all"));
        let mut ports = Vec::new();
        if has("collector") {
            ports.extend([self.grpc_addr, self.otlp_http_addr]);
        }
        if has("query") {
            ports.extend([self.pg_addr, self.jaeger_grpc_addr, self.flight_sql_addr]);
        }
        ports
    }

    /// SIGKILL: no flush, no goodbye. Then start it again on the same ports and data.
    pub async fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("wait");
        }
        self.spawn().await;
    }

    /// SIGKILL without a restart.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("wait");
        }
    }

    /// Starts a stopped or crashed server again.
    pub async fn start_again(&mut self) {
        self.spawn().await;
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.api_url("/metrics")).await.expect("metrics").text().await.expect("text")
    }

    /// The value of one sample in `/metrics`, 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(sample) && l[sample.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "spanlake exited with {status}:\n{}", self.log());
                return;
            }
            assert!(Instant::now() < deadline, "spanlake did not stop on SIGTERM:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub fn otlp_http_url(&self) -> String {
        format!("http://{}/v1/traces", self.otlp_http_addr)
    }

    /// The driver client for this server's API and OTLP/HTTP receiver.
    pub fn client(&self) -> spanlake_client::ClientBuilder {
        spanlake_client::Client::builder(self.api_url("")).otlp_endpoint(format!("http://{}", self.otlp_http_addr))
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    /// Runs SQL through `POST /api/v1/sql`; panics on an error answer.
    pub async fn sql(&self, sql: &str) -> Value {
        let (status, body) = self.sql_response(sql).await;
        assert_eq!(status, 200, "{sql} failed: {body}\n{}", self.log());
        body
    }

    pub async fn sql_response(&self, sql: &str) -> (u16, Value) {
        self.sql_as(None, sql).await
    }

    /// SQL as `tenant` (the X-Scope-OrgID header), through the driver
    /// client without retries: the status and body the server answered.
    pub async fn sql_as(&self, tenant: Option<&str>, sql: &str) -> (u16, Value) {
        let mut client = self.client().retry(RetryPolicy::none());
        if let Some(tenant) = tenant {
            client = client.tenant(tenant);
        }
        match client.build().expect("a client").sql(sql).await {
            Ok(rows) => (200, serde_json::to_value(rows).expect("rows as JSON")),
            Err(ClientError::Api { status, message }) => (status.as_u16(), serde_json::json!({ "error": message })),
            Err(error) => panic!("{sql}: {error}"),
        }
    }

    /// The single value of a one-row, one-column query.
    pub async fn sql_scalar(&self, sql: &str) -> Value {
        let body = self.sql(sql).await;
        body["rows"][0][0].clone()
    }

    pub async fn span_count(&self) -> i64 {
        self.sql_scalar("SELECT count(*) FROM spans").await.as_i64().expect("a count")
    }

    /// `GET /api/v1/traces/{id}` through the driver client: the status and,
    /// on 200, the trace.
    pub async fn trace(&self, id: &str) -> (u16, Option<ExportTraceServiceRequest>) {
        let client = self.client().retry(RetryPolicy::none()).build().expect("a client");
        match client.trace(id.parse().expect("a trace id")).await {
            Ok(Some(trace)) => (200, Some(trace)),
            Ok(None) => (404, None),
            Err(error) => (error.status().map_or_else(|| panic!("{id}: {error}"), |s| s.as_u16()), None),
        }
    }

    /// Parquet files under the data directory.
    pub fn parquet_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "parquet") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.data_dir, &mut files);
        files
    }

    /// Waits until every acknowledged span is in a published file (the buffer is empty).
    pub async fn wait_until_flushed(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.metric("spanlake_buffer_bytes").await > 0.0 {
            assert!(Instant::now() < deadline, "no flush happened:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's peak resident memory, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The Python interpreter of the test venv, made by `scripts/test.sh`.
/// Outside CI a missing venv skips the test loudly; under `CI=true` it fails.
pub fn python() -> Option<PathBuf> {
    tool("SPANLAKE_TEST_PYTHON", "the Python OpenTelemetry SDK tests need the venv that scripts/test.sh makes")
}

/// Checks each `{"name", "schema", "instance"}` with python-jsonschema, the
/// reference JSON Schema validator (in the test venv); the errors, a line
/// each, if any instance does not match its schema.
pub fn validate_json(checks: Vec<Value>) -> Result<(), String> {
    let Some(python) = python() else { return Ok(()) };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/validate_json.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the JSON Schema validator");
    let input = serde_json::to_vec(&checks).unwrap();
    child.stdin.take().unwrap().write_all(&input).expect("send the checks");
    let output = child.wait_with_output().expect("run the JSON Schema validator");
    match output.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(String::from_utf8_lossy(&output.stdout).into_owned()),
        _ => panic!("the JSON Schema validator failed: {}", String::from_utf8_lossy(&output.stderr)),
    }
}

/// Node.js, with tests/node's packages installed by scripts/test.sh.
pub fn node() -> Option<PathBuf> {
    tool("SPANLAKE_TEST_NODE", "the Node.js tests need the packages scripts/test.sh installs in tests/node")
}

/// ChromeDriver, for the UI tests in headless Chromium (Debian's chromium-driver).
pub fn chromedriver() -> Option<PathBuf> {
    tool("SPANLAKE_TEST_CHROMEDRIVER", "the UI tests need chromium and chromium-driver, which scripts/test.sh installs")
}

/// psql, the PostgreSQL client (Debian's postgresql-client).
pub fn psql() -> Option<PathBuf> {
    tool("SPANLAKE_TEST_PSQL", "the pgwire tests need psql, which scripts/test.sh installs")
}

/// The program `variable` names; outside CI a loud skip when it is missing.
fn tool(variable: &str, why: &str) -> Option<PathBuf> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match std::env::var_os(variable).map(PathBuf::from) {
        Some(path) if path.exists() => Some(path),
        other => {
            let message = format!("{variable} is {other:?}: {why}");
            assert!(!ci, "{message}");
            eprintln!("\n!!!!! SKIPPED: {message} !!!!!\n");
            None
        }
    }
}

/// Runs a `spanlake` subcommand to completion and returns its stdout.
pub fn run_cli(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN).args(args).output().expect("run spanlake");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A small tmpfs, for filling a disk on purpose. Needs root; outside CI
/// the test skips loudly without it, under `CI=true` it fails.
#[derive(Debug)]
pub struct TmpfsMount {
    dir: TempDir,
}

impl TmpfsMount {
    pub fn new(mib: u32) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status();
        if status.is_ok_and(|s| s.success()) {
            return Some(Self { dir });
        }
        let message = "cannot mount a tmpfs (needs root): the full-disk test needs one";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("\n!!!!! SKIPPED: {message} !!!!!\n");
        None
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `path` until the disk is full, then frees `leave` bytes.
    pub fn fill(&self, path: &Path, leave: u64) {
        use std::io::Write;
        let mut file = std::fs::File::create(path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let len = file.metadata().expect("metadata").len();
        file.set_len(len.saturating_sub(leave)).expect("truncate");
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A moto S3 server from the test venv (scripts/test.sh installs it).
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    pub async fn start() -> Option<Self> {
        let python = python()?;
        let moto = python.with_file_name("moto_server");
        let addr = free_port();
        let child = Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", moto.display()));
        let server = Self { child, endpoint: format!("http://{addr}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(server)
    }

    pub async fn create_bucket(&self, bucket: &str) {
        let response =
            reqwest::Client::new().put(format!("{}/{bucket}", self.endpoint)).send().await.expect("create bucket");
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// Keys in the bucket under `prefix`.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let url = format!("{}/{bucket}?list-type=2&prefix={prefix}&max-keys=1000", self.endpoint);
        let xml = reqwest::get(url).await.expect("list").text().await.expect("text");
        xml.split("<Key>").skip(1).filter_map(|s| s.split("</Key>").next()).map(str::to_owned).collect()
    }

    /// Options that point a spanlake at `s3://{bucket}/{prefix}` on this server.
    pub fn options(&self, bucket: &str, prefix: &str) -> ServerOptions {
        ServerOptions::default()
            .arg("--storage", &format!("s3://{bucket}/{prefix}"))
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "spanlake")
            .env("AWS_SECRET_ACCESS_KEY", "spanlake")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
