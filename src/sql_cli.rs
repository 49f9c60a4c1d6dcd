//! `spanlake sql "SELECT ..."`: runs a query on the span files of a data
//! directory, or on a running server, and prints the result.

use std::path::PathBuf;
use std::sync::Arc;

use spanlake_query::render::JsonColumn;
use spanlake_query::{JsonResult, QueryEngine, QueryLimits};
use spanlake_storage::{Storage, StorageConfig, TenantId};

use crate::remote::Identity;
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
    /// The tenant whose spans to query, and the server's token.
    #[command(flatten)]
    pub(crate) identity: Identity,
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
        Some(server) => remote(server, &args.identity, &args.sql).await?,
        None => local(&args.data_dir, &TenantId::new(&args.identity.tenant)?, &args.sql).await?,
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

async fn remote(server: &str, identity: &Identity, sql: &str) -> anyhow::Result<JsonResult> {
    let rows = identity.client(server, None)?.sql(sql).await?;
    let columns = rows.columns.into_iter().map(|c| JsonColumn { name: c.name, data_type: c.data_type }).collect();
    Ok(JsonResult { columns, rows: rows.rows })
}
