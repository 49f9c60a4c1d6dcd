//! `spanlake sql "SELECT ..."`: runs a query on the span files of a data
//! directory, or on a running server, and prints the result.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use spanlake_query::{JsonResult, QueryEngine, QueryLimits};
use spanlake_storage::{Storage, StorageConfig, TenantId};

use crate::store::{S3Args, open_store};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SqlArgs {
    /// The query (read-only: SELECT, WITH, EXPLAIN, SHOW, DESCRIBE).
    pub(crate) sql: String,
    /// Read the files in this directory; a running server may own it (spans
    /// it has not flushed yet are not in the files).
    #[arg(long, env = "SPANLAKE_DATA_DIR", default_value = "./spanlake-data")]
    pub(crate) data_dir: PathBuf,
    /// Ask a running spanlake instead, e.g. `http://127.0.0.1:9411`.
    #[arg(long, env = "SPANLAKE_SERVER")]
    pub(crate) server: Option<String>,
    /// The server's `--auth-token`, sent as a bearer token.
    #[arg(long, env = "SPANLAKE_AUTH_TOKEN", hide_env_values = true)]
    pub(crate) auth_token: Option<String>,
    /// The tenant whose spans to query (`X-Scope-OrgID` against a server).
    #[arg(long, env = "SPANLAKE_TENANT", default_value = TenantId::DEFAULT)]
    pub(crate) tenant: String,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Table,
    Csv,
    Json,
}

pub(crate) async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let tenant = TenantId::new(&args.tenant)?;
    let result = match &args.server {
        Some(server) => remote(server, args.auth_token.as_deref(), &tenant, &args.sql).await?,
        None => local(&args.data_dir, &tenant, &args.sql).await?,
    };
    match args.format {
        Format::Table => print!("{}", result.to_table()),
        Format::Csv => print!("{}", String::from_utf8(result.to_csv()?)?),
        Format::Json => println!("{}", serde_json::to_string(&result)?),
    }
    Ok(())
}

async fn local(data_dir: &std::path::Path, tenant: &TenantId, sql: &str) -> anyhow::Result<JsonResult> {
    let store = open_store(None, data_dir, &S3Args::default())?;
    let storage = Storage::open_read_only(store, StorageConfig::new(data_dir.join(".wal")), Arc::default()).await?;
    let engine = QueryEngine::new(Arc::clone(&storage), QueryLimits::default())?;
    let result = engine.sql(tenant, sql).await?;
    Ok(JsonResult::from_result(&result)?)
}

async fn remote(server: &str, token: Option<&str>, tenant: &TenantId, sql: &str) -> anyhow::Result<JsonResult> {
    let url = format!("{}/api/v1/sql", server.trim_end_matches('/'));
    let mut request = reqwest::Client::new().post(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .header(spanlake_storage::TENANT_HEADER, tenant.as_str())
        .json(&serde_json::json!({ "sql": sql }))
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let body: serde_json::Value =
        response.json().await.with_context(|| format!("{url} answered {status} without JSON"))?;
    if !status.is_success() {
        bail!("{}", body.get("error").and_then(|e| e.as_str()).unwrap_or("query failed"));
    }
    Ok(serde_json::from_value(body)?)
}
