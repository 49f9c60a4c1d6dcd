//! `spanlake sql "SELECT ..."`: runs a query on the span files of a data
//! directory, or on a running server, and prints the result.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use spanlake_query::{JsonResult, QueryEngine};
use spanlake_storage::{FlushConfig, TenantId};

use crate::serve::open_storage;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SqlArgs {
    /// The query (read-only: SELECT, WITH, EXPLAIN, SHOW, DESCRIBE).
    pub(crate) sql: String,
    /// Read the span files in this directory (spans a running server has
    /// not flushed yet are not in them).
    #[arg(long, env = "SPANLAKE_DATA_DIR", default_value = "./spanlake-data")]
    pub(crate) data_dir: PathBuf,
    /// Ask a running spanlake instead, e.g. `http://127.0.0.1:9411`.
    #[arg(long, env = "SPANLAKE_SERVER")]
    pub(crate) server: Option<String>,
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
    let result = match &args.server {
        Some(server) => remote(server, &args.sql).await?,
        None => local(&args.data_dir, &args.sql).await?,
    };
    match args.format {
        Format::Table => print!("{}", result.to_table()),
        Format::Csv => print!("{}", String::from_utf8(result.to_csv()?)?),
        Format::Json => println!("{}", serde_json::to_string(&result)?),
    }
    Ok(())
}

async fn local(data_dir: &std::path::Path, sql: &str) -> anyhow::Result<JsonResult> {
    let storage = open_storage(data_dir, FlushConfig::default()).await?;
    let engine = QueryEngine::new(Arc::clone(&storage))?;
    let result = engine.sql(&TenantId::default(), sql).await?;
    Ok(JsonResult::from_result(&result)?)
}

async fn remote(server: &str, sql: &str) -> anyhow::Result<JsonResult> {
    let url = format!("{}/api/v1/sql", server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
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
